"""CPO: Constrained Policy Optimization (Achiam et al. 2017, Sec. 6), on the TRPO box.

The TRPO box (``trpo.make_trpo``) with one rule passed in, the violation c of the linearised
constraint c + b.x <= 0: the latest measured J_C (this batch's, else the last one's) over the
limit, per env step, c = (J_C - b) / T (OmniSafe's scale: the episode cost's excess as a rate,
that of the surrogate's gradient); before any episode has finished it is 0 (on the boundary).
With it, ``trpo.policy_step`` solves CPO's dual (Sec. 6.1) and takes the recovery step where no
point of the trust region is feasible (Sec. 6.2); the line search keeps the cost surrogate's rise
within max(-c, 0).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxsafe.agents.base import Agent, config, static
from jaxsafe.agents.on_policy.base import OnPolicyState
from jaxsafe.agents.on_policy.trpo import TRPOConfig, make_trpo
from jaxsafe.envs.core import Env


@config
class CPOConfig(TRPOConfig):
  """Hyper-parameters of ``cpo``: ``TRPOConfig`` with OmniSafe's CPO line search of 20 steps."""

  line_search_steps: int = static(20, 1, doc="backtracking steps before the step is dropped")



def make_cpo(env: Env, config: CPOConfig, name: str = "cpo") -> Agent:

  def violation(state: OnPolicyState, episode, hp) -> jax.Array:
    measured = jnp.where(jnp.isnan(episode[1]), state.last_episode[1], episode[1])
    return jnp.nan_to_num(measured - hp.cost_limit) / env.episode_length

  return make_trpo(env, config, name, violation=violation)
