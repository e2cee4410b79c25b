"""The task registry: ``make(id)`` and the list of ids with one-line descriptions.

A task id is one of:
- a built-in id (``list_envs``), or one added with ``register`` (a user's own CMDP);
- an import path ``module.path:Class`` or ``module.path:factory`` (found on ``sys.path``; the
  working directory is tried last), e.g. ``jaxsafe train ppo-lag mytasks:Reach``;
- the name of a ``jaxsafe.envs`` entry point of an installed package
  (``[project.entry-points."jaxsafe.envs"] reach = "mytasks:Reach"``), listed by ``list_envs``;
- ``sg/<Safety-Gymnasium id>`` for the host bridge.

A task that is not built in is checked against the ``Env`` contract when it is registered (an
``Env`` subclass: its methods, and the constants it declares on the class) and when it is first
built with given options (``envs/contract.py``).
``source`` tells a run directory where a task came from, so ``eval`` and ``resume`` in a new
process import it again (``import_source``).
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import importlib.metadata
import inspect
import io
import numbers
import os
import sys
import warnings
from collections.abc import Callable
from typing import NamedTuple

from jaxsafe.envs import contract
from jaxsafe.envs.core import Env
from jaxsafe.envs.wrappers import TimeLimit, training_stack


class TaskSpec(NamedTuple):
  factory: Callable[..., Env]
  description: str
  #: where the factory is defined: {"module", "qualname", "file"}; None for built-in tasks.
  source: dict | None = None


def _function(**kw):
  from jaxsafe.envs.function import FunctionEnv
  return FunctionEnv(floor=False, **kw)


def _cruise(**kw):
  from jaxsafe.envs.cruise import CruiseEnv
  return CruiseEnv(**kw)


def _control(name):
  def factory(**kw):
    from jaxsafe.envs.control import TASKS
    return TASKS[name](**kw)
  return factory


def _function_floor(**kw):
  from jaxsafe.envs.function import FunctionEnv
  return FunctionEnv(floor=True, **kw)


def _brax(name):
  def factory(**kw):
    # mujoco.mjx prints "Failed to import warp" to stdout on import; warp is optional and unused.
    with contextlib.redirect_stdout(io.StringIO()):
      from jaxsafe.envs import brax_tasks
    return brax_tasks.TASKS[name](**kw)
  return factory


def _navigation(robot, task, **defaults):
  def factory(**kw):
    from jaxsafe.envs.navigation import make_task
    return make_task(robot, task, **{**defaults, **kw})
  return factory


_NAVIGATION = {
    "goal": "reach goals among hazards and vases (Safety-Gym Goal{level}); T=1000, b=25",
    "button": "press the goal button among hazards, gremlins (Safety-Gym Button{level}); "
              "T=1000, b=25",
    "circle": "run clockwise along a circle between two walls (Safety-Gym Circle1); T=500, b=25",
}
#: ids of the JAX navigation tasks (envs/navigation), filled in below.
NAVIGATION_IDS: list[str] = []

_REGISTRY: dict[str, TaskSpec] = {
    "function": TaskSpec(_function, "1-D point, reward = cost = f(x) (CGPO App. C, Eq. 70); T=100, b=8"),
    "function-floor": TaskSpec(_function_floor, "FunctionEnv with floor(x) (CGPO Eq. 83), non-differentiable; T=100, b=8"),
    "cruise": TaskSpec(_cruise, "1-D speed control, reward = speed, cost = speed^2 (jaxsafe's own); T=100, b=25"),
    "reach-around": TaskSpec(_control("reach-around"), "2-D point mass reaches a goal around a smooth hazard (jaxsafe's own); T=100, b=2"),
    "swing-up": TaskSpec(_control("swing-up"), "torque-limited pendulum swing-up, cost = squared torque (jaxsafe's own); T=100, b=25"),
    "push-wall": TaskSpec(_control("push-wall"), "block pushed to a target inside a stiff wall, cost = contact force (jaxsafe's own); T=100, b=100"),
    "balance": TaskSpec(_control("balance"), "cart-pole balancing with terminations, cost = squared force (jaxsafe's own); T=100, b=5"),
    "cartpole-position": TaskSpec(_brax("cartpole-position"), "Brax CartPole, cost -x_cart^2 (CGPO App. E.1); T=300, b=-50"),
    "reacher-position": TaskSpec(_brax("reacher-position"), "Brax Reacher, cost |fingertip-target|^2 (CGPO App. E.2); T=300, b=400"),
    "halfcheetah-velocity": TaskSpec(_brax("halfcheetah-velocity"), "Brax HalfCheetah, cost |v| (CGPO App. E.3); T=200, b=400"),
    "ant-velocity": TaskSpec(_brax("ant-velocity"), "Brax Ant, cost |v| (CGPO App. E.4); T=300, b=1000"),
    "swimmer-velocity": TaskSpec(_brax("swimmer-velocity"), "Brax Swimmer, cost |v|, gradients blocked (CGPO App. F.4); T=300, b=150"),
}
for _robot in ("point", "car"):
  for _task, _text in _NAVIGATION.items():
    for _level in (1, 2) if _task != "circle" else (1,):
      _id = f"{_robot}-{_task}" + ("2" if _level == 2 else "")
      _where = "" if _level == 1 else ", level 2"
      _REGISTRY[_id] = TaskSpec(_navigation(_robot, _task, level=_level),
                                f"{_robot.capitalize()} robot{_where}: {_text.format(level=_level)}")
      NAVIGATION_IDS.append(_id)


def _source_of(factory) -> dict:
  module = getattr(factory, "__module__", None) or "__main__"
  mod = sys.modules.get(module)
  return {"module": module, "qualname": getattr(factory, "__qualname__", repr(factory)),
          "file": getattr(mod, "__file__", None)}


def _describe(factory) -> str:
  doc = (getattr(factory, "__doc__", None) or "").strip()
  return doc.splitlines()[0] if doc else f"{getattr(factory, '__qualname__', factory)} (no docstring)"


def _spec_for(env_id: str, factory, description: str | None) -> TaskSpec:
  if not callable(factory):
    raise contract.TaskContractError(f"task '{env_id}': the factory {factory!r} is not callable; "
                                     "expected an Env subclass or a function returning an Env")
  if isinstance(factory, type):
    if not issubclass(factory, Env):
      raise contract.TaskContractError(f"task '{env_id}': {factory.__name__} is not a subclass "
                                       "of jaxsafe.envs.Env")
    contract.check_class(env_id, factory)
  return TaskSpec(factory, description or _describe(factory), _source_of(factory))


def register(env_id: str, factory: Callable[..., Env], description: str | None = None, *,
             replace: bool = False) -> None:
  """Adds a task, e.g. a user's own CMDP: ``factory(**options)`` returns an ``Env``.

  An ``Env`` subclass is checked here (its abstract methods, and the types of the constants T, b
  and ``differentiable`` it declares as class attributes); every task is checked once more when
  it is first built with given options (the constants, which may be set in ``__init__`` from
  options, and ``reset`` and ``step`` traced with abstract shapes, see ``envs/contract.py``).

  Args:
    env_id: the id (no ':' and no 'sg/' prefix, which name import paths and the bridge).
    factory: an ``Env`` subclass or a function returning an ``Env``.
    description: one line for ``list_envs`` (default: the first line of the docstring).
    replace: replace an existing registration of ``env_id``. Without it, registering an id
      again is an error, except from the same module and name (a notebook cell run again, a
      module reloaded), which replaces it with a warning.
  """
  if not isinstance(env_id, str) or not env_id.strip() or env_id != env_id.strip():
    raise ValueError(f"env id {env_id!r}: expected a non-empty string without surrounding spaces")
  if ":" in env_id or env_id.startswith(SAFETY_GYMNASIUM_PREFIX):
    raise ValueError(f"env id '{env_id}': ids may not contain ':' or start with "
                     f"'{SAFETY_GYMNASIUM_PREFIX}' (they name import paths and the "
                     "Safety-Gymnasium bridge)")
  spec = _spec_for(env_id, factory, description)
  old = _REGISTRY.get(env_id)
  if old is not None and not replace:
    same = old.source is not None and (old.source["module"], old.source["qualname"]) == (
        spec.source["module"], spec.source["qualname"])
    if not same:
      where = "a built-in task" if old.source is None else (
          f"{old.source['module']}:{old.source['qualname']}")
      raise ValueError(f"env id '{env_id}' is already registered ({where}); pass "
                       "replace=True to replace it")
    warnings.warn(f"env id '{env_id}': replaced its registration from "
                  f"{old.source['module']}:{old.source['qualname']}", stacklevel=2)
  _REGISTRY[env_id] = spec
  _CHECKED.difference_update({key for key in _CHECKED if key[0] == env_id})


def _entry_points() -> dict:
  """The ``jaxsafe.envs`` entry points of installed packages, by name."""
  return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def _import_path(path: str):
  """The object named by 'module.path:attr', importing the module (the cwd is tried last)."""
  module_name, _, attr = path.partition(":")
  if not module_name or not attr:
    raise UnknownEnvError(f"env id '{path}': an import path is 'module.path:Class' or "
                          "'module.path:factory'")
  try:
    module = importlib.import_module(module_name)
  except ModuleNotFoundError as err:
    top = module_name.split(".")[0]
    cwd = os.getcwd()
    if err.name != top or cwd in sys.path:
      raise UnknownEnvError(f"env id '{path}': cannot import module '{module_name}' ({err}); "
                            "is it on PYTHONPATH?") from err
    sys.path.append(cwd)  # `jaxsafe train ... mytasks:Reach` from the folder of mytasks.py
    return _import_path(path)
  obj = module
  for part in attr.split("."):
    if not hasattr(obj, part):
      raise UnknownEnvError(f"env id '{path}': module '{module_name}' has no attribute '{attr}'")
    obj = getattr(obj, part)
  return obj


def _resolve(env_id: str) -> TaskSpec:
  """The TaskSpec of a registered id, an import path or an entry point."""
  if env_id in _REGISTRY:
    return _REGISTRY[env_id]
  if env_id in _IMPORTED:
    return _IMPORTED[env_id]
  if ":" in env_id:
    _IMPORTED[env_id] = _spec_for(env_id, _import_path(env_id), None)
    return _IMPORTED[env_id]
  entry_points = _entry_points()
  if env_id in entry_points:
    try:
      factory = entry_points[env_id].load()
    except Exception as err:
      raise UnknownEnvError(f"env id '{env_id}': loading its entry point "
                            f"'{entry_points[env_id].value}' failed: {type(err).__name__}: "
                            f"{err}") from err
    _IMPORTED[env_id] = _spec_for(env_id, factory, None)
    return _IMPORTED[env_id]
  known = list(_REGISTRY) + list(entry_points)
  raise UnknownEnvError(f"unknown env id '{env_id}'{suggest(env_id, known)}; valid ids: "
                        f"{', '.join(known)}; a task of your own is named 'module.path:Class' "
                        "or added with jaxsafe.envs.register")


def source(env_id: str) -> dict | None:
  """Where a task that is not built in comes from (recorded in a run's config.json), or None."""
  if env_id.startswith(SAFETY_GYMNASIUM_PREFIX):
    return None
  spec = _REGISTRY.get(env_id) or _IMPORTED.get(env_id)
  return None if spec is None else spec.source


def import_source(env_id: str, recorded: dict | None) -> None:
  """Imports the module that registered ``env_id`` (as recorded by ``source``) when the id is not
  known in this process, e.g. to evaluate or resume a run of a user's task in a new process."""
  known = (env_id.startswith(SAFETY_GYMNASIUM_PREFIX) or env_id in _REGISTRY
           or env_id in _IMPORTED)
  if known or not recorded:
    return
  module, path = recorded["module"], recorded.get("file")
  if module == "__main__":
    raise UnknownEnvError(f"env id '{env_id}' was registered by a script or notebook "
                          f"({path or 'interactive'}), which cannot be imported again: register "
                          "it in this process first, or define the task in a module and name it "
                          "'module.path:Class'")
  if module in sys.modules:
    return
  try:
    importlib.import_module(module)
  except ModuleNotFoundError:
    if not path:
      raise
    root = os.path.dirname(os.path.abspath(path))
    for _ in range(module.count(".") + (os.path.basename(path) == "__init__.py")):
      root = os.path.dirname(root)
    sys.path.append(root)
    importlib.import_module(module)


def list_envs() -> dict[str, str]:
  """All registered ids and ``jaxsafe.envs`` entry points with their one-line descriptions.

  Besides these, ``make`` accepts ``module.path:Class`` import paths and
  ``sg/<Safety-Gymnasium id>`` (e.g. ``sg/SafetyPointGoal1-v0``) when the extra
  ``jaxsafe[safety-gymnasium]`` is installed; see ``envs/safety_gymnasium.py``.
  """
  listed = {name: spec.description for name, spec in _REGISTRY.items()}
  for name, ep in _entry_points().items():
    listed.setdefault(name, f"{ep.value} (entry point of {ep.dist.name if ep.dist else '?'})")
  return listed


class UnknownEnvError(ValueError):
  """Raised by ``make`` for an id that is not registered; the message suggests close ids."""


def suggest(name: str, choices) -> str:
  """' (did you mean: a, b?)' for the closest ``choices`` to ``name``, or ''."""
  close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.4)
  return f" (did you mean: {', '.join(close)}?)" if close else ""


