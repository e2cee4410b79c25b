"""The stages the first-order agents share: configs, state and ``FirstOrder``.

``cgpo`` (``agents/first_order/cgpo.py``), ``mb-cgpo`` (``agents/first_order/mb_cgpo.py``), ``shac-lag`` and ``bptt-lag``
(``agents/first_order/shac_lag.py``) follow one iteration (CGPO Algorithm 1 / Algorithm 3) and differ in where
the gradients come from and in the policy step. The shared stages, kept here once:

1. Sample N whole episodes (T steps, fresh initial states) with the reparameterised policy and
   measure J_R(theta_k), J_C(theta_k): the mean undiscounted episode return and cost.
2. Gradients g_k = grad J_R and q_k = grad J_C from one pass through a differentiable env
   (``core.short_horizon``): windows of h steps bootstrapped by time-conditioned critics
   V(s, t) (Eq. 19-20, App. A.4), or one window of T steps without critics (BPTT, Eq. 79-80).
4. The critics by minibatch regression on the finite-horizon TD(lambda) targets of Eq. 66-68,
   truncated at window ends (``core.critics.regress``); then the observation statistics and the
   standard metrics, with this step's predicted changes of J_R and J_C and the last step's
   measured ones (the GBE of Eq. 6-7).

Defaults follow Table 4 of the CGPO paper (CartPole column: 128 envs, h = 10, critic learning
rate 1e-3) where it gives a value; the choices it leaves open are in docs/algorithms.md.
"""

from __future__ import annotations

import dataclasses

import chex
import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxsafe.agents.base import ConfigError, config, extend, hparam, hparams_of, static
from jaxsafe.core import critics, distributions, normalize, returns, short_horizon
from jaxsafe.core.experience import Transition, flatten_steps
from jaxsafe.core.metrics import prefixed, standard
from jaxsafe.core.networks import ACTIVATIONS, GaussianActor, TimeCritic
from jaxsafe.envs.core import Env

CRITICS = ("reward_critic", "cost_critic")


@config
class FirstOrderConfig:
  """What every first-order agent shares. One iteration consumes ``num_envs * episode_length``
  env steps (whole episodes)."""

  num_envs: int = static(128, 1, doc="parallel episodes per iteration (N)")
  episode_length: int | None = static(None, 1, doc="T (default: the task's horizon)")
  hidden_sizes: tuple[int, ...] = static((64, 64), doc="hidden layers of actor and critics")
  activation: str = static("tanh", choices=tuple(ACTIVATIONS), doc="hidden activation")
  normalize_observations: bool = static(True, doc="running mean/std observation normalisation")
  log_std_init: float = hparam(-1.0, -5.0, 2.0, doc="initial log std of the policy")
  cost_limit: float | None = hparam(None, doc="episode cost limit b (default: the task's)")


@config
class CriticFields:
  """The time-conditioned critics V(s, t) and the short horizon h they bootstrap."""

  short_horizon: int = static(10, 1, doc="h: window length of the gradient")
  critic_epochs: int = static(4, 1, doc="passes of critic regression over an iteration's data")
  critic_minibatches: int = static(16, 1, doc="minibatches per critic pass")
  critic_learning_rate: float = hparam(1e-3, 0.0, 1.0, doc="Adam step size of the critics")
  td_lambda: float = hparam(0.95, 0.0, 1.0, doc="lambda of the critics' TD(lambda) targets")
  fresh_critics: bool = static(True, doc="fit the critics to the current policy's episodes "
                               "before its gradient (one more forward pass) instead of after "
                               "the step (SHAC's order, one iteration stale)")
  normalize_values: bool = static(True, doc="fit the critics to running-normalised targets, "
                                  "their output layer rescaled as the statistics move (PopArt)")


#: the elastic weight's range: at 1e6 its step is Eq. 33 to float32 precision, at 1e-6 the
#: reward's ascent direction.
RECOVERY_WEIGHT_BOUNDS = (1e-6, 1e6)


@config
class RecoveryWeightFields:
  """The elastic recovery's weight mu (``recovery_weight_update``): CGPO's infeasible-case step,
  and the Lagrangians' multiplier mu |g| / |q| where no step can reach b (shac_lag.py)."""

  recovery_weight_init: float = hparam(1.0, 0.0, None, doc="elastic recovery: initial "
                                       "penalty weight mu (1: bisect g and -q)")
  recovery_weight_growth: float = hparam(2.0, 1.0, None, doc="elastic recovery: factor by "
                                         "which mu shrinks when J_C rose as J_R fell, and "
                                         "grows when J_C rose with J_R")


