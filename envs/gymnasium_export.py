"""Any jaxsafe task as a Gymnasium vector env with Safety-Gymnasium's step API.

``envs.to_gymnasium("function", num_envs=4)`` returns a ``gymnasium.vector.VectorEnv`` whose

    obs, info = env.reset(seed=None, options=None)
    obs, reward, cost, terminated, truncated, info = env.step(actions)

follow Safety-Gymnasium's vector envs (the six-tuple with the cost after the reward): NumPy
outputs, one row per env, float32 observations, rewards and costs, bool ``terminated`` and
``truncated`` (``truncated`` only for the time limit). Finished envs restart in the same step,
as in Gymnasium 0.28's vector envs: ``obs`` is already the new episode's first observation, and
``info["final_observation"]`` (an object array, ``None`` where no episode ended) with its mask
``info["_final_observation"]`` hold the observations the episodes ended in; ``info`` is empty
when none ended. Spaces are Box spaces with float32 dtypes: actions in [-1, 1] (the jaxsafe
convention), observations unbounded.

Underneath is ``envs.make(env_id, num_envs=N, auto_reset=True)`` with jitted ``reset`` and
``step``, so other tooling (Gymnasium wrappers, Safety-Gymnasium or OmniSafe style training
loops) can run the JAX-native tasks. Seeding follows Gymnasium: ``reset(seed=s)`` seeds the env's
``np_random``, from which every reset draws the JAX key, so equal seeds give identical numbers.
Gymnasium is a dependency of the extra ``jaxsafe[safety-gymnasium]``.
"""

from __future__ import annotations

import contextlib
import functools
import io
from typing import Any, ClassVar

import numpy as np

INSTALL_HINT = "pip install jaxsafe[safety-gymnasium] (or make install)"


def to_gymnasium(env_id: str, num_envs: int = 1, **make_kwargs: Any):
  """A jaxsafe task as a Gymnasium vector env of ``num_envs`` copies (see the module doc).

  Args:
    env_id: any id ``envs.make`` accepts.
    num_envs: parallel envs (rows of every output).
    **make_kwargs: passed to ``envs.make`` (``episode_length``, task arguments).

  Raises:
    ImportError: Gymnasium is not installed (it comes with ``jaxsafe[safety-gymnasium]``).
  """
  return _vector_env_class()(env_id, num_envs, **make_kwargs)


@functools.cache
def _vector_env_class():
  """Defines ``JaxVectorEnv`` on first use, so importing jaxsafe.envs does not need Gymnasium."""
  try:
    # Quietly: importing Gymnasium loads gymnasium-robotics (an entry-point plugin), which
    # prints a notice about its Adroit hand tasks on stderr.
    with contextlib.redirect_stderr(io.StringIO()):
      import gymnasium
  except ImportError as err:
    raise ImportError(f"envs.to_gymnasium needs Gymnasium: {INSTALL_HINT}") from err
  import jax

  from jaxsafe.envs.registry import make

  class JaxVectorEnv(gymnasium.vector.VectorEnv):
    """A jaxsafe task as a Gymnasium vector env with the six-tuple ``step`` (module doc)."""

    metadata: ClassVar[dict] = {"render_modes": []}
    render_mode = None

    def __init__(self, env_id: str, num_envs: int = 1, **make_kwargs: Any):
      if int(num_envs) < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
      self.env = make(env_id, num_envs=int(num_envs), auto_reset=True, **make_kwargs)
      self.env_id = env_id
      self.cost_limit = float(self.env.cost_limit)
      self.episode_length = int(self.env.episode_length)
      # Set directly rather than through VectorEnv.__init__, whose signature differs between
      # Gymnasium 0.28 (the extra's) and 1.x.
      self.num_envs = int(num_envs)
      self.is_vector_env = True
      self.closed = False
      self.single_observation_space = gymnasium.spaces.Box(
          -np.inf, np.inf, (self.env.observation_size,), np.float32)
      self.single_action_space = gymnasium.spaces.Box(-1.0, 1.0, (self.env.action_size,),
                                                      np.float32)
      self.observation_space = gymnasium.vector.utils.batch_space(
          self.single_observation_space, self.num_envs)
      self.action_space = gymnasium.vector.utils.batch_space(self.single_action_space,
                                                             self.num_envs)
      self._reset = jax.jit(self.env.reset)
      self._step = jax.jit(self.env.step)
      self._state = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
      """Starts new episodes in all envs; returns ``(obs, info)`` (``options`` are unused)."""
      if seed is not None and not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int or None (one seed for all envs), got {seed!r}")
      gymnasium.Env.reset(self, seed=None if seed is None else int(seed))
      key = jax.random.PRNGKey(int(self.np_random.integers(0, 2**31 - 1)))
      self._state = self._reset(key)
      return np.asarray(self._state.obs, np.float32), {}

    def step(self, actions):
      """Steps all envs; returns ``(obs, reward, cost, terminated, truncated, info)``."""
      if self._state is None:
        raise RuntimeError("call reset() before step()")
      actions = np.asarray(actions, np.float32).reshape(self.action_space.shape)
      self._state = self._step(self._state, actions)
      s = jax.device_get(self._state)
      done = np.asarray(s.done) > 0.5
      truncated = np.asarray(s.info["truncation"]) > 0.5
      info: dict[str, Any] = {}
      if done.any():
        final = np.empty(self.num_envs, dtype=object)
        for i in np.flatnonzero(done):
          final[i] = np.asarray(s.info["final_obs"][i], np.float32)
        info["final_observation"], info["_final_observation"] = final, done
      return (np.asarray(s.obs, np.float32), np.asarray(s.reward, np.float32),
              np.asarray(s.cost, np.float32), done & ~truncated, truncated, info)

    def close_extras(self, **kwargs):
      self._state = None
      close = getattr(self.env, "close", None)  # the Safety-Gymnasium bridge holds host envs
      if callable(close):
        close()

    def close(self, **kwargs):
      """Releases the env; further calls are invalid."""
      if not self.closed:
        self.close_extras(**kwargs)
        self.closed = True

    def __repr__(self) -> str:
      return f"JaxVectorEnv({self.env_id!r}, num_envs={self.num_envs})"

    __str__ = __repr__

  return JaxVectorEnv


__all__ = ["to_gymnasium"]