#: ids with this prefix name a Safety-Gymnasium task served by the host bridge.
SAFETY_GYMNASIUM_PREFIX = "sg/"
#: the entry-point group through which installed packages add tasks.
ENTRY_POINT_GROUP = "jaxsafe.envs"
#: tasks found by import path or entry point in this process (not listed by ``list_envs``).
_IMPORTED: dict[str, TaskSpec] = {}
#: (id, options) of the tasks that passed the contract check in this process.
_CHECKED: set[tuple[str, str]] = set()


def _make_safety_gymnasium(env_id: str, num_envs: int | None, episode_length: int | None,
                           **task_kwargs) -> Env:
  """``sg/<id>``: the Safety-Gymnasium task ``<id>`` through the host bridge.

  The bridge is natively batched and always auto-resets (its vector env does), and fills the
  episode statistics itself, so it is returned without ``VmapWrapper``, ``AutoReset`` or
  ``EpisodeStats`` (see ``envs/safety_gymnasium.py``).
  """
  from jaxsafe.envs.safety_gymnasium import SafetyGymnasiumEnv
  return SafetyGymnasiumEnv(env_id[len(SAFETY_GYMNASIUM_PREFIX):], num_envs=num_envs,
                            episode_length=episode_length, **task_kwargs)


#: keywords of ``make`` that no task option may take: they are make's, not the task's.
MAKE_KEYWORDS = ("env_id", "num_envs", "auto_reset")


