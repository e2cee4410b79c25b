"""CPO: Constrained Policy Optimization (Achiam et al. 2017, Sec. 6), on the TRPO box.

The TRPO box (``trpo.make_trpo``) with one rule passed in, the violation c of the linearised
constraint c + b.x <= 0 (Sec. 6.1). By default it is the paper's c, the latest measured J_C (this
batch's, else the last one's) over the limit, per env step, c = (J_C - b) / T (the scale of the
surrogate's gradient, a mean over env steps), plus an integral term of ours: c = (J_C - b + k_I I)
/ T with I = max(0, leak I + J_C - b) summed over the measured updates (``violation_integral`` k_I
0.3, ``violation_leak`` 0.98; issue 39, docs/algorithms.md "CPO's c"): the linear model predicts
the cost cut each step asks for, but on `point-goal` the measured J_C did not follow, and the
remembered excess asks again; the leak drains what a cost spike winds up.
Before any episode has finished c is 0 (on the boundary). With c, ``trpo.policy_step`` solves
CPO's dual (Sec. 6.1) and takes the recovery step where no point of the trust region is feasible
(Sec. 6.2); the line search keeps the cost surrogate's rise within max(-c, 0).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxsafe.agents.base import Agent, config, hparam, static
from jaxsafe.agents.on_policy.base import LagrangianState, with_multiplier
from jaxsafe.agents.on_policy.cost_rules import REWARD_ONLY, CostRule
from jaxsafe.agents.on_policy.trpo import TRPOConfig, make_trpo
from jaxsafe.core import lagrange
from jaxsafe.envs.core import Env

#: the units of the violation c (``CPOConfig.violation_units``).
VIOLATION_UNITS = ("rate", "episode")


@config
class CPOConfig(TRPOConfig):
  """Hyper-parameters of ``cpo``: ``TRPOConfig`` with OmniSafe's CPO line search of 20 steps."""

  line_search_steps: int = static(20, 1, doc="backtracking steps before the step is dropped")
  violation_units: str = static("rate", choices=VIOLATION_UNITS,
                                doc="c of the linearised constraint: 'rate', (J_C - b) / T, the "
                                "scale of the cost surrogate's gradient (the paper's "
                                "linearisation), or 'episode', J_C - b (OmniSafe's CPO)")
  violation_integral: float = hparam(0.3, 0.0, None, doc="k_I: c is taken from J_C - b + k_I "
                                     "I, I = max(0, leak I + J_C - b) summed over the updates (0: "
                                     "the paper's c)")
  violation_leak: float = hparam(0.98, 0.0, 1.0, doc="the integral's memory: I <- max(0, leak "
                                 "I + J_C - b) (1: no leak)")



def _integrate(state: LagrangianState, adv, episode, hp):
  """The reward objective of ``REWARD_ONLY``, and I <- max(0, leak I + J_C - b) on a measured
  batch (kept in the LagrangeState's integral; its multiplier is unused)."""
  objective, state, _ = REWARD_ONLY.target(state, adv, episode, hp)
  lag = state.lagrange
  stepped = lag.replace(integral=jnp.maximum(
      0.0, hp.violation_leak * lag.integral + episode[1] - hp.cost_limit))
  lag = lagrange.unless_unmeasured(stepped, lag, episode[1])
  return objective, state.replace(lagrange=lag), {"violation_integral": lag.integral}


#: CPO's cost rule: the reward objective, and the integral of the excess over b.
VIOLATION_MEMORY = CostRule(init=lambda state, hp: with_multiplier(state, 0.0), target=_integrate)


def make_cpo(env: Env, config: CPOConfig, name: str = "cpo") -> Agent:

  def violation(state: LagrangianState, episode, hp) -> jax.Array:
    measured = jnp.where(jnp.isnan(episode[1]), state.last_episode[1], episode[1])
    excess = (jnp.nan_to_num(measured - hp.cost_limit)
              + hp.violation_integral * state.lagrange.integral)
    return excess / env.episode_length if config.violation_units == "rate" else excess

  return make_trpo(env, config, name, cost=VIOLATION_MEMORY, violation=violation)
