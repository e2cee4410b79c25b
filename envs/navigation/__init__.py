"""Safety-Gym style navigation in JAX: Point/Car robots, Goal/Button/Circle tasks (docs/envs.md)."""

from jaxsafe.envs.navigation.robots import ROBOTS, Car, Point, Pose, Robot
from jaxsafe.envs.navigation.tasks import (
  TASKS,
  ButtonTask,
  CircleTask,
  GoalTask,
  Level,
  NavigationEnv,
  NavState,
)


def make_task(robot: str, task: str, dynamics: str = "fast", **kwargs) -> NavigationEnv:
  """The unwrapped navigation task ``task`` ('goal', 'button', 'circle') for ``robot``.

  ``dynamics="fast"`` (the default) is our planar approximation (``tasks.py``);
  ``dynamics="safety-gymnasium"`` follows Safety-Gymnasium step for step (``faithful.py``).
  """
  if task not in TASKS:
    raise ValueError(f"unknown navigation task '{task}'; choose one of {sorted(TASKS)}")
  if dynamics == "fast":
    return TASKS[task](robot=robot, **kwargs)
  from jaxsafe.envs.navigation import faithful
  if dynamics not in faithful.DYNAMICS:
    raise ValueError(f"unknown dynamics '{dynamics}'; choose one of {list(faithful.DYNAMICS)}")
  if task not in faithful.FAITHFUL_TASKS:
    raise ValueError(f"dynamics='safety-gymnasium' has tasks {sorted(faithful.FAITHFUL_TASKS)} "
                     f"so far, got task='{task}'")
  return faithful.FAITHFUL_TASKS[task](robot=robot, **kwargs)


__all__ = [
  "ROBOTS",
  "TASKS",
  "ButtonTask",
  "Car",
  "CircleTask",
  "GoalTask",
  "Level",
  "NavState",
  "NavigationEnv",
  "Point",
  "Pose",
  "Robot",
  "make_task",
]