def make_arguments(options: dict | None, **keywords) -> dict:
  """``make``'s ``keywords`` and a task's ``options`` (``--env-set``, a run's ``env_options``) as
  the keyword arguments of one ``make`` call.

  ``episode_length`` has one meaning, the horizon T, whether it comes as ``make``'s keyword (an
  agent's config) or as an option: given both (a keyword of None is "not given"), they must
  agree. An option named like another keyword of ``make`` is refused in one line.
  """
  options = dict(options or {})
  clash = sorted(set(options) & set(MAKE_KEYWORDS))
  if clash:
    raise ValueError(f"env option(s) {clash} name arguments of envs.make, not of the task "
                     "(the number of parallel envs is the agent's num_envs: --set num_envs=N)")
  horizon = keywords.get("episode_length")
  if "episode_length" in options:
    option = options.pop("episode_length")
    if horizon is not None and horizon != option:
      raise ValueError(f"the horizon T is given twice, episode_length={horizon} (the agent's "
                       f"config) and episode_length={option} (a task option): give it once")
    horizon = option
  return {**keywords, "episode_length": horizon, **options}


def _takes(factory, name: str) -> bool:
  """Whether ``factory``'s signature names the parameter ``name`` (not through ``**kwargs``)."""
  try:
    parameter = inspect.signature(factory).parameters.get(name)
  except (TypeError, ValueError):
    return False
  return parameter is not None and parameter.kind not in (parameter.VAR_POSITIONAL,
                                                          parameter.VAR_KEYWORD)


