"""The task registry: ``make(id)`` and the list of ids with one-line descriptions."""

from __future__ import annotations

import contextlib
import difflib
import io
from collections.abc import Callable
from typing import NamedTuple

from jaxsafe.envs.core import Env
from jaxsafe.envs.wrappers import TimeLimit, training_stack


class TaskSpec(NamedTuple):
  factory: Callable[..., Env]
  description: str


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


def register(env_id: str, factory: Callable[..., Env], description: str) -> None:
  """Adds a task to the registry (``factory(**kwargs) -> Env``), e.g. a user's own CMDP."""
  if env_id in _REGISTRY:
    raise ValueError(f"env id '{env_id}' is already registered")
  _REGISTRY[env_id] = TaskSpec(factory, description)


def list_envs() -> dict[str, str]:
  """All registered ids with their one-line descriptions.

  Besides these, ``make`` accepts ``sg/<Safety-Gymnasium id>`` (e.g. ``sg/SafetyPointGoal1-v0``)
  when the extra ``jaxsafe[safety-gymnasium]`` is installed; see ``envs/safety_gymnasium.py``.
  """
  return {name: spec.description for name, spec in _REGISTRY.items()}


class UnknownEnvError(ValueError):
  """Raised by ``make`` for an id that is not registered; the message suggests close ids."""


def suggest(name: str, choices) -> str:
  """' (did you mean: a, b?)' for the closest ``choices`` to ``name``, or ''."""
  close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.4)
  return f" (did you mean: {', '.join(close)}?)" if close else ""


#: ids with this prefix name a Safety-Gymnasium task served by the host bridge.
SAFETY_GYMNASIUM_PREFIX = "sg/"


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


def make(env_id: str, num_envs: int | None = None, auto_reset: bool = False,
         episode_length: int | None = None, **task_kwargs) -> Env:
  """Builds a task by id, with its time limit.

  Args:
    env_id: a registered id (see ``list_envs``), or ``sg/<Safety-Gymnasium id>`` for a
      Safety-Gymnasium task through the host bridge (needs ``jaxsafe[safety-gymnasium]``; it is
      natively batched and always auto-resets, whatever ``auto_reset`` says).
    num_envs: if given, the env is vmapped over this many copies (``reset`` takes one key).
    auto_reset: start a new episode (fresh s_0) wherever one ends, and track episode stats.
    episode_length: overrides the task's horizon T.
    **task_kwargs: passed to the task's constructor.

  Returns:
    ``TimeLimit(task)``, batched and auto-reset as asked by ``wrappers.training_stack``:
    ``EpisodeStats(VmapAutoReset(TimeLimit(task), num_envs))`` with both.
  """
  if env_id.startswith(SAFETY_GYMNASIUM_PREFIX):
    return _make_safety_gymnasium(env_id, num_envs, episode_length, **task_kwargs)
  if env_id not in _REGISTRY:
    raise UnknownEnvError(f"unknown env id '{env_id}'{suggest(env_id, _REGISTRY)}; "
                          f"valid ids: {', '.join(_REGISTRY)}")
  try:
    task = _REGISTRY[env_id].factory(**task_kwargs)
  except TypeError as err:  # an option the task does not take: a one-line input error
    raise ValueError(f"{env_id}: bad env option(s) {sorted(task_kwargs)} ({err})") from err
  env: Env = TimeLimit(task, episode_length)
  return training_stack(env, num_envs, auto_reset)
