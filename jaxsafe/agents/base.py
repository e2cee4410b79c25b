"""The Agent contract and the typed, validated configs every agent shares.

An agent is three pure functions over a pytree state (in the spirit of optax's
``GradientTransformation``):

- ``init(key, hparams=None) -> state``
- ``update(state) -> (state, metrics)``: one full iteration of the algorithm, jittable;
- ``policy(state, obs, key, deterministic=False) -> action``.

Each algorithm has its own config class (``@config``: a frozen dataclass), holding exactly the
fields that algorithm reads, so a field it does not use is an unknown name, refused with one line.
Fields made with ``hparam(...)`` are numeric hyper-parameters that do not change array shapes:
they travel inside the agent state as ``state.hparams``, which is the config itself with those
fields as float32 arrays (the config class is a pytree whose leaves are its ``hparam`` fields), so
a batch of settings trains as one vmapped program (``jaxsafe train ... --sweep``) and the code
reads ``hp.clip_eps``. Fields made with ``static(...)`` fix shapes or code paths and are baked
into the compiled function (they are the pytree's static metadata).

Names follow one scheme across algorithms: step sizes end in ``_learning_rate`` (``learning_rate``
alone when one optimiser trains everything), the Lagrange multiplier's fields start with
``multiplier_``, the world model's with ``model_``, sizes of stored data are ``*_capacity`` in
transitions.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


class ConfigError(ValueError):
  """A bad hyper-parameter name or value; the message is one line, fit for the command line."""


def hparam(default: float, low: float | None = None, high: float | None = None,
           doc: str = "") -> Any:
  """A numeric hyper-parameter that can be swept (vmapped) and lives in ``state.hparams``."""
  return dataclasses.field(default=default,
                           metadata={"sweep": True, "range": (low, high), "doc": doc})


def static(default: Any, low: float | None = None, high: float | None = None,
           choices: tuple | None = None, doc: str = "") -> Any:
  """A hyper-parameter that fixes shapes or code paths (compiled in, not sweepable)."""
  return dataclasses.field(default=default, metadata={
      "sweep": False, "range": (low, high), "choices": choices, "doc": doc})


def sweepable(config) -> tuple[str, ...]:
  return tuple(f.name for f in dataclasses.fields(config) if f.metadata.get("sweep"))


def config(cls):
  """Class decorator: a frozen dataclass registered as a pytree whose leaves are its ``hparam``
  fields (the ``static`` ones are metadata). Every config class, subclasses included, uses it."""
  cls = dataclasses.dataclass(frozen=True)(cls)
  fields = dataclasses.fields(cls)
  jax.tree_util.register_dataclass(
      cls, data_fields=[f.name for f in fields if f.metadata.get("sweep")],
      meta_fields=[f.name for f in fields if not f.metadata.get("sweep")])
  return cls


def hparams_of(config):
  """``config`` with its sweepable fields as float32 scalars (the ``state.hparams`` pytree)."""
  missing = [n for n in sweepable(config) if getattr(config, n) is None]
  if missing:
    raise ConfigError(f"{type(config).__name__}: {', '.join(missing)} must be set before training")
  return dataclasses.replace(config, **{name: jnp.asarray(getattr(config, name), jnp.float32)
                                        for name in sweepable(config)})


def extend(state, cls: type, **fields):
  """``state`` as an instance of ``cls``, a state type that adds ``fields`` to ``state``'s (e.g.
  a Lagrange multiplier to the family's state)."""
  return cls(**{f.name: getattr(state, f.name) for f in dataclasses.fields(state)}, **fields)


def with_task_cost_limit(config, env):
  """``config`` with the task's cost limit b where it has none (``cost_limit=None``, the default
  of every config): the one place where a task's b becomes an agent's."""
  if config.cost_limit is not None:
    return config
  return dataclasses.replace(config, cost_limit=float(env.cost_limit))


