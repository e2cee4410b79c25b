"""The task contract of ``envs/core.py``, checked where a task enters jaxsafe.

A user's own CMDP meets the library in ``envs.register`` and ``envs.make``. A slip there (a
missing ``cost_limit``, a reward of shape (1,), a bool ``done``) would otherwise surface deep in a
rollout or a gradient, in an error that names neither the task nor the field. Two checks catch
it early, each raising ``TaskContractError`` with the task, the field and what was expected:

- ``check_class`` at registration, when the factory is an ``Env`` subclass: the abstract methods
  are implemented, and those of the constants T, b and ``differentiable`` that the class declares
  have the right types (what a class alone can tell).
- ``check_task`` when a task is first built, per id and options: the constants are declared (as
  class attributes, or set in ``__init__``, e.g. from the task's options) with the right types,
  and ``reset`` and ``step`` are traced once with abstract shapes (``jax.eval_shape``, nothing
  is computed) and their ``State`` checked: a float observation of ``observation_size``, scalar
  float reward, cost and done, and the same structure, shapes and dtypes out of ``step`` as out
  of ``reset`` (what ``lax.scan`` over steps requires).
"""

from __future__ import annotations

import inspect
import math
from numbers import Real

import jax
import jax.numpy as jnp

from jaxsafe.envs.core import Env, State

#: constants every task declares (``Env``'s annotations), with what each must be.
CONSTANTS = {
    "episode_length": "an int >= 1 (the horizon T)",
    "cost_limit": "a finite number (the episode cost limit b)",
    "differentiable": "a bool (whether jax.grad through step is the dynamics' true gradient)",
}


class TaskContractError(ValueError):
  """A task that does not meet the ``Env`` contract; the message names the task and the field."""


def _constant_problem(name: str, value) -> str | None:
  if name == "episode_length":
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
  elif name == "cost_limit":
    ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
  else:
    ok = isinstance(value, bool)
  return None if ok else f"{name} is {value!r}; expected {CONSTANTS[name]}"


def check_class(task_id: str, cls: type) -> None:
  """Static checks of an ``Env`` subclass registered as a factory (nothing is built): its abstract
  methods are implemented, and the constants it declares as class attributes have the right
  types. A constant may also be set in ``__init__``, e.g. from an option, so one that the class
  lacks is looked for on the instance when the task is first built (``check_task``)."""
  missing_methods = sorted(getattr(cls, "__abstractmethods__", ()))
  if missing_methods:
    raise TaskContractError(f"task '{task_id}': {cls.__name__} does not implement "
                            f"{', '.join(missing_methods)} (see jaxsafe.envs.Env)")
  declared = {name: inspect.getattr_static(cls, name) for name in CONSTANTS
              if hasattr(cls, name)}
  problems = [p for name, value in declared.items()
              if not hasattr(value, "__get__")  # a property: its value exists per instance
              and (p := _constant_problem(name, value))]
  if problems:
    raise TaskContractError(f"task '{task_id}': {cls.__name__}." + f"; {cls.__name__}.".join(
        problems))


def _size_problem(name: str, value) -> str | None:
  if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
    return None
  return f"{name} is {value!r}; expected an int >= 1"


def _check_state(task_id: str, where: str, state, observation_size: int) -> None:
  if not isinstance(state, State):
    raise TaskContractError(f"task '{task_id}': {where} returned {type(state).__name__}; "
                            "expected a jaxsafe.envs.State")
  obs = state.obs
  if obs.shape != (observation_size,) or not jnp.issubdtype(obs.dtype, jnp.floating):
    raise TaskContractError(f"task '{task_id}': {where} returned obs of shape {obs.shape} and "
                            f"dtype {obs.dtype}; expected a float array of shape "
                            f"({observation_size},) (observation_size)")
  for field in ("reward", "cost", "done"):
    value = getattr(state, field)
    shape, dtype = tuple(value.shape), jnp.dtype(value.dtype)
    if shape != () or not jnp.issubdtype(dtype, jnp.floating):
      hint = " (use done=fell.astype(jnp.float32))" if field == "done" else ""
      raise TaskContractError(f"task '{task_id}': {where} returned {field} of shape {shape} and "
                              f"dtype {dtype}; expected a scalar float, shape (){hint}")


