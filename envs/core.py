"""The CMDP environment contract of jaxsafe.

A task is a constrained MDP with a finite horizon T: at every step it returns a reward r_t and a
cost c_t, and a policy is feasible when its undiscounted episode cost sum_{t<T} c_t stays at or
below the task's ``cost_limit`` b (the convention of Safety-Gym and of the CGPO paper, App. C Eq. 71).

``reset`` and ``step`` are pure and jittable, so a task can be vmapped thousands-wide and, where
the dynamics allow, differentiated through. Actions are always in [-1, 1]^action_size; a task maps
them to its own actuator range.

Episode ends are told apart: ``done`` is 1.0 when the episode ended for any reason, and
``info["truncation"]`` is 1.0 when it ended only because the time limit T was reached, so value
targets bootstrap through truncations but not through terminations.
"""

from __future__ import annotations

import abc
from typing import Any

import jax
from flax import struct


@struct.dataclass
class State:
  """One step of a CMDP.

  Attributes:
    sim_state: the simulator's own state (a Brax pipeline state, or a plain array).
    obs: observation, shape (observation_size,).
    reward: reward r_t of the step that led here (0 after reset).
    cost: cost c_t of the step that led here (0 after reset); a float per step.
    done: 1.0 if the episode ended at this step (termination or truncation), else 0.0.
    metrics: per-step diagnostics of the task (scalars).
    info: bookkeeping of wrappers: ``steps``, ``truncation``, ``rng``, ``final_obs``, ...
  """

  sim_state: Any
  obs: jax.Array
  reward: jax.Array
  cost: jax.Array
  done: jax.Array
  metrics: dict[str, jax.Array] = struct.field(default_factory=dict)
  info: dict[str, Any] = struct.field(default_factory=dict)


class Env(abc.ABC):
  """A finite-horizon CMDP task.

  Subclasses implement ``reset`` and ``step`` and declare the task's sizes and constants.
  """

  #: finite horizon T of the task (the time limit applied by ``envs.make``).
  episode_length: int
  #: default threshold b for the undiscounted episode cost.
  cost_limit: float
  #: whether ``jax.grad`` through ``step`` gives the true gradient of the dynamics.
  differentiable: bool

  @abc.abstractmethod
  def reset(self, key: jax.Array) -> State:
    """Samples an initial state s_0 ~ rho_0."""

  @abc.abstractmethod
  def step(self, state: State, action: jax.Array) -> State:
    """Advances one step with ``action`` in [-1, 1]^action_size."""

  @property
  @abc.abstractmethod
  def observation_size(self) -> int:
    """Length of the observation vector."""

  @property
  @abc.abstractmethod
  def action_size(self) -> int:
    """Length of the action vector."""

  @property
  def unwrapped(self) -> Env:
    return self


class Wrapper(Env):
  """Delegates everything to the wrapped env; subclasses override what they change."""

  def __init__(self, env: Env):
    self.env = env

  def reset(self, key: jax.Array) -> State:
    return self.env.reset(key)

  def step(self, state: State, action: jax.Array) -> State:
    return self.env.step(state, action)

  @property
  def observation_size(self) -> int:
    return self.env.observation_size

  @property
  def action_size(self) -> int:
    return self.env.action_size

  @property
  def unwrapped(self) -> Env:
    return self.env.unwrapped

  def __getattr__(self, name: str) -> Any:
    # Task constants (episode_length, cost_limit, differentiable, ...) come from the wrapped env.
    if name == "env":
      raise AttributeError(name)
    return getattr(self.env, name)
