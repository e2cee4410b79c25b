"""CGPO, MB-CGPO, SHAC-Lag and BPTT-Lag: safe policy optimisation with first-order gradients.

All four share one iteration (CGPO Algorithm 1 / Algorithm 3) and differ only where noted:

1. Sample N whole episodes (T steps, fresh initial states) with the reparameterised policy and
   measure J_R(theta_k), J_C(theta_k): the mean undiscounted episode return and cost.
2. Gradients g_k = grad J_R and q_k = grad J_C from one pass through the differentiable env
   (``jaxsafe.core.short_horizon``): windows of h steps bootstrapped by time-conditioned critics
   V(s, t) (Eq. 19-20, App. A.4). ``bptt-lag``: one window of T steps, no critics (Eq. 79-80).
   ``mb-cgpo``: the episodes of step 1 are real; they train a world model (Eq. 85) and the
   gradients are taken through imagined episodes of the model from the same initial states
   (Algorithm 3), so the env itself need not be differentiable.
3. The policy step.
   ``cgpo``/``mb-cgpo``: the trust-region sub-problem of Eq. 10 in closed form
   (``jaxsafe.core.trust_region``: Theorem 5.1, Corollary 5.2, Algorithm 2), c_k = J_C - b, with
   the radius adapted by Eq. 18 from the reduction ratio rho_k (measured over predicted change
   of J_R) and the toleration ratio zeta_k = |b - J_C(theta_{k+1})| / |J_C(theta_{k+1}) - J_C(theta_k)|,
   both evaluated when theta_{k+1}'s episodes are measured, i.e. at the start of iteration k+1.
   ``shac-lag``/``bptt-lag``: descent on -(L_R - lambda L_C) with Adam (the primal step of
   Eq. 77-78), lambda <- max(0, lambda + lr (J_C - b)) (the dual step).
4. The critics (not ``bptt-lag``) by minibatch regression on the finite-horizon TD(lambda)
   targets of Eq. 66-68, truncated at window ends; then the observation statistics.

Defaults follow Table 4 of the CGPO paper (CartPole column: 128 envs, h = 10, radius 1e-3 in
[1e-4, 1e-2], beta 0.8 / 1.25, critic learning rate 1e-3) where it gives a value; the choices it
leaves open (eta thresholds, critic epochs, policy std, SHAC-Lag's Adam) are in
docs/algorithms.md.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxsafe.agents.base import Agent, ConfigError, hparam, hparams_of, static
from jaxsafe.core import distributions, lagrange, minibatch, normalize, replay, returns, short_horizon, trust_region
from jaxsafe.core.networks import ACTIVATIONS, GaussianActor, TimeCritic
from jaxsafe.envs.core import Env
from jaxsafe.models.world_model import ModelEnv, Transitions, WorldModel

#: (update rule, gradient estimator) of each algorithm.
VARIANTS = {
    "cgpo": ("trust_region", "short_horizon"),
    "mb-cgpo": ("trust_region", "model"),
    "shac-lag": ("lagrangian", "short_horizon"),
    "bptt-lag": ("lagrangian", "bptt"),
}


@dataclasses.dataclass(frozen=True)
class GradientConfig:
  """Hyper-parameters of ``cgpo``, ``mb-cgpo``, ``shac-lag`` and ``bptt-lag``.

  One iteration consumes ``num_envs * episode_length`` env steps (whole episodes). Defaults:
  CGPO's Table 4 (CartPole) for the shared and trust-region fields; the Lagrangian variants'
  Adam settings from SHAC (Xu et al. 2022: actor learning rate 2e-3, gradient-norm clip 1.0) and
  the multiplier step from OmniSafe; the thresholds eta_1 = 0.25, eta_2 = 0.75 (the paper gives
  none) from the classic trust-region method (Nocedal and Wright, Algorithm 4.1).
  """

  # Static: fix shapes or code paths.
  num_envs: int = static(128, 1, doc="parallel episodes per iteration (N)")
  episode_length: Optional[int] = static(None, 1, doc="T (default: the task's horizon)")
  short_horizon: int = static(10, 1, doc="h: window length of the gradient (bptt-lag: T)")
  hidden_sizes: tuple[int, ...] = static((64, 64), doc="hidden layers of actor and critics")
  activation: str = static("tanh", choices=tuple(ACTIVATIONS), doc="hidden activation")
  normalize_observations: bool = static(True, doc="running mean/std observation normalisation")
  critic_epochs: int = static(4, 1, doc="passes of critic regression over an iteration's data")
  critic_minibatches: int = static(16, 1, doc="minibatches per critic pass")
  model_hidden_sizes: tuple[int, ...] = static((128, 128), doc="mb-cgpo: world model layers")
  model_updates: int = static(200, 1, doc="mb-cgpo: world-model Adam steps per iteration")
  model_batch_size: int = static(512, 1, doc="mb-cgpo: transitions per world-model step")
  buffer_capacity: int = static(200_000, 1, doc="mb-cgpo: replay buffer of real transitions")
  # Sweepable: numeric, live in state.hparams.
  delta_init: float = hparam(1e-3, 0.0, None, doc="cgpo: initial squared radius")
  delta_lower: float = hparam(1e-4, 0.0, None, doc="cgpo: smallest squared radius")
  delta_upper: float = hparam(1e-2, 0.0, None, doc="cgpo: largest squared radius")
  beta_1: float = hparam(0.8, 0.0, 1.0, doc="cgpo: radius shrink factor (Eq. 18)")
  beta_2: float = hparam(1.25, 1.0, None, doc="cgpo: radius growth factor (Eq. 18)")
  eta_1: float = hparam(0.25, 0.0, 1.0, doc="cgpo: shrink when rho or zeta is below this")
  eta_2: float = hparam(0.75, 0.0, None, doc="cgpo: grow when rho and zeta reach this")
  critic_learning_rate: float = hparam(1e-3, 0.0, 1.0, doc="Adam step size of the critics")
  td_lambda: float = hparam(0.95, 0.0, 1.0, doc="lambda of the critics' TD(lambda) targets")
  log_std_init: float = hparam(-1.0, -5.0, 2.0, doc="initial log std of the policy")
  cost_limit: Optional[float] = hparam(None, doc="episode cost limit b (default: the task's)")
  actor_learning_rate: float = hparam(2e-3, 0.0, 1.0, doc="shac-lag/bptt-lag: Adam step size")
  max_grad_norm: float = hparam(1.0, 1e-8, None, doc="shac-lag/bptt-lag: gradient-norm clip")
  lagrangian_lr: float = hparam(0.035, 0.0, None, doc="shac-lag/bptt-lag: multiplier step size")
  lagrangian_init: float = hparam(0.0, 0.0, None, doc="shac-lag/bptt-lag: initial multiplier")
  model_learning_rate: float = hparam(1e-3, 0.0, 1.0, doc="mb-cgpo: world-model Adam step size")

  @property
  def rollout_length(self) -> int:
    """Env steps per env per iteration (whole episodes)."""
    return self.episode_length


@struct.dataclass
class GradientState:
  params: dict  # actor, reward_critic, cost_critic
  actor_opt_state: optax.OptState  # Lagrangian variants only (empty otherwise)
  critic_opt_state: optax.OptState
  obs_stats: normalize.RunningStats
  radius: jax.Array  # delta hat (trust-region variants)
  previous: dict  # J_R, J_C and the predicted changes of the last step, for Eq. 18
  lagrange: lagrange.LagrangeState
  model: dict  # mb-cgpo: world-model params, optimiser state and replay buffer
  rng: jax.Array
  hparams: dict
  iteration: jax.Array


def _adam(learning_rate, max_grad_norm=None) -> optax.GradientTransformation:
  adam = optax.adam(learning_rate)
  return adam if max_grad_norm is None else optax.chain(optax.clip_by_global_norm(max_grad_norm), adam)


def radius_update(radius, hp, rho, zeta):
  """Eq. 18: shrink by beta_1 if rho or zeta < eta_1, grow by beta_2 if both >= eta_2."""
  shrink = (rho < hp["eta_1"]) | (zeta < hp["eta_1"])
  grow = (rho >= hp["eta_2"]) & (zeta >= hp["eta_2"])
  return jnp.where(shrink, jnp.maximum(hp["beta_1"] * radius, hp["delta_lower"]),
                   jnp.where(grow, jnp.minimum(hp["beta_2"] * radius, hp["delta_upper"]), radius))


def make_gradient_agent(env: Env, config: GradientConfig, name: str = "cgpo") -> Agent:
  """Builds one of ``VARIANTS`` on ``env`` (vmapped over ``config.num_envs``, no auto-reset)."""
  if name not in VARIANTS:
    raise ValueError(f"unknown variant {name!r}; valid: {', '.join(VARIANTS)}")
  rule, estimator = VARIANTS[name]
  if estimator != "model" and not env.differentiable:
    raise ConfigError(f"{name} differentiates through the env, but '{type(env.unwrapped).__name__}' "
                      f"is not differentiable; use mb-cgpo, which learns a world model")
  horizon = int(config.episode_length or env.episode_length)
  config = dataclasses.replace(config, episode_length=horizon)
  if config.cost_limit is None:
    config = dataclasses.replace(config, cost_limit=float(env.cost_limit))
  window = horizon if estimator == "bptt" else config.short_horizon
  if window > horizon:
    raise ConfigError(f"short_horizon = {window} exceeds the episode length {horizon}")
  uses_critics = estimator != "bptt"
  samples = config.num_envs * horizon
  if uses_critics and samples % config.critic_minibatches:
    raise ConfigError(f"num_envs * episode_length = {samples} is not divisible by "
                      f"critic_minibatches = {config.critic_minibatches}")

  obs_size, act_size = env.observation_size, env.action_size
  actor = GaussianActor(act_size, config.hidden_sizes, config.activation)
  critic = TimeCritic(horizon, config.hidden_sizes, config.activation)
  model = WorldModel(obs_size, act_size, config.model_hidden_sizes) if estimator == "model" else None

  def norm(stats, obs):
    return normalize.normalize(stats, obs) if config.normalize_observations else obs

  def dist_of(actor_params, stats, obs):
    mean, log_std = actor.apply(actor_params, norm(stats, obs))
    return distributions.make_distribution("tanh_normal", mean, log_std)

  def actor_tx(hp):
    return _adam(hp["actor_learning_rate"], hp["max_grad_norm"])

  def critic_tx(hp):
    return _adam(hp["critic_learning_rate"])

  def init(key: jax.Array, hparams: dict | None = None) -> GradientState:
    hp = hparams_of(config) if hparams is None else hparams
    k_actor, k_reward, k_cost, k_model, k_env, rng = jax.random.split(key, 6)
    dummy = jnp.zeros((obs_size,))
    actor_params = actor.init(k_actor, dummy)
    actor_params["params"]["log_std"] = jnp.full((act_size,), hp["log_std_init"])
    params = {"actor": actor_params,
              "reward_critic": critic.init(k_reward, dummy, jnp.zeros((), jnp.int32)),
              "cost_critic": critic.init(k_cost, dummy, jnp.zeros((), jnp.int32))}
    stats = normalize.update(normalize.init(obs_size), env.reset(k_env).obs)
    model_state = {}
    if model is not None:
      model_params = model.init(k_model)
      zero = jnp.zeros(())
      example = Transitions(obs=dummy, action=jnp.zeros((act_size,)), next_obs=dummy,
                            reward=zero, cost=zero, weight=zero)
      model_state = {"params": model_params,
                     "opt_state": _adam(hp["model_learning_rate"]).init(model_params),
                     "buffer": replay.init(example, config.buffer_capacity)}
    nan = jnp.full((), jnp.nan)
    return GradientState(
        params=params,
        actor_opt_state=actor_tx(hp).init(actor_params) if rule == "lagrangian" else {},
        critic_opt_state=critic_tx(hp).init({k: params[k] for k in ("reward_critic", "cost_critic")}),
        obs_stats=stats, radius=jnp.asarray(hp["delta_init"], jnp.float32),
        previous={"return": nan, "cost": nan, "predicted_return_change": nan,
                  "predicted_cost_change": nan},
        lagrange=lagrange.init(hp["lagrangian_init"]), model=model_state, rng=rng, hparams=hp,
        iteration=jnp.zeros((), jnp.int32))

  def policy(state: GradientState, obs: jax.Array, key: jax.Array | None = None,
             deterministic: bool = False) -> jax.Array:
    dist = dist_of(state.params["actor"], state.obs_stats, obs)
    if deterministic:
      return distributions.mode(dist)
    return distributions.sample(dist, key)[0]

  def train_model(model_state, stats, hp, episodes: short_horizon.Episodes, key):
    """Adds the real transitions to the buffer and fits the world model (Eq. 85)."""
    flat = lambda x: x.reshape((-1,) + x.shape[2:])
    # Steps after an episode terminated carry no reward or cost: weight 0 in the model's loss.
    batch = Transitions(obs=flat(episodes.obs), action=flat(episodes.action),
                        next_obs=flat(episodes.next_obs), reward=flat(episodes.reward),
                        cost=flat(episodes.cost), weight=flat(episodes.alive))
    buf = replay.add(model_state["buffer"], batch)
    tx = _adam(hp["model_learning_rate"])

    def one_step(carry, k):
      params, opt_state = carry
      sample = replay.sample(buf, k, config.model_batch_size)
      params, opt_state, loss = model.sgd_step(params, opt_state, tx, stats, sample)
      return (params, opt_state), loss

    (params, opt_state), losses = jax.lax.scan(
        one_step, (model_state["params"], model_state["opt_state"]),
        jax.random.split(key, config.model_updates))
    return {"params": params, "opt_state": opt_state, "buffer": buf}, losses

  def fit_critics(params, opt_state, stats, hp, episodes: short_horizon.Episodes, key):
    """Minibatch regression of V_R(s, t), V_C(s, t) on TD(lambda) targets (Eq. 66-68)."""
    t_index = jnp.broadcast_to(jnp.arange(horizon)[:, None], episodes.alive.shape)
    critics = {k: params[k] for k in ("reward_critic", "cost_critic")}
    next_obs = norm(stats, episodes.next_obs)
    # V(s_T, T) = 0; otherwise the current critics' value of s_{t+1}.
    last = (t_index + 1 >= horizon)
    targets = {}
    for key_name, rewards in (("reward_critic", episodes.reward), ("cost_critic", episodes.cost)):
      next_values = critic.apply(critics[key_name], next_obs, t_index + 1)
      next_values = jnp.where(last, 0.0, next_values)
      targets[key_name] = returns.td_lambda_targets(
          rewards, next_values, episodes.terminal, window, hp["td_lambda"])
    flat = lambda x: x.reshape((samples,) + x.shape[2:])
    data = {"obs": flat(norm(stats, episodes.obs)), "t": flat(t_index),
            "weight": flat(episodes.alive),
            **{k: flat(v) for k, v in targets.items()}}
    tx = critic_tx(hp)

    def loss_fn(critics, batch):
      weight = batch["weight"]
      total = jnp.maximum(weight.sum(), 1.0)
      losses = {k: (weight * (critic.apply(critics[k], batch["obs"], batch["t"]) - batch[k]) ** 2).sum() / total
                for k in critics}
      return losses["reward_critic"] + losses["cost_critic"], losses

    def sgd_step(carry, batch):
      critics, opt_state = carry
      (_, losses), grads = jax.value_and_grad(loss_fn, has_aux=True)(critics, batch)
      updates, opt_state = tx.update(grads, opt_state, critics)
      return (optax.apply_updates(critics, updates), opt_state), losses

    (critics, opt_state), losses = minibatch.epochs(sgd_step, (critics, opt_state), data, key,
                                                    config.critic_epochs, config.critic_minibatches)
    return {**params, **critics}, opt_state, jax.tree_util.tree_map(lambda x: x[-1].mean(), losses)

  def update(state: GradientState) -> tuple[GradientState, dict]:
    hp, stats, params = state.hparams, state.obs_stats, state.params
    rng, k_reset, k_policy, k_model, k_imagine, k_critic = jax.random.split(state.rng, 6)

    def act(actor_params, obs, key):
      return distributions.sample(dist_of(actor_params, stats, obs), key)[0]

    def values(obs, t):
      obs = norm(stats, obs)
      return (critic.apply(params["reward_critic"], obs, t),
              critic.apply(params["cost_critic"], obs, t))

    # --- 1-2. Episodes of the current policy, J_R and J_C, and the gradients g and q. ------
    start = env.reset(k_reset)
    metrics = {}
    model_state = state.model
    if estimator == "model":
      # Real episodes only measure J and feed the model: no critics, no gradient (BPTT form).
      _, episodes = short_horizon.rollout_losses(params["actor"], env, act, None, start,
                                                 k_policy, horizon, horizon)
      model_state, model_losses = train_model(state.model, stats, hp, episodes, k_model)
      imagined = ModelEnv(model, model_state["params"], stats, horizon, hp["cost_limit"])
      g, q, _ = short_horizon.gradients(params["actor"], imagined, act, values,
                                        ModelEnv.from_obs(start.obs), k_imagine, horizon, window)
      metrics[f"{name}/model_loss"] = model_losses[-1]
    else:
      g, q, episodes = short_horizon.gradients(params["actor"], env, act,
                                               values if uses_critics else None, start, k_policy,
                                               horizon, window)
    episode_return, episode_cost = episodes.returns.mean(), episodes.costs.mean()
    g_flat, _ = trust_region.flatten(g)
    q_flat, _ = trust_region.flatten(q)
    c = episode_cost - hp["cost_limit"]

    # --- 3. The policy step. -------------------------------------------------------------
    prev = state.previous
    measured_return_change = episode_return - prev["return"]
    measured_cost_change = episode_cost - prev["cost"]
    radius, lag = state.radius, state.lagrange
    actor_opt_state = state.actor_opt_state
    if rule == "trust_region":
      tiny = 1e-12
      predicted = prev["predicted_return_change"]
      rho = jnp.where(jnp.abs(predicted) > tiny,
                      measured_return_change / jnp.where(jnp.abs(predicted) > tiny, predicted, 1.0), 1.0)
      zeta = jnp.where(jnp.abs(measured_cost_change) > tiny,
                       jnp.abs(hp["cost_limit"] - episode_cost) / jnp.maximum(jnp.abs(measured_cost_change), tiny),
                       jnp.inf)
      has_prev = ~jnp.isnan(prev["return"])
      radius = jnp.where(has_prev, radius_update(radius, hp, rho, zeta), radius)
      solution = trust_region.solve(g_flat, q_flat, c, radius)
      actor_params = trust_region.apply_step(params["actor"], solution.step)
      step_norm = jnp.linalg.norm(solution.step)
      predicted_return_change, predicted_cost_change = solution.predicted_objective, q_flat @ solution.step
      metrics.update({
          f"{name}/radius": radius, f"{name}/case": solution.case.astype(jnp.float32),
          f"{name}/rho": jnp.where(has_prev, rho, jnp.nan),
          f"{name}/zeta": jnp.where(has_prev, jnp.minimum(zeta, 1e6), jnp.nan),
          f"{name}/trust_lambda": solution.lam, f"{name}/trust_nu": solution.nu,
          # 0 when g, q, c or the radius were not finite (zero step): the runner stops on it.
          f"{name}/trust_region_inputs_finite": solution.ok.astype(jnp.float32)})
    else:
      lag = lagrange.gradient_ascent_update(lag, episode_cost, hp["cost_limit"], hp["lagrangian_lr"])
      lam = lag.multiplier
      # Descend on -(L_R - lambda L_C) (Eq. 77 with the multiplier of this iteration).
      direction = jax.tree_util.tree_map(lambda gr, qr: -(gr - lam * qr), g, q)
      updates, actor_opt_state = actor_tx(hp).update(direction, actor_opt_state, params["actor"])
      actor_params = optax.apply_updates(params["actor"], updates)
      step = trust_region.flatten(actor_params)[0] - trust_region.flatten(params["actor"])[0]
      step_norm = jnp.linalg.norm(step)
      predicted_return_change, predicted_cost_change = g_flat @ step, q_flat @ step
      metrics[f"{name}/multiplier"] = lam

    # --- 4. Critics and observation statistics. ------------------------------------------
    critic_opt_state = state.critic_opt_state
    new_params = {**params, "actor": actor_params}
    if uses_critics:
      new_params, critic_opt_state, critic_losses = fit_critics(
          new_params, critic_opt_state, stats, hp, episodes, k_critic)
      metrics[f"{name}/reward_critic_loss"] = critic_losses["reward_critic"]
      metrics[f"{name}/cost_critic_loss"] = critic_losses["cost_critic"]
    if config.normalize_observations:  # states of running episodes only
      stats = normalize.update(stats, episodes.obs, episodes.alive)

    iteration = state.iteration + 1
    finite = jnp.all(jnp.stack([jnp.isfinite(x).all() for x in jax.tree_util.tree_leaves(new_params)]))
    new_state = state.replace(
        params=new_params, actor_opt_state=actor_opt_state, critic_opt_state=critic_opt_state,
        obs_stats=stats, radius=radius, lagrange=lag, model=model_state, rng=rng,
        iteration=iteration,
        previous={"return": episode_return, "cost": episode_cost,
                  "predicted_return_change": predicted_return_change,
                  "predicted_cost_change": predicted_cost_change})
    metrics.update({
        "iteration": iteration,
        "env_steps": iteration * samples,
        "episode_return": episode_return,
        "episode_cost": episode_cost,
        "episodes": jnp.asarray(config.num_envs, jnp.float32),
        "cost_limit": hp["cost_limit"],
        "params_finite": finite.astype(jnp.float32),
        f"{name}/g_norm": jnp.linalg.norm(g_flat),
        f"{name}/q_norm": jnp.linalg.norm(q_flat),
        f"{name}/step_norm": step_norm,
        # GBE (Eq. 6-7): this step's predicted changes, and the last step's measured ones.
        f"{name}/predicted_return_change": predicted_return_change,
        f"{name}/predicted_cost_change": predicted_cost_change,
        f"{name}/measured_return_change": measured_return_change,
        f"{name}/measured_cost_change": measured_cost_change,
        f"{name}/previous_predicted_return_change": prev["predicted_return_change"],
        f"{name}/previous_predicted_cost_change": prev["predicted_cost_change"],
    })
    return new_state, metrics

  nan_metrics = tuple(f"{name}/{k}" for k in (
      "rho", "zeta", "measured_return_change", "measured_cost_change",
      "previous_predicted_return_change", "previous_predicted_cost_change"))
  return Agent(name=name, config=config, env=env, init=init, update=update, policy=policy,
               nan_metrics=nan_metrics)
