"""Safety-Gymnasium's navigation tasks in JAX, step for step: ``dynamics="safety-gymnasium"``.

The default navigation tasks (``tasks.py``) are a fast approximation: our own planar robots,
sensors and layouts. The variants here follow Safety-Gymnasium 1.0.0 (Ji et al. 2023) closely
enough that a policy trained in JAX runs on the real task (``sg/SafetyPointGoal1-v0``) and gets
what it trained for; docs/navigation.md compares the two and the bridge. So far: the Point and
the Car in Goal level 1 (``FaithfulGoal``, below) and Circle level 1 (``FaithfulCircle``, its
own docstring). The Point is MuJoCo's to rounding; the Car is a model identified from MuJoCo's
trajectories (``CalibratedCar``, ``calibrated_car.py``): its planar motion to the fits'
residuals, its 24 sensor readings in Safety-Gymnasium's layout with measured noise where the
planar state does not determine them. What is reproduced for Goal (the Point):

- **Robot**: the Point's MuJoCo dynamics (``mujoco_point.py``: mass matrix, actuator clamps, the
  yaw velocity servo, implicit damping, 10 Euler substeps of 2 ms), in the world frame: the
  state is (x, y, heading) and their rates. The robot's pose in the world is the slide joints
  rotated by the initial heading plus the start point, which is the same motion (the dynamics
  are invariant to a rotation of the plane).
- **Sensors** (``builder.obs``, flattened in the order of ``obs_space_dict``): accelerometer,
  velocimeter, gyro and magnetometer of the robot's site (3 each, in the robot's frame; the
  accelerometer reads the acceleration ``mj_forward`` gives for the last action, minus gravity,
  so its z is 9.81), then a 16-bin pseudo-LiDAR of the goal, the hazards and the vases with
  Safety-Gymnasium's defaults: linear fall-off ``max(0, 3 - d) / 3`` and bin aliasing.
  ``SafetyPointGoal1-v0`` observes these 60 numbers in this order.
- **Reward** (``GoalLevel0.calculate_reward``): d_{t-1} - d_t + 1 when d_t <= 0.3, after which a
  new goal is drawn; the distances are in the plane.
- **Cost** (``Hazards.cal_cost`` with ``constrain_indicator``): 1 when the robot's centre is
  inside a hazard (radius 0.2). Level 1's vase is not constrained. ``smooth_cost=True`` gives the
  cost Safety-Gymnasium computes before the indicator, the sum of penetrations 0.2 - d.
- **Layout** (``RandomGenerator.sample_layout``): the robot (keep-out 0.4), the goal (0.305),
  8 hazards (0.18) and 1 vase (0.15) are placed in this order, each uniformly in the square
  [-1.5, 1.5]^2 shrunk by its keep-out, rejecting a draw closer to a placed object than the sum
  of the two keep-outs; the robot's heading is uniform. A new goal is drawn the same way against
  the robot's current position and the other objects.

Rejection sampling becomes a fixed amount of work under ``jit``: each object draws
``CANDIDATES`` points at once and takes the first valid one, which has exactly the distribution
of Safety-Gymnasium's loop whenever one is valid. If none is, it takes the candidate farthest
from violating a keep-out, where Safety-Gymnasium would draw again (and, for a goal, end the
episode after 10,000 failures). That is rare: a new goal's acceptance rate is 9-25% (minimum and
median over 4,000 level-1 layouts), and over 40,000 layouts 2 new goals fell back, 2.7 mm and
0.5 mm inside a keep-out (with 128 candidates none; with 32, 8e-4 of them, but 1.3x faster).

Not reproduced (measured in docs/navigation.md): contacts. Safety-Gymnasium's vase is a light
free box that the robot pushes away; here the robot passes through it, so after a contact the
vase LiDAR differs. The robot does not touch anything else on level 1 (hazards and the goal do
not collide).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxsafe.envs.core import State
from jaxsafe.envs.navigation import calibrated_car, mujoco_point
from jaxsafe.envs.navigation.robots import Robot
from jaxsafe.envs.navigation.sensors import pseudo_lidar, safe_norm
from jaxsafe.envs.navigation.tasks import (
  CIRCLE_LIMIT,
  CIRCLE_RADIUS,
  GOAL_SIZE,
  HAZARD_SIZE,
  CircleTask,
  GoalTask,
  Level,
  NavState,
  _pick,
  _uniforms,
)

#: ``dynamics`` values of the navigation tasks: our fast approximation, or these variants.
DYNAMICS = ("fast", "safety-gymnasium")
#: Safety-Gymnasium's LiDAR range (``LidarConf.max_dist``): a reading is max(0, 3 - d) / 3.
LIDAR_MAX_DIST = 3.0
#: MuJoCo's default gravity (m/s^2, down) and magnetic field (``model.opt.magnetic``).
GRAVITY = 9.81
MAGNETIC_FIELD = (0.0, -0.5)
#: keep-out radii of the placement (``keepout`` of the agent and of each object)
AGENT_KEEPOUT = 0.4
GOAL_KEEPOUT = 0.305
HAZARD_KEEPOUT = 0.18
VASE_KEEPOUT = 0.15
#: Circle: the robot starts in [-0.8, 0.8]^2; reward scale and LiDAR range (``CircleLevel0``)
START_EXTENT = 0.8
CIRCLE_REWARD_FACTOR = 0.1
CIRCLE_LIDAR_MAX_DIST = 6.0
#: points drawn at once for each placement (rejection sampling with a fixed budget)
CANDIDATES = 64


@struct.dataclass
class MujocoPose:
  """The Point's MuJoCo state in the world frame, and the last control (for the accelerometer).

  ``pos`` and ``heading`` are what every navigation task reads; ``velocity`` (2,) is the world
  velocity of the robot's origin and ``yaw_rate`` its heading's rate.
  """

  pos: jax.Array
  heading: jax.Array
  velocity: jax.Array
  yaw_rate: jax.Array
  ctrl: jax.Array

  @property
  def qpos(self) -> jax.Array:
    return jnp.concatenate([self.pos, self.heading[None]])

  @property
  def qvel(self) -> jax.Array:
    return jnp.concatenate([self.velocity, self.yaw_rate[None]])

  @classmethod
  def at_rest(cls, pos: jax.Array, heading: jax.Array) -> MujocoPose:
    zero = jnp.zeros((), pos.dtype)
    return cls(pos=pos, heading=heading, velocity=jnp.zeros(2, pos.dtype), yaw_rate=zero,
               ctrl=jnp.zeros(2, pos.dtype))


def _robot_frame(heading: jax.Array, v: jax.Array) -> jax.Array:
  """A world-frame planar vector (2,) in the frame of a robot whose x axis is at ``heading``."""
  c, s = jnp.cos(heading), jnp.sin(heading)
  return jnp.stack([c * v[0] + s * v[1], -s * v[0] + c * v[1]])


@dataclasses.dataclass(frozen=True)
class MujocoPoint(Robot):
  """Safety-Gymnasium's Point robot (``point.xml``), stepped as MuJoCo steps it."""

  name: str = "point"
  radius: float = 0.1

  def step(self, pose: MujocoPose, action: jax.Array) -> MujocoPose:
    ctrl = jnp.clip(action, -1.0, 1.0)
    qpos, qvel = mujoco_point.step(pose.qpos, pose.qvel, ctrl)
    return MujocoPose(pos=qpos[:2], heading=qpos[2], velocity=qvel[:2], yaw_rate=qvel[2],
                      ctrl=ctrl)

  def sensors(self, pose: MujocoPose) -> jax.Array:
    """Accelerometer, velocimeter, gyro, magnetometer of the robot's site: (12,), robot frame."""
    qacc = mujoco_point.acceleration(pose.qpos, pose.qvel, pose.ctrl)
    robot_frame = functools.partial(_robot_frame, pose.heading)
    zero, one = jnp.zeros(1, pose.pos.dtype), jnp.ones(1, pose.pos.dtype)
    return jnp.concatenate([
        robot_frame(qacc[:2]), GRAVITY * one,
        robot_frame(pose.velocity), zero,
        zero, zero, pose.yaw_rate[None],
        robot_frame(jnp.asarray(MAGNETIC_FIELD, pose.pos.dtype)), zero])


  def at_rest(self, pos: jax.Array, heading: jax.Array, key: jax.Array) -> MujocoPose:
    del key  # the Point's readings are exact
    return MujocoPose.at_rest(pos, heading)

  def pose_from_safety_gymnasium(self, sg_task) -> MujocoPose:
    """The pose of a live Safety-Gymnasium Point (host code)."""
    data, mat = sg_task.data, np.asarray(sg_task.agent.mat)
    heading = np.arctan2(mat[1, 0], mat[0, 0])
    # The slide joints move along the axes of the robot's start frame: rotate into the world.
    start = heading - data.qpos[2]
    rotation = np.array([[np.cos(start), -np.sin(start)], [np.sin(start), np.cos(start)]])
    return MujocoPose(pos=_as_jax(sg_task.agent.pos[:2]), heading=_as_jax(heading),
                      velocity=_as_jax(rotation @ data.qvel[:2]), yaw_rate=_as_jax(data.qvel[2]),
                      ctrl=_as_jax(data.ctrl[:2]))


