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


def mujoco_step(qpos: jax.Array, qvel: jax.Array, ctrl: jax.Array) -> tuple[jax.Array, jax.Array]:
  """One 2 ms MuJoCo Euler step of the Point (unbatched: qpos, qvel of shape (3,))."""
  sin, cos = jnp.sin(qpos[2]), jnp.cos(qpos[2])
  mc = MASS * COM
  mass_matrix = jnp.array([[MASS, 0.0, -mc * sin],
                           [0.0, MASS, mc * cos],
                           [-mc * sin, mc * cos, INERTIA_Z + MASS * COM**2]])
  bias = jnp.array([-mc * cos, -mc * sin, 0.0]) * qvel[2]**2  # centripetal force of the offset COM
  damping = jnp.asarray(DAMPING, qvel.dtype)
  force = actuator_forces(qpos, qvel, ctrl) - damping * qvel - bias
  qacc = jnp.linalg.solve(mass_matrix + TIMESTEP * jnp.diag(damping), force)
  qvel = qvel + TIMESTEP * qacc
  return qpos + TIMESTEP * qvel, qvel


def step(qpos: jax.Array, qvel: jax.Array, ctrl: jax.Array) -> tuple[jax.Array, jax.Array]:
  """One env step (``FRAME_SKIP`` MuJoCo steps at constant ``ctrl``)."""
  return jax.lax.fori_loop(0, FRAME_SKIP, lambda _, s: mujoco_step(*s, ctrl), (qpos, qvel))
