"""PPO, PPO-Lag and PID-Lag: the PPO box, and the two ways of treating the cost that differ
from it only by a rule (``cost_rules``).

- ``ppo``: PPO-Clip (Schulman et al. 2017, Eq. 7), the unconstrained reference; the cost critic
  is still trained so the cost value is logged.
- ``ppo-lag``: maximise J_R - lambda (J_C - b) with lambda updated by projected gradient ascent on
  the measured episode cost (Ray, Achiam and Amodei 2019, "Benchmarking Safe Exploration").
- ``pid-lag``: lambda from the PID controller of Stooke, Achiam and Abbeel (2020), Algorithm 2
  (called CPPO-PID elsewhere).

One ``update`` (``make_ppo``) is the algorithm box: collect a batch with the current policy,
estimate reward and cost advantages with GAE, let the cost rule step its state (the multiplier,
on the batch's episode cost) and give the policy's target, then run epochs of minibatch SGD on

    L = -E[min(rho A, clip(rho, 1-eps, 1+eps) A)] + c_v (L_V^R + L_V^C) - c_ent H(pi),
    A = (A^R - lambda A^C) / (1 + lambda)                     (OmniSafe's PPO-Lag normalisation)

with A^R and A^C each standardised over the batch. PDO (``pdo.py``) and APPO (``appo.py``) run
the same box with their own policy loss and rules. The losses and rules are pure functions, tested
alone on hand-checkable batches (tests/test_agents.py).
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
  step_metrics,
)
from jaxsafe.agents.on_policy.cost_rules import (
  REWARD_ONLY,
  CostRule,
  ascent_step,
  lagrangian,
  pid_step,
)
from jaxsafe.core.metrics import prefixed
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
  """Hyper-parameters of ``pid-lag``: ``PPOConfig`` plus the PID gains and EMA weights of
  OmniSafe's CPPOPID (Kp 0.1, Kd 0.01, which follow Stooke et al. 2020), except two (issue 39;
  docs/algorithms.md, PID-Lag): the integral gain is ppo-lag's ascent step 0.035, not 0.01, and
  the P term's EMA weight 0.5, not 0.95 (the slower EMA lags the P term by ~20 updates and keeps
  it negative after a feasible start)."""

  pid_kp: float = hparam(0.1, 0.0, None, doc="proportional gain")
  pid_ki: float = hparam(0.035, 0.0, None, doc="integral gain")
  pid_kd: float = hparam(0.01, 0.0, None, doc="derivative gain")
  pid_delta_ema: float = hparam(0.5, 0.0, 0.999, doc="EMA weight on the P term")
  pid_d_ema: float = hparam(0.95, 0.0, 0.999, doc="EMA weight on the D term's cost")


def clipped_surrogate_loss(ratio, log_ratio, advantage, hp):
  """-E[min(rho A, clip(rho, 1 - eps, 1 + eps) A)] (PPO Eq. 7), and the clipped fraction."""
  del log_ratio
  clipped = jnp.clip(ratio, 1.0 - hp.clip_eps, 1.0 + hp.clip_eps)
  loss = -jnp.minimum(ratio * advantage, clipped * advantage).mean()
  return loss, {"clip_fraction": (jnp.abs(ratio - 1.0) > hp.clip_eps).mean()}


def make_ppo(env: Env, config: PPOConfig, name: str = "ppo", cost: CostRule = REWARD_ONLY,
             policy_loss: PolicyLoss = clipped_surrogate_loss,
             kl_stop: Callable[[object], jax.Array] | None = None) -> Agent:
  """Builds the PPO box on ``env`` (vmapped, auto-resetting): ``cost`` gives the policy's target
  (and its own state, e.g. a multiplier), ``policy_loss`` the minibatch loss, and ``kl_stop(hp)``,
  where given, the KL at which the SGD epochs stop early."""
  ac = ActorCritic(env, config)

  def init(key: jax.Array, hparams=None) -> OnPolicyState:
    hp = hparams_of(config) if hparams is None else hparams
    return cost.init(ac.init(key, hp), hp)

  def update(state: OnPolicyState):
    hp = state.hparams
    rng, k_collect, k_sgd = jax.random.split(state.rng, 3)

    # --- 1. Collect num_envs x rollout_length steps with the current policy. ---------------
    env_state, data, episode = ac.collect(state, k_collect)  # episode: (J_R, J_C, count)

    # --- 2. Estimate the reward and cost advantages (GAE). ---------------------------------
    adv = ac.advantages(state, data)

    # --- 3. The cost rule: its step (the multiplier, on the batch's J_C) and the target. ---
    target, state, extra = cost.target(state, adv, episode, hp)

    # --- 4. Policy and critic step: SGD epochs on the policy loss. -------------------------
    params, opt_state, sgd_metrics = ac.sgd(state, data, target, adv, policy_loss, k_sgd,
                                            None if kl_stop is None else kl_stop(hp))

    # --- 5. Bookkeeping. -------------------------------------------------------------------
    state, metrics = ac.finish(state, data, episode, params=params, opt_state=opt_state,
                               env_state=env_state, rng=rng)
    return state, {**metrics, **prefixed(name, {**extra, **step_metrics(data, adv),
                                                **sgd_metrics})}

  return Agent(name=name, config=config, env=env, init=init, update=update, policy=ac.policy,
               steps_per_update=ac.steps_per_update)


def make_ppo_lag(env: Env, config: PPOLagConfig, name: str = "ppo-lag") -> Agent:
  return make_ppo(env, config, name, lagrangian(ascent_step))


def make_pid_lag(env: Env, config: PIDLagConfig, name: str = "pid-lag") -> Agent:
  return make_ppo(env, config, name, lagrangian(pid_step))