@struct.dataclass
class CarPose:
  """The calibrated Car's state: the planar pose and velocities (world frame, as ``MujocoPose``),
  the caster ball's rotation in the car (3, 3) and its spin (3,, ball frame), this step's draw
  of the unmodelled readings (``calibrated_car.NOISE_STD``) and the key of the next draw."""

  pos: jax.Array
  heading: jax.Array
  velocity: jax.Array
  yaw_rate: jax.Array
  ball: jax.Array
  ball_spin: jax.Array
  noise: jax.Array
  rng: jax.Array


def _noise(key: jax.Array, dtype) -> jax.Array:
  std = jnp.asarray(calibrated_car.NOISE_STD, dtype)
  return std * jax.random.normal(key, std.shape, dtype)


@dataclasses.dataclass(frozen=True)
class CalibratedCar(Robot):
  """Safety-Gymnasium's Car (``car.xml``) as identified in ``calibrated_car.py``."""

  name: str = "car"
  radius: float = 0.1
  #: the car drives along its body's -y axis; ``heading`` is its x axis (the LiDAR's bin 0)
  forward_angle: float = -np.pi / 2

  def at_rest(self, pos: jax.Array, heading: jax.Array, key: jax.Array) -> CarPose:
    noise_key, rng = jax.random.split(key)
    zero = jnp.zeros((), pos.dtype)
    return CarPose(pos=pos, heading=heading, velocity=jnp.zeros(2, pos.dtype), yaw_rate=zero,
                   ball=jnp.eye(3, dtype=pos.dtype), ball_spin=jnp.zeros(3, pos.dtype),
                   noise=_noise(noise_key, pos.dtype), rng=rng)

  def step(self, pose: CarPose, action: jax.Array) -> CarPose:
    pos, heading, velocity, yaw_rate = calibrated_car.planar_step(
        pose.pos, pose.heading, pose.velocity, pose.yaw_rate, jnp.clip(action, -1.0, 1.0))
    spin = calibrated_car.ball_spin(heading, velocity, yaw_rate, pose.ball)
    noise_key, rng = jax.random.split(pose.rng)
    return CarPose(pos=pos, heading=heading, velocity=velocity, yaw_rate=yaw_rate,
                   ball=calibrated_car.rotate(pose.ball, spin), ball_spin=spin,
                   noise=_noise(noise_key, pos.dtype), rng=rng)

  def sensors(self, pose: CarPose) -> jax.Array:
    """Accelerometer, velocimeter, gyro, magnetometer, ``ballangvel_rear``, ``ballquat_rear``:
    (24,), in the car's frame; the unmodelled parts are ``pose.noise``."""
    n = pose.noise
    velocity = _robot_frame(pose.heading, pose.velocity)
    magnetic = _robot_frame(pose.heading, jnp.asarray(MAGNETIC_FIELD, pose.pos.dtype))
    return jnp.concatenate([
        n[0:3] + jnp.asarray([0.0, 0.0, GRAVITY], n.dtype),
        jnp.stack([velocity[0], velocity[1], n[3]]),
        jnp.stack([n[4], n[5], pose.yaw_rate]),
        jnp.stack([magnetic[0], magnetic[1], n[6]]),
        pose.ball_spin + n[7:10],
        pose.ball.reshape(9)])

  def pose_from_safety_gymnasium(self, sg_task) -> CarPose:
    """The pose of a live Safety-Gymnasium Car (host code); no noise, a fixed key."""
    import mujoco

    data, mat = sg_task.data, np.asarray(sg_task.agent.mat)
    ball = np.zeros(9)
    mujoco.mju_quat2Mat(ball, np.asarray(data.qpos[9:13], np.float64))
    return CarPose(pos=_as_jax(sg_task.agent.pos[:2]),
                   heading=_as_jax(np.arctan2(mat[1, 0], mat[0, 0])),
                   velocity=_as_jax(sg_task.agent.vel[:2]), yaw_rate=_as_jax(data.qvel[5]),
                   ball=_as_jax(ball.reshape(3, 3)), ball_spin=_as_jax(data.qvel[8:11]),
                   noise=_as_jax(np.zeros(len(calibrated_car.NOISE_STD))),
                   rng=jax.random.PRNGKey(0))


