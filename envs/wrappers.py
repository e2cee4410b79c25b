"""Wrappers that turn a task into what an agent trains on.

The usual stack, built by ``envs.make(id, num_envs=N, auto_reset=True)``, is::

    EpisodeStats(VmapAutoReset(TimeLimit(task), N))

which behaves as ``VmapWrapper(EpisodeStats(AutoReset(TimeLimit(task))), N)`` (every episode
starts from its own fresh s_0 ~ rho_0) but computes the fresh initial states ahead, a batch at a
time (see ``VmapAutoReset``).

``TimeLimit`` ends episodes at the finite horizon T and marks truncation, ``AutoReset`` replaces a
finished episode's state with a freshly sampled initial state (a new s_0 ~ rho_0, not a replay of
the first one), ``EpisodeStats`` keeps the undiscounted return and cost of the last finished episode
of each env, and ``VmapWrapper`` runs N envs at once (``VmapAutoReset``: N auto-resetting envs). ``BlockGradient`` makes a task
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
    new = _start_new_episodes(state, self.env.reset(reset_key), state.done > 0.5)
    return new.replace(info={**new.info, "rng": rng, "final_obs": state.obs})


def _start_new_episodes(state: State, fresh: State, done: jax.Array) -> State:
  """``state`` where not ``done``; the fresh episode's state, obs and info where ``done``.

  The finished step's reward, cost, done and truncation stay (the transition is recorded).
  """
  info = dict(state.info)
  for name, value in fresh.info.items():
    if name not in _EPISODE_KEYS_KEPT_ON_RESET:
      info[name] = _where(done, value, state.info[name])
  return state.replace(sim_state=_where(done, fresh.sim_state, state.sim_state),
                       obs=jnp.where(done, fresh.obs, state.obs), info=info)


class VmapAutoReset(Wrapper):
  """``num_envs`` auto-resetting copies of the env whose fresh episodes come from a pool.

  Every new episode starts from its own fresh s_0 ~ rho_0, as under ``AutoReset``, but the
  initial states are computed ahead, ``num_envs`` at a time, into ``info["reset_pool"]``; an env
  whose episode ends takes the next unused pool entry (``info["pool_cursor"]``, the same in every
  row), and the pool is refilled in one batched reset only when a step needs more entries than
  are left. A step then costs one ``step`` plus a gather where episodes end, and the resets cost
  one batched reset per ``num_envs`` episodes, whatever the pattern of ends. Computing a whole
  batch of fresh states on every step where any episode ends (the previous design) cost 30% of
  stepping on CartPole, where a few of 256 envs end on most steps (docs/benchmarks.md,
  "Throughput"). With a fixed horizon (every copy ends at step T together) it is one refill per
  T steps, as before.

  Randomness: a refill splits each row's ``info["rng"]`` into the row's next rng and the reset key
  of pool entry i; the entry is used by whichever env finishes in order (env index order within a
  step), so a run is fixed by its reset key. A pool entry is used once; the entries left unused
  at a refill are dropped. Under an outer ``vmap`` (seeds in parallel) JAX turns the conds into
  selects, so the refill runs on every step, which costs what a per-env ``AutoReset`` costs plus
  the gather.
  """

  #: info keys of the pool's own bookkeeping (not part of the episode interface).
  POOL_INFO_KEYS = ("reset_pool", "pool_cursor")

  def __init__(self, env: Env, num_envs: int):
    super().__init__(env)
    if num_envs < 1:
      raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    self.num_envs = int(num_envs)
    self._auto_reset = AutoReset(env)

  def reset(self, key: jax.Array) -> State:
    state = jax.vmap(self._auto_reset.reset)(jax.random.split(key, self.num_envs))
    return self._refill(state)

  def _refill(self, state: State) -> State:
    """``state`` with a fresh pool of ``num_envs`` initial states and the cursor at 0."""
    keys = jax.vmap(jax.random.split)(state.info["rng"])
    pool = jax.vmap(self.env.reset)(keys[:, 1])
    cursor = jnp.zeros((self.num_envs,), jnp.int32)
    return state.replace(info={**state.info, "rng": keys[:, 0], "reset_pool": pool,
                               "pool_cursor": cursor})

  def step(self, state: State, action: jax.Array) -> State:
    stepped = jax.vmap(self.env.step)(state, action)
    done = stepped.done > 0.5

    def start_new_episodes(s: State) -> State:
      count = done.sum(dtype=jnp.int32)
      s = jax.lax.cond(s.info["pool_cursor"][0] + count > self.num_envs, self._refill,
                       lambda s: s, s)
      # The k-th finished env (in index order) takes pool entry cursor + k.
      source = s.info["pool_cursor"][0] + jnp.cumsum(done, dtype=jnp.int32) - 1
      source = jnp.clip(source, 0, self.num_envs - 1)
      fresh = jax.tree_util.tree_map(lambda x: x[source], s.info["reset_pool"])
      new = jax.vmap(_start_new_episodes)(s, fresh, done)
      return new.replace(info={**new.info, "pool_cursor": s.info["pool_cursor"] + count})

    new = jax.lax.cond(jnp.any(done), start_new_episodes, lambda s: s, stepped)
    return new.replace(info={**new.info, "final_obs": stepped.obs})


class EpisodeStats(Wrapper):
  """Tracks undiscounted episode return, cost and length.

  ``info["episode_return"]``, ``info["episode_cost"]`` and ``info["episode_length"]`` hold the
  totals of the last *finished* episode of this env; ``info["episode_finished"]`` is 1.0 on the
  step an episode ends. Running totals live in ``info["running_*"]``.
  """

  _NAMES = ("return", "cost", "length")

  def reset(self, key: jax.Array) -> State:
    state = self.env.reset(key)
    zero = jnp.zeros_like(state.reward)        # one per env, also around a batched env
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


def training_stack(env: Env, num_envs: int | None, auto_reset: bool) -> Env:
  """What an agent trains on: ``env`` (with its TimeLimit) batched and auto-reset as asked.

  ``EpisodeStats(VmapAutoReset(env, N))`` for N auto-resetting copies (``EpisodeStats`` works
  elementwise, so it sits outside the batch), ``EpisodeStats(AutoReset(env))`` for one,
  ``VmapWrapper(env, N)`` without auto-reset.
  """
  if auto_reset:
    env = AutoReset(env) if num_envs is None else VmapAutoReset(env, num_envs)
    return EpisodeStats(env)
  return env if num_envs is None else VmapWrapper(env, num_envs)
