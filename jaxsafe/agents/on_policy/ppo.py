"""PPO, PPO-Lag, PID-Lag, PDO and APPO: policy-gradient surrogates with five ways to handle cost.

- ``ppo``: PPO-Clip (Schulman et al. 2017, Eq. 7), the unconstrained reference; the cost critic
  is still trained so the cost value is logged.
- ``ppo-lag``: maximise J_R - lambda (J_C - b) with lambda updated by projected gradient ascent on
  the measured episode cost (Ray, Achiam and Amodei 2019, "Benchmarking Safe Exploration").
- ``pid-lag``: lambda from the PID controller of Stooke, Achiam and Abbeel (2020), Algorithm 2
  (called CPPO-PID elsewhere).
- ``pdo``: primal-dual optimisation (Chow et al. 2018) as OmniSafe runs it: the unclipped
  importance-weighted surrogate -E[rho A] on the same Lagrangian advantage, SGD epochs stopped
  early once the KL to the old policy passes ``target_kl``, lambda by gradient ascent.
- ``appo``: augmented PPO (Dai et al. 2023): the Lagrangian augmented with the quadratic term
  sigma/2 (J_C - b)^2 (method of multipliers), so the cost surrogate's weight is
  f = max(0, lambda + sigma (J_C - b)); the policy loss (as the authors' code) is
  (-E[min(rho A^R, clip(rho) A^R)] + f E[max(rho A^C, clip(rho) A^C)]) / (1 + f), the cost term
  clipped pessimistically.

One ``update`` (``make_ppo``) is the algorithm box: collect a batch with the current policy,
estimate reward and cost advantages with GAE, step the multiplier on the batch's episode cost,
then run epochs of minibatch SGD on

    L = -E[min(rho A, clip(rho, 1-eps, 1+eps) A)] + c_v (L_V^R + L_V^C) - c_ent H(pi),
    A = (A^R - lambda A^C) / (1 + lambda)                     (OmniSafe's PPO-Lag normalisation)

with A^R and A^C each standardised over the batch. The losses and multiplier rules are pure
functions below, tested alone on hand-checkable batches (tests/test_agents.py).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxsafe.agents.base import Agent, config, hparam, hparams_of
from jaxsafe.agents.on_policy.base import (
  ActorCritic,
  OnPolicyConfig,
  OnPolicyState,
  PolicyLoss,
  standardize,
  step_metrics,
)
from jaxsafe.core import lagrange
from jaxsafe.core.experience import finished_episode_means
from jaxsafe.core.metrics import prefixed
from jaxsafe.core.rollout import rollout
from jaxsafe.envs.core import Env


@config
class PPOConfig(OnPolicyConfig):
  """Hyper-parameters of ``ppo``: ``OnPolicyConfig`` plus the clip 0.2 (CleanRL)."""

  clip_eps: float = hparam(0.2, 0.0, 1.0, doc="PPO ratio clip")


@config
class PPOLagConfig(PPOConfig):
  """Hyper-parameters of ``ppo-lag``: ``PPOConfig`` plus the multiplier's step size 0.035 (from
  OmniSafe's PPOLag) and initial value."""

  multiplier_learning_rate: float = hparam(0.035, 0.0, None, doc="multiplier step size")
  multiplier_init: float = hparam(0.0, 0.0, None, doc="initial multiplier")


@config
class PDOConfig(OnPolicyConfig):
  """Hyper-parameters of ``pdo``: ``OnPolicyConfig`` plus OmniSafe's ``PDO.yaml``: KL early
  stopping at 0.02, multiplier step 0.035 from 0.001 (no PPO clip: PDO's surrogate is
  unclipped)."""

  target_kl: float = hparam(0.02, 1e-8, None, doc="KL early stopping of the SGD epochs")
  multiplier_learning_rate: float = hparam(0.035, 0.0, None, doc="multiplier step size")
  multiplier_init: float = hparam(0.001, 0.0, None, doc="initial multiplier")


@config
class APPOConfig(PPOConfig):
  """Hyper-parameters of ``appo``: ``PPOConfig`` plus the quadratic term's sigma 0.1 and the
  initial multiplier 1e-3 of the authors' code (``appo/algorithms/appo.py``), and ppo-lag's
  multiplier step 0.035 (the authors' Adam on lambda is replaced by the plain ascent step)."""

  penalty_sigma: float = hparam(0.1, 0.0, None, doc="sigma: weight of the quadratic term")
  multiplier_learning_rate: float = hparam(0.035, 0.0, None, doc="multiplier step size")
  multiplier_init: float = hparam(0.001, 0.0, None, doc="initial multiplier")