def make(env_id: str, num_envs: int | None = None, auto_reset: bool = False,
         episode_length: int | None = None, **task_kwargs) -> Env:
  """Builds a task by id, with its time limit.

  Args:
    env_id: a registered id or entry point (see ``list_envs``), an import path
      ``module.path:Class`` (or ``:factory``), or ``sg/<Safety-Gymnasium id>`` for a
      Safety-Gymnasium task through the host bridge (needs ``jaxsafe[safety-gymnasium]``; it is
      natively batched and always auto-resets, whatever ``auto_reset`` says).
    num_envs: if given, the env is vmapped over this many copies (``reset`` takes one key).
    auto_reset: start a new episode (fresh s_0) wherever one ends, and track episode stats.
    episode_length: overrides the task's horizon T. A task whose constructor takes an
      ``episode_length`` option is built with it (so the task and its time limit agree); any
      task is then cut at T by ``TimeLimit``. Callers that merge an options dict use
      ``make_arguments``, where ``episode_length`` as an option means the same.
    **task_kwargs: passed to the task's constructor (an option it does not take is a
      ``ValueError``; another error of its constructor is the task's own, a
      ``TaskContractError`` for a ``TypeError``).

  Returns:
    ``TimeLimit(task)``, batched and auto-reset as asked by ``wrappers.training_stack``:
    ``EpisodeStats(VmapAutoReset(TimeLimit(task), num_envs))`` with both.
  """
  if episode_length is not None and (isinstance(episode_length, bool) or not isinstance(
      episode_length, numbers.Integral) or episode_length < 1):
    raise ValueError(f"{env_id}: episode_length is {episode_length!r}; expected an int >= 1 "
                     "(the horizon T)")
  if env_id.startswith(SAFETY_GYMNASIUM_PREFIX):
    return _make_safety_gymnasium(env_id, num_envs, episode_length, **task_kwargs)
  spec = _resolve(env_id)
  if episode_length is not None and _takes(spec.factory, "episode_length"):
    task_kwargs = {**task_kwargs, "episode_length": episode_length}
  task = _build(env_id, spec, task_kwargs)
  env: Env = TimeLimit(task, episode_length)
  return training_stack(env, num_envs, auto_reset)


