"""FunctionEnv of the CGPO paper (Dai et al. 2024, App. C and App. F.4.1).

A point moves along the x-axis: s_{t+1} = s_t + 0.2 a_t with a_t in (-1, 1). Reward and cost are
the same function of the position (App. C.1),

    f(x) = (x / 10)^2 + 0.1 + 0.1 sin(8x / pi)                       (Eq. 70)

and the constraint is sum_{t=0}^{99} f(x_t) <= 8.0 (Eq. 71): T = 100, b = 8.0. Because reward and
cost coincide, an unconstrained agent runs away from the origin (the quadratic grows without
bound) while a constrained one must hold its episode cost at the limit, which makes the task a
sharp test of how precisely an algorithm meets a constraint.

The floor variant (App. F.4.1) replaces x by floor(x) in the quadratic term,

    f(x) = (floor(x) / 10)^2 + 0.1 + 0.1 sin(8x / pi)                (Eq. 83)

so the true return is piecewise discontinuous and autodiff gives a biased gradient: it is
declared non-differentiable (the task of MB-CGPO's ablation).

The paper does not state the initial-state distribution; jaxsafe samples x_0 ~ U(-0.5, 0.5)
(see docs/algorithms.md). As in Eq. 71 the cost of step t is f(x_t), the position *before* the
move, so x_0 .. x_99 are charged.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxsafe.envs.core import Env, State


def function_value(x: jax.Array, floor: bool = False) -> jax.Array:
  """f(x) of Eq. 70, or of Eq. 83 when ``floor`` is set."""
  base = jnp.floor(x) if floor else x
  return (base / 10.0) ** 2 + 0.1 + 0.1 * jnp.sin(8.0 * x / jnp.pi)


class FunctionEnv(Env):
  """The 1-D FunctionEnv (App. C; ``floor=True``: App. F.4.1)."""

  episode_length = 100
  cost_limit = 8.0
  step_size = 0.2

  def __init__(self, floor: bool = False, init_range: float = 0.5):
    if init_range < 0:
      raise ValueError(f"init_range must be >= 0, got {init_range}")
    self.floor = bool(floor)
    self.init_range = float(init_range)
    self.differentiable = not self.floor

  @property
  def observation_size(self) -> int:
    return 1

  @property
  def action_size(self) -> int:
    return 1

  def reset(self, key: jax.Array) -> State:
    x = jax.random.uniform(key, (1,), minval=-self.init_range, maxval=self.init_range)
    zero = jnp.zeros(())
    return State(sim_state=x, obs=x, reward=zero, cost=zero, done=zero, metrics={}, info={})

  def step(self, state: State, action: jax.Array) -> State:
    x = state.sim_state
    value = function_value(x[0], self.floor)
    x_next = x + self.step_size * jnp.clip(action, -1.0, 1.0)
    return state.replace(sim_state=x_next, obs=x_next, reward=value, cost=value,
                         done=jnp.zeros(()))
