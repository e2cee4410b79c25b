"""PPO, PPO-Lag and PID-Lag: the clipped surrogate with three ways to handle the cost.

- ``ppo``: PPO-Clip (Schulman et al. 2017, Eq. 7), the unconstrained reference; the cost critic
  is still trained so the cost value is logged.
- ``ppo-lag``: maximise J_R - lambda (J_C - b) with lambda updated by projected gradient ascent on
  the measured episode cost (Ray, Achiam and Amodei 2019, "Benchmarking Safe Exploration").
- ``pid-lag``: lambda from the PID controller of Stooke, Achiam and Abbeel (2020), Algorithm 2
  (called CPPO-PID elsewhere).

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
from jaxsafe.agents.on_policy import (
  ActorCritic,
  OnPolicyConfig,
  OnPolicyState,
  standardize,
  step_metrics,
  with_task_defaults,
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


def make_ppo(env: Env, config: PPOConfig, name: str = "ppo",
             multiplier_step: MultiplierStep | None = None) -> Agent:
  """Builds PPO on ``env`` (vmapped, auto-resetting); with a ``multiplier_step`` (``ascent_step``
  or ``pid_step``) the advantage is the Lagrangian one."""
  config = with_task_defaults(config, env)
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
      stepped = multiplier_step(state.lagrange, episode[1], hp)
      lag = jax.tree_util.tree_map(lambda n, o: jnp.where(jnp.isnan(episode[1]), o, n),
                                   stepped, state.lagrange)
      advantage = lagrangian_advantage(adv.reward, adv.cost, lag.multiplier)
      extra = {"multiplier": lag.multiplier}

    # --- 4. Policy and critic step: SGD epochs on the clipped surrogate. -------------------
    params, opt_state, sgd_metrics = ac.sgd(state, data, advantage, adv,
                                            clipped_surrogate_loss, k_sgd)

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
