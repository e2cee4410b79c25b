"""Lagrange multipliers for J_R(pi) - lambda (J_C(pi) - b): gradient ascent, PID, and the
predictive multiplier of a first-order step.

Ascent and PID are pure ``init``/``update`` pairs in the style of optax. ``update`` takes the
measured episode cost J_C of the latest batch and the limit b. The predictive multiplier keeps no
memory: it is chosen anew at each step from the step's first-order prediction of J_C.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class LagrangeState:
  """Multiplier lambda >= 0 (the PID variant also uses the integral and derivative terms)."""

  multiplier: jax.Array
  integral: jax.Array
  prev_cost: jax.Array
  smoothed_delta: jax.Array


def init(initial: float = 0.0) -> LagrangeState:
  zero = jnp.zeros(())
  return LagrangeState(multiplier=jnp.asarray(initial, jnp.float32) + zero, integral=zero,
                       prev_cost=zero, smoothed_delta=zero)


def unless_unmeasured(stepped: LagrangeState, previous: LagrangeState,
                      episode_cost: jax.Array) -> LagrangeState:
  """``stepped``, or ``previous`` where the J_C it was stepped on is NaN (no episode finished)."""
  return jax.tree.map(lambda n, o: jnp.where(jnp.isnan(episode_cost), o, n), stepped, previous)


def gradient_ascent_update(state: LagrangeState, episode_cost: jax.Array, cost_limit: jax.Array,
                           lr: jax.Array) -> LagrangeState:
  """lambda <- max(0, lambda + lr (J_C - b)): projected ascent on the dual (Ray et al. 2019)."""
  multiplier = jnp.maximum(0.0, state.multiplier + lr * (episode_cost - cost_limit))
  return state.replace(multiplier=multiplier)


def pid_update(state: LagrangeState, episode_cost: jax.Array, cost_limit: jax.Array,
               kp: jax.Array, ki: jax.Array, kd: jax.Array, delta_ema: jax.Array = 0.0,
               d_ema: jax.Array = 0.0) -> LagrangeState:
  """PID Lagrangian of Stooke, Achiam and Abbeel (2020), Algorithm 2.

      Delta  = J_C - b   (optionally smoothed: EMA with weight ``delta_ema`` on the past)
      I     <- max(0, I + Delta)
      D      = max(0, J_C - J_C_prev)   (J_C optionally smoothed with ``d_ema``)
      lambda = max(0, Kp Delta + Ki I + Kd D)
  """
  delta = episode_cost - cost_limit
  smoothed = delta_ema * state.smoothed_delta + (1.0 - delta_ema) * delta
  integral = jnp.maximum(0.0, state.integral + delta)
  cost = d_ema * state.prev_cost + (1.0 - d_ema) * episode_cost
  derivative = jnp.maximum(0.0, cost - state.prev_cost)
  multiplier = jnp.maximum(0.0, kp * smoothed + ki * integral + kd * derivative)
  return LagrangeState(multiplier=multiplier, integral=integral, prev_cost=cost,
                       smoothed_delta=smoothed)


#: the predictive multiplier's grid, relative to its scale: 0 and 61 values from 1e-3 to 1e3.
PREDICTIVE_GRID = jnp.concatenate([jnp.zeros(1), jnp.logspace(-3.0, 3.0, 61)])


def predictive_multiplier(predicted_cost_change: Callable[[jax.Array], jax.Array],
                          episode_cost: jax.Array, cost_limit: jax.Array, scale: jax.Array,
                          correction: jax.Array = 1.0,
                          unreachable: jax.Array | None = None) -> jax.Array:
  """The smallest lambda >= 0 whose primal step is predicted to bring J_C to b.

  ``predicted_cost_change(lambda)`` is the first-order change of J_C, q . u(lambda), of the step
  u(lambda) the optimiser would take on -(g - lambda q). The multiplier is the smallest lambda of
  ``scale * PREDICTIVE_GRID`` with

      J_C + q . u(lambda) <= b + (1 - correction) (J_C - b),

  i.e. the step removes the share ``correction`` of the violation, or leaves at most that share of
  the slack unspent. This is the multiplier of the step's linearised constraint (for a plain
  gradient step, the closed form of the safety layer of Dalal et al. 2018, "Safe Exploration in
  Continuous Action Spaces"), searched on a grid because the optimiser's step is not linear in
  lambda; ``scale`` (|g| / |q|) gives the grid the multiplier's units, reward per cost. It reacts
  to the violation of this batch, not to its history, so it neither lags nor winds up.

  Where no lambda on the grid reaches the target (a violation larger than one step can remove),
  the multiplier is ``unreachable`` (the caller's recovery rule) but no less than the smallest
  lambda predicted not to raise J_C; without ``unreachable``, the grid's top (the step that cuts
  J_C most). docs/algorithms.md, "SHAC-Lag and BPTT-Lag: the multiplier".
  """
  grid = scale * PREDICTIVE_GRID
  change = jax.vmap(predicted_cost_change)(grid)
  meets = change <= -correction * (episode_cost - cost_limit)
  holds = change <= 0.0
  hold = grid[jnp.where(holds.any(), jnp.argmax(holds), grid.shape[0] - 1)]
  fallback = grid[-1] if unreachable is None else jnp.maximum(unreachable, hold)
  return jnp.where(meets.any(), grid[jnp.argmax(meets)], fallback)