@struct.dataclass
class PreviousStep:
  """What Eq. 18 and the GBE compare the next measurement with: J_R and J_C of the last batch
  and the changes the last policy step predicted (NaN before the first step)."""

  episode_return: jax.Array
  episode_cost: jax.Array
  predicted_return_change: jax.Array
  predicted_cost_change: jax.Array

  @classmethod
  def unknown(cls) -> PreviousStep:
    nan = jnp.full((), jnp.nan, jnp.float32)
    return cls(nan, nan, nan, nan)


def recovery_weight_update(weight, hp, previous: PreviousStep, episode_return, episode_cost):
  """The elastic recovery's mu, from what the last step that started infeasible (J_C > b) did to
  the measured J_C and J_R. When J_C rose, the two ways it can rise tell which gradient misled:
  - the return fell too: the episodes got shorter, and on a task whose cost is a sum over the
    episode (CartPole, cost -x^2) shorter episodes add fewer cost terms, which the linear model
    q.d cannot see: mu shrinks by ``recovery_weight_growth`` (lean on g: surviving lowers J_C);
  - the return rose or stayed: the reward side of the step pushed the cost up (e.g. at a saturated
    return, or where reward = cost): mu grows by the same factor (lean on q, towards Eq. 33).
  When J_C fell, mu stays. After an iteration that started feasible mu returns to
  ``recovery_weight_init``, so each return into the infeasible region starts from the same weight;
  before the first measurement it stays. No per-task scale: mu weighs unit vectors
  (``solvers.trust_region``). (An earlier rule grew mu when q predicted the cost change and shrank
  it when the cost rose against the prediction; at a saturated return it shrank mu while the
  return-seeking step drove J_C up: docs/algorithms.md, "Infeasible starts".)"""
  cost_rose = episode_cost - previous.episode_cost > 0
  return_fell = episode_return - previous.episode_return < 0
  started_infeasible = previous.episode_cost > hp.cost_limit  # both False while it is NaN
  started_feasible = previous.episode_cost <= hp.cost_limit
  low, high = RECOVERY_WEIGHT_BOUNDS
  return jnp.select(
      [started_feasible, started_infeasible & cost_rose & return_fell,
       started_infeasible & cost_rose],
      [jnp.asarray(hp.recovery_weight_init, weight.dtype),
       jnp.maximum(weight / hp.recovery_weight_growth, low),
       jnp.minimum(weight * hp.recovery_weight_growth, high)], weight)


@struct.dataclass
class FirstOrderState:
  """What every first-order agent's state holds; each algorithm's state type adds its own."""

  params: dict  # actor (and reward_critic, cost_critic when the agent has critics)
  obs_stats: normalize.RunningStats
  previous: PreviousStep
  rng: jax.Array
  hparams: FirstOrderConfig  # the config with its hparam fields as arrays
  iteration: jax.Array


@struct.dataclass
class ValueStats:
  """What a time-conditioned critic's targets look like: their mean at each step t, and the
  variance about it (what the critic's network has to model, in its own units)."""

  mean: jax.Array  # [T]
  var: jax.Array  # []
  count: jax.Array  # [] iterations merged

  @classmethod
  def init(cls, horizon: int) -> ValueStats:
    return cls(jnp.zeros(horizon), jnp.ones(()), jnp.zeros(()))

  @property
  def scale(self) -> jax.Array:
    return jnp.sqrt(self.var + 1e-8)

  def at(self, t: jax.Array) -> jax.Array:
    return self.mean[jnp.clip(t, 0, self.mean.shape[0] - 1)]

  def update(self, targets: jax.Array, weight: jax.Array) -> ValueStats:
    """Merges one iteration's targets [T, N] (``weight`` 0 after a termination): the running
    average over iterations, or an exponential one of rate ``VALUE_STATS_RATE`` once there have
    been more iterations than its inverse (the targets move as the policy learns)."""
    rate = jnp.maximum(1.0 / (self.count + 1.0), VALUE_STATS_RATE)
    n_t = weight.sum(1)
    batch_mean = (weight * targets).sum(1) / jnp.maximum(n_t, 1.0)
    mean = jnp.where(n_t > 0, self.mean + rate * (batch_mean - self.mean), self.mean)
    batch_var = (weight * (targets - mean[:, None]) ** 2).sum() / jnp.maximum(weight.sum(), 1.0)
    var = jnp.where(weight.sum() > 0, self.var + rate * (batch_var - self.var), self.var)
    return ValueStats(mean, var, self.count + 1.0)


