"""Safety-Gymnasium's Point robot, stepped exactly as MuJoCo steps it, in JAX (issue 16, first part).

Safety-Gymnasium's Point (``safety_gymnasium/assets/xmls/point.xml``) is a body at height 0.1
with three joints, slide x, slide y and hinge z, so its generalized coordinates are q = (x, y,
theta). Its geoms, a sphere of radius 0.1 and a box of half-size 0.05 centred 0.1 ahead, both of
density 1, put the centre of mass c = 0.0193 ahead of the joint axis. Two actuators:

- ``x``: a motor on the body's site with gear 0.3 along the body's x axis. Its force
  clip(u_1, -1, 1) is clamped to the force range [-0.05, 0.05], so the push saturates from
  |u_1| = 0.05 on: the forward action is nearly bang-bang.
- ``z``: a velocity servo on the hinge with gear 0.3 and kv = 1: force u_2 - 0.3 theta_dot,
  clamped to [-0.05, 0.05]; generalized torque 0.3 times that.

Joint damping is 0.01, 0.01 and 0.005; the floor contact exerts no force that moves these joints
(the body has no z joint; measured: the same trajectories with and without the floor).

``step`` advances one env step: 10 MuJoCo steps of 2 ms (Safety-Gymnasium's frame skip), each
MuJoCo's semi-implicit Euler step with implicit joint damping,

    (M(q) + h B) qacc = tau_actuator(q, qdot, u) - B qdot - C(q, qdot),    qdot' = qdot + h qacc,
    q' = q + h qdot',

where M(q) is the mass matrix of the offset centre of mass and C its centripetal bias. With
float64 it equals MuJoCo (and MJX) to rounding; see tests/test_mujoco_point.py. The yaw servo's
time constant, I / (kv gear^2) = 2.84e-5 / 0.09 = 0.3 ms about the hinge, is below the 2 ms step,
so the servo saturates and chatters on its clamp; trajectories under large yaw actions are
therefore chaotic, and agreement with MuJoCo holds for some tens of env steps before rounding
differences grow.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

#: MuJoCo's time step and Safety-Gymnasium's frame skip: an env step is 0.02 s.
TIMESTEP = 0.002
FRAME_SKIP = 10
GEAR = 0.3
FORCE_LIMIT = 0.05
DAMPING = (0.01, 0.01, 0.005)

_SPHERE_MASS = 4.0 / 3.0 * np.pi * 0.1**3  # radius 0.1, density 1
_BOX_MASS = 0.1**3  # half-size 0.05, density 1, centred at x = 0.1
MASS = _SPHERE_MASS + _BOX_MASS
#: the centre of mass ahead of the hinge axis, in the body frame
COM = _BOX_MASS * 0.1 / MASS
#: the moment of inertia about the vertical axis through the centre of mass
INERTIA_Z = (0.4 * _SPHERE_MASS * 0.1**2 + _BOX_MASS * (0.1**2 + 0.1**2) / 12.0
             + _SPHERE_MASS * COM**2 + _BOX_MASS * (0.1 - COM)**2)


def actuator_forces(qpos: jax.Array, qvel: jax.Array, ctrl: jax.Array) -> jax.Array:
  """Generalized forces of the two actuators for controls ``ctrl`` in [-1, 1]^2."""
  ctrl = jnp.clip(ctrl, -1.0, 1.0)
  push = jnp.clip(ctrl[..., 0], -FORCE_LIMIT, FORCE_LIMIT) * GEAR
  servo = jnp.clip(ctrl[..., 1] - GEAR * qvel[..., 2], -FORCE_LIMIT, FORCE_LIMIT) * GEAR
  theta = qpos[..., 2]
  return jnp.stack([push * jnp.cos(theta), push * jnp.sin(theta), servo], -1)


def _force(qpos: jax.Array, qvel: jax.Array, ctrl: jax.Array) -> jax.Array:
  """The smooth generalized force tau(q, qdot, u) - B qdot - C(q, qdot) (unbatched)."""
  mc_w2 = MASS * COM * qvel[2]**2  # centripetal force of the offset COM
  bias = jnp.stack([-mc_w2 * jnp.cos(qpos[2]), -mc_w2 * jnp.sin(qpos[2]), jnp.zeros_like(mc_w2)])
  return actuator_forces(qpos, qvel, ctrl) - jnp.asarray(DAMPING, qvel.dtype) * qvel - bias


def _solve(theta: jax.Array, force: jax.Array, extra: tuple[float, float, float]) -> jax.Array:
  """(M(q) + diag(extra))^-1 force for the Point's mass matrix, in closed form.

  M(q) = [[m, 0, -m c sin], [0, m, m c cos], [-m c sin, m c cos, I + m c^2]] (c = COM). The
  first two rows give x_1 and x_2 in terms of x_3; the third row's Schur complement gives x_3.
  Three divisions instead of a batched 3 x 3 LU, which is slow on CPU.
  """
  sin, cos = jnp.sin(theta), jnp.cos(theta)
  a = MASS * COM
  m1, m2, inertia = MASS + extra[0], MASS + extra[1], INERTIA_Z + MASS * COM**2 + extra[2]
  x3 = ((force[2] + a * sin * force[0] / m1 - a * cos * force[1] / m2)
        / (inertia - a * a * (sin * sin / m1 + cos * cos / m2)))
  return jnp.stack([(force[0] + a * sin * x3) / m1, (force[1] - a * cos * x3) / m2, x3])


def acceleration(qpos: jax.Array, qvel: jax.Array, ctrl: jax.Array) -> jax.Array:
  """MuJoCo's ``qacc`` after ``mj_forward``: M^-1 (tau - B qdot - C), damping explicit.

  This is what the accelerometer reads (the implicit damping of the Euler step stays inside it).
  """
  return _solve(qpos[2], _force(qpos, qvel, ctrl), (0.0, 0.0, 0.0))


def mujoco_step(qpos: jax.Array, qvel: jax.Array, ctrl: jax.Array) -> tuple[jax.Array, jax.Array]:
  """One 2 ms MuJoCo Euler step of the Point (unbatched: qpos, qvel of shape (3,))."""
  implicit_damping = tuple(TIMESTEP * d for d in DAMPING)
  qacc = _solve(qpos[2], _force(qpos, qvel, ctrl), implicit_damping)
  qvel = qvel + TIMESTEP * qacc
  return qpos + TIMESTEP * qvel, qvel


def step(qpos: jax.Array, qvel: jax.Array, ctrl: jax.Array) -> tuple[jax.Array, jax.Array]:
  """One env step (``FRAME_SKIP`` MuJoCo steps at constant ``ctrl``)."""
  return jax.lax.fori_loop(0, FRAME_SKIP, lambda _, s: mujoco_step(*s, ctrl), (qpos, qvel))
