"""How an on-policy box treats the cost: the rules passed into the PPO and TRPO boxes.

A ``CostRule`` is two pure functions: ``init(state, hp)`` gives the agent's state with the rule's
own fields (a Lagrange multiplier: ``LagrangianState``), and ``target(state, adv, episode, hp)``
gives the per-sample target of the policy step, the state with those fields stepped, and the
rule's metrics. ``episode`` is the batch's (J_R, J_C, count) of finished episodes (NaN when none
finished).

- ``REWARD_ONLY``: the standardised reward advantage (``ppo``, ``trpo``);
- ``lagrangian(step)``: a multiplier step on the measured J_C (``ascent_step``: Ray, Achiam and
  Amodei 2019; ``pid_step``: Stooke, Achiam and Abbeel 2020, Algorithm 2;
  ``proportional_integral_step``: the ascent plus a P term, trpo-lag's), then the Lagrangian
  advantage (A^R - lambda A^C) / (1 + lambda), each standardised over the batch (OmniSafe's
  normalisation).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import jax

from jaxsafe.agents.base import hparam
from jaxsafe.agents.on_policy.base import OnPolicyState, standardize, with_multiplier
from jaxsafe.core import lagrange


class CostRule(NamedTuple):
  #: (state, hp) -> the agent's initial state with the rule's own fields.
  init: Callable
  #: (state, advantages, (J_R, J_C, count), hp) -> (target, state, metrics).
  target: Callable


REWARD_ONLY = CostRule(
    init=lambda state, hp: state,
    target=lambda state, adv, episode, hp: (standardize(adv.reward), state, {}))


#: (multiplier state, measured J_C, hp) -> multiplier state.
MultiplierStep = Callable[[lagrange.LagrangeState, jax.Array, object], lagrange.LagrangeState]


def ascent_step(lag: lagrange.LagrangeState, episode_cost: jax.Array, hp) -> lagrange.LagrangeState:
  """lambda <- max(0, lambda + lr (J_C - b))."""
  return lagrange.gradient_ascent_update(lag, episode_cost, hp.cost_limit,
                                         hp.multiplier_learning_rate)


@dataclasses.dataclass(frozen=True)
class ProportionalTermConfig:
  """The fields of ``proportional_integral_step`` on top of the ascent's ``multiplier_*``: a base
  class of the configs whose multiplier uses it (``trpo-lag``, ``pdo``). Kp 0.1 on an EMA of
  weight 0.5 of J_C - b (issue 39, docs/algorithms.md); ``multiplier_kp=0`` is the plain ascent."""

  multiplier_kp: float = hparam(0.1, 0.0, None, doc="multiplier's proportional gain")
  multiplier_p_ema: float = hparam(0.5, 0.0, 0.999, doc="EMA weight on the proportional term")


def proportional_integral_step(lag: lagrange.LagrangeState, episode_cost: jax.Array,
                               hp) -> lagrange.LagrangeState:
  """lambda = max(0, lambda_I + Kp P): the ascent step's integral lambda_I <- max(0, lambda_I +
  lr (J_C - b)) plus a proportional term on an EMA of J_C - b (``multiplier_kp``,
  ``multiplier_p_ema``): Stooke et al.'s PID controller with Ki = the ascent's step and no D term.
  Integral control alone lets a policy that moves at a steady rate (TRPO's full-KL steps) overshoot
  b by a limit cycle; the P term turns lambda back as soon as the cost crosses b
  (docs/algorithms.md, "TRPO-Lag's multiplier")."""
  return lagrange.pid_update(lag, episode_cost, hp.cost_limit, hp.multiplier_kp,
                             hp.multiplier_learning_rate, 0.0, hp.multiplier_p_ema)


def pid_step(lag: lagrange.LagrangeState, episode_cost: jax.Array, hp) -> lagrange.LagrangeState:
  """lambda from the PID controller (Stooke et al. 2020, Algorithm 2)."""
  return lagrange.pid_update(lag, episode_cost, hp.cost_limit, hp.pid_kp, hp.pid_ki, hp.pid_kd,
                             hp.pid_delta_ema, hp.pid_d_ema)


def step_unless_unmeasured(step: MultiplierStep, lag: lagrange.LagrangeState,
                           episode_cost: jax.Array, hp) -> lagrange.LagrangeState:
  """``step`` on the batch's J_C; the multiplier state is kept when no episode finished in the
  batch (J_C is NaN then)."""
  return lagrange.unless_unmeasured(step(lag, episode_cost, hp), lag, episode_cost)


def lagrangian_advantage(adv_r: jax.Array, adv_c: jax.Array, multiplier: jax.Array) -> jax.Array:
  """(std(A^R) - lambda std(A^C)) / (1 + lambda), each standardised over the batch."""
  return (standardize(adv_r) - multiplier * standardize(adv_c)) / (1.0 + multiplier)


def multiplier_init(hp) -> jax.Array:
  """The initial lambda of a config: ``multiplier_init``, or 0 where the config has none (the PID
  controller sets lambda from the first measured cost)."""
  return getattr(hp, "multiplier_init", 0.0)


def lagrangian(step: MultiplierStep) -> CostRule:
  """The Lagrangian rule with the multiplier update ``step`` (``ascent_step``, ``pid_step`` or
  ``proportional_integral_step``)."""

  def target(state: OnPolicyState, adv, episode, hp):
    lag = step_unless_unmeasured(step, state.lagrange, episode[1], hp)
    return (lagrangian_advantage(adv.reward, adv.cost, lag.multiplier),
            state.replace(lagrange=lag), {"multiplier": lag.multiplier})

  return CostRule(init=lambda state, hp: with_multiplier(state, multiplier_init(hp)),
                  target=target)
