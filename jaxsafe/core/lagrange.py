"""Lagrange multipliers for J_R(pi) - lambda (J_C(pi) - b): gradient ascent and PID.

Both are pure ``init``/``update`` pairs in the style of optax. ``update`` takes the measured episode
cost J_C of the latest batch and the limit b.
"""

from __future__ import annotations

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
