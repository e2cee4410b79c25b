"""jaxsafe.envs: finite-horizon CMDP tasks in JAX (installed from the top-level ``envs/``)."""

from jaxsafe.envs.contract import TaskContractError
from jaxsafe.envs.core import Env, State, Wrapper
from jaxsafe.envs.gymnasium_export import to_gymnasium
from jaxsafe.envs.registry import UnknownEnvError, list_envs, make, register
from jaxsafe.envs.wrappers import (
  AutoReset,
  BlockGradient,
  EpisodeStats,
  TimeLimit,
  VmapAutoReset,
  VmapWrapper,
  training_stack,
)

__all__ = [
  "AutoReset",
  "BlockGradient",
  "Env",
  "EpisodeStats",
  "State",
  "TaskContractError",
  "TimeLimit",
  "UnknownEnvError",
  "VmapAutoReset",
  "VmapWrapper",
  "Wrapper",
  "list_envs",
  "make",
  "register",
  "to_gymnasium",
  "training_stack",
]
