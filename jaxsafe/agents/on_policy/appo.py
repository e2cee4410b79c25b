"""APPO: augmented PPO (Dai et al. 2023), on the PPO box.

The Lagrangian augmented with the quadratic term sigma/2 (J_C - b)^2 (method of multipliers), so
the cost surrogate's weight is f = max(0, lambda + sigma (J_C - b)); the policy loss (as the
authors' code) is

    (-E[min(rho A^R, clip(rho) A^R)] + f E[max(rho A^C, clip(rho) A^C)]) / (1 + f),

the cost term clipped pessimistically. It differs from the PPO box (``ppo.make_ppo``) only by the
rules passed in: the cost rule ``AUGMENTED`` (lambda by gradient ascent as ``ppo-lag``, then the
pair of targets (A^R, f A^C) / (1 + f)) and the loss ``appo_loss``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxsafe.agents.base import Agent, config, hparam
from jaxsafe.agents.on_policy.base import standardize, with_multiplier
from jaxsafe.agents.on_policy.cost_rules import (
  CostRule,
  ascent_step,
  multiplier_init,
  step_unless_unmeasured,
)
from jaxsafe.agents.on_policy.ppo import PPOConfig, make_ppo
from jaxsafe.envs.core import Env


@config
class APPOConfig(PPOConfig):
  """Hyper-parameters of ``appo``: ``PPOConfig`` plus the quadratic term's sigma 0.1 and the
  initial multiplier 1e-3 of the authors' code (``appo/algorithms/appo.py``), and ppo-lag's
  multiplier step 0.035 (the authors' Adam on lambda is replaced by the plain ascent step)."""

  penalty_sigma: float = hparam(0.1, 0.0, None, doc="sigma: weight of the quadratic term")
  multiplier_learning_rate: float = hparam(0.035, 0.0, None, doc="multiplier step size")
  multiplier_init: float = hparam(0.001, 0.0, None, doc="initial multiplier")


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


def augmented_target(state, adv, episode, hp):
  """The multiplier's ascent step, then APPO's targets [..., 2] = (A^R, f A^C) / (1 + f) with f
  from lambda and the latest measured J_C (this batch's, else the last one's)."""
  lag = step_unless_unmeasured(ascent_step, state.lagrange, episode[1], hp)
  measured = jnp.where(jnp.isnan(episode[1]), state.last_episode[1], episode[1])
  factor = augmented_factor(lag.multiplier, jnp.nan_to_num(measured, nan=hp.cost_limit), hp)
  target = jnp.stack([standardize(adv.reward), factor * standardize(adv.cost)],
                     -1) / (1.0 + factor)
  return target, state.replace(lagrange=lag), {"multiplier": lag.multiplier, "factor": factor}


AUGMENTED = CostRule(init=lambda state, hp: with_multiplier(state, multiplier_init(hp)),
                     target=augmented_target)


def make_appo(env: Env, config: APPOConfig, name: str = "appo") -> Agent:
  return make_ppo(env, config, name, AUGMENTED, appo_loss)
