"""Safety-Gymnasium tasks as jaxsafe envs: a bridge to simulations that run on the host.

``envs.make("sg/SafetyPointGoal1-v0", num_envs=N, auto_reset=True)`` returns a
``SafetyGymnasiumEnv``: the jaxsafe ``Env`` interface over a Safety-Gymnasium vector env of N
MuJoCo simulations on the host CPU (Ji et al. 2023, "Safety-Gymnasium: A Unified Safe
Reinforcement Learning Benchmark"), so the unchanged agents and runner train on its tasks, e.g.
``jaxsafe train ppo-lag sg/SafetyPointGoal1-v0``. It needs the optional extra
``jaxsafe[safety-gymnasium]``.

Design. ``reset`` and ``step`` reach the host through ``jax.experimental.io_callback``, so they
stay traceable and run inside the agents' jitted ``lax.scan`` rollouts. The bridge is natively
batched: one callback steps all N envs of a ``SafetySyncVectorEnv`` (Safety-Gymnasium's own vector
env, which auto-resets), so ``envs.make`` wraps it in neither ``VmapWrapper`` nor ``AutoReset``.
Instead the bridge fills ``done``, ``info["truncation"]``, ``info["final_obs"]`` and the
``EpisodeStats`` fields itself, with the same keys, shapes and dtypes that a JAX task's
``envs.make(id, num_envs=N, auto_reset=True)`` gives (``EpisodeStats(VmapAutoReset(TimeLimit(task),
N))``), so rollout code cannot tell the two apart. Actions in [-1, 1] are mapped affinely to the task's action box; observations are
float32. The time limit is the Gymnasium spec's ``max_episode_steps`` (1000 for Goal, Button and
the velocity tasks, 500 for Circle) unless ``episode_length`` overrides it; the cost limit is 25
for every task, Safety-Gymnasium's benchmark convention (the SafePO benchmark of Ji et al. 2023
and OmniSafe's default ``cost_limit: 25.0`` use it for the navigation and velocity tasks alike;
the env specs themselves declare none).

What it costs.
- Purity: the simulator state lives on the host, outside the ``State`` pytree, so ``step`` is
  impure. Stepping one state twice, or an old state, cannot replay it; a step counter in
  ``state.sim_state`` catches that on the host and raises instead of silently desynchronising.
  A checkpoint cannot hold the MuJoCo state either: a state made by another bridge (restored by
  ``jaxsafe train --resume``) is adopted, and its episodes restart from the host envs' own
  reset, so a resumed run does not equal an uninterrupted one. The vector env always auto-resets,
  also for
  ``auto_reset=False``: the step that ends an episode has ``done`` set and the next step belongs
  to a new episode.
- Speed: every step is a device-to-host round trip plus Safety-Gymnasium's Python stepping, one
  env after another; measured numbers are in docs/envs.md. The JAX-native tasks run thousands of
  envs per core instead.
- Parallel runs: one host env cannot serve several vmapped copies, so vmapping ``reset`` or
  ``step`` over more than one copy (``jaxsafe train --seeds 2``, a ``--sweep``) raises
  ``BridgeError`` when traced. The runner's vmap over a single run (axis size 1) is fine.
- Gradients: ``differentiable = False``, and ``jax.grad`` through ``step`` raises
  ``NotDifferentiableError`` instead of failing inside JAX.

Compatibility. Safety-Gymnasium 1.0.0 does not import or run on Python 3.11 with MuJoCo 3+ and
NumPy 2 as published; ``import_safety_gymnasium`` (in ``safety_gymnasium_compat``, which imports
no JAX, so other programs can use it too) applies three narrow runtime patches, each documented
where it is defined, and never edits installed files.
"""

from __future__ import annotations

import functools
import sys
import warnings
import weakref
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import custom_batching
from jax.experimental import io_callback

from jaxsafe.envs.core import Env, State
from jaxsafe.envs.safety_gymnasium_compat import (
  INSTALL_HINT,
  MissingExtraError,
  import_safety_gymnasium,
)