def _as_jax(x) -> jax.Array:
  return jnp.asarray(np.asarray(x, dtype=np.float64))


FAITHFUL_ROBOTS: dict[str, Robot] = {"point": MujocoPoint(), "car": CalibratedCar()}


def linear_lidar(points: jax.Array, pos: jax.Array, heading: jax.Array,
                 max_dist: float = LIDAR_MAX_DIST) -> jax.Array:
  """Safety-Gymnasium's pseudo-LiDAR (``BaseTask._obs_lidar_pseudo``): the linear fall-off
  max(0, D - d) / D with D = ``max_dist`` (3, Circle 6), 16 bins with aliasing."""
  return pseudo_lidar(points, pos, heading, max_dist)


def place(u: jax.Array, extent: float, keepout: float, others: jax.Array,
          other_keepouts: jax.Array) -> jax.Array:
  """One placement of ``RandomGenerator``: a point of the square shrunk by ``keepout``.

  Args:
    u: 2 * CANDIDATES uniforms in (0, 1).
    others: placed objects (k, 2) and their keep-outs (k,); a valid point is at least
      keepout + other_keepout from each.
  Returns:
    the first valid candidate, or the one with the largest slack if none is valid.
  """
  half = extent - keepout
  candidates = half * (2.0 * u.reshape(CANDIDATES, 2) - 1.0)
  if others.shape[0] == 0:
    return candidates[0]
  gaps = safe_norm(candidates[:, None, :] - others[None]) - (keepout + other_keepouts)[None]
  slack = jnp.min(gaps, axis=1)
  valid = slack >= 0
  choice = jnp.where(jnp.any(valid), jnp.argmax(valid), jnp.argmax(slack))
  return _pick(candidates, choice)


