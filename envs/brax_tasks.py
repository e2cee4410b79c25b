"""The differentiable safe-RL tasks of the CGPO paper (Dai et al. 2024, App. E and App. F.4.1).

Each task wraps one Brax environment and adds a per-step cost c_t to Brax's own reward and
dynamics. The cost is computed, like the reward, from the pipeline state *after* the step. A
task holds the Brax env (``.brax_env``, e.g. to hand to Brax's own PPO trainer) but keeps
jaxsafe's ``State``: ``sim_state`` is the Brax pipeline state, and ``reward``, ``cost``, ``done``
refer to the step that led to it. ``done`` is the task's own termination only (CartPole's pole
falling, Ant's torso leaving its healthy height); the horizon T is applied by ``TimeLimit``.

==========================  =========  ====  =====  ==================  ==================
id                          paper      obs   T      b (cost limit)      cost c_t
==========================  =========  ====  =====  ==================  ==================
cartpole-position           App. E.1   4     300    -50                 -x_cart^2
reacher-position            App. E.2   11    300    400                 |tip - target|^2
halfcheetah-velocity        App. E.3   18    200    400                 |v_torso|
ant-velocity                App. E.4   27    300    1000                |v_torso|
swimmer-velocity            F.4.1      8     300    150                 |v_torso|, no grad
==========================  =========  ====  =====  ==================  ==================

The Brax physics pipeline of each task is chosen as the fastest on CPU among those whose
gradients are finite and agree with finite differences; ``benchmarks/brax_pipelines.py``
measures it and ``docs/envs.md`` records the numbers: 'spring' for the four differentiable
tasks, 'generalized' (its only pipeline) for the swimmer. ``backend=`` overrides the choice. Brax
sets the timestep and frame skip per pipeline, so the control period dt can differ between
pipelines of the same task (see ``docs/envs.md``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from brax import envs as brax_envs
from brax import math as brax_math
from brax.envs import base as brax_base

from jaxsafe.envs.core import Env, State
from jaxsafe.envs.wrappers import BlockGradient


def _brax_fluid_clip_compat() -> None:
  """Lets brax 0.14.2's fluid model (the swimmer's drag) run on JAX 0.11 and later.

  ``brax.fluid`` calls ``jnp.clip(x, a_min=1e-12)``; JAX 0.11 removed the ``a_min``/``a_max``
  keywords (deprecated since JAX 0.4.27 in favour of ``min``/``max``). Where they are gone,
  ``brax.fluid``'s module-level ``jp`` becomes a view of ``jax.numpy`` whose ``clip`` renames them;
  nothing else changes and no installed file is edited. A no-op on JAX 0.9 (Python 3.11).
  """
  import inspect
  import types

  from brax import fluid
  if "a_min" in inspect.signature(jnp.clip).parameters or not hasattr(fluid, "jp"):
    return

  def clip(arr=None, /, min=None, max=None, *, a_min=None, a_max=None):
    return jnp.clip(arr, min=a_min if min is None else min, max=a_max if max is None else max)

  compat = types.ModuleType("jax.numpy", "jax.numpy with clip(a_min=, a_max=) (brax.fluid)")
  compat.__dict__.update(vars(jnp))
  compat.clip = clip
  fluid.jp = compat


_brax_fluid_clip_compat()


def torso_speed(pipeline_state: Any) -> jax.Array:
  """|v_torso|: Euclidean norm of the world-frame linear velocity of link 0 (the torso)."""
  return brax_math.safe_norm(pipeline_state.xd.vel[0])


class BraxTask(Env):
  """A CMDP task around a Brax ``PipelineEnv``; subclasses define the cost.

  Args:
    backend: Brax physics pipeline ('generalized', 'positional', 'spring' or 'mjx'); ``None``
      picks the task's default (``default_backend``).
    **brax_kwargs: passed to the Brax environment's constructor (e.g. ``ctrl_cost_weight``).
  """

  #: registered name of the Brax environment.
  brax_name: str
  #: pipeline used when ``backend`` is None (measured in docs/envs.md).
  default_backend: str = "generalized"
  #: Brax constructor kwargs that differ from Brax's defaults (overridable by the caller).
  brax_defaults: ClassVar[dict[str, Any]] = {}
  differentiable = True

  def __init__(self, backend: str | None = None, **brax_kwargs):
    self.backend = backend or self.default_backend
    brax_kwargs = {**self.brax_defaults, **brax_kwargs}
    self.brax_env = brax_envs.get_environment(self.brax_name, backend=self.backend, **brax_kwargs)
    self._observation_size: int | None = None

  def cost(self, pipeline_state: Any, obs: jax.Array) -> jax.Array:
    """c_t of the state reached by a step (pipeline state and observation after the step)."""
    raise NotImplementedError

  @property
  def observation_size(self) -> int:
    if self._observation_size is None:
      # Traced, not compiled or run: the obs length follows from the system's sizes.
      shape = jax.eval_shape(self.brax_env.reset, jax.random.PRNGKey(0)).obs.shape
      self._observation_size = int(shape[-1])
    return self._observation_size

  @property
  def action_size(self) -> int:
    return self.brax_env.action_size

  def reset(self, key: jax.Array) -> State:
    brax_state = self.brax_env.reset(key)
    zero = jnp.zeros(())
    return State(sim_state=brax_state.pipeline_state, obs=brax_state.obs, reward=zero,
                 cost=zero, done=zero, metrics=dict(brax_state.metrics), info={})

  def step(self, state: State, action: jax.Array) -> State:
    zero = jnp.zeros(())
    # Brax keeps the incoming ``done`` unless the env sets it: start from 0 so that only the
    # task's own termination (not TimeLimit's) is reported. Brax updates metrics in place.
    brax_state = brax_base.State(pipeline_state=state.sim_state, obs=state.obs, reward=zero,
                                 done=zero, metrics=dict(state.metrics), info={})
    brax_state = self.brax_env.step(brax_state, action)
    pipeline_state = brax_state.pipeline_state
    return state.replace(
        sim_state=pipeline_state,
        obs=brax_state.obs,
        reward=jnp.asarray(brax_state.reward, dtype=brax_state.obs.dtype),
        cost=self.cost(pipeline_state, brax_state.obs).astype(brax_state.obs.dtype),
        done=jnp.asarray(brax_state.done, dtype=brax_state.obs.dtype),
        metrics=dict(brax_state.metrics),
    )


class CartpolePosition(BraxTask):
  """Position-constrained CartPole (CGPO App. E.1), Brax ``inverted_pendulum``.

  An action a in [-1, 1] is mapped by Brax to the actuator's ctrlrange [-3, 3] (gear 100).
  Reward r_t = 1 per step. Cost c_t = -x_cart^2 with x_cart = q[0], the cart's slide position.
  T = 300, b = -50: the episode cost sum_t -x_cart^2 <= -50 asks the cart to stay *away* from
  the origin on average (mean x_cart^2 >= 1/6), against the pole-balancing objective. Brax's
  termination is kept: the episode ends (done = 1, not a truncation) when |pole angle| > 0.2.
  Observation (4,): cart position, pole angle, and their velocities.
  """

  brax_name = "inverted_pendulum"
  default_backend = "spring"
  episode_length = 300
  cost_limit = -50.0

  def cost(self, pipeline_state, obs):
    return -jnp.square(pipeline_state.q[0])


class ReacherPosition(BraxTask):
  """Position-constrained Reacher (CGPO App. E.2), Brax ``reacher``.

  Reward as Brax's: r_t = -|tip - target| - |a|^2. Cost c_t = |tip - target|^2, the squared norm
  of the fingertip-minus-target 3-vector that Brax puts in the last 3 entries of the
  observation: the constraint pushes the fingertip away from the target the reward pulls it to.
  T = 300, b = 400. Observation (11,).

  Caveat: with Brax's arm (links 0.1 + 0.11) and targets drawn within radius 0.2, the distance
  is at most 0.41 and the per-step cost at most about 0.17 (below 0.2), so an episode's cost
  stays below ~51 and the paper's limit b = 400 can never bind. We keep the paper's value as the
  default; pass a smaller ``cost_limit`` to an agent to make the constraint active.
  """

  brax_name = "reacher"
  default_backend = "spring"
  episode_length = 300
  cost_limit = 400.0

  def cost(self, pipeline_state, obs):
    return jnp.sum(jnp.square(obs[-3:]))


class HalfcheetahVelocity(BraxTask):
  """Velocity-constrained HalfCheetah (CGPO App. E.3), Brax ``halfcheetah``.

  Reward as Brax's: r_t = v_x - 0.1 |a|^2 (forward velocity of the torso minus a control cost).
  Cost c_t = |v_torso|, the Euclidean norm of the torso's world-frame linear velocity
  (``pipeline_state.xd.vel[0]``; it includes the vertical component). T = 200, b = 400.
  Observation (18,) as in the paper: all 9 joint positions (root x, z, pitch and the 6 leg
  joints), then the 9 joint velocities. Brax's default drops the root x and gives 17; we pass
  ``exclude_current_positions_from_observation=False`` to match the paper (override it to get
  Brax's 17).
  """

  brax_name = "halfcheetah"
  default_backend = "spring"
  brax_defaults: ClassVar[dict[str, Any]] = {"exclude_current_positions_from_observation": False}
  episode_length = 200
  cost_limit = 400.0

  def cost(self, pipeline_state, obs):
    return torso_speed(pipeline_state)


class AntVelocity(BraxTask):
  """Velocity-constrained Ant (CGPO App. E.4), Brax ``ant``.

  Reward as Brax's: r_t = v_x + 1 (healthy) - 0.5 |a|^2. Cost c_t = |v_torso|, the norm of the
  torso's world-frame linear velocity. T = 300, b = 1000. Brax's termination is kept: the
  episode ends when the torso height leaves (0.2, 1.0). Observation (27,): Brax's ant with
  ``exclude_current_positions_from_observation=True`` and no contact forces, i.e. q[2:] (13)
  and qd (14).
  """

  brax_name = "ant"
  default_backend = "spring"
  episode_length = 300
  cost_limit = 1000.0

  def cost(self, pipeline_state, obs):
    return torso_speed(pipeline_state)


class SwimmerVelocity(BraxTask):
  """Velocity-constrained, non-differentiable Swimmer (CGPO App. F.4.1), Brax ``swimmer``.

  Reward as Brax's: r_t = v_x - 1e-4 |a|^2. Cost c_t = |v_torso|. T = 300, b = 150.
  Observation (8,). The paper's swimmer is non-differentiable by design (the ablation of
  model-based CGPO); the registered task ``swimmer-velocity`` is this class wrapped in
  ``BlockGradient``, so gradients through ``step`` are exactly zero. Brax's swimmer supports only
  the 'generalized' pipeline.
  """

  brax_name = "swimmer"
  episode_length = 300
  cost_limit = 150.0
  differentiable = False

  def cost(self, pipeline_state, obs):
    return torso_speed(pipeline_state)


def _swimmer(**kw) -> Env:
  return BlockGradient(SwimmerVelocity(**kw))


TASKS: dict[str, Callable[..., Env]] = {
    "cartpole-position": CartpolePosition,
    "reacher-position": ReacherPosition,
    "halfcheetah-velocity": HalfcheetahVelocity,
    "ant-velocity": AntVelocity,
    "swimmer-velocity": _swimmer,
}