#: env ids that start with this prefix are Safety-Gymnasium ids served by this bridge.
PREFIX = "sg/"
#: from this many host envs on, the bridge says on stderr that starting them takes a while.
SLOW_START_ENVS = 16
#: Safety-Gymnasium's benchmark cost limit b (navigation and velocity tasks alike).
COST_LIMIT = 25.0
#: the ``State.info`` keys of ``EpisodeStats(AutoReset(TimeLimit(task)))``, all of which the
#: bridge fills.
INFO_KEYS = ("steps", "truncation", "rng", "final_obs", "episode_finished", "running_return",
             "running_cost", "running_length", "episode_return", "episode_cost",
             "episode_length")


class BridgeError(ValueError):
  """A use of the bridge that cannot work, e.g. vmapping it over several copies."""


class NotDifferentiableError(ValueError):
  """``jax.grad`` (or any JVP) through a Safety-Gymnasium step."""


class StaleStateError(RuntimeError):
  """``step`` got a state this bridge's host env has already moved past (see the module doc)."""


# ---------------------------------------------------------------------------------------------
# Host calls: io_callback, refusing vmap over several copies and differentiation
# ---------------------------------------------------------------------------------------------


def _host_function(callback: Callable, result_shapes, name: str) -> Callable:
  """``callback`` as a jittable function of arrays, run on the host in program order.

  Under ``jax.vmap`` over a single copy the batch axis is dropped (the runner vmaps over runs even
  for one run); over more copies it raises ``BridgeError`` while tracing. A JVP (``jax.grad``)
  raises ``NotDifferentiableError``.
  """

  @custom_batching.custom_vmap
  def call(*args):
    return io_callback(callback, result_shapes, *args, ordered=True)

  @call.def_vmap
  def _vmap_rule(axis_size, in_batched, *args):
    if axis_size != 1:
      raise BridgeError(
          f"{name} steps one host-side Safety-Gymnasium vector env, so it cannot be vmapped over "
          f"{axis_size} copies (e.g. `jaxsafe train --seeds {axis_size}` or a --sweep): train "
          f"one seed and one setting per process, and use num_envs for parallel envs")
    args = [arg[0] if batched else arg for arg, batched in zip(args, in_batched)]
    out = call(*args)
    return out, jax.tree_util.tree_map(lambda _: False, out)

  @jax.custom_jvp
  def guarded(*args):
    return call(*args)

  @guarded.defjvp
  def _jvp(primals, tangents):
    raise NotDifferentiableError(
        f"{name} is not differentiable (differentiable = False): the simulation runs in "
        f"Safety-Gymnasium on the host, outside JAX; use a model-based or zeroth-order agent")

  return guarded


# ---------------------------------------------------------------------------------------------
# The bridge
# ---------------------------------------------------------------------------------------------