_OPTION_ERRORS = ("unexpected keyword argument", "got multiple values for",
                  "missing 1 required", "required keyword-only argument")


def _build(env_id: str, spec: TaskSpec, options: dict) -> Env:
  """``spec.factory(**options)``: an option the task does not take is a one-line input error,
  any other error of the constructor is reported as the task's own; then the contract check,
  once per id and options, for tasks that are not built in."""
  bad_options = f"{env_id}: bad env option(s) {sorted(options)}"
  signature = contract.factory_options(spec.factory)
  if signature is not None:
    try:
      signature.bind(**options)
    except TypeError as err:
      raise ValueError(f"{bad_options} ({err}); the task's options: "
                       f"{', '.join(signature.parameters) or 'none'}") from err
  try:
    task = spec.factory(**options)
  except TypeError as err:
    if signature is None and options and any(s in str(err) for s in _OPTION_ERRORS):
      raise ValueError(f"{bad_options} ({err})") from err
    raise contract.TaskContractError(f"task '{env_id}': building it raised TypeError: "
                                     f"{err}") from err
  if not isinstance(task, Env):
    raise contract.TaskContractError(f"task '{env_id}': the factory returned "
                                     f"{type(task).__name__}; expected a jaxsafe.envs.Env")
  key = (env_id, repr(sorted(options.items())))
  if spec.source is not None and key not in _CHECKED:
    contract.check_task(env_id, task)
    _CHECKED.add(key)
  return task