#: the smallest weight of one iteration in ``ValueStats``.
VALUE_STATS_RATE = 0.05


@struct.dataclass
class CriticState(FirstOrderState):
  """The state of a first-order agent with time-conditioned critics (``CriticFields``)."""

  critic_opt_state: optax.OptState
  value_stats: dict[str, ValueStats]  # per critic: running statistics of its targets (PopArt)


def _rescale_output(params, scale):
  """The critic whose output is ``scale * output``: its last Dense layer rescaled."""
  mlp = params["params"]["Critic_0"]["MLP_0"]
  last = max(mlp, key=lambda name: int(name.rsplit("_", 1)[1]))
  layer = {"kernel": mlp[last]["kernel"] * scale, "bias": mlp[last]["bias"] * scale}
  return {"params": {"Critic_0": {"MLP_0": {**mlp, last: layer}}}}


def adam(learning_rate, max_grad_norm=None) -> optax.GradientTransformation:
  tx = optax.adam(learning_rate)
  return tx if max_grad_norm is None else optax.chain(optax.clip_by_global_norm(max_grad_norm), tx)


class FirstOrder:
  """A reparameterised tanh-Gaussian actor and time-conditioned critics on normalised
  observations, with the shared stages as pure functions of the state (module docstring)."""

  def __init__(self, env: Env, config: FirstOrderConfig, name: str, critics: bool = True,
               needs_gradients: bool = True):
    """``critics``: time-conditioned critics bootstrap windows of ``short_horizon`` steps (the
    config then holds ``CriticFields``); without them one window spans the episode (BPTT).
    ``needs_gradients``: the env must be differentiable."""
    if needs_gradients and not env.differentiable:
      raise ConfigError(f"{name} differentiates through the env, but "
                        f"'{type(env.unwrapped).__name__}' is not differentiable; use mb-cgpo, "
                        f"which learns a world model")
    horizon = int(config.episode_length or env.episode_length)
    config = dataclasses.replace(config, episode_length=horizon)
    self.has_critics = critics
    self.window = config.short_horizon if self.has_critics else horizon
    if self.window > horizon:
      raise ConfigError(f"short_horizon = {self.window} exceeds the episode length {horizon}")
    if self.has_critics and (config.num_envs * horizon) % config.critic_minibatches:
      raise ConfigError(f"num_envs * episode_length = {config.num_envs * horizon} is not "
                        f"divisible by critic_minibatches = {config.critic_minibatches}")
    self.env, self.config, self.horizon, self.name = env, config, horizon, name
    self.steps_per_update = config.num_envs * horizon
    self.actor = GaussianActor(env.action_size, config.hidden_sizes, config.activation)
    self.critic = TimeCritic(horizon, config.hidden_sizes, config.activation)

  def norm(self, stats, obs):
    return normalize.normalize(stats, obs) if self.config.normalize_observations else obs

  def dist(self, actor_params, stats, obs):
    mean, log_std = self.actor.apply(actor_params, self.norm(stats, obs))
    return distributions.make_distribution("tanh_normal", mean, log_std)

  def init(self, key: jax.Array, hparams=None) -> FirstOrderState:
    """A fresh state: a ``CriticState`` when the agent has critics. Each algorithm extends it
    with its own fields (``agents.base.extend``), drawn from ``own_key(key)``."""
    hp = hparams_of(self.config) if hparams is None else hparams
    k_actor, k_reward, k_cost, _, k_env, rng = jax.random.split(key, 6)
    dummy = jnp.zeros((self.env.observation_size,))
    actor_params = self.actor.init(k_actor, dummy)
    actor_params["params"]["log_std"] = jnp.full((self.env.action_size,), hp.log_std_init)
    params = {"actor": actor_params}
    stats = normalize.update(normalize.init(self.env.observation_size),
                             self.env.reset(k_env).obs)
    state = FirstOrderState(params=params, obs_stats=stats, previous=PreviousStep.unknown(),
                            rng=rng, hparams=hp, iteration=jnp.zeros((), jnp.int32))
    if not self.has_critics:
      return state
    t0 = jnp.zeros((), jnp.int32)
    params = {**params, "reward_critic": self.critic.init(k_reward, dummy, t0),
              "cost_critic": self.critic.init(k_cost, dummy, t0)}
    return extend(state.replace(params=params), CriticState,
                  critic_opt_state=adam(hp.critic_learning_rate).init(
                      {k: params[k] for k in CRITICS}),
                  value_stats={k: ValueStats.init(self.horizon) for k in CRITICS})

  @staticmethod
  def own_key(key: jax.Array) -> jax.Array:
    """The key of ``init(key)`` from which an algorithm draws its own fields (a world model)."""
    return jax.random.split(key, 6)[3]

  def policy(self, state: FirstOrderState, obs: jax.Array, key: jax.Array | None = None,
             deterministic: bool = False) -> jax.Array:
    chex.assert_axis_dimension(obs, -1, self.env.observation_size)
    dist = self.dist(state.params["actor"], state.obs_stats, obs)
    return distributions.act(dist, key, deterministic)

  def policy_fn(self, stats) -> short_horizon.PolicyFn:
    """actor params -> ActFn: the reparameterised policy the gradients flow through."""
    return lambda actor_params: lambda obs, key: distributions.sample(
        self.dist(actor_params, stats, obs), key)

  def observed(self, stats: normalize.RunningStats, episodes: Transition):
    """The observation statistics with ``episodes``' states merged in (running episodes only)."""
    if not self.config.normalize_observations:
      return stats
    return normalize.update(stats, episodes.obs, episodes.alive)

  def value(self, state: FirstOrderState, critic: str, obs: jax.Array, t: jax.Array) -> jax.Array:
    """V(s, t) of ``critic`` ("reward_critic" or "cost_critic") in the task's units."""
    out = self.critic.apply(state.params[critic], self.norm(state.obs_stats, obs), t)
    if not self.config.normalize_values:
      return out
    stats = state.value_stats[critic]
    return stats.at(t) + stats.scale * out

  def value_fn(self, state: FirstOrderState) -> short_horizon.ValueFn | None:
    if not self.has_critics:
      return None
    return lambda obs, t: tuple(self.value(state, k, obs, t) for k in CRITICS)

  def gradients(self, state: FirstOrderState, env: Env, start, key: jax.Array):
    """(g, q, episodes) through ``env`` from the states ``start`` (Eq. 19-20 or BPTT)."""
    return short_horizon.gradients(state.params["actor"], env, self.policy_fn(state.obs_stats),
                                   self.value_fn(state), start, key, self.horizon, self.window)

  def real_episodes(self, state: FirstOrderState, start, key: jax.Array) -> Transition:
    """Whole episodes of the current policy, with no gradient taken (to measure J and to
    train a model)."""
    return short_horizon.rollout_losses(state.params["actor"], self.env,
                                        self.policy_fn(state.obs_stats), None, start, key,
                                        self.horizon, self.horizon)[1]

  def fit_critics(self, state: FirstOrderState, episodes: Transition, key: jax.Array):
    """Minibatch regression of V_R(s, t), V_C(s, t) on TD(lambda) targets (Eq. 66-68).

    With ``normalize_values`` a critic is V(s, t) = m_t + sigma f(s, t): m_t the running mean
    of its targets at step t, sigma their spread about it (``ValueStats``), and the network f
    learns (target - m_t) / sigma. Its output layer is first rescaled by sigma_old / sigma_new,
    so that sigma f does not jump when sigma moves (PopArt, van Hasselt et al. 2016; a move of
    m_t shifts V by the same amount at every state of step t and leaves grad_s V alone). So f
    models only how the value depends on the state, at order one whatever the return's scale:
    Adam's bounded steps fit it in a few iterations, and its fitting error, which reaches the
    policy through grad_s V, scales with that dependence rather than with the return
    (docs/algorithms.md, "Short-horizon gradients").
    Returns the state with the new critics and the critics' losses.
    """
    hp, stats = state.hparams, state.obs_stats
    t_index = jnp.broadcast_to(jnp.arange(self.horizon)[:, None], episodes.alive.shape)
    last = t_index + 1 >= self.horizon  # V(s_T, T) = 0
    params, value_stats, targets = dict(state.params), state.value_stats, {}
    for k, rewards in zip(CRITICS, (episodes.reward, episodes.cost)):
      next_values = jnp.where(last, 0.0, self.value(state, k, episodes.next_obs, t_index + 1))
      targets[k] = returns.td_lambda_targets(rewards, next_values, episodes.terminal,
                                             self.window, hp.td_lambda)
      if self.config.normalize_values:
        old, new = value_stats[k], value_stats[k].update(targets[k], episodes.alive)
        params[k] = _rescale_output(params[k], old.scale / new.scale)
        value_stats = {**value_stats, k: new}
        targets[k] = (targets[k] - new.mean[:, None]) / new.scale
    data = flatten_steps({"obs": self.norm(stats, episodes.obs), "t": t_index,
                          "weight": episodes.alive})
    fitted, opt_state, losses = critics.regress(
        lambda p, batch: self.critic.apply(p, batch["obs"], batch["t"]),
        {k: params[k] for k in CRITICS}, state.critic_opt_state,
        adam(hp.critic_learning_rate), data, flatten_steps(targets), key,
        self.config.critic_epochs, self.config.critic_minibatches)
    state = state.replace(params={**params, **fitted}, critic_opt_state=opt_state,
                          value_stats=value_stats)
    return state, {f"{k}_loss": v for k, v in losses.items()}

  def fresh_critic_fit(self, state: FirstOrderState, start, key: jax.Array, fit_key: jax.Array,
                       episodes: Transition | None = None):
    """With ``fresh_critics``, step 4's critic regression moved before step 2: the critics fitted
    to the current policy's episodes from ``start`` with policy noise ``key`` (rolled out here
    unless given as ``episodes``: the same episodes the gradient then differentiates), so that
    grad_s V at the window ends is that of this policy's values, not the last one's. Returns the
    state and the critics' losses, or (state, None) when the critics are fitted after the step
    (SHAC's order) or there are none."""
    if not (self.has_critics and self.config.fresh_critics):
      return state, None
    if episodes is None:
      episodes = self.real_episodes(state, start, key)
    return self.fit_critics(state, episodes, fit_key)

  def finish(self, state: FirstOrderState, episodes: Transition, key: jax.Array, g, q, step,
             predicted: tuple, critic_losses: dict | None, actor, **changes):
    """Step 4 after the policy step ``step`` (flat) to the new ``actor`` params, which predicted
    the changes ``predicted`` of (J_R, J_C); ``changes`` are the algorithm's own new fields. The
    critics are fitted here on ``episodes`` unless ``fresh_critic_fit`` did it before the
    gradient (its ``critic_losses``). Returns the next state and the metrics: the standard ones
    and the family's, prefixed with the agent's name."""
    hp, prev = state.hparams, state.previous
    episode_return, episode_cost = episodes.reward.sum(0).mean(), episodes.cost.sum(0).mean()
    state = state.replace(params={**state.params, "actor": actor}, **changes)
    own = dict(critic_losses or {})
    if self.has_critics and critic_losses is None:
      state, own = self.fit_critics(state, episodes, key)
    stats = self.observed(state.obs_stats, episodes)
    iteration = state.iteration + 1
    state = state.replace(obs_stats=stats, iteration=iteration, previous=PreviousStep(
        episode_return, episode_cost, *predicted))
    own.update({
        "g_norm": jnp.linalg.norm(g), "q_norm": jnp.linalg.norm(q),
        "step_norm": jnp.linalg.norm(step),
        # GBE (Eq. 6-7): this step's predicted changes, and the last step's measured ones.
        "predicted_return_change": predicted[0], "predicted_cost_change": predicted[1],
        "measured_return_change": episode_return - prev.episode_return,
        "measured_cost_change": episode_cost - prev.episode_cost,
        "previous_predicted_return_change": prev.predicted_return_change,
        "previous_predicted_cost_change": prev.predicted_cost_change})
    metrics = standard(iteration, self.steps_per_update, episode_return, episode_cost,
                       self.config.num_envs, hp.cost_limit, state.params)
    return state, {**metrics, **prefixed(self.name, own)}

  @property
  def nan_metrics(self) -> tuple[str, ...]:
    return tuple(f"{self.name}/{k}" for k in (
        "measured_return_change", "measured_cost_change", "previous_predicted_return_change",
        "previous_predicted_cost_change"))