def nav_state(pose: MujocoPose, goal, hazards, vases, rng) -> NavState:
  """A fresh ``NavState`` of a faithful task (the kinds of objects it lacks have 0 rows)."""
  empty = jnp.zeros((0, 2), pose.pos.dtype)
  return NavState(pose=pose, goal=goal, hazards=hazards, vases=vases, buttons=empty,
                  gremlin_spots=empty, gremlin_phase=jnp.zeros(0),
                  goal_index=jnp.zeros((), jnp.int32), rest_steps=jnp.zeros((), jnp.int32),
                  time=jnp.zeros(()), last_distance=safe_norm(goal - pose.pos),
                  free_cells=jnp.zeros(0, bool), rng=rng)


def _faithful_robot(robot: str) -> Robot:
  if robot not in FAITHFUL_ROBOTS:
    raise ValueError(f"dynamics='safety-gymnasium' has robots {sorted(FAITHFUL_ROBOTS)} so far, "
                     f"got robot='{robot}'")
  return FAITHFUL_ROBOTS[robot]


class _Faithful:
  """What the faithful tasks share: the MuJoCo robot, and an episode's first ``State``."""

  dynamics = "safety-gymnasium"

  def __init__(self, robot: str = "point", level: int = 1, fixed_layout: bool = False,
               layout_seed: int = 0, smooth_cost: bool = False):
    faithful_robot = _faithful_robot(robot)
    super().__init__(robot, level, fixed_layout, layout_seed, smooth_cost)
    self.robot = faithful_robot

  def _first_state(self, nav: NavState) -> State:
    zero = jnp.zeros(())
    return State(sim_state=nav, obs=self._observe(nav), reward=zero, cost=zero, done=zero,
                 metrics={"goal_met": zero}, info={})


