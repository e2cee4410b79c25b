"""Importing Safety-Gymnasium 1.0.0 on Python 3.11+, MuJoCo 3+ and NumPy 2: the compatibility layer.

Safety-Gymnasium 1.0.0 as published does not import on Python 3.11 (NumPy-array dataclass
defaults) and does not run with MuJoCo 3+ or NumPy 2 (which its old pins exclude).
``import_safety_gymnasium`` imports it with three narrow runtime patches and never edits installed
files. This module imports neither JAX nor jaxsafe, so a program in another environment (e.g.
``benchmarks/omnisafe_side.py`` in OmniSafe's) can load it by its file path.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import functools
import inspect
import io
import threading

import numpy as np

#: how to get the optional dependencies, named in every error about them.
INSTALL_HINT = "install the extra: make install / pip install jaxsafe[safety-gymnasium]"


class MissingExtraError(ImportError, ValueError):
  """The optional extra ``jaxsafe[safety-gymnasium]`` is not installed.

  An ImportError, and a ValueError so that the ``jaxsafe`` command reports it in one line.
  """



_IMPORT_LOCK = threading.Lock()
_MODULE = None


def import_safety_gymnasium():
  """Imports ``safety_gymnasium`` with the runtime patches it needs here; returns the module.

  The patches, each the narrowest change that works around one upstream bug:

  1. ``_ndarray_defaults_as_factories``: its asset dataclasses use NumPy arrays as field
     defaults, which Python 3.11 rejects at import time.
  2. ``_patch_joint_lookup``: its agents look joints up by a one-element array, which MuJoCo 3+
     rejects (every robot with joint sensors: Car, Doggo, Ant).
  3. ``_patch_sensor_float``: it converts a one-element array with ``float()``, which NumPy 2
     rejects (robots with hinge position sensors: Doggo, Ant).

  Importing also silences the notice gymnasium-robotics prints on stderr about Adroit hand tasks
  (not used here). Safe to call repeatedly and from several threads.

  Raises:
    MissingExtraError: Safety-Gymnasium or Gymnasium is not installed.
  """
  global _MODULE
  with _IMPORT_LOCK:
    if _MODULE is None:
      _MODULE = _import_patched()
  return _MODULE


def _import_patched():
  try:
    with contextlib.redirect_stderr(io.StringIO()):
      import gymnasium  # noqa: F401  (imported before the dataclass patch: it needs none)
      import mujoco
  except ImportError as err:
    raise MissingExtraError(f"Safety-Gymnasium bridge: {err}; {INSTALL_HINT}") from err
  try:
    with _ndarray_defaults_as_factories(), contextlib.redirect_stderr(io.StringIO()):
      import safety_gymnasium
      from safety_gymnasium.bases import base_agent
  except ImportError as err:
    raise MissingExtraError(f"Safety-Gymnasium bridge: {err}; {INSTALL_HINT}") from err
  _patch_joint_lookup(mujoco, base_agent.BaseAgent)
  _patch_sensor_float(base_agent)
  return safety_gymnasium


@contextlib.contextmanager
def _ndarray_defaults_as_factories():
  """While active, ``@dataclass`` turns a NumPy-array default into a per-instance copy.

  Works around Safety-Gymnasium 1.0.0's asset dataclasses, e.g. ``color: np.array =
  COLOR['apple']`` in ``safety_gymnasium/assets/geoms/apples.py``: since Python 3.11 dataclasses
  reject every unhashable default, not only list, dict and set, so the import fails with
  "mutable default <class 'numpy.ndarray'> for field color is not allowed: use
  default_factory". Such a default becomes ``field(default_factory=<copy of the array>)``, which
  is what the error asks for. ``dataclasses.dataclass`` is restored on exit; the modules imported
  meanwhile keep the wrapper, which only ever changes array defaults.
  """
  real = dataclasses.dataclass

  def as_factories(cls):
    for name in inspect.get_annotations(cls):
      value = cls.__dict__.get(name)
      if isinstance(value, np.ndarray):
        setattr(cls, name, dataclasses.field(default_factory=functools.partial(np.copy, value)))
    return cls

  @functools.wraps(real)
  def dataclass(cls=None, /, **kwargs):
    if cls is None:
      return lambda c: real(as_factories(c), **kwargs)
    return real(as_factories(cls), **kwargs)

  dataclasses.dataclass = dataclass
  try:
    yield
  finally:
    dataclasses.dataclass = real


def _patch_joint_lookup(mujoco, agent_cls) -> None:
  """Lets ``BaseAgent._init_jnt_sensors`` look joints up by a one-element array id.

  Works around Safety-Gymnasium 1.0.0's ``model.jnt(model.sensor(i).objid)`` in
  ``safety_gymnasium/bases/base_agent.py``: ``objid`` is a one-element int32 array, which the
  ``mujoco==2.3.3`` it pins accepted as an index and MuJoCo 3+ rejects ("jnt(): incompatible
  function arguments ... Invoked with: ..., array([3], dtype=int32)"), so every robot with joint
  sensors (Car, Doggo, Ant) failed to build. Only while that one method runs, ``MjModel.jnt``
  also takes a one-element integer array; it is restored right after.
  """
  original = agent_cls._init_jnt_sensors
  if getattr(original, "_jaxsafe_patched", False):
    return
  jnt = mujoco.MjModel.jnt

  def lenient_jnt(model, key, *args, **kwargs):
    if isinstance(key, np.ndarray) and key.size == 1 and np.issubdtype(key.dtype, np.integer):
      key = int(key.reshape(()))
    return jnt(model, key, *args, **kwargs)

  @functools.wraps(original)
  def init_jnt_sensors(self):
    mujoco.MjModel.jnt = lenient_jnt
    try:
      return original(self)
    finally:
      mujoco.MjModel.jnt = jnt

  init_jnt_sensors._jaxsafe_patched = True
  agent_cls._init_jnt_sensors = init_jnt_sensors


def _patch_sensor_float(base_agent_module) -> None:
  """Lets ``float()`` in ``safety_gymnasium.bases.base_agent`` take a one-element array.

  Works around ``theta = float(self.get_sensor(sensor))`` in ``BaseAgent.obs_sensor`` (the
  module's only ``float`` call): ``get_sensor`` returns a one-element array, and NumPy 2 raises
  "only 0-dimensional arrays can be converted to Python scalars" where NumPy 1 converted it, so
  the robots with hinge position sensors (Doggo, Ant) failed on their first observation. A
  module-level ``float`` shadows the builtin in that module only.
  """

  def lenient_float(x=0.0):
    if isinstance(x, np.ndarray) and x.size == 1:
      x = x.reshape(())
    return builtins.float(x)

  base_agent_module.float = lenient_float
