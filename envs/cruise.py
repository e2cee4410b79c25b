"""Cruise: a cheap CMDP in which reward and cost conflict but differ (jaxsafe's own task).

A vehicle on a line controls its acceleration; the reward is the distance it covers and the cost
is the energy it spends against drag, the square of its speed:

    v_{t+1} = 0.8 v_t + 0.2 a_t,    a_t in [-1, 1] (clipped),                 (1)
    r_t = v_{t+1},                  c_t = v_{t+1}^2,                          (2)

with v_0 ~ U(-0.1, 0.1), T = 100 and the limit sum_t c_t <= b = 25. The top speed is 1, so an
unconstrained agent earns about 100 at cost about 100. Under the limit, Cauchy-Schwarz bounds the
return of *every* policy by its cost,

    J_R = E[sum_t v_t] <= E[sqrt(T sum_t v_t^2)] <= sqrt(T J_C),              (3)

with equality only for a constant speed: at the limit the best return is at most sqrt(T b) = 50
(a constant v = 0.5; the first steps of acceleration make the true optimum a little lower, and
any action noise spends cost on nothing). The *efficiency* J_R / sqrt(T J_C) in [-1, 1] says how
close a policy is to that frontier, whatever its cost, which makes the task a return test that
does not depend on where exactly an algorithm ends relative to b.

Why it exists: on ``function`` reward equals cost, so comparing returns there compares costs; here
the two differ (a Lagrangian advantage A - lambda A_c keeps a reward signal at every lambda), the
dynamics carry state (the speed persists), and everything is smooth, so the gradient-based agents
run on it too. It is differentiable through ``step``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxsafe.envs.core import Env, State


def efficiency(episode_return, episode_cost, episode_length: int = 100):
  """J_R / sqrt(T J_C) of Eq. 3: at most 1 for every policy (NaN where the cost is 0)."""
  return episode_return / jnp.sqrt(episode_length * jnp.asarray(episode_cost))


class CruiseEnv(Env):
  """Reach and hold a cruising speed: reward = speed, cost = speed squared (module docstring)."""

  episode_length = 100
  cost_limit = 25.0
  differentiable = True
  decay = 0.8
  gain = 0.2

  def __init__(self, init_speed: float = 0.1):
    if init_speed < 0:
      raise ValueError(f"init_speed must be >= 0, got {init_speed}")
    self.init_speed = float(init_speed)

  @property
  def observation_size(self) -> int:
    return 1

  @property
  def action_size(self) -> int:
    return 1

  def reset(self, key: jax.Array) -> State:
    v = jax.random.uniform(key, (1,), minval=-self.init_speed, maxval=self.init_speed)
    zero = jnp.zeros(())
    return State(sim_state=v, obs=v, reward=zero, cost=zero, done=zero, metrics={}, info={})

  def step(self, state: State, action: jax.Array) -> State:
    v = self.decay * state.sim_state + self.gain * jnp.clip(action, -1.0, 1.0)
    return state.replace(sim_state=v, obs=v, reward=v[0], cost=v[0] ** 2, done=jnp.zeros(()))
