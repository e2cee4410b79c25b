"""Two small differentiable tasks that no algorithm's defaults were tuned on (issue 39), for
``generalisation.py`` (run from this folder, so that ``held_out_tasks:Glide`` imports):

- ``Glide``: the custom-task notebook's glider (notebooks/custom_task.ipynb): reach x = 1 on a
  line, the cost is the fuel burnt, thrust^2 per step, b = 4 over 50 steps. A random policy's
  thrust alone costs ~1.4 b, so every run starts infeasible.
- ``Detour``: a 2-D point mass goes from (-1, y0) to (1, 0); a disk of radius 0.5 at the origin
  costs 10 x its depth per step (b = 3 over 60 steps). Straight through is fastest, around is
  safe; doing nothing scores -120 at no cost.

    cd benchmarks && ../.venv/bin/python generalisation.py run --out /tmp/gen \\
        --task held_out_tasks:Glide held_out_tasks:Detour --algos shac-lag,bptt-lag
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxsafe import envs


class Glide(envs.Env):
  """1-D glider reaches x = 1; cost = thrust^2 per step (the notebook's task)."""

  episode_length = 50
  cost_limit = 4.0
  differentiable = True
  observation_size = 2  # position, velocity
  action_size = 1  # thrust

  def __init__(self, drag: float = 0.05):
    self.drag = drag

  def reset(self, key):
    s = jnp.array([-1.0, 0.0]) + jax.random.uniform(key, (2,), minval=-0.1, maxval=0.1)
    zero = jnp.zeros(())
    return envs.State(sim_state=s, obs=s, reward=zero, cost=zero, done=zero)

  def step(self, state, action):
    x, v = state.sim_state
    thrust = jnp.clip(action[0], -1.0, 1.0)
    v = (1.0 - self.drag) * v + 0.5 * thrust
    s = jnp.stack([x + 0.1 * v, v])
    return state.replace(sim_state=s, obs=s, reward=-jnp.abs(s[0] - 1.0), cost=thrust ** 2,
                         done=jnp.zeros(()))


class Detour(envs.Env):
  """2-D point mass from (-1, y0) to (1, 0) around a costly disk at the origin."""

  episode_length = 60
  cost_limit = 3.0
  differentiable = True
  observation_size = 4  # position, velocity
  action_size = 2  # force

  def reset(self, key):
    y0 = jax.random.uniform(key, (), minval=-0.1, maxval=0.1)
    s = jnp.array([-1.0, 0.0, 0.0, 0.0]).at[1].set(y0)
    zero = jnp.zeros(())
    return envs.State(sim_state=s, obs=s, reward=zero, cost=zero, done=zero)

  def step(self, state, action):
    p, v = state.sim_state[:2], state.sim_state[2:]
    v = 0.9 * v + 0.2 * jnp.clip(action, -1.0, 1.0)
    p = p + 0.1 * v
    s = jnp.concatenate([p, v])
    # sqrt(. + 1e-8): finite gradients at the origin.
    depth = jnp.maximum(0.0, 0.5 - jnp.sqrt(jnp.sum(p ** 2) + 1e-8))
    goal = jnp.sqrt(jnp.sum((p - jnp.array([1.0, 0.0])) ** 2) + 1e-8)
    return state.replace(sim_state=s, obs=s, reward=-goal, cost=10.0 * depth,
                         done=jnp.zeros(()))
