"""The stages every on-policy (PPO-style) agent shares: its config, state and ``ActorCritic``.

``ppo``/``ppo-lag``/``pid-lag`` (``agents/on_policy/ppo.py``), ``cppo`` (``agents/on_policy/cppo.py``) and
``dyna-cppo`` (``agents/on_policy/dyna_cppo.py``) write their ``update`` as the algorithm box, calling the
stages kept here once:

- collection: ``core.rollout.rollout`` with ``ActorCritic.act``;
- estimation: ``ActorCritic.advantages``, GAE (Schulman et al. 2016) for reward and cost;
- policy and critic step: ``ActorCritic.sgd``, epochs of minibatch SGD on the algorithm's policy
  loss plus c_v (L_V^R + L_V^C) - c_ent H(pi), one Adam over actor and critics;
- bookkeeping: ``ActorCritic.finish``, observation statistics, the latest measured episode
  return and cost, the standard metrics (``core.metrics``).

A policy loss is a pure function ``loss(ratio, log_ratio, target, hp) -> (loss, aux)`` of a
minibatch, with ratio = pi_theta / pi_old and the per-sample ``target`` the algorithm computed for
the whole batch (an advantage, CPPO's E-step ratios).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxsafe.agents.base import ConfigError, config, extend, hparam, hparams_of, static
from jaxsafe.core import distributions, lagrange, minibatch, normalize
from jaxsafe.core.experience import ActFn, Transition, finished_episode_means, flatten_steps
from jaxsafe.core.metrics import standard
from jaxsafe.core.networks import ACTIVATIONS, Critic, GaussianActor, TwoHeadCritic
from jaxsafe.core.returns import gae
from jaxsafe.core.rollout import rollout
from jaxsafe.envs.core import Env, State

#: (ratio, log_ratio, target, hp) -> (policy loss, aux metrics) on a minibatch.
PolicyLoss = Callable[..., tuple[jax.Array, dict]]


@config
class OnPolicyConfig:
  """What every PPO-style learner shares: data collection, networks, critics, optimiser.

  Sources of the defaults: PPO values (GAE lambda 0.95, gamma 0.99, Adam 3e-4 with eps 1e-5, max
  grad norm 0.5, 10 epochs, tanh 64x64 networks, orthogonal init) from CleanRL's
  ``ppo_continuous_action.py`` and Andrychowicz et al. (2021). ``num_envs * rollout_length`` env
  steps are consumed per update.
  """

  # Static: fix shapes or code paths.
  num_envs: int = static(64, 1, doc="parallel environments")
  rollout_length: int = static(100, 1, doc="steps per env per update")
  update_epochs: int = static(10, 1, doc="SGD epochs per update")
  num_minibatches: int = static(8, 1, doc="minibatches per epoch")
  hidden_sizes: tuple[int, ...] = static((64, 64), doc="hidden layers of actor and critics")
  activation: str = static("tanh", choices=tuple(ACTIVATIONS), doc="hidden activation")
  distribution: str = static("tanh_normal", choices=distributions.KINDS, doc="action distribution")
  normalize_observations: bool = static(True, doc="running mean/std observation normalisation")
  shared_critic: bool = static(False, doc="one critic torso with reward and cost heads (faster; "
                               "default: two separate critics, as OmniSafe)")
  # Sweepable: numeric, live in state.hparams.
  learning_rate: float = hparam(3e-4, 0.0, 1.0, doc="Adam step size (actor and critics)")
  gamma: float = hparam(0.99, 0.0, 1.0, doc="discount for reward and cost")
  gae_lambda: float = hparam(0.95, 0.0, 1.0, doc="GAE lambda")
  entropy_coef: float = hparam(0.0, 0.0, None, doc="entropy bonus")
  value_coef: float = hparam(0.5, 0.0, None, doc="weight of the critics' losses")
  max_grad_norm: float = hparam(0.5, 1e-8, None, doc="global gradient-norm clip")
  log_std_init: float = hparam(-0.5, -5.0, 2.0, doc="initial log std of the policy")
  cost_limit: float | None = hparam(None, doc="episode cost limit b (default: the task's)")


@struct.dataclass
class OnPolicyState:
  params: dict  # actor, reward_critic and cost_critic (or one two-headed critic)
  opt_state: optax.OptState
  obs_stats: normalize.RunningStats
  env_state: State
  rng: jax.Array
  hparams: OnPolicyConfig  # the config with its hparam fields as arrays
  iteration: jax.Array
  last_episode: jax.Array  # (return, cost) of the latest finished episodes; NaN before any


@struct.dataclass
class LagrangianState(OnPolicyState):
  """The state of an on-policy agent with a Lagrange multiplier (ppo-lag, pid-lag, pdo, appo,
  cup, trpo-lag)."""

  lagrange: lagrange.LagrangeState


def with_multiplier(state: OnPolicyState, multiplier: jax.Array) -> LagrangianState:
  """``state`` with a Lagrange multiplier starting at ``multiplier``."""
  return extend(state, LagrangianState, lagrange=lagrange.init(multiplier))


class Advantages(NamedTuple):
  """GAE advantages and TD(lambda) value targets of a batch, [T, N] each."""

  reward: jax.Array
  cost: jax.Array
  reward_target: jax.Array
  cost_target: jax.Array


def standardize(x: jax.Array) -> jax.Array:
  return (x - x.mean()) / (x.std() + 1e-8)


def optimizer(hp: OnPolicyConfig) -> optax.GradientTransformation:
  # Built from traced hyper-parameters, so a vmapped batch of settings shares one program.
  return optax.chain(optax.clip_by_global_norm(hp.max_grad_norm),
                     optax.adam(hp.learning_rate, eps=1e-5))


class ActorCritic:
  """A Gaussian actor and reward/cost critics on normalised observations, with the shared
  on-policy stages as pure functions of the agent state (see the module docstring)."""

  def __init__(self, env: Env, config: OnPolicyConfig):
    batch_size = config.num_envs * config.rollout_length
    if batch_size % config.num_minibatches:
      raise ConfigError(f"num_envs * rollout_length = {batch_size} is not divisible by "
                        f"num_minibatches = {config.num_minibatches}")
    self.env, self.config = env, config
    self.actor = GaussianActor(env.action_size, config.hidden_sizes, config.activation)
    self.critic = (TwoHeadCritic if config.shared_critic else Critic)(config.hidden_sizes,
                                                                      config.activation)

  @property
  def steps_per_update(self) -> int:
    return self.config.num_envs * self.config.rollout_length

  # --- Networks. ------------------------------------------------------------------------------
  def norm(self, stats: normalize.RunningStats, obs: jax.Array) -> jax.Array:
    return normalize.normalize(stats, obs) if self.config.normalize_observations else obs

  def dist(self, actor_params, stats, obs):
    mean, log_std = self.actor.apply(actor_params, self.norm(stats, obs))
    return distributions.make_distribution(self.config.distribution, mean, log_std)

  def values(self, params, normalized_obs) -> tuple[jax.Array, jax.Array]:
    """(V_R(obs), V_C(obs)) from normalised observations."""
    if self.config.shared_critic:
      return self.critic.apply(params["critic"], normalized_obs)
    return (self.critic.apply(params["reward_critic"], normalized_obs),
            self.critic.apply(params["cost_critic"], normalized_obs))

  def init(self, key: jax.Array, hparams=None) -> OnPolicyState:
    """A fresh state (``with_multiplier`` adds a Lagrange multiplier to it)."""
    hp = hparams_of(self.config) if hparams is None else hparams
    k_actor, k_reward, k_cost, k_env, rng = jax.random.split(key, 5)
    dummy = jnp.zeros((self.env.observation_size,))
    actor_params = self.actor.init(k_actor, dummy)
    # The initial std is a hyper-parameter, so it is written into the params here.
    actor_params["params"]["log_std"] = jnp.full((self.env.action_size,), hp.log_std_init)
    if self.config.shared_critic:
      critics = {"critic": self.critic.init(k_reward, dummy)}
    else:
      critics = {"reward_critic": self.critic.init(k_reward, dummy),
                 "cost_critic": self.critic.init(k_cost, dummy)}
    params = {"actor": actor_params, **critics}
    env_state = self.env.reset(k_env)
    stats = normalize.update(normalize.init(self.env.observation_size), env_state.obs)
    return OnPolicyState(
        params=params, opt_state=optimizer(hp).init(params), obs_stats=stats,
        env_state=env_state, rng=rng, hparams=hp, iteration=jnp.zeros((), jnp.int32),
        last_episode=jnp.full((2,), jnp.nan, jnp.float32))

  def act(self, state: OnPolicyState) -> ActFn:
    """The sampling policy of ``state`` on raw observations."""
    return lambda obs, key: distributions.sample(
        self.dist(state.params["actor"], state.obs_stats, obs), key)

  def collect(self, state: OnPolicyState, key: jax.Array):
    """``rollout_length`` steps of every env with the current policy: (the env state after them,
    the batch [T, N], (J_R, J_C, count) of the episodes that ended in it)."""
    env_state, data = rollout(self.env, state.env_state, self.act(state), key,
                              self.config.rollout_length)
    return env_state, data, finished_episode_means(data)

  def policy(self, state: OnPolicyState, obs: jax.Array, key: jax.Array | None = None,
             deterministic: bool = False) -> jax.Array:
    chex.assert_axis_dimension(obs, -1, self.env.observation_size)
    dist = self.dist(state.params["actor"], state.obs_stats, obs)
    return distributions.act(dist, key, deterministic)

  # --- Estimation. ----------------------------------------------------------------------------
  def advantages(self, state: OnPolicyState, data: Transition) -> Advantages:
    """GAE for reward and cost, bootstrapping through truncation, not termination."""
    hp = state.hparams
    value_r, value_c = self.values(state.params, self.norm(state.obs_stats, data.obs))
    next_r, next_c = self.values(state.params, self.norm(state.obs_stats, data.next_obs))
    adv_r, target_r = gae(data.reward, value_r, next_r, data.terminal, data.done, hp.gamma,
                          hp.gae_lambda)
    adv_c, target_c = gae(data.cost, value_c, next_c, data.terminal, data.done, hp.gamma,
                          hp.gae_lambda)
    return Advantages(adv_r, adv_c, target_r, target_c)

  # --- Policy and critic step. ----------------------------------------------------------------
  def loss(self, params, hp, stats, batch: dict, policy_loss: PolicyLoss):
    """The algorithm's policy loss + c_v (L_V^R + L_V^C) - c_ent H on a minibatch; with
    ``policy_loss=None`` the critics' term alone (the actor then gets a zero gradient: the
    trust-region agents step it themselves)."""
    obs = self.norm(stats, batch["obs"])
    value_r, value_c = self.values(params, obs)
    value_loss = 0.5 * ((value_r - batch["reward_target"]) ** 2).mean()
    cost_value_loss = 0.5 * ((value_c - batch["cost_target"]) ** 2).mean()
    critics = {"value_loss": value_loss, "cost_value_loss": cost_value_loss}
    if policy_loss is None:
      return hp.value_coef * (value_loss + cost_value_loss), critics
    dist = distributions.make_distribution(self.config.distribution,
                                           *self.actor.apply(params["actor"], obs))
    log_ratio = distributions.log_prob(dist, batch["raw_action"]) - batch["log_prob"]
    ratio = jnp.exp(log_ratio)
    pi_loss, aux = policy_loss(ratio, log_ratio, batch["target"], hp)
    entropy = distributions.entropy(dist).mean()
    total = pi_loss + hp.value_coef * (value_loss + cost_value_loss) - hp.entropy_coef * entropy
    return total, {"policy_loss": pi_loss, **critics, "entropy": entropy,
                   "approx_kl": ((ratio - 1.0) - log_ratio).mean(), **aux}

  def sgd(self, state: OnPolicyState, data: Transition, target: jax.Array | None,
          adv: Advantages, policy_loss: PolicyLoss | None, key: jax.Array,
          kl_stop: jax.Array | None = None):
    """Epochs of minibatch SGD on ``loss``; returns (params, opt_state, mean aux metrics).
    ``policy_loss=None`` (and ``target=None``) trains the critics alone. With ``kl_stop``, KL
    early stopping: from the first minibatch whose approximate KL(pi_old || pi) exceeds it,
    the remaining steps are skipped (metric ``early_stopped``: the fraction skipped)."""
    hp, stats = state.hparams, state.obs_stats
    batch = flatten_steps({"obs": data.obs, "raw_action": data.raw_action,
                           "log_prob": data.log_prob,
                           "target": jnp.zeros_like(data.reward) if target is None else target,
                           "reward_target": adv.reward_target, "cost_target": adv.cost_target})
    tx = optimizer(hp)

    def sgd_step(carry, part):
      params, opt_state, stopped = carry
      grads, aux = jax.grad(self.loss, has_aux=True)(params, hp, stats, part, policy_loss)
      updates, new_opt_state = tx.update(grads, opt_state, params)
      aux["grad_norm"] = optax.tree.norm(grads)
      new_params = optax.apply_updates(params, updates)
      if kl_stop is not None:  # the KL is measured before this minibatch's step
        stopped = stopped | (aux["approx_kl"] > kl_stop)
        aux["early_stopped"] = stopped.astype(jnp.float32)
        new_params, new_opt_state = jax.tree.map(lambda old, new: jnp.where(stopped, old, new),
                                                 (params, opt_state), (new_params, new_opt_state))
      return (new_params, new_opt_state, stopped), aux

    (params, opt_state, _), aux = minibatch.epochs(
        sgd_step, (state.params, state.opt_state, jnp.bool_(False)), batch, key,
        self.config.update_epochs, self.config.num_minibatches)
    return params, opt_state, {k: v.mean() for k, v in aux.items()}

  # --- Bookkeeping. ---------------------------------------------------------------------------
  def finish(self, state: OnPolicyState, data: Transition, episode: tuple, **changes):
    """The next state after an update on the real batch ``data`` (``changes`` are the new
    params, optimiser, env state, rng, ...): observation statistics, the latest measured
    episode, the iteration count; and the standard metrics."""
    episode_return, episode_cost, episodes = episode
    stats = state.obs_stats
    if self.config.normalize_observations:
      stats = normalize.update(stats, data.obs)
    measured = jnp.stack([episode_return, episode_cost])
    last_episode = jnp.where(jnp.isnan(measured), state.last_episode, measured)
    iteration = state.iteration + 1
    new_state = state.replace(obs_stats=stats, iteration=iteration, last_episode=last_episode,
                              **changes)
    metrics = standard(iteration, self.steps_per_update, last_episode[0], last_episode[1],
                       episodes, state.hparams.cost_limit, new_state.params)
    return new_state, metrics


def step_metrics(data: Transition, adv: Advantages) -> dict[str, jax.Array]:
  """Batch means every on-policy agent logs."""
  return {"reward_advantage": adv.reward.mean(), "cost_advantage": adv.cost.mean(),
          "step_reward": data.reward.mean(), "step_cost": data.cost.mean()}
