"""Safety-Gymnasium's Car, identified from its MuJoCo trajectories (issue 16, the Car).

The Car (``safety_gymnasium/assets/xmls/car.xml``) is a free box on two driven wheels and a
caster ball, stepped by MuJoCo with 10 substeps of 4 ms per env step (0.04 s), with contacts
(condim 6) at the wheels and the ball. Its planar motion is not a closed-form rigid body like the
Point's; the MJX route fails on its cylinder-box contacts and is slow on CPU (issue 16). So this
is the other route the issue names: our own model, calibrated against the real robot through the
bridge by ``benchmarks/car_identification.py`` (10,000 transitions of SafetyCarGoal0-v0 under
random held actions; the constants below are its output).

Dynamics, per env step, in the car's frame: forward speed v (along the body's -y axis), sideways
speed l (along the body's x axis) and yaw rate w. With the wheel drives s = clip(a / 0.02, -1, 1)
(the motors saturate at 0.02 N m, so |a| >= 0.02 is full torque), and the car's mirror symmetry
(under left <-> right, v and sL + sR stay and w, l, sR - sL change sign):

    v' = 0.7813 v + 0.0724 (sL + sR)                        R^2 0.989, rmse 0.032 m/s
    w' = 0.4181 w + 1.2469 l - 0.3863 (sR - sL)             R^2 0.961, rmse 0.167 rad/s
    l' = -0.0041 w + 0.7424 l - 0.0121 (sR - sL)            R^2 0.838, rmse 0.019 m/s

(top speed 0.0724 * 2 / (1 - 0.7813) = 0.66 m/s), then the trapezoid rule for the heading and
the position (half the error of an Euler step on the same data).

Sensors: the velocimeter's x, y, the gyro's z and the magnetometer's x, y are exact functions of
the planar state. The rear ball's angular velocity (``ballangvel_rear``, in the ball's frame)
is 0.487 times that of rolling without slip (the ball slips; residual rmse 1.1 rad/s against a
std of 2.2), and its orientation in the car (``ballquat_rear``, a 3 x 3 rotation) integrates it.
What the planar model cannot know, the accelerometer (the car bounces on its contacts: 1.6, 2.4
and 3.4 m/s^2 std about (0, 0, 9.81)), the gyro's x, y, the velocimeter's and magnetometer's z and
the ball's slip, is drawn as Gaussian noise with the measured std. A policy trained without it
would meet readings on the real task its observation normaliser has never seen.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

DT = 0.04
TORQUE_LIMIT = 0.02
#: v' = SPEED[0] v + SPEED[1] (sL + sR)
SPEED = (0.7813, 0.0724)
#: w' = YAW_RATE . (w, l, sR - sL); l' = SIDE_SPEED . (w, l, sR - sL)
YAW_RATE = (0.4181, 1.2469, -0.3863)
SIDE_SPEED = (-0.0041, 0.7424, -0.0121)
#: the caster ball: radius, distance ahead of the car's centre, rolling fraction
BALL_RADIUS = 0.05
BALL_ARM = 0.1
BALL_ROLLING = 0.487
#: std of the unmodelled readings, in sensor order: accelerometer x, y, z; velocimeter z;
#: gyro x, y; magnetometer z; ballangvel x, y, z
NOISE_STD = (1.5995, 2.3723, 3.4265, 0.0221, 0.2093, 0.2608, 0.0018, 1.108, 1.108, 1.108)


def forward_axis(heading: jax.Array) -> jax.Array:
  """The car's forward direction in the world (the body's -y axis; ``heading`` is its x axis)."""
  return jnp.stack([jnp.sin(heading), -jnp.cos(heading)])


def side_axis(heading: jax.Array) -> jax.Array:
  return jnp.stack([jnp.cos(heading), jnp.sin(heading)])


def planar_step(pos: jax.Array, heading: jax.Array, velocity: jax.Array, yaw_rate: jax.Array,
                action: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """One env step of the planar state (world position, heading, world velocity, yaw rate)."""
  left, right = jnp.clip(action / TORQUE_LIMIT, -1.0, 1.0)
  speed, side = velocity @ forward_axis(heading), velocity @ side_axis(heading)
  new_speed = SPEED[0] * speed + SPEED[1] * (left + right)
  odd = jnp.stack([yaw_rate, side, right - left])
  new_yaw_rate = jnp.asarray(YAW_RATE, odd.dtype) @ odd
  new_side = jnp.asarray(SIDE_SPEED, odd.dtype) @ odd
  new_heading = heading + 0.5 * DT * (yaw_rate + new_yaw_rate)
  new_velocity = new_speed * forward_axis(new_heading) + new_side * side_axis(new_heading)
  new_pos = pos + 0.5 * DT * (velocity + new_velocity)
  return new_pos, new_heading, new_velocity, new_yaw_rate


def car_rotation(heading: jax.Array) -> jax.Array:
  c, s, zero, one = jnp.cos(heading), jnp.sin(heading), jnp.zeros_like(heading), jnp.ones_like(heading)
  return jnp.stack([jnp.stack([c, -s, zero]), jnp.stack([s, c, zero]), jnp.stack([zero, zero, one])])


def ball_spin(heading: jax.Array, velocity: jax.Array, yaw_rate: jax.Array,
              ball: jax.Array) -> jax.Array:
  """The caster ball's angular velocity relative to the car, in the ball's frame (3,).

  Rolling without slip on the floor at the ball's centre velocity c (the car's velocity plus
  w x the arm to the ball) is the world angular velocity (-c_y, c_x, 0) / r; relative to the car
  that is minus w about z. ``BALL_ROLLING`` scales it to what the real, slipping ball does.
  """
  arm = BALL_ARM * forward_axis(heading)
  centre = velocity + yaw_rate * jnp.stack([-arm[1], arm[0]])
  relative = jnp.stack([-centre[1] / BALL_RADIUS, centre[0] / BALL_RADIUS, -yaw_rate])
  return BALL_ROLLING * (car_rotation(heading) @ ball).T @ relative


def rotate(ball: jax.Array, spin: jax.Array, dt: float = DT) -> jax.Array:
  """The ball's rotation after turning at the body-frame rate ``spin`` for ``dt`` (Rodrigues)."""
  angle = jnp.sqrt(jnp.sum(spin**2) + 1e-24) * dt
  axis = spin * dt / angle
  k = jnp.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]],
                dtype=ball.dtype)
  turn = jnp.eye(3, dtype=ball.dtype) + jnp.sin(angle) * k + (1.0 - jnp.cos(angle)) * (k @ k)
  return ball @ turn