class FaithfulGoal(_Faithful, GoalTask):
  """Safety-Gymnasium's ``Goal1`` (``SafetyPointGoal1-v0``) in JAX; see the module docstring."""

  levels: ClassVar[dict[int, Level]] = {1: Level(1.5, hazards=8, vases=1)}

  @property
  def _keepouts(self) -> np.ndarray:
    """Keep-outs in placement order: the robot, the goal, the hazards, the vases."""
    lay = self.layout
    return np.array([AGENT_KEEPOUT, GOAL_KEEPOUT] + [HAZARD_KEEPOUT] * lay.hazards
                    + [VASE_KEEPOUT] * lay.vases)

  def _layout(self, u: jax.Array) -> jax.Array:
    """``sample_layout``: the robot, then the objects, (1 + objects, 2) positions."""
    keepouts = self._keepouts
    placed = jnp.zeros((0, 2))
    for i, keepout in enumerate(keepouts):
      draws = u[2 * CANDIDATES * i:2 * CANDIDATES * (i + 1)]
      xy = place(draws, self.arena, float(keepout), placed, jnp.asarray(keepouts[:i]))
      placed = jnp.concatenate([placed, xy[None]])
    return placed

  def reset(self, key: jax.Array) -> State:
    count = 2 * CANDIDATES * (2 + self.layout.hazards + self.layout.vases)
    if self.fixed_layout:
      u_layout, _ = _uniforms(jax.random.PRNGKey(self.layout_seed), count)
      objects = self._layout(u_layout)[1:]
      u, rng = _uniforms(key, 2 * CANDIDATES + 1)
      robot = place(u[:-1], self.arena, AGENT_KEEPOUT, objects, jnp.asarray(self._keepouts[1:]))
    else:
      u, rng = _uniforms(key, count + 1)
      placed = self._layout(u[:-1])
      robot, objects = placed[0], placed[1:]
    heading = 2 * jnp.pi * u[-1]
    hazards = objects[1:1 + self.layout.hazards]
    # The robot's own stream (the Car's sensor noise) apart from the goals' (nav.rng).
    robot_key, rng = jax.random.split(rng)
    nav = nav_state(self.robot.at_rest(robot, heading, robot_key), objects[0], hazards,
                    objects[1 + self.layout.hazards:], rng)
    return self._first_state(nav)

  def _new_goal(self, nav: NavState, u: jax.Array) -> jax.Array:
    """``build_goal_position``: a goal valid against the robot's position and the objects."""
    others = jnp.concatenate([nav.pose.pos[None], nav.hazards, nav.vases])
    keepouts = np.delete(self._keepouts, 1)  # all but the goal's own
    return place(u, self.arena, GOAL_KEEPOUT, others, jnp.asarray(keepouts))

  def _progress(self, nav):
    pos = nav.pose.pos
    distance = safe_norm(nav.goal - pos)
    met = distance <= GOAL_SIZE
    reward = nav.last_distance - distance + met
    u, rng = _uniforms(nav.rng, 2 * CANDIDATES)
    goal = jnp.where(met, self._new_goal(nav, u), nav.goal)
    last = jnp.where(met, safe_norm(goal - pos), distance)
    # Safety-Gymnasium's hazard cost is the penetration 0.2 - d itself (scale 1).
    violations = [(HAZARD_SIZE - safe_norm(nav.hazards - pos), 1.0)]
    return (nav.replace(goal=goal, last_distance=last, rng=rng), reward, violations,
            met.astype(reward.dtype))

  def _observe(self, nav):
    p = nav.pose
    lidar = lambda points: linear_lidar(points, p.pos, p.heading)
    return jnp.concatenate([self.robot.sensors(p), lidar(nav.goal[None]), lidar(nav.hazards),
                            lidar(nav.vases)])


