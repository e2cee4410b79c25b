"""PPO, PPO-Lag and PID-Lag: one clipped-surrogate learner, three ways to handle the cost.

- ``ppo``: PPO-Clip (Schulman et al. 2017, Eq. 7), the unconstrained reference; the cost critic
  is still trained so the cost value is logged.
- ``ppo-lag``: maximise J_R - lambda (J_C - b) with lambda updated by projected gradient ascent on
  the measured episode cost (Ray, Achiam and Amodei 2019, "Benchmarking Safe Exploration").
- ``pid-lag``: lambda from the PID controller of Stooke, Achiam and Abbeel (2020), Algorithm 2
  (called CPPO-PID elsewhere).

One ``update`` reads top to bottom like the algorithm box: collect a batch with the current
policy, estimate reward and cost advantages with GAE, update the multiplier on the batch's episode
cost, then run epochs of minibatch SGD on

    L = -E[min(rho A, clip(rho, 1-eps, 1+eps) A)] + c_v (L_V^R + L_V^C) - c_ent H(pi),
    A = (A^R - lambda A^C) / (1 + lambda)                     (OmniSafe's PPO-Lag normalisation)

with A^R and A^C each standardised over the batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxsafe.agents.base import Agent, ConfigError, hparam, hparams_of, static
from jaxsafe.core import distributions, lagrange, minibatch, normalize
from jaxsafe.core.networks import ACTIVATIONS, Critic, GaussianActor, TwoHeadCritic
from jaxsafe.core.returns import gae
from jaxsafe.core.rollout import finished_episode_means, rollout
from jaxsafe.envs.core import Env, State

CONSTRAINT_MODES = ("none", "lagrangian", "pid")


@dataclasses.dataclass(frozen=True)
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
  learning_rate: float = hparam(3e-4, 0.0, 1.0, doc="Adam step size")
  gamma: float = hparam(0.99, 0.0, 1.0, doc="discount for reward and cost")
  gae_lambda: float = hparam(0.95, 0.0, 1.0, doc="GAE lambda")
  entropy_coef: float = hparam(0.0, 0.0, None, doc="entropy bonus")
  value_coef: float = hparam(0.5, 0.0, None, doc="weight of the critics' losses")
  max_grad_norm: float = hparam(0.5, 1e-8, None, doc="global gradient-norm clip")
  log_std_init: float = hparam(-0.5, -5.0, 2.0, doc="initial log std of the policy")
  cost_limit: float | None = hparam(None, doc="episode cost limit b (default: the task's)")


@dataclasses.dataclass(frozen=True)
class PPOConfig(OnPolicyConfig):
  """Hyper-parameters of ``ppo``, ``ppo-lag`` and ``pid-lag``.

  On top of ``OnPolicyConfig``: the clip 0.2 (CleanRL); the multiplier learning rate 0.035 from
  OmniSafe's PPOLag; the PID gains and EMA weights from OmniSafe's CPPOPID (Kp 0.1, Ki 0.01, Kd
  0.01, EMA 0.95), which follow Stooke et al. (2020).
  """

  clip_eps: float = hparam(0.2, 0.0, 1.0, doc="PPO ratio clip")
  lagrangian_lr: float = hparam(0.035, 0.0, None, doc="ppo-lag: multiplier step size")
  lagrangian_init: float = hparam(0.0, 0.0, None, doc="ppo-lag: initial multiplier")
  pid_kp: float = hparam(0.1, 0.0, None, doc="pid-lag: proportional gain")
  pid_ki: float = hparam(0.01, 0.0, None, doc="pid-lag: integral gain")
  pid_kd: float = hparam(0.01, 0.0, None, doc="pid-lag: derivative gain")
  pid_delta_ema: float = hparam(0.95, 0.0, 0.999, doc="pid-lag: EMA weight on the P term")
  pid_d_ema: float = hparam(0.95, 0.0, 0.999, doc="pid-lag: EMA weight on the D term's cost")


@struct.dataclass
class PPOState:
  params: dict
  opt_state: optax.OptState
  obs_stats: normalize.RunningStats
  lagrange: lagrange.LagrangeState
  env_state: State
  rng: jax.Array
  hparams: dict
  iteration: jax.Array
  last_episode: jax.Array  # (return, cost) of the latest finished episodes; NaN before any


def _optimizer(hp: dict) -> optax.GradientTransformation:
  # Built from traced hyper-parameters, so a vmapped batch of settings shares one program.
  return optax.chain(optax.clip_by_global_norm(hp["max_grad_norm"]),
                     optax.adam(hp["learning_rate"], eps=1e-5))


def _standardize(x: jax.Array) -> jax.Array:
  return (x - x.mean()) / (x.std() + 1e-8)


class PolicyObjective(NamedTuple):
  """How a PPO-style learner turns a batch's advantages into a policy loss.

  - ``targets(adv_r, adv_c, episode_cost, state, hp) -> (target, lagrange_state, metrics)``: a
    per-sample target ([T, num_envs]) computed once per batch from the raw GAE advantages and the
    batch's measured episode cost (NaN when no episode finished), e.g. a Lagrangian advantage or
    CPPO's E-step ratios; it may update the multiplier state.
  - ``loss(ratio, log_ratio, target, hp) -> (policy_loss, aux)`` on a minibatch, with
    ratio = pi_theta / pi_old.
  """

  targets: Callable[..., tuple[jax.Array, lagrange.LagrangeState, dict]]
  loss: Callable[..., tuple[jax.Array, dict]]


def lagrangian_objective(constraint: str) -> PolicyObjective:
  """The clipped surrogate on (A^R - lambda A^C) / (1 + lambda), lambda by ``constraint``."""
  if constraint not in CONSTRAINT_MODES:
    raise ValueError(f"constraint must be one of {CONSTRAINT_MODES}, got {constraint!r}")

  def update_multiplier(lag: lagrange.LagrangeState, hp: dict, episode_cost: jax.Array):
    if constraint == "none":
      return lag
    if constraint == "lagrangian":
      new = lagrange.gradient_ascent_update(lag, episode_cost, hp["cost_limit"], hp["lagrangian_lr"])
    else:
      new = lagrange.pid_update(lag, episode_cost, hp["cost_limit"], hp["pid_kp"], hp["pid_ki"],
                                hp["pid_kd"], hp["pid_delta_ema"], hp["pid_d_ema"])
    # No episode finished in this batch: nothing measured, keep the multiplier.
    return jax.tree_util.tree_map(lambda n, o: jnp.where(jnp.isnan(episode_cost), o, n), new, lag)

  def targets(adv_r, adv_c, episode_cost, state, hp):
    lag = update_multiplier(state.lagrange, hp, episode_cost)
    lam = lag.multiplier
    advantage = (_standardize(adv_r) - lam * _standardize(adv_c)) / (1.0 + lam)
    return advantage, lag, {"multiplier": lam}

  def loss(ratio, log_ratio, adv, hp):
    clipped = jnp.clip(ratio, 1.0 - hp["clip_eps"], 1.0 + hp["clip_eps"])
    policy_loss = -jnp.minimum(ratio * adv, clipped * adv).mean()
    return policy_loss, {"clip_fraction": (jnp.abs(ratio - 1.0) > hp["clip_eps"]).mean()}

  return PolicyObjective(targets, loss)


class Learner(NamedTuple):
  """The pieces of a PPO-style agent, for agents that add steps around them (Dyna-CPPO).

  - ``update_with_data(state) -> (state, metrics, data)``: one iteration on a fresh real batch,
    also returning the batch.
  - ``learn(state, data, episode_cost, key) -> (state, metrics)``: GAE, targets and the epochs
    of minibatch SGD on any batch shaped like a rollout (real or imagined); touches only the
    parameters, optimiser and multiplier.
  - ``act(params, stats, hp) -> ActFn``: the sampling policy on raw observations.
  """

  agent: Agent
  update_with_data: Callable
  learn: Callable
  act: Callable


def make_ppo(env: Env, config: PPOConfig, constraint: str = "none", name: str = "ppo") -> Agent:
  """Builds a PPO-family agent on ``env`` (vmapped over ``config.num_envs``, auto-resetting)."""
  return make_learner(env, config, lagrangian_objective(constraint), name,
                      lagrangian_init=constraint == "lagrangian").agent


def make_learner(env: Env, config: OnPolicyConfig, objective: PolicyObjective, name: str,
                 lagrangian_init: bool = False) -> Learner:
  """Builds a PPO-style learner with the given policy objective (see ``Learner``)."""
  batch_size = config.num_envs * config.rollout_length
  if batch_size % config.num_minibatches:
    raise ConfigError(f"num_envs * rollout_length = {batch_size} is not divisible by "
                      f"num_minibatches = {config.num_minibatches}")
  if config.cost_limit is None:
    config = dataclasses.replace(config, cost_limit=float(env.cost_limit))
  obs_size, act_size = env.observation_size, env.action_size
  actor = GaussianActor(act_size, config.hidden_sizes, config.activation)
  critic = Critic(config.hidden_sizes, config.activation)
  two_head_critic = TwoHeadCritic(config.hidden_sizes, config.activation)

  def init_critics(k_reward, k_cost, dummy) -> dict:
    if config.shared_critic:
      return {"critic": two_head_critic.init(k_reward, dummy)}
    return {"reward_critic": critic.init(k_reward, dummy), "cost_critic": critic.init(k_cost, dummy)}

  def critic_values(params, obs) -> tuple[jax.Array, jax.Array]:
    """(V_R(obs), V_C(obs)) from normalised observations."""
    if config.shared_critic:
      return two_head_critic.apply(params["critic"], obs)
    return critic.apply(params["reward_critic"], obs), critic.apply(params["cost_critic"], obs)

  def norm(stats, obs):
    return normalize.normalize(stats, obs) if config.normalize_observations else obs

  def dist_of(actor_params, hp, obs):
    mean, log_std = actor.apply(actor_params, obs)
    return distributions.make_distribution(config.distribution, mean, log_std)

  def init(key: jax.Array, hparams: dict | None = None) -> PPOState:
    hp = hparams_of(config) if hparams is None else hparams
    k_actor, k_reward, k_cost, k_env, rng = jax.random.split(key, 5)
    dummy = jnp.zeros((obs_size,))
    actor_params = actor.init(k_actor, dummy)
    # The initial std is a hyper-parameter, so it is written into the params here.
    actor_params["params"]["log_std"] = jnp.full((act_size,), hp["log_std_init"])
    params = {"actor": actor_params, **init_critics(k_reward, k_cost, dummy)}
    env_state = env.reset(k_env)
    return PPOState(
        params=params, opt_state=_optimizer(hp).init(params),
        obs_stats=normalize.update(normalize.init(obs_size), env_state.obs),
        lagrange=lagrange.init(hp["lagrangian_init"] if lagrangian_init else 0.0),
        env_state=env_state, rng=rng, hparams=hp, iteration=jnp.zeros((), jnp.int32),
        last_episode=jnp.full((2,), jnp.nan))

  def policy(state: PPOState, obs: jax.Array, key: jax.Array | None = None,
             deterministic: bool = False) -> jax.Array:
    dist = dist_of(state.params["actor"], state.hparams, norm(state.obs_stats, obs))
    if deterministic:
      return distributions.mode(dist)
    return distributions.sample(dist, key)[0]

  def loss_fn(params, hp, stats, batch):
    obs = norm(stats, batch["obs"])
    dist = dist_of(params["actor"], hp, obs)
    log_ratio = distributions.log_prob(dist, batch["raw_action"]) - batch["log_prob"]
    ratio = jnp.exp(log_ratio)
    policy_loss, aux = objective.loss(ratio, log_ratio, batch["target"], hp)
    value_r, value_c = critic_values(params, obs)
    value_loss = 0.5 * ((value_r - batch["reward_target"]) ** 2).mean()
    cost_value_loss = 0.5 * ((value_c - batch["cost_target"]) ** 2).mean()
    entropy = distributions.entropy(dist).mean()
    total = policy_loss + hp["value_coef"] * (value_loss + cost_value_loss) - hp["entropy_coef"] * entropy
    aux = {"policy_loss": policy_loss, "value_loss": value_loss, "cost_value_loss": cost_value_loss,
           "entropy": entropy, "approx_kl": ((ratio - 1.0) - log_ratio).mean(), **aux}
    return total, aux

  def act(params, stats, hp):
    def act_fn(obs, key):
      return distributions.sample(dist_of(params["actor"], hp, norm(stats, obs)), key)
    return act_fn

  def learn(state: PPOState, data, episode_cost: jax.Array, key: jax.Array):
    hp, stats, params = state.hparams, state.obs_stats, state.params

    # --- GAE for reward and cost (bootstrapping through truncation, not termination). ------
    value_r, value_c = critic_values(params, norm(stats, data.obs))
    next_value_r, next_value_c = critic_values(params, norm(stats, data.next_obs))
    terminations = data.done * (1.0 - data.truncation)
    adv_r, target_r = gae(data.reward, value_r, next_value_r, terminations, data.done,
                          hp["gamma"], hp["gae_lambda"])
    adv_c, target_c = gae(data.cost, value_c, next_value_c, terminations, data.done,
                          hp["gamma"], hp["gae_lambda"])

    # --- The objective's per-sample targets (and multiplier step) from the whole batch. ----
    target, lag, target_metrics = objective.targets(adv_r, adv_c, episode_cost, state, hp)

    # --- Epochs of minibatch SGD on the policy loss and the critics. -----------------------
    n = data.reward.size
    flat = lambda x: x.reshape((n,) + x.shape[2:])
    batch = {"obs": flat(data.obs), "raw_action": flat(data.raw_action),
             "log_prob": flat(data.log_prob), "target": flat(target),
             "reward_target": flat(target_r), "cost_target": flat(target_c)}
    tx = _optimizer(hp)

    def sgd_step(carry, part):
      params, opt_state = carry
      grads, aux = jax.grad(loss_fn, has_aux=True)(params, hp, stats, part)
      updates, opt_state = tx.update(grads, opt_state, params)
      aux["grad_norm"] = optax.tree.norm(grads)
      return (optax.apply_updates(params, updates), opt_state), aux

    (params, opt_state), aux = minibatch.epochs(sgd_step, (params, state.opt_state), batch, key,
                                                config.update_epochs, config.num_minibatches)
    metrics = {**target_metrics, "reward_advantage": adv_r.mean(), "cost_advantage": adv_c.mean(),
               "step_reward": data.reward.mean(), "step_cost": data.cost.mean(),
               **{k: v.mean() for k, v in aux.items()}}
    return state.replace(params=params, opt_state=opt_state, lagrange=lag), metrics

  def update_with_data(state: PPOState):
    rng, rollout_key, sgd_key = jax.random.split(state.rng, 3)

    # --- 1. Collect num_envs x rollout_length steps with the current policy. ----------------
    act_fn = act(state.params, state.obs_stats, state.hparams)
    env_state, data = rollout(env, state.env_state, act_fn, rollout_key, config.rollout_length)

    # --- 2-4. GAE, targets from the batch's measured episode cost J_C, SGD. -----------------
    episode_return, episode_cost, episodes = finished_episode_means(data)
    state, learn_metrics = learn(state, data, episode_cost, sgd_key)

    # --- 5. Bookkeeping. --------------------------------------------------------------------
    stats = state.obs_stats
    if config.normalize_observations:
      stats = normalize.update(stats, data.obs)
    measured = jnp.stack([episode_return, episode_cost])
    last_episode = jnp.where(jnp.isnan(measured), state.last_episode, measured)
    iteration = state.iteration + 1
    new_state = state.replace(obs_stats=stats, env_state=env_state, rng=rng, iteration=iteration,
                              last_episode=last_episode)
    finite = jnp.all(jnp.stack([jnp.isfinite(x).all()
                                for x in jax.tree_util.tree_leaves(new_state.params)]))
    metrics = {
        "iteration": iteration,
        "env_steps": iteration * batch_size,
        "episode_return": last_episode[0],
        "episode_cost": last_episode[1],
        "episodes": episodes,
        "cost_limit": state.hparams["cost_limit"],
        "params_finite": finite.astype(jnp.float32),
        **{f"{name}/{k}": v for k, v in learn_metrics.items()},
    }
    return new_state, metrics, data

  def update(state: PPOState) -> tuple[PPOState, dict]:
    new_state, metrics, _ = update_with_data(state)
    return new_state, metrics

  agent = Agent(name=name, config=config, env=env, init=init, update=update, policy=policy)
  return Learner(agent=agent, update_with_data=update_with_data, learn=learn, act=act)