def _parse(name: str, kind: Any, text: Any) -> Any:
  """Converts ``text`` (a string from the command line, or a Python value) to the field's type."""
  if not isinstance(text, str):
    # A list where a tuple is expected is what a run's config.json gives back on resume.
    value = tuple(text) if typing.get_origin(kind) is tuple and isinstance(text, list) else text
  elif kind is bool:
    lowered = text.lower()
    if lowered not in ("true", "false", "1", "0", "yes", "no"):
      raise ConfigError(f"--set {name}={text}: expected true or false")
    return lowered in ("true", "1", "yes")
  elif kind in (int, float):
    try:
      value = kind(text)
    except ValueError:
      raise ConfigError(f"--set {name}={text}: expected {'an integer' if kind is int else 'a number'}") from None
  elif typing.get_origin(kind) is tuple:
    try:
      value = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
      raise ConfigError(f"--set {name}={text}: expected comma-separated integers, e.g. 64,64") from None
  else:
    value = text
  if kind is float and isinstance(value, int) and not isinstance(value, bool):
    value = float(value)
  if kind is int and isinstance(value, float) and value.is_integer():
    value = int(value)
  expected = typing.get_origin(kind) or kind
  if expected in (int, float, bool, str, tuple) and not isinstance(value, expected):
    raise ConfigError(f"--set {name}={text}: expected a value of type {getattr(expected, '__name__', expected)}")
  return value


def _check(config_cls, name: str, value: Any) -> None:
  field = {f.name: f for f in dataclasses.fields(config_cls)}[name]
  low, high = field.metadata.get("range", (None, None))
  if isinstance(value, (int, float)) and not isinstance(value, bool):
    if not math.isfinite(value):
      raise ConfigError(f"--set {name}={value}: must be a finite number")
    if (low is not None and value < low) or (high is not None and value > high):
      bounds = f"[{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]"
      raise ConfigError(f"--set {name}={value}: out of range {bounds}")
  if isinstance(value, tuple) and (not value or any(v < 1 for v in value)):
    raise ConfigError(f"--set {name}={value}: expected positive layer sizes")
  choices = field.metadata.get("choices")
  if choices and value not in choices:
    raise ConfigError(f"--set {name}={value}: expected one of {', '.join(map(str, choices))}")


def apply_overrides(config, overrides: dict[str, Any]):
  """Returns ``config`` with ``overrides`` (strings or values) parsed and validated.

  Raises:
    ConfigError: unknown key (with close names suggested), wrong type, or out of range.
  """
  from jaxsafe.envs.registry import suggest

  cls = type(config)
  hints = typing.get_type_hints(cls)
  names = [f.name for f in dataclasses.fields(cls)]
  changes = {}
  for name, text in overrides.items():
    if name not in names:
      raise ConfigError(f"unknown hyper-parameter '{name}' for {cls.__name__}"
                        f"{suggest(name, names)}; valid: {', '.join(names)}")
    kind = hints[name]
    if typing.get_origin(kind) in (typing.Union, types.UnionType):  # Optional[X] or X | None
      kind = next(a for a in typing.get_args(kind) if a is not type(None))
    value = _parse(name, kind, text)
    _check(cls, name, value)
    changes[name] = value
  return dataclasses.replace(config, **changes)


class Agent(NamedTuple):
  """A training algorithm as pure functions over its state pytree (see module docstring)."""

  name: str
  config: Any
  env: Any  # the vmapped, auto-resetting training env
  init: Callable[..., Any]
  update: Callable[[Any], tuple[Any, dict[str, jax.Array]]]
  policy: Callable[..., jax.Array]
  #: env steps consumed by one ``update`` (all envs), as the algorithm counts them.
  steps_per_update: int
  #: metrics that may legitimately be NaN (e.g. a change measured against the previous
  #: iteration, at the first one); the runner's divergence check skips them.
  nan_metrics: tuple[str, ...] = ()
  #: the algorithm's flag metrics (1 good, 0 bad) on which the runner stops, by full metric name,
  #: with what a 0 means; checked ahead of the standard ``params_finite`` (they name the cause).
  stop_flags: Mapping[str, str] = types.MappingProxyType({})