def _abstract(tree):
  """(shape, dtype) per leaf of an ``eval_shape`` result (weak types ignored: scan promotes)."""
  return jax.tree_util.tree_map(lambda x: (tuple(x.shape), jnp.dtype(x.dtype)), tree)


def check_task(task_id: str, task: Env) -> None:
  """Checks a built task: its constants and one abstract ``reset`` and ``step``."""
  problems = [p for name in CONSTANTS
              for p in [_constant_problem(name, getattr(task, name)) if hasattr(task, name)
                        else f"{type(task.unwrapped).__name__} does not declare {name}, "
                        f"{CONSTANTS[name]}: set it as a class attribute or in __init__ "
                        f"(self.{name} = ...)"] if p]
  try:
    sizes = {"observation_size": task.observation_size, "action_size": task.action_size}
  except Exception as err:  # a property that raises: report it as the task's
    raise TaskContractError(f"task '{task_id}': reading observation_size / action_size raised "
                            f"{type(err).__name__}: {err}") from err
  problems += [p for name, value in sizes.items() if (p := _size_problem(name, value))]
  if problems:
    raise TaskContractError(f"task '{task_id}': " + "; ".join(problems))

  def traced(where, fn, *args):
    try:
      return jax.eval_shape(fn, *args)
    except TaskContractError:
      raise
    except Exception as err:
      raise TaskContractError(f"task '{task_id}': {where} failed when traced with abstract "
                              f"inputs: {type(err).__name__}: {err}") from err

  key = jax.random.PRNGKey(0)
  first = traced("reset(key)", task.reset, key)
  _check_state(task_id, "reset(key)", first, sizes["observation_size"])
  action = jax.ShapeDtypeStruct((sizes["action_size"],), jnp.float32)
  nxt = traced("step(state, action)", task.step, first, action)
  _check_state(task_id, "step(state, action)", nxt, sizes["observation_size"])
  before, after = _abstract(first), _abstract(nxt)
  if before != after:
    raise TaskContractError(
        f"task '{task_id}': step(state, action) returned a State whose structure, shapes or "
        f"dtypes differ from reset's (a scan over steps needs them equal): "
        f"{_first_difference(before, after)}")


def _first_difference(before, after) -> str:
  """Where two abstract States differ first, e.g. 'metrics: keys [...] vs [...]'."""
  for field in ("sim_state", "obs", "reward", "cost", "done", "metrics", "info"):
    a, b = getattr(before, field), getattr(after, field)
    if a == b:
      continue
    if isinstance(a, dict) and isinstance(b, dict) and sorted(a) != sorted(b):
      return f"{field}: keys {sorted(a)} after reset, {sorted(b)} after step"
    paths_a = dict(jax.tree_util.tree_flatten_with_path(a, is_leaf=_is_leaf)[0])
    paths_b = dict(jax.tree_util.tree_flatten_with_path(b, is_leaf=_is_leaf)[0])
    for path in paths_a.keys() | paths_b.keys():
      if paths_a.get(path) != paths_b.get(path):
        where = field + jax.tree_util.keystr(path)
        return (f"{where}: {_describe(paths_a.get(path))} after reset, "
                f"{_describe(paths_b.get(path))} after step")
    return f"{field}: differs"
  return "differs"


def _is_leaf(x) -> bool:
  return isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], tuple)


def _describe(leaf) -> str:
  return "absent" if leaf is None else f"shape {leaf[0]} {leaf[1]}"


def factory_options(factory) -> inspect.Signature | None:
  """The factory's signature when it names its options (no ``**kwargs``), else None."""
  try:
    sig = inspect.signature(factory)
  except (TypeError, ValueError):
    return None
  if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
    return None
  return sig
