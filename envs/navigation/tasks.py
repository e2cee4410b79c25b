"""Safety-Gym style navigation tasks in JAX: Goal, Button and Circle for the Point and Car robots.

The tasks follow Safety-Gym / Safety-Gymnasium (Ray et al. 2019; Ji et al. 2023) as used by the
CVPO paper (Liu et al. 2022, Sec. 4.1), with planar dynamics written in plain JAX (see
``robots.py``) instead of MuJoCo, so that thousands of copies run in one ``vmap`` and ``jax.grad``
goes through ``step``. What is the same and what differs is listed in docs/envs.md.

Goal (T = 1000, b = 25). Reach the goal (radius 0.3). r_t = d_{t-1} - d_t (distance to the goal
  decreased) + 1 on arrival, after which a new goal is placed in a free spot. Cost: the robot's
  centre inside a hazard (radius 0.2), or the robot touching a vase (radius 0.1).
Button (T = 1000, b = 25). Press the goal button (one of 4, radius 0.1): r_t = d_{t-1} - d_t + 1
  on a press, after which another button becomes the goal and all buttons rest for 10 steps.
  Cost: hazards, touching a gremlin (radius 0.1, moving on a circle of radius 0.35 around its
  spot), or pressing a wrong button while the buttons are active.
Circle (T = 500, b = 25). Run clockwise around the origin along the circle of radius 1.5:
  r_t = ((v_x y - v_y x) / |p|) / (1 + | |p| - 1.5 |), Safety-Gymnasium's loop reward with the
  sign turned so that clockwise pays (as CVPO's Car-Circle). Cost 1 per step with |x| > 1.125,
  outside the zone between the two parallel boundaries (Safety-Gymnasium's Circle1 sigwalls).

Cost. By default c_t is the 0/1 indicator of the benchmarks: 1 if any constraint is violated at
this step. With ``smooth_cost=True`` it is a penetration depth instead, sum over violations of
max(0, 1 - d / R) (d the distance, R the radius at which the violation starts; 1 at the centre),
and for Circle max(0, |x| - 1.125) / robot radius, so that gradient methods (CGPO, SHAC-Lag) get
a useful derivative; both are zero exactly when no constraint is violated.

Layouts. The arena is cut into 0.6 m cells; hazards, vases, buttons, gremlins, the first goal and
the robot each get a different cell (a random permutation) and a jitter of up to 0.05 m, which
keeps objects apart as Safety-Gym's keep-out radii do. Level 1 uses a 3 m square arena (5 x 5
cells), level 2 a 4.2 m one (7 x 7) with more hazards (Goal2: 10 hazards, 10 vases; Button2:
8 hazards, 6 gremlins); level 0 has no hazards. ``fixed_layout=True`` draws the objects from
``layout_seed`` in every episode (the robot's spot and heading stay random), as the CVPO
experiments used one layout per task.

Observation: ego motion (forward speed, yaw rate, cos and sin of the heading), then per task:
Goal: goal compass (3) + pseudo-LiDAR (16 bins, exp(-distance) fall-off) of goal, hazards, vases.
Button: goal-button compass (3) + LiDAR of goal button, buttons, hazards, gremlins + buttons active.
Circle: compass to the centre (3), |p| - 1.5, and the distances 1.125 - x and 1.125 + x to the
boundaries.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import struct

from jaxsafe.envs.core import Env, State
from jaxsafe.envs.navigation.robots import DT, ROBOTS, Pose, Robot
from jaxsafe.envs.navigation.sensors import compass, pseudo_lidar, safe_norm

CELL = 0.6
JITTER = 0.05
GOAL_SIZE = 0.3
HAZARD_SIZE = 0.2
VASE_SIZE = 0.1
BUTTON_SIZE = 0.1
GREMLIN_SIZE = 0.1
GREMLIN_TRAVEL = 0.35
GREMLIN_YAW_RATE = 1.0        # rad/s of a gremlin around its spot
GOAL_BONUS = 1.0
BUTTON_REST_STEPS = 10
CIRCLE_RADIUS = 1.5
CIRCLE_LIMIT = 1.125
#: a new goal is placed at least this far from the robot
GOAL_MIN_DISTANCE = 0.6


@dataclasses.dataclass(frozen=True)
class Level:
  """The objects of a task level and the half-width of its square arena (m)."""

  extent: float = 1.5
  hazards: int = 0
  vases: int = 0
  buttons: int = 0
  gremlins: int = 0

  @property
  def cells(self) -> jax.Array:
    """Centres (n*n, 2) of the CELL x CELL cells that tile the arena."""
    n = round(2 * self.extent / CELL)
    ticks = -self.extent + CELL * (jnp.arange(n) + 0.5)
    xs, ys = jnp.meshgrid(ticks, ticks, indexing="ij")
    return jnp.stack([xs.ravel(), ys.ravel()], axis=-1)


@struct.dataclass
class NavState:
  """The simulator state of a navigation task (``State.sim_state``).

  Unused object kinds are arrays with 0 rows. ``goal`` is the goal's position (Goal), the goal
  button's (Button), or the origin (Circle).
  """

  pose: Pose
  goal: jax.Array
  hazards: jax.Array
  vases: jax.Array
  buttons: jax.Array
  gremlin_spots: jax.Array
  gremlin_phase: jax.Array
  goal_index: jax.Array
  rest_steps: jax.Array
  time: jax.Array
  last_distance: jax.Array
  free_cells: jax.Array
  rng: jax.Array

  @property
  def gremlins(self) -> jax.Array:
    """Gremlin positions (..., g, 2) at ``time`` (also for states stacked over steps)."""
    angle = self.gremlin_phase + GREMLIN_YAW_RATE * jnp.asarray(self.time)[..., None]
    return self.gremlin_spots + GREMLIN_TRAVEL * jnp.stack([jnp.cos(angle), jnp.sin(angle)], -1)


def _uniforms(key: jax.Array, count: int) -> tuple[jax.Array, jax.Array]:
  """``count`` uniforms in (0, 1) with 16-bit resolution, and a fresh key: one ``random.bits``.

  Random bits dominate the cost of a reset on CPU (threefry is ~100 operations per 32-bit word),
  so each word gives two 16-bit uniforms, and one call replaces ``split`` + ``uniform``: the
  two extra words are the next raw key (``split`` makes keys from random words too). 16 bits are
  plenty for jitters, headings and choices among at most 49 cells.
  """
  if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    key = jax.random.key_data(key)
  words = (count + 1) // 2
  bits = jax.random.bits(key, (words + 2,), jnp.uint32)
  halves = jnp.concatenate([bits[:words] & 0xFFFF, bits[:words] >> 16])[:count]
  return (halves.astype(jnp.float32) + 0.5) * (1.0 / (1 << 16)), bits[words:]


def _random_cell(valid: jax.Array, u: jax.Array) -> jax.Array:
  """Index of a uniformly chosen True entry of ``valid`` (one uniform ``u``; 0 if none)."""
  count = jnp.sum(valid)
  m = jnp.minimum(jnp.floor(u * count), count - 1)
  return jnp.argmax(jnp.cumsum(valid) > m)


def _pick(rows: jax.Array, index: jax.Array) -> jax.Array:
  """rows[index] as a one-hot product (a batched gather is slow on CPU)."""
  return (jnp.arange(rows.shape[0]) == index).astype(rows.dtype) @ rows


def _distances(points: jax.Array, pos: jax.Array) -> jax.Array:
  return safe_norm(points - pos)


class NavigationEnv(Env):
  """Shared machinery of the navigation tasks: layouts, the robot step, costs and observations."""

  differentiable = True
  cost_limit = 25.0
  task: str
  levels: ClassVar[dict[int, Level]]

  def __init__(self, robot: str = "point", level: int = 1, fixed_layout: bool = False,
               layout_seed: int = 0, smooth_cost: bool = False):
    if robot not in ROBOTS:
      raise ValueError(f"unknown robot '{robot}'; choose one of {sorted(ROBOTS)}")
    if level not in self.levels:
      raise ValueError(f"{self.task} has levels {sorted(self.levels)}, got level={level}")
    self.robot: Robot = ROBOTS[robot]
    self.level = int(level)
    self.layout = self.levels[self.level]
    self.fixed_layout = bool(fixed_layout)
    self.layout_seed = int(layout_seed)
    self.smooth_cost = bool(smooth_cost)
    self.arena = self.layout.extent

  # ---- episode start -----------------------------------------------------------------------
  def _objects(self, u_layout: jax.Array, u_robot: jax.Array):
    """Places the objects, the first goal and the robot in distinct cells of the arena.

    Args:
      u_layout: ``layout_draws`` uniforms for the objects; u_robot: ``robot_draws`` for the robot.

    The k objects take the k cells with the largest scores (a uniformly random k-subset in random
    order). A reset runs at every step under ``AutoReset``, so this is written for speed on CPU:
    ranks from pairwise comparisons and one-hot products instead of ``random.permutation``,
    ``top_k``, gathers and scatters (each of which is 2-4x slower batched on CPU).
    """
    lay, cells = self.layout, self.layout.cells
    n, k, bounds = cells.shape[0], self._bounds[-1], self._bounds
    scores, index = u_layout[:n], jnp.arange(n)
    # rank 0 for the largest score; equal (16-bit) scores are ordered by cell index
    above = (scores[None, :] > scores[:, None]) | (
        (scores[None, :] == scores[:, None]) & (index[None, :] < index[:, None]))
    rank = jnp.sum(above, axis=1)
    holds = rank[:, None] == jnp.arange(k)[None, :]                  # (cell, object)
    jitter = JITTER * (2.0 * u_layout[n:n + 2 * k].reshape(k, 2) - 1.0)
    spots = holds.T.astype(cells.dtype) @ cells + jitter
    hazards, vases, buttons, gremlin_spots, goal = (
        spots[bounds[i]:bounds[i + 1]] for i in range(len(bounds) - 1))
    gremlin_phase = 2 * jnp.pi * u_layout[n + 2 * k:n + 2 * k + lay.gremlins]
    taken = jnp.any(holds, axis=1)
    free_cells = ~jnp.any(holds[:, :bounds[-2]], axis=1)
    # The robot takes a random cell that no object (and not the first goal) holds.
    cell = _random_cell(~taken, u_robot[0])
    robot_pos = _pick(cells, cell) + JITTER * (2.0 * u_robot[1:3] - 1.0)
    heading = jnp.pi * (2.0 * u_robot[3] - 1.0)
    return {"hazards": hazards, "vases": vases, "buttons": buttons, "gremlin_spots": gremlin_spots,
                "gremlin_phase": gremlin_phase, "goal": goal[0], "free_cells": free_cells}, robot_pos, heading

  @property
  def _bounds(self) -> list[int]:
    """Offsets of hazards, vases, buttons, gremlins and the first goal among the placed objects."""
    lay = self.layout
    counts = [lay.hazards, lay.vases, lay.buttons, lay.gremlins, 1]
    return [sum(counts[:i]) for i in range(len(counts) + 1)]

  def reset(self, key: jax.Array) -> State:
    n, k = self.layout.cells.shape[0], self._bounds[-1]
    layout_draws, robot_draws = n + 3 * k, 4
    if self.fixed_layout:
      u_layout, _ = _uniforms(jax.random.PRNGKey(self.layout_seed), layout_draws)
      u_robot, rng = _uniforms(key, robot_draws)
    else:
      u, rng = _uniforms(key, layout_draws + robot_draws)
      u_layout, u_robot = u[:layout_draws], u[layout_draws:]
    objects, robot_pos, heading = self._objects(u_layout, u_robot)
    zero = jnp.zeros(())
    pose = Pose(pos=robot_pos, heading=heading, speed=zero, yaw_rate=zero)
    nav = NavState(pose=pose, goal_index=jnp.zeros((), jnp.int32),
                   rest_steps=jnp.zeros((), jnp.int32), time=zero, last_distance=zero, rng=rng,
                   **objects)
    nav = self._start(nav)
    return State(sim_state=nav, obs=self._observe(nav), reward=zero, cost=zero, done=zero,
                 metrics={"goal_met": zero}, info={})

  def _start(self, nav: NavState) -> NavState:
    """Task-specific finishing touch of a fresh layout (the default: distance to the goal)."""
    return nav.replace(last_distance=safe_norm(nav.goal - nav.pose.pos))

  # ---- one step ----------------------------------------------------------------------------
  def step(self, state: State, action: jax.Array) -> State:
    nav: NavState = state.sim_state
    pose = self.robot.step(nav.pose, action)
    nav = nav.replace(pose=pose, time=nav.time + DT)
    nav, reward, violations, goal_met = self._progress(nav)
    cost = self._cost(violations)
    return state.replace(sim_state=nav, obs=self._observe(nav), reward=reward, cost=cost,
                         done=jnp.zeros(()), metrics={"goal_met": goal_met})

  def _cost(self, violations: list[tuple[jax.Array, float]]) -> jax.Array:
    """c_t from (penetration p, scale s) pairs; a constraint is violated where p > 0.

    Indicator: 1 if any p > 0. Smooth: sum of max(0, p) / s (penetration depth in units of s).
    """
    if self.smooth_cost:
      return sum(jnp.sum(jax.nn.relu(p)) / s for p, s in violations)
    violated = jnp.any(jnp.stack([jnp.any(p > 0) for p, _ in violations]))
    return violated.astype(violations[0][0].dtype)

  @staticmethod
  def _contact(points: jax.Array, pos: jax.Array, radius: float) -> tuple[jax.Array, float]:
    """Violation term of being closer than ``radius`` to any of ``points``: 1 - d / R at depth."""
    return radius - _distances(points, pos), radius

  def _progress(self, nav: NavState):
    """(nav', reward, violations, goal_met) after the robot moved; defined per task."""
    raise NotImplementedError

  def _observe(self, nav: NavState) -> jax.Array:
    raise NotImplementedError

  def _ego(self, nav: NavState) -> jax.Array:
    p = nav.pose
    return jnp.stack([p.speed, p.yaw_rate, jnp.cos(p.heading), jnp.sin(p.heading)])

  def _lidar(self, nav: NavState, points: jax.Array) -> jax.Array:
    return pseudo_lidar(points, nav.pose.pos, nav.pose.heading)

  @property
  def observation_size(self) -> int:
    return int(jax.eval_shape(self.reset, jax.random.PRNGKey(0)).obs.shape[0])

  @property
  def action_size(self) -> int:
    return 2


class GoalTask(NavigationEnv):
  """Reach goals among hazards and vases (Safety-Gym's Goal)."""

  task = "goal"
  episode_length = 1000
  levels: ClassVar[dict[int, Level]] = {
      0: Level(1.5), 1: Level(1.5, hazards=8, vases=1), 2: Level(2.1, hazards=10, vases=10)}

  def _new_goal(self, nav: NavState, u: jax.Array) -> jax.Array:
    """A goal in a random free cell at least GOAL_MIN_DISTANCE from the robot (3 uniforms)."""
    cells = self.layout.cells
    far = safe_norm(cells - nav.pose.pos) > GOAL_MIN_DISTANCE
    cell = _random_cell(nav.free_cells & far, u[0])
    return _pick(cells, cell) + JITTER * (2.0 * u[1:3] - 1.0)

  def _progress(self, nav):
    pos = nav.pose.pos
    distance = safe_norm(nav.goal - pos)
    met = distance < GOAL_SIZE
    reward = nav.last_distance - distance + GOAL_BONUS * met
    u, rng = _uniforms(nav.rng, 3)
    goal = jnp.where(met, self._new_goal(nav, u), nav.goal)
    last = jnp.where(met, safe_norm(goal - pos), distance)
    violations = [self._contact(nav.hazards, pos, HAZARD_SIZE),
                  self._contact(nav.vases, pos, self.robot.radius + VASE_SIZE)]
    return nav.replace(goal=goal, last_distance=last, rng=rng), reward, violations, met.astype(
        reward.dtype)

  def _observe(self, nav):
    p = nav.pose
    return jnp.concatenate([self._ego(nav), compass(nav.goal, p.pos, p.heading),
                            self._lidar(nav, nav.goal[None]), self._lidar(nav, nav.hazards),
                            self._lidar(nav, nav.vases)])


class ButtonTask(NavigationEnv):
  """Press the goal button among buttons, hazards and moving gremlins (Safety-Gym's Button)."""

  task = "button"
  episode_length = 1000
  levels: ClassVar[dict[int, Level]] = {
      0: Level(1.5, buttons=4), 1: Level(1.5, hazards=4, buttons=4, gremlins=4),
      2: Level(2.1, hazards=8, buttons=4, gremlins=6)}

  def _start(self, nav):
    nav = nav.replace(goal=nav.buttons[0])
    return super()._start(nav)

  def _progress(self, nav):
    pos, radius = nav.pose.pos, self.robot.radius
    distance = safe_norm(nav.goal - pos)
    active = nav.rest_steps == 0
    touching = _distances(nav.buttons, pos) < radius + BUTTON_SIZE
    is_goal = jnp.arange(self.layout.buttons) == nav.goal_index
    pressed = active & jnp.any(touching & is_goal)
    reward = nav.last_distance - distance + GOAL_BONUS * pressed
    u, rng = _uniforms(nav.rng, 1)
    shift = 1 + jnp.floor(u[0] * (self.layout.buttons - 1)).astype(jnp.int32)
    goal_index = jnp.where(pressed, (nav.goal_index + shift) % self.layout.buttons, nav.goal_index)
    goal = _pick(nav.buttons, goal_index)
    rest = jnp.where(pressed, BUTTON_REST_STEPS, jnp.maximum(nav.rest_steps - 1, 0))
    # A wrong button counts only while the buttons are active.
    wrong_depth, scale = self._contact(nav.buttons, pos, radius + BUTTON_SIZE)
    violations = [self._contact(nav.hazards, pos, HAZARD_SIZE),
                  self._contact(nav.gremlins, pos, radius + GREMLIN_SIZE),
                  (jnp.where(active & ~is_goal, wrong_depth, -1.0), scale)]
    nav = nav.replace(goal=goal, goal_index=goal_index, rest_steps=rest, rng=rng,
                      last_distance=jnp.where(pressed, safe_norm(goal - pos), distance))
    return nav, reward, violations, pressed.astype(reward.dtype)

  def _observe(self, nav):
    p = nav.pose
    return jnp.concatenate([self._ego(nav), compass(nav.goal, p.pos, p.heading),
                            self._lidar(nav, nav.goal[None]), self._lidar(nav, nav.buttons),
                            self._lidar(nav, nav.hazards), self._lidar(nav, nav.gremlins),
                            (nav.rest_steps == 0).astype(nav.time.dtype)[None]])


class CircleTask(NavigationEnv):
  """Run clockwise around a circle, between two parallel boundaries (Safety-Gym's Circle1)."""

  task = "circle"
  episode_length = 500
  levels: ClassVar[dict[int, Level]] = {1: Level(0.9)}

  def _start(self, nav):
    return nav.replace(goal=jnp.zeros(2))

  def _progress(self, nav):
    p = nav.pose
    (x, y), radius = p.pos, safe_norm(p.pos)
    vx, vy = p.speed * jnp.cos(p.heading), p.speed * jnp.sin(p.heading)
    reward = ((vx * y - vy * x) / radius) / (1.0 + jnp.abs(radius - CIRCLE_RADIUS))
    violations = [(jnp.abs(x) - CIRCLE_LIMIT, self.robot.radius)]
    return nav, reward, violations, jnp.zeros_like(reward)

  def _observe(self, nav):
    p = nav.pose
    x = p.pos[0]
    return jnp.concatenate([self._ego(nav), compass(jnp.zeros(2), p.pos, p.heading),
                            jnp.stack([safe_norm(p.pos) - CIRCLE_RADIUS, CIRCLE_LIMIT - x,
                                       CIRCLE_LIMIT + x])])


TASKS = {"goal": GoalTask, "button": ButtonTask, "circle": CircleTask}