@config
class PIDLagConfig(PPOConfig):
  """Hyper-parameters of ``pid-lag``: ``PPOConfig`` plus the PID gains and EMA weights from
  OmniSafe's CPPOPID (Kp 0.1, Ki 0.01, Kd 0.01, EMA 0.95), which follow Stooke et al. (2020)."""

  pid_kp: float = hparam(0.1, 0.0, None, doc="proportional gain")
  pid_ki: float = hparam(0.01, 0.0, None, doc="integral gain")
  pid_kd: float = hparam(0.01, 0.0, None, doc="derivative gain")
  pid_delta_ema: float = hparam(0.95, 0.0, 0.999, doc="EMA weight on the P term")
  pid_d_ema: float = hparam(0.95, 0.0, 0.999, doc="EMA weight on the D term's cost")


def clipped_surrogate_loss(ratio, log_ratio, advantage, hp):
  """-E[min(rho A, clip(rho, 1 - eps, 1 + eps) A)] (PPO Eq. 7), and the clipped fraction."""
  del log_ratio
  clipped = jnp.clip(ratio, 1.0 - hp.clip_eps, 1.0 + hp.clip_eps)
  loss = -jnp.minimum(ratio * advantage, clipped * advantage).mean()
  return loss, {"clip_fraction": (jnp.abs(ratio - 1.0) > hp.clip_eps).mean()}


def importance_surrogate_loss(ratio, log_ratio, advantage, hp):
  """-E[rho A]: the unclipped importance-weighted surrogate (PDO), and the mean ratio."""
  del log_ratio, hp
  return -(ratio * advantage).mean(), {"mean_ratio": ratio.mean()}


def appo_loss(ratio, log_ratio, target, hp):
  """APPO's policy loss, with ``target`` [..., 2] = (A^R, f A^C) / (1 + f) precomputed (positive
  factors commute with min and max): -E[min(rho a_r, clip(rho) a_r)] + E[max(rho a_c,
  clip(rho) a_c)], the cost term clipped pessimistically (the larger of the two)."""
  del log_ratio
  clipped = jnp.clip(ratio, 1.0 - hp.clip_eps, 1.0 + hp.clip_eps)
  reward, cost = target[..., 0], target[..., 1]
  loss = (-jnp.minimum(ratio * reward, clipped * reward).mean()
          + jnp.maximum(ratio * cost, clipped * cost).mean())
  return loss, {"clip_fraction": (jnp.abs(ratio - 1.0) > hp.clip_eps).mean()}


def augmented_factor(multiplier: jax.Array, episode_cost: jax.Array, hp) -> jax.Array:
  """APPO's weight of the cost surrogate, f = max(0, lambda + sigma (J_C - b)): the derivative
  of the augmented term (the method of multipliers' update, read at the current J_C)."""
  return jnp.maximum(0.0, multiplier + hp.penalty_sigma * (episode_cost - hp.cost_limit))


def lagrangian_advantage(adv_r: jax.Array, adv_c: jax.Array, multiplier: jax.Array) -> jax.Array:
  """(std(A^R) - lambda std(A^C)) / (1 + lambda), each standardised over the batch."""
  return (standardize(adv_r) - multiplier * standardize(adv_c)) / (1.0 + multiplier)


#: (multiplier state, measured J_C, hp) -> multiplier state.
MultiplierStep = Callable[[lagrange.LagrangeState, jax.Array, object], lagrange.LagrangeState]


def ascent_step(lag: lagrange.LagrangeState, episode_cost: jax.Array, hp) -> lagrange.LagrangeState:
  """ppo-lag: lambda <- max(0, lambda + lr (J_C - b))."""
  return lagrange.gradient_ascent_update(lag, episode_cost, hp.cost_limit,
                                         hp.multiplier_learning_rate)


def pid_step(lag: lagrange.LagrangeState, episode_cost: jax.Array, hp) -> lagrange.LagrangeState:
  """pid-lag: lambda from the PID controller (Stooke et al. 2020, Algorithm 2)."""
  return lagrange.pid_update(lag, episode_cost, hp.cost_limit, hp.pid_kp, hp.pid_ki, hp.pid_kd,
                             hp.pid_delta_ema, hp.pid_d_ema)