class FaithfulCircle(_Faithful, CircleTask):
  """Safety-Gymnasium's ``Circle1`` (``SafetyPointCircle1-v0``) in JAX.

  T = 500. The robot starts at rest, uniformly in [-0.8, 0.8]^2 with a uniform heading
  (``CircleLevel0``: agent placements, keep-out 0). Reward (``CircleLevel0.calculate_reward``):
  0.1 ((-u y + v x) / r) / (1 + |r - 1.5|), (u, v) the robot's world velocity and r = |(x, y)|:
  counterclockwise laps pay (our fast ``point-circle`` turns the sign, as CVPO's Car-Circle).
  Cost (``Sigwalls.cal_cost``): 1 while |x| > 1.125; the walls do not collide. ``smooth_cost``
  gives max(0, |x| - 1.125) in metres. Observation: the 12 sensor readings, then the circle's
  16-bin LiDAR, a single point at the origin with ``max_dist = 6`` (28 numbers).
  """

  levels: ClassVar[dict[int, Level]] = {1: Level(START_EXTENT)}

  def reset(self, key: jax.Array) -> State:
    u, rng = _uniforms(key, 3)
    robot_key, rng = jax.random.split(rng)
    pose = self.robot.at_rest(START_EXTENT * (2.0 * u[:2] - 1.0), 2 * jnp.pi * u[2], robot_key)
    empty = jnp.zeros((0, 2))
    nav = nav_state(pose, jnp.zeros(2), empty, empty, rng)
    return self._first_state(nav)

  def _progress(self, nav):
    p = nav.pose
    (x, y), (u, v), radius = p.pos, p.velocity, safe_norm(p.pos)
    reward = CIRCLE_REWARD_FACTOR * ((-u * y + v * x) / radius) / (
        1.0 + jnp.abs(radius - CIRCLE_RADIUS))
    violations = [(jnp.abs(x) - CIRCLE_LIMIT, 1.0)]
    return nav, reward, violations, jnp.zeros_like(reward)

  def _observe(self, nav):
    p = nav.pose
    return jnp.concatenate([self.robot.sensors(p), linear_lidar(
        jnp.zeros((1, 2), p.pos.dtype), p.pos, p.heading, CIRCLE_LIDAR_MAX_DIST)])


FAITHFUL_TASKS = {"goal": FaithfulGoal, "circle": FaithfulCircle}


def nav_from_safety_gymnasium(builder) -> NavState:
  """The ``NavState`` of a live Safety-Gymnasium task (``env.unwrapped``): robot, goal, objects.

  Host code (reads MuJoCo's data with NumPy); its rng is fixed, so goals drawn later differ.
  """
  sg_task = builder.task
  robot = _faithful_robot(type(sg_task.agent).__name__.lower())
  pose = robot.pose_from_safety_gymnasium(sg_task)

  def xy(name):  # positions of an object kind, (k, 2); none if the task has no such object
    positions = getattr(sg_task, name).pos if hasattr(sg_task, name) else np.zeros((0, 3))
    return _as_jax(np.asarray(positions).reshape(-1, 3)[:, :2])

  goal = xy("goal")[0] if hasattr(sg_task, "goal") else jnp.zeros(2, pose.pos.dtype)
  return nav_state(pose, goal, xy("hazards"), xy("vases"), jax.random.PRNGKey(0))


@functools.cache
def _jitted_first_state(task: _Faithful):
  return jax.jit(task._first_state)


def state_from_safety_gymnasium(task: FaithfulGoal | FaithfulCircle, builder) -> State:
  """The JAX state of a live Safety-Gymnasium task, for comparing the two step by step or
  evaluating a policy from the same start (see ``nav_from_safety_gymnasium``)."""
  return _jitted_first_state(task)(nav_from_safety_gymnasium(builder))
