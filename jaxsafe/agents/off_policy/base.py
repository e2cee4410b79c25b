"""The stages every off-policy agent shares: its config, state and ``OffPolicy``.

``cvpo`` (``agents/off_policy/cvpo.py``) writes its ``update`` as the algorithm box (Algorithm 2 of the CVPO
paper, Liu et al. 2022, App. B.1), calling the stages kept here:

- collection: ``OffPolicy.collect``, ``rollout_length`` steps of the vmapped, auto-resetting envs
  with the current policy (uniform random actions during the first ``warmup_steps`` env steps),
  stored in the replay buffer that lives in the agent state, so seeds and sweeps vmap over it;
- critics: ``OffPolicy.critic_step``, one Adam step on the mean-squared Bellman errors of Eq.
  49-50 for Q_r (twin critics: the target takes their minimum, as the authors' code does) and Q_c,
  with the next action drawn from the current actor and the targets cut at termination;
- targets: ``polyak`` (Eq. 59);
- bookkeeping: ``OffPolicy.finish``, the latest measured episode return and cost and the standard
  metrics.

The episodic cost limit b of our tasks (a sum over an episode of T steps) becomes a bound on the
discounted Q_c by spreading it evenly over the episode: eps_1 = (b / T) (1 - gamma^T) / (1 - gamma)
(``cost_threshold``; the authors' code, liuzuxin/cvpo-safe-rl, ``qc_thres``).
"""

from __future__ import annotations

from collections.abc import Callable

import chex
import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxsafe.agents.base import config, hparam, hparams_of, static
from jaxsafe.core import distributions, replay
from jaxsafe.core.experience import ActFn, ActionSample, Transition, finished_episode_means
from jaxsafe.core.metrics import prefixed, standard
from jaxsafe.core.networks import ACTIVATIONS, QCritic, StateGaussianActor
from jaxsafe.core.rollout import rollout
from jaxsafe.envs.core import Env, State

TWIN = 2  # reward critics


@config
class OffPolicyConfig:
  """What every off-policy learner shares: collection, replay, Q critics and their targets.

  Defaults from the authors' CVPO code (liuzuxin/cvpo-safe-rl @ aeca790, ``script/config/
  config_cvpo.yaml`` and the env scripts): (256, 256) ReLU networks, critic Adam 1e-3, gamma 0.99,
  polyak 0.995, 4000 warm-up steps. Our batch layout: 16 envs x 10 steps = 160 env steps and 20
  gradient steps per update, an update-to-data ratio of 0.125 (theirs: about 0.133)."""

  num_envs: int = static(16, 1, doc="parallel environments")
  rollout_length: int = static(10, 1, doc="env steps per env per update")
  gradient_steps: int = static(20, 0, doc="gradient steps per update; the update-to-data ratio "
                               "is gradient_steps / (num_envs * rollout_length)")
  batch_size: int = static(256, 1, doc="transitions per gradient step")
  buffer_capacity: int = static(100_000, 1, doc="transitions kept (FIFO)")
  warmup_steps: int = static(4000, 0, doc="env steps (all envs) of uniform random actions; "
                             "learning starts after them")
  hidden_sizes: tuple[int, ...] = static((256, 256), doc="hidden layers of actor and critics")
  activation: str = static("relu", choices=tuple(ACTIVATIONS), doc="hidden activation")
  gamma: float = hparam(0.99, 0.0, 0.9999, doc="discount")
  polyak: float = hparam(0.995, 0.0, 1.0, doc="target-network weight rho (Eq. 59)")
  critic_learning_rate: float = hparam(1e-3, 0.0, 1.0, doc="Adam step size of the critics")
  cost_limit: float | None = hparam(None, doc="episode cost limit b (default: the task's)")


@struct.dataclass
class OffPolicyState:
  params: dict  # actor, reward_critic (TWIN stacked on a leading axis), cost_critic
  target_params: dict  # the critics' targets
  critic_opt_state: optax.OptState
  actor_opt_state: optax.OptState
  buffer: replay.Buffer
  env_state: State
  rng: jax.Array
  hparams: OffPolicyConfig
  iteration: jax.Array
  last_episode: jax.Array  # (return, cost) of the latest finished episodes; NaN before any