def step_unless_unmeasured(step: MultiplierStep, lag: lagrange.LagrangeState,
                           episode_cost: jax.Array, hp) -> lagrange.LagrangeState:
  """``step`` on the batch's J_C; the multiplier state is kept when no episode finished in the
  batch (J_C is NaN then)."""
  stepped = step(lag, episode_cost, hp)
  return jax.tree.map(lambda n, o: jnp.where(jnp.isnan(episode_cost), o, n), stepped, lag)


def make_ppo(env: Env, config: PPOConfig, name: str = "ppo",
             multiplier_step: MultiplierStep | None = None,
             policy_loss: PolicyLoss = clipped_surrogate_loss, augmented: bool = False,
             kl_early_stop: bool = False) -> Agent:
  """Builds PPO on ``env`` (vmapped, auto-resetting); with a ``multiplier_step`` (``ascent_step``
  or ``pid_step``) the advantage is the Lagrangian one, or with ``augmented`` APPO's pair of
  targets for ``appo_loss``; ``kl_early_stop`` stops the SGD epochs at ``hp.target_kl``."""
  ac = ActorCritic(env, config)

  def init(key: jax.Array, hparams=None) -> OnPolicyState:
    hp = hparams_of(config) if hparams is None else hparams
    # pid-lag's lambda starts at 0 (its controller sets it from the first measured cost).
    return ac.init(key, hp, None if multiplier_step is None else getattr(hp, "multiplier_init", 0.0))

  def update(state: OnPolicyState):
    hp = state.hparams
    rng, k_collect, k_sgd = jax.random.split(state.rng, 3)

    # --- 1. Collect num_envs x rollout_length steps with the current policy. ---------------
    env_state, data = rollout(env, state.env_state, ac.act(state), k_collect,
                              config.rollout_length)
    episode = finished_episode_means(data)  # (J_R, J_C, count) of the episodes that ended

    # --- 2. Estimate the reward and cost advantages (GAE). ---------------------------------
    adv = ac.advantages(state, data)

    # --- 3. Multiplier step on the batch's J_C (kept when no episode finished). ------------
    lag, advantage, extra = state.lagrange, standardize(adv.reward), {}
    if multiplier_step is not None:
      lag = step_unless_unmeasured(multiplier_step, state.lagrange, episode[1], hp)
      advantage = lagrangian_advantage(adv.reward, adv.cost, lag.multiplier)
      extra = {"multiplier": lag.multiplier}
      if augmented:  # APPO: the cost's weight f from lambda and the latest measured J_C
        measured = jnp.where(jnp.isnan(episode[1]), state.last_episode[1], episode[1])
        factor = augmented_factor(lag.multiplier, jnp.nan_to_num(measured, nan=hp.cost_limit), hp)
        advantage = jnp.stack([standardize(adv.reward), factor * standardize(adv.cost)],
                              -1) / (1.0 + factor)
        extra["factor"] = factor

    # --- 4. Policy and critic step: SGD epochs on the policy loss. -------------------------
    params, opt_state, sgd_metrics = ac.sgd(state, data, advantage, adv, policy_loss, k_sgd,
                                            hp.target_kl if kl_early_stop else None)

    # --- 5. Bookkeeping. -------------------------------------------------------------------
    state, metrics = ac.finish(state, data, episode, params=params, opt_state=opt_state,
                               env_state=env_state, rng=rng, lagrange=lag)
    return state, {**metrics, **prefixed(name, {**extra, **step_metrics(data, adv),
                                                **sgd_metrics})}

  return Agent(name=name, config=config, env=env, init=init, update=update, policy=ac.policy,
               steps_per_update=ac.steps_per_update)


def make_ppo_lag(env: Env, config: PPOLagConfig, name: str = "ppo-lag") -> Agent:
  return make_ppo(env, config, name, ascent_step)


def make_pid_lag(env: Env, config: PIDLagConfig, name: str = "pid-lag") -> Agent:
  return make_ppo(env, config, name, pid_step)


def make_pdo(env: Env, config: PDOConfig, name: str = "pdo") -> Agent:
  return make_ppo(env, config, name, ascent_step, importance_surrogate_loss, kl_early_stop=True)


def make_appo(env: Env, config: APPOConfig, name: str = "appo") -> Agent:
  return make_ppo(env, config, name, ascent_step, appo_loss, augmented=True)