class SafetyGymnasiumEnv(Env):
  """A Safety-Gymnasium task as a natively batched, impure jaxsafe ``Env`` (see the module doc).

  Attributes:
    env_id: the Safety-Gymnasium id, e.g. ``"SafetyPointGoal1-v0"``.
    num_envs: envs stepped by one call (1 when built with ``num_envs=None``).
    batched: whether states and actions carry the leading ``num_envs`` axis (``num_envs`` given).
    episode_length: the time limit T (the spec's ``max_episode_steps`` unless overridden).
    cost_limit: the episode cost limit b (25, Safety-Gymnasium's convention).
    observation_space, action_space: the single env's Gymnasium spaces.
  """

  differentiable = False

  def __init__(self, env_id: str, num_envs: int | None = None, episode_length: int | None = None,
               cost_limit: float = COST_LIMIT, **env_kwargs: Any):
    """Builds ``num_envs`` host envs of ``env_id`` (``env_kwargs``: ``safety_gymnasium.make``'s)."""
    sg = import_safety_gymnasium()
    import gymnasium
    from safety_gymnasium.utils.registration import safe_registry
    from safety_gymnasium.vector import SafetySyncVectorEnv

    from jaxsafe.envs.registry import UnknownEnvError, suggest

    if env_id not in safe_registry:
      raise UnknownEnvError(f"unknown Safety-Gymnasium id '{env_id}'"
                            f"{suggest(env_id, sorted(safe_registry))}; ids look like "
                            f"{PREFIX}SafetyPointGoal1-v0")
    if num_envs is not None and num_envs < 1:
      raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    horizon = episode_length or gymnasium.spec(env_id).max_episode_steps
    if horizon is None or horizon < 1:
      raise ValueError(f"{PREFIX}{env_id}: episode_length must be >= 1, got {horizon}")
    self.env_id = env_id
    self.name = PREFIX + env_id
    self.batched = num_envs is not None
    self.num_envs = 1 if num_envs is None else int(num_envs)
    self.episode_length = int(horizon)
    self.cost_limit = float(cost_limit)

    if self.num_envs >= SLOW_START_ENVS:
      # The one message of the bridge: building and first resetting a MuJoCo navigation env
      # takes about 1 s, so a default 64-env run is silent for a minute or more otherwise.
      print(f"{self.name}: starting {self.num_envs} Safety-Gymnasium envs on the host "
            f"(about 1 s each for the navigation tasks)", file=sys.stderr, flush=True)
    make_one = functools.partial(sg.make, env_id, max_episode_steps=self.episode_length,
                                 disable_env_checker=True, **env_kwargs)
    # copy=False: every step's observations are converted to float32 copies anyway.
    self._vec = SafetySyncVectorEnv([make_one] * self.num_envs, copy=False)
    weakref.finalize(self, self._vec.close)
    self.observation_space = self._vec.single_observation_space
    self.action_space = self._vec.single_action_space
    for kind, space in (("observation", self.observation_space), ("action", self.action_space)):
      if not isinstance(space, gymnasium.spaces.Box) or len(space.shape) != 1:
        raise BridgeError(f"{self.name}: only flat Box observations and actions are supported "
                          f"(a vision or dict task?); its {kind} space is {space}")
    low = self.action_space.low.astype(np.float32)
    high = self.action_space.high.astype(np.float32)
    bounded = np.isfinite(low) & np.isfinite(high)
    # [-1, 1] -> [low, high] where the box is bounded; unbounded dimensions pass through.
    self._act_scale = np.where(bounded, (high - low) / 2, 1.0).astype(np.float32)
    self._act_shift = np.where(bounded, (high + low) / 2, 0.0).astype(np.float32)

    # States carry the host step count they were made at and this bridge's (random) id: a
    # state of this bridge must be the latest one, a state of another bridge is adopted.
    self._tick = 0
    self._bridge_id = int(np.random.default_rng().integers(1, np.iinfo(np.int32).max))
    n, d = self.num_envs, self.observation_size
    f32 = functools.partial(jax.ShapeDtypeStruct, dtype=jnp.float32)
    tick = jax.ShapeDtypeStruct((), jnp.int32)
    self._reset_call = _host_function(self._host_reset, (f32((n, d)), tick), self.name)
    self._step_call = _host_function(
        self._host_step, (f32((n, d)), f32((n,)), f32((n,)), f32((n,)), f32((n,)), f32((n, d)),
                          tick, f32(())), self.name)

  @property
  def observation_size(self) -> int:
    return int(self.observation_space.shape[0])

  @property
  def action_size(self) -> int:
    return int(self.action_space.shape[0])

  def close(self) -> None:
    """Closes the host envs; the bridge cannot be used afterwards."""
    self._vec.close()

  # --- host side --------------------------------------------------------------------------

  def _host_reset(self, seed):
    obs, _ = self._vec.reset(seed=int(seed))
    self._tick += 1
    return np.asarray(obs, np.float32), np.int32(self._tick)

  def _host_step(self, tick, bridge_id, action):
    adopted = not np.all(np.asarray(bridge_id) == self._bridge_id)
    ticks = np.unique(np.asarray(tick))
    if adopted:
      # Another bridge's state (a checkpoint restored by a resume): the MuJoCo state it belonged
      # to is gone, so the host envs go on from their own latest reset or step.
      warnings.warn(f"{self.name}: adopting a state of another bridge (a resumed run?); its "
                    f"episodes restart from this bridge's host envs", stacklevel=1)
    elif ticks.size != 1 or int(ticks[0]) != self._tick:
      raise StaleStateError(
          f"{self.name}: this state was made at host step {ticks.tolist()}, but the host env is "
          f"at step {self._tick}. The bridge is impure (the simulation lives on the host): a "
          f"state can be stepped once, in order; it cannot be stepped twice or shared by "
          f"vmapped copies")
    obs, reward, cost, terminated, truncated, info = self._vec.step(
        np.asarray(action, np.float64))
    final_obs = np.array(obs, np.float32)
    if "_final_observation" in info:
      for i in np.flatnonzero(info["_final_observation"]):
        final_obs[i] = info["final_observation"][i]
    self._tick += 1
    f32 = functools.partial(np.asarray, dtype=np.float32)
    return (f32(obs), f32(reward), f32(cost), f32(terminated), f32(truncated), final_obs,
            np.int32(self._tick), np.float32(adopted))

  # --- jaxsafe Env ------------------------------------------------------------------------

  def reset(self, key: jax.Array) -> State:
    """Resets all host envs, seeded from ``key`` (env i gets seed + i); one key for all."""
    seed = jax.random.randint(key, (), 0, np.iinfo(np.int32).max, dtype=jnp.int32)
    obs, tick = self._reset_call(seed)
    n = self.num_envs
    zeros = jnp.zeros((n,))
    info = {"steps": jnp.zeros((n,), jnp.int32), "truncation": zeros,
            "rng": jax.random.split(key, n), "final_obs": obs, "episode_finished": zeros}
    for name in ("return", "cost", "length"):
      info[f"running_{name}"] = zeros
      info[f"episode_{name}"] = zeros
    sim_state = {"tick": jnp.full((n,), tick),
                 "bridge_id": jnp.full((n,), self._bridge_id, jnp.int32)}
    state = State(sim_state=sim_state, obs=obs, reward=zeros, cost=zeros, done=zeros, metrics={},
                  info=info)
    return state if self.batched else _unbatch(state)

  def step(self, state: State, action: jax.Array) -> State:
    """Steps all host envs; finished episodes restart at once (``info["final_obs"]``)."""
    if not self.batched:
      state, action = _batch(state), action[None]
    action = jnp.clip(jnp.asarray(action, jnp.float32), -1.0, 1.0)
    action = self._act_shift + self._act_scale * action
    obs, reward, cost, terminated, truncated, final_obs, tick, adopted = self._step_call(
        state.sim_state["tick"], state.sim_state["bridge_id"], action)
    # The jaxsafe conventions: done on any episode end, truncation only for the time limit.
    done = jnp.maximum(terminated, truncated)
    prev = dict(state.info)
    for name in ("steps", "running_return", "running_cost", "running_length"):
      prev[name] = jnp.where(adopted > 0.5, jnp.zeros_like(prev[name]), prev[name])
    info = {**prev, "steps": jnp.where(done > 0.5, 0, prev["steps"] + 1),
            "truncation": truncated * (1.0 - terminated), "final_obs": final_obs,
            "episode_finished": done}
    # EpisodeStats: running totals, and the totals of the last finished episode of each env.
    totals = {"return": prev["running_return"] + reward, "cost": prev["running_cost"] + cost,
              "length": prev["running_length"] + 1.0}
    for name, total in totals.items():
      info[f"running_{name}"] = total * (1.0 - done)
      info[f"episode_{name}"] = jnp.where(done > 0.5, total, prev[f"episode_{name}"])
    shape = state.sim_state["tick"].shape
    sim_state = {"tick": jnp.broadcast_to(tick, shape),
                 "bridge_id": jnp.full(shape, self._bridge_id, jnp.int32)}
    new = state.replace(sim_state=sim_state, obs=obs, reward=reward, cost=cost, done=done,
                        info=info)
    return new if self.batched else _unbatch(new)


def _batch(state: State) -> State:
  return jax.tree_util.tree_map(lambda x: x[None], state)


def _unbatch(state: State) -> State:
  return jax.tree_util.tree_map(lambda x: x[0], state)


def is_available() -> bool:
  """Whether the extra is installed (without importing Safety-Gymnasium)."""
  import importlib.util
  return all(importlib.util.find_spec(name) is not None
             for name in ("safety_gymnasium", "gymnasium"))


__all__ = [
    "COST_LIMIT", "INSTALL_HINT", "PREFIX", "BridgeError", "MissingExtraError",
    "NotDifferentiableError", "SafetyGymnasiumEnv", "StaleStateError", "import_safety_gymnasium",
    "is_available",
]
