"""Wrappers that turn a task into what an agent trains on.

The usual stack, built by ``envs.make(id, num_envs=N, auto_reset=True)``, is::

    VmapWrapper(EpisodeStats(AutoReset(TimeLimit(task))))

``TimeLimit`` ends episodes at the finite horizon T and marks truncation, ``AutoReset`` replaces a
finished episode's state with a freshly sampled initial state (a new s_0 ~ rho_0, not a replay of
the first one), ``EpisodeStats`` keeps the undiscounted return and cost of the last finished episode
of each env, and ``VmapWrapper`` runs N envs at once. ``BlockGradient`` makes a task
deliberately non-differentiable.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxsafe.envs.core import Env, State, Wrapper

#: info keys that a reset re-initialises when AutoReset starts a new episode.
_EPISODE_KEYS_KEPT_ON_RESET = ("truncation", "rng", "final_obs")


def _where(cond: jax.Array, x, y):
  """Elementwise select over pytrees, broadcasting a scalar ``cond``."""
  return jax.tree_util.tree_map(lambda a, b: jnp.where(cond, a, b), x, y)


class TimeLimit(Wrapper):
  """Ends every episode after ``episode_length`` steps (default: the task's horizon T).

  ``info["steps"]`` counts steps in the episode; ``info["truncation"]`` is 1.0 only when the
  limit, not the task, ended the episode.
  """

  def __init__(self, env: Env, episode_length: int | None = None):
    super().__init__(env)
    self.episode_length = int(env.episode_length if episode_length is None else episode_length)
    if self.episode_length < 1:
      raise ValueError(f"episode_length must be >= 1, got {self.episode_length}")

  def reset(self, key: jax.Array) -> State:
    state = self.env.reset(key)
    info = {**state.info, "steps": jnp.zeros((), jnp.int32), "truncation": jnp.zeros(())}
    return state.replace(info=info)

  def step(self, state: State, action: jax.Array) -> State:
    state = self.env.step(state, action)
    steps = state.info["steps"] + 1
    at_limit = (steps >= self.episode_length).astype(jnp.float32)
    truncation = at_limit * (1.0 - state.done)
    done = jnp.maximum(state.done, at_limit)
    info = {**state.info, "steps": steps, "truncation": truncation}
    return state.replace(done=done, info=info)


class AutoReset(Wrapper):
  """Starts a new episode, with a freshly sampled initial state, wherever ``done`` is set.

  The returned state keeps the finished step's ``reward``, ``cost``, ``done`` and ``truncation``
  so the transition is recorded correctly; ``info["final_obs"]`` holds the observation the episode
  ended in (for bootstrapping on truncation), while ``obs`` is already the new episode's first.
  The reset key comes from ``info["rng"]``, so the sequence of episodes is fixed by the reset key.
  """

  def reset(self, key: jax.Array) -> State:
    key, rng = jax.random.split(key)
    state = self.env.reset(key)
    return state.replace(info={**state.info, "rng": rng, "final_obs": state.obs})

  def step(self, state: State, action: jax.Array) -> State:
    rng, reset_key = jax.random.split(state.info["rng"])
    state = self.env.step(state, action)
    fresh = self.env.reset(reset_key)
    done = state.done > 0.5
    info = dict(state.info)
    for name, value in fresh.info.items():
      if name not in _EPISODE_KEYS_KEPT_ON_RESET:
        info[name] = _where(done, value, state.info[name])
    info["rng"] = rng
    info["final_obs"] = state.obs
    return state.replace(
        sim_state=_where(done, fresh.sim_state, state.sim_state),
        obs=jnp.where(done, fresh.obs, state.obs),
        info=info,
    )


class EpisodeStats(Wrapper):
  """Tracks undiscounted episode return, cost and length.

  ``info["episode_return"]``, ``info["episode_cost"]`` and ``info["episode_length"]`` hold the
  totals of the last *finished* episode of this env; ``info["episode_finished"]`` is 1.0 on the
  step an episode ends. Running totals live in ``info["running_*"]``.
  """

  _NAMES = ("return", "cost", "length")

  def reset(self, key: jax.Array) -> State:
    state = self.env.reset(key)
    zero = jnp.zeros(())
    info = {**state.info, "episode_finished": zero}
    for name in self._NAMES:
      info[f"running_{name}"] = zero
      info[f"episode_{name}"] = zero
    return state.replace(info=info)

  def step(self, state: State, action: jax.Array) -> State:
    prev = state.info
    state = self.env.step(state, action)
    totals = {
        "return": prev["running_return"] + state.reward,
        "cost": prev["running_cost"] + state.cost,
        "length": prev["running_length"] + 1.0,
    }
    info = {**state.info, "episode_finished": state.done}
    for name, total in totals.items():
      info[f"running_{name}"] = total * (1.0 - state.done)
      info[f"episode_{name}"] = jnp.where(state.done > 0.5, total, prev[f"episode_{name}"])
    return state.replace(info=info)


class VmapWrapper(Wrapper):
  """Runs ``num_envs`` copies of the env in parallel; ``reset`` splits one key into many."""

  def __init__(self, env: Env, num_envs: int):
    super().__init__(env)
    if num_envs < 1:
      raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    self.num_envs = int(num_envs)

  def reset(self, key: jax.Array) -> State:
    return jax.vmap(self.env.reset)(jax.random.split(key, self.num_envs))

  def step(self, state: State, action: jax.Array) -> State:
    return jax.vmap(self.env.step)(state, action)


class BlockGradient(Wrapper):
  """Makes ``step`` opaque to autodiff: its outputs carry no gradient to state or action.

  Used for tasks that are non-differentiable by design (the paper's swimmer, App. F.4), so that
  gradient-based agents must learn a model instead of differentiating the simulator.
  """

  differentiable = False

  def step(self, state: State, action: jax.Array) -> State:
    return jax.lax.stop_gradient(self.env.step(state, action))