#: (state, carry, (index, key)) -> (carry, metrics): one gradient step of an off-policy learner;
#: ``carry = (params, target_params, critic_opt_state, actor_opt_state, own)``, ``own`` the
#: algorithm's own field of its state (``OffPolicy.update``).
GradientStep = Callable[[OffPolicyState, tuple, tuple], tuple[tuple, dict]]


def cost_threshold(cost_limit, gamma, episode_length: int):
  """eps_1 = (b / T) (1 - gamma^T) / (1 - gamma): the episode limit b spread evenly over T steps,
  discounted (module docstring)."""
  return cost_limit / episode_length * (1.0 - gamma ** episode_length) / (1.0 - gamma)


def polyak(target, online, rho):
  """Eq. 59: target <- rho target + (1 - rho) online."""
  return optax.incremental_update(online, target, step_size=1.0 - rho)


class OffPolicy:
  """A Gaussian actor in action space (unbounded mean, state-dependent std, samples clipped to
  the box), twin reward Q critics and a cost Q critic,
  on raw observations, with the shared off-policy stages (module docstring)."""

  #: reward critics (twin: their minimum is the target and the actor's value) and whether the
  #: actor has a target network (the deterministic-policy baselines')
  reward_critics: int = TWIN
  target_actor: bool = False

  def __init__(self, env: Env, config: OffPolicyConfig, min_std: float = 0.0):
    self.env, self.config, self.min_std = env, config, min_std
    self.actor = StateGaussianActor(env.action_size, config.hidden_sizes, config.activation)
    self.critic = QCritic(config.hidden_sizes, config.activation)
    self.steps_per_update = config.num_envs * config.rollout_length
    self.episode_length = int(env.episode_length)

  # --- Networks. ------------------------------------------------------------------------------
  def gaussian(self, actor_params, obs):
    """(mean, log std) of the policy's Gaussian in action space, the std at least ``min_std``;
    the sampled actions are clipped to the box (no squashing, as the authors' policy). The mean
    is not bounded: a tanh- or sigmoid-bounded mean saturates where the best action is on the
    boundary, and then the M-step cannot move it (docs/algorithms.md, "CVPO")."""
    mean, log_std = self.actor.apply(actor_params, obs)
    if self.min_std > 0.0:
      log_std = jnp.logaddexp(log_std, jnp.log(self.min_std))  # log(std + min_std)
    return mean, log_std

  def dist(self, actor_params, obs):
    return distributions.make_distribution("normal", *self.gaussian(actor_params, obs))

  def sample(self, actor_params, obs, key, hp) -> ActionSample:
    """An exploring action (``hp``: the hyper-parameters, for the policies that read them)."""
    del hp
    sample = distributions.sample(self.dist(actor_params, obs), key)
    return sample._replace(action=jnp.clip(sample.action, -1.0, 1.0))

  def mode(self, actor_params, obs):
    """The deterministic action: the mean, clipped to the box."""
    return jnp.clip(self.gaussian(actor_params, obs)[0], -1.0, 1.0)

  def next_action(self, params, target_params, next_obs, key, hp):
    """The action a' of the Bellman targets and a bonus added to the reward critic's target
    value there (SAC's -alpha log pi(a'|s')); here a' ~ pi(.|s'), no bonus."""
    del target_params
    return self.sample(params["actor"], next_obs, key, hp).action, 0.0

  def q_reward(self, critic_params, obs, action):
    """min over the twin reward critics of Q_r(obs, action)."""
    values = jax.vmap(self.critic.apply, in_axes=(0, None, None))(critic_params, obs, action)
    return jnp.min(values, axis=0)

  def actor_value(self, critic_params, obs, action):
    """Q_r as the actor sees it: the minimum of the twins (SAC; TD3 overrides it)."""
    return self.q_reward(critic_params, obs, action)

  def q_cost(self, critic_params, obs, action):
    return self.critic.apply(critic_params, obs, action)

  def critic_optimizer(self, hp) -> optax.GradientTransformation:
    return optax.adam(hp.critic_learning_rate)

  def init(self, key: jax.Array, hparams, actor_tx: optax.GradientTransformation
           ) -> OffPolicyState:
    """The family's state; each algorithm extends it with its own field
    (``agents.base.extend``)."""
    hp = hparams_of(self.config) if hparams is None else hparams
    k_actor, k_reward, k_cost, k_env, rng = jax.random.split(key, 5)
    obs = jnp.zeros((self.env.observation_size,))
    action = jnp.zeros((self.env.action_size,))
    critics = {
        "reward_critic": jax.vmap(self.critic.init, in_axes=(0, None, None))(
            jax.random.split(k_reward, self.reward_critics), obs, action),
        "cost_critic": self.critic.init(k_cost, obs, action)}
    params = {"actor": self.actor.init(k_actor, obs), **critics}
    targets = {**critics, "actor": params["actor"]} if self.target_actor else critics
    example = Transition(obs=obs, action=action, raw_action=None, reward=jnp.zeros(()),
                         cost=jnp.zeros(()), next_obs=obs, terminal=jnp.zeros(()),
                         done=jnp.zeros(()), alive=jnp.zeros(()))
    return OffPolicyState(
        params=params, target_params=targets,
        critic_opt_state=self.critic_optimizer(hp).init(critics),
        actor_opt_state=actor_tx.init(params["actor"]),
        buffer=replay.init(example, self.config.buffer_capacity),
        env_state=self.env.reset(k_env), rng=rng, hparams=hp,
        iteration=jnp.zeros((), jnp.int32),
        last_episode=jnp.full((2,), jnp.nan, jnp.float32))

  # --- Collection. ----------------------------------------------------------------------------
  def warming_up(self, state: OffPolicyState) -> jax.Array:
    return state.iteration * self.steps_per_update < self.config.warmup_steps

  def act(self, state: OffPolicyState) -> ActFn:
    """The current policy, or uniform random actions while warming up."""
    warm = self.warming_up(state)

    def act(obs, key):
      sample = self.sample(state.params["actor"], obs, key, state.hparams)
      uniform = jax.random.uniform(key, sample.action.shape, minval=-1.0, maxval=1.0)
      return ActionSample(jnp.where(warm, uniform, sample.action), sample.raw_action,
                          sample.log_prob)
    return act

  def policy(self, state: OffPolicyState, obs: jax.Array, key: jax.Array | None = None,
             deterministic: bool = False) -> jax.Array:
    chex.assert_axis_dimension(obs, -1, self.env.observation_size)
    if deterministic:
      return self.mode(state.params["actor"], obs)
    return self.sample(state.params["actor"], obs, key, state.hparams).action

  def collect(self, state: OffPolicyState, key: jax.Array):
    """``rollout_length`` steps of every env, stored; returns (env state, data [L, N], buffer)."""
    env_state, data = rollout(self.env, state.env_state, self.act(state), key,
                              self.config.rollout_length)
    items = jax.tree_util.tree_map(
        lambda x: x.reshape((-1,) + x.shape[2:]),
        Transition(obs=data.obs, action=data.action, raw_action=None, reward=data.reward,
                   cost=data.cost, next_obs=data.next_obs, terminal=data.terminal,
                   done=data.done, alive=data.alive))
    return env_state, data, replay.add(state.buffer, items)

  def learning(self, state: OffPolicyState, buffer: replay.Buffer) -> jax.Array:
    """Gradient steps start once the warm-up is over and a batch is stored."""
    return (~self.warming_up(state)) & (buffer.size >= self.config.batch_size)

  # --- Critics. -------------------------------------------------------------------------------
  def critic_step(self, params, target_params, opt_state, hp, batch: Transition, key):
    """One Adam step on Eq. 49-50; returns (critics, opt_state, metrics)."""
    next_action, bonus = self.next_action(params, target_params, batch.next_obs, key, hp)
    keep = hp.gamma * (1.0 - batch.terminal)
    reward_target = batch.reward + keep * (self.q_reward(target_params["reward_critic"],
                                                         batch.next_obs, next_action) + bonus)
    cost_target = batch.cost + keep * self.q_cost(target_params["cost_critic"], batch.next_obs,
                                                  next_action)

    def loss(critics):
      q_r = jax.vmap(self.critic.apply, in_axes=(0, None, None))(
          critics["reward_critic"], batch.obs, batch.action)
      q_c = self.q_cost(critics["cost_critic"], batch.obs, batch.action)
      reward_loss = jnp.mean(jnp.square(q_r - reward_target[None]))
      cost_loss = jnp.mean(jnp.square(q_c - cost_target))
      return reward_loss + cost_loss, {"reward_critic_loss": reward_loss,
                                       "cost_critic_loss": cost_loss, "q_cost": q_c.mean()}

    critics = {k: params[k] for k in ("reward_critic", "cost_critic")}
    grads, metrics = jax.grad(loss, has_aux=True)(critics)
    updates, opt_state = self.critic_optimizer(hp).update(grads, opt_state, critics)
    return optax.apply_updates(critics, updates), opt_state, metrics

  def critic_update(self, state: OffPolicyState, params, target_params, opt_state,
                    k_batch: jax.Array, k_next: jax.Array):
    """A batch from the buffer and one step of the critics on it: (params with the new critics,
    the critics' optimiser state, the batch, metrics)."""
    batch = replay.sample(state.buffer, k_batch, self.config.batch_size)
    critics, opt_state, metrics = self.critic_step(params, target_params, opt_state,
                                                   state.hparams, batch, k_next)
    return {**params, **critics}, opt_state, batch, metrics

  # --- One update. ----------------------------------------------------------------------------
  def update(self, state: OffPolicyState, gradient_step: GradientStep, name: str, own: str):
    """Collect, then ``gradient_steps`` x ``gradient_step`` (a ``lax.scan``; its results kept only
    once ``learning``), then ``finish``. ``gradient_step(state, carry, (index, key))`` maps
    ``carry = (params, target_params, critic_opt_state, actor_opt_state, own)`` to
    ``(carry, metrics)``, ``own`` the algorithm's field of that name in its state (CVPO's duals,
    the Lagrangian agents' multiplier); ``state`` already holds the new data in its buffer. A
    metric is averaged over the steps where it is not NaN."""
    rng, k_collect, k_learn = jax.random.split(state.rng, 3)
    env_state, data, buffer = self.collect(state, k_collect)
    collected = state.replace(buffer=buffer)
    carry = (state.params, state.target_params, state.critic_opt_state, state.actor_opt_state,
             getattr(state, own))
    steps = (jnp.arange(self.config.gradient_steps),
             jax.random.split(k_learn, self.config.gradient_steps))
    learned, metrics = jax.lax.scan(lambda c, x: gradient_step(collected, c, x), carry, steps)
    learning = self.learning(state, buffer)
    carry = jax.tree_util.tree_map(lambda new, old: jnp.where(learning, new, old), learned, carry)
    params, target, critic_opt, actor_opt, own_state = carry
    state, standard = self.finish(state, data, params=params, target_params=target,
                                  critic_opt_state=critic_opt, actor_opt_state=actor_opt,
                                  buffer=buffer, env_state=env_state, rng=rng,
                                  **{own: own_state})
    step = {k: jnp.where(learning, jnp.nanmean(v), jnp.nan) for k, v in metrics.items()}
    return state, {**standard,
                   **prefixed(name, {**step, "learning": learning.astype(jnp.float32)})}

  # --- Bookkeeping. ---------------------------------------------------------------------------
  def finish(self, state: OffPolicyState, data: Transition, **changes):
    """The next state after an update that collected ``data``, and the standard metrics."""
    episode_return, episode_cost, episodes = finished_episode_means(data)
    measured = jnp.stack([episode_return, episode_cost])
    last_episode = jnp.where(jnp.isnan(measured), state.last_episode, measured)
    iteration = state.iteration + 1
    new_state = state.replace(iteration=iteration, last_episode=last_episode, **changes)
    metrics = standard(iteration, self.steps_per_update, last_episode[0], last_episode[1],
                       episodes, state.hparams.cost_limit, new_state.params)
    return new_state, {**metrics, "step_reward": data.reward.mean(),
                       "step_cost": data.cost.mean()}
