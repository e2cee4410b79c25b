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


def make_task(robot: str, task: str, **kwargs) -> NavigationEnv:
  """The unwrapped navigation task ``task`` ('goal', 'button', 'circle') for ``robot``."""
  if task not in TASKS:
    raise ValueError(f"unknown navigation task '{task}'; choose one of {sorted(TASKS)}")
  return TASKS[task](robot=robot, **kwargs)


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
