"""Planar robots of the navigation suite: ``point`` and ``car``, in plain differentiable JAX.

Both robots are rigid bodies on the floor plane with a heading h, a forward speed v along the
heading and a yaw rate w; neither slides sideways. One environment step is ``dt = 0.02`` s, as in
Safety-Gym (ten MuJoCo substeps of 0.002 s), integrated with one semi-implicit Euler step:
velocities first, then the pose with the new velocities.

point (Safety-Gym's Point: a forward motor and a velocity-controlled turning joint):
    a = (forward, turn) in [-1, 1]^2
    v' = v + dt (FORCE a_0 - DRAG v)                     top speed FORCE / DRAG = 1 m/s
    w' = w + dt TURN_GAIN (W_MAX a_1 - w)                yaw rate follows a_1 W_MAX, W_MAX = 3 rad/s

car (Safety-Gym's Car: two independently driven wheels, a differential drive):
    a = (left wheel, right wheel) in [-1, 1]^2
    v' = v + dt (FORCE (a_0 + a_1) / 2 - DRAG v)          both wheels forward: straight ahead
    w' = w + dt (TORQUE (a_1 - a_0) / 2 - SPIN_DRAG w)    opposite wheels: turn on the spot

so the car must coordinate its two wheels to go straight and to turn, which is what makes it
harder to control than the point, as in Safety-Gym. The constants are ours (Safety-Gym's are
MuJoCo actuator gears and masses); they give both robots a top speed of 1 m/s and a top yaw rate
of 3 rad/s, so a 3 m arena is crossed in about 3 s (150 steps). See docs/envs.md.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import struct

DT = 0.02


@struct.dataclass
class Pose:
  """A robot's state: position (2,), heading h (rad), speed v along h and yaw rate w."""

  pos: jax.Array
  heading: jax.Array
  speed: jax.Array
  yaw_rate: jax.Array


@dataclasses.dataclass(frozen=True)
class Robot:
  """A planar robot: its name, body radius (m) and velocity update (pose, action) -> (v', w').

  ``forward_angle``: the direction it drives, relative to ``heading`` (0 for ours).
  """

  name: str
  radius: float
  forward_angle: float = 0.0

  def velocities(self, pose: Pose, action: jax.Array) -> tuple[jax.Array, jax.Array]:
    raise NotImplementedError

  def step(self, pose: Pose, action: jax.Array) -> Pose:
    """One semi-implicit Euler step of ``DT`` seconds; ``action`` is clipped to [-1, 1]."""
    speed, yaw_rate = self.velocities(pose, jnp.clip(action, -1.0, 1.0))
    heading = pose.heading + DT * yaw_rate
    direction = jnp.stack([jnp.cos(heading), jnp.sin(heading)])
    return Pose(pos=pose.pos + DT * speed * direction, heading=heading, speed=speed,
                yaw_rate=yaw_rate)


@dataclasses.dataclass(frozen=True)
class Point(Robot):
  """Forward force and a velocity-controlled turn (Safety-Gym's Point)."""

  name: str = "point"
  radius: float = 0.1
  force: float = 4.0
  drag: float = 4.0
  max_yaw_rate: float = 3.0
  turn_gain: float = 10.0

  def velocities(self, pose, action):
    speed = pose.speed + DT * (self.force * action[0] - self.drag * pose.speed)
    yaw_rate = pose.yaw_rate + DT * self.turn_gain * (self.max_yaw_rate * action[1] - pose.yaw_rate)
    return speed, yaw_rate


@dataclasses.dataclass(frozen=True)
class Car(Robot):
  """Two independently driven wheels, (left, right) (Safety-Gym's Car)."""

  name: str = "car"
  radius: float = 0.15
  force: float = 3.0
  drag: float = 3.0
  torque: float = 12.0
  spin_drag: float = 4.0

  def velocities(self, pose, action):
    left, right = action[0], action[1]
    speed = pose.speed + DT * (self.force * 0.5 * (left + right) - self.drag * pose.speed)
    yaw_rate = pose.yaw_rate + DT * (self.torque * 0.5 * (right - left)
                                     - self.spin_drag * pose.yaw_rate)
    return speed, yaw_rate


ROBOTS: dict[str, Robot] = {"point": Point(), "car": Car()}
