"""Tests of the JAX navigation suite (``envs/navigation``): Point/Car x Goal/Button/Circle.

Compiles are the cost here, so each test compiles one small program and the scripted rollouts
share one jitted function per task.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsafe import envs
from jaxsafe.envs.navigation import make_task, tasks
from jaxsafe.envs.navigation.sensors import LIDAR_BINS, pseudo_lidar, to_ego

NAV_IDS = ("point-goal", "car-goal", "point-button", "car-button", "point-circle", "car-circle")


@pytest.mark.parametrize("env_id", NAV_IDS)
def test_resets_and_steps_under_jit_and_vmap(env_id):
  env = envs.make(env_id, num_envs=3)
  task = env.unwrapped
  assert task.episode_length == (500 if "circle" in env_id else 1000)
  assert task.cost_limit == 25.0

  @jax.jit
  def run(key):
    state = env.reset(key)
    actions = jax.random.uniform(key, (5, 3, 2), minval=-1, maxval=1)
    return jax.lax.scan(lambda s, a: (env.step(s, a),) * 2, state, actions)[1]

  states = run(jax.random.PRNGKey(0))
  assert states.obs.shape == (5, 3, env.observation_size)
  for x in (states.obs, states.reward, states.cost):
    assert np.all(np.isfinite(np.asarray(x)))
  assert set(np.unique(np.asarray(states.cost))) <= {0.0, 1.0}
  # the three envs got different layouts and start poses
  assert len({tuple(np.round(p, 4)) for p in np.asarray(states.sim_state.pose.pos[0])}) == 3


def _drive_to_goal(nav, robot: str):
  """A scripted controller: turn towards the goal, drive forward when roughly facing it."""
  ego = to_ego(nav.goal, nav.pose.pos, nav.pose.heading)
  bearing = jnp.arctan2(ego[1], ego[0])
  forward, turn = jnp.clip(jnp.cos(bearing), 0.0, 1.0), jnp.clip(2.0 * bearing, -1.0, 1.0)
  if robot == "point":
    return jnp.stack([forward, turn])
  return jnp.clip(jnp.stack([forward - turn, forward + turn]), -1.0, 1.0)


@pytest.mark.parametrize("env_id", ["point-goal", "car-goal", "point-button"])
def test_scripted_controller_earns_the_goal_bonus(env_id):
  task = make_task(*env_id.split("-"))

  @jax.jit
  def run(key):
    def body(state, _):
      state = task.step(state, _drive_to_goal(state.sim_state, task.robot.name))
      return state, (state.reward, state.metrics["goal_met"])
    return jax.lax.scan(body, task.reset(key), None, length=400)[1]

  reward, met = map(np.asarray, run(jax.random.PRNGKey(3)))
  assert met.sum() >= 2, "the controller should reach at least two goals in 400 steps"
  # The bonus of 1 is paid exactly on arrival; moving pays at most about 0.02 per step.
  assert np.all(reward[met > 0] > 0.9)
  assert np.all(reward[met == 0] < 0.05)
  # Driving towards the goal pays positive distance reward between arrivals.
  assert reward[met == 0].sum() > 0.5


def _place(state, pos):
  nav = state.sim_state
  return state.replace(sim_state=nav.replace(pose=nav.pose.replace(pos=jnp.asarray(pos))))


_STILL = {}


def _costs_from(task, state, steps=20):
  """The costs of ``steps`` steps with zero action (one compile per task object)."""
  if id(task) not in _STILL:
    def costs(s):
      def body(s, _):
        s = task.step(s, jnp.zeros(2))
        return s, s.cost
      return jax.lax.scan(body, s, None, length=20)[1]
    _STILL[id(task)] = (task, jax.jit(costs))
  return np.asarray(_STILL[id(task)][1](state))[:steps]


def test_robot_inside_a_hazard_pays_cost_one_per_step():
  task = make_task("point", "goal")
  state = task.reset(jax.random.PRNGKey(1))
  hazard = state.sim_state.hazards[2]
  np.testing.assert_array_equal(_costs_from(task, _place(state, hazard)), np.ones(20))
  # Far from every object: no cost.
  np.testing.assert_array_equal(_costs_from(task, _place(state, [5.0, 5.0])), np.zeros(20))


def test_button_and_circle_costs():
  task = make_task("car", "button")
  state = task.reset(jax.random.PRNGKey(2))
  wrong = state.sim_state.buttons[1]          # the goal button is buttons[0] at reset
  assert np.all(_costs_from(task, _place(state, wrong), steps=5) == 1.0)
  circle = make_task("point", "circle")
  state = circle.reset(jax.random.PRNGKey(0))
  assert np.all(_costs_from(circle, _place(state, [1.3, 0.0]), steps=5) == 1.0)
  assert np.all(_costs_from(circle, _place(state, [0.0, 1.0]), steps=5) == 0.0)


def test_circle_pays_for_clockwise_motion():
  task = make_task("point", "circle")
  state = task.reset(jax.random.PRNGKey(0))
  nav = state.sim_state
  # At (0, 1.5) heading +x is clockwise around the origin; heading -x is counter-clockwise.
  for heading, sign in ((0.0, 1.0), (jnp.pi, -1.0)):
    pose = nav.pose.replace(pos=jnp.array([0.0, 1.5]), heading=jnp.asarray(heading),
                            speed=jnp.asarray(1.0))
    out = task.step(state.replace(sim_state=nav.replace(pose=pose)), jnp.array([1.0, 0.0]))
    assert sign * float(out.reward) > 0.9


def test_fixed_layout_repeats_the_objects_only():
  fixed = make_task("point", "goal", fixed_layout=True, layout_seed=7)
  a, b = (fixed.reset(jax.random.PRNGKey(k)).sim_state for k in (0, 1))
  np.testing.assert_array_equal(a.hazards, b.hazards)
  assert not np.allclose(a.pose.pos, b.pose.pos)
  free = make_task("point", "goal")
  c, d = (free.reset(jax.random.PRNGKey(k)).sim_state for k in (0, 1))
  assert not np.allclose(c.hazards, d.hazards)


@pytest.mark.parametrize("task_name,level", [("goal", 1), ("goal", 2), ("button", 2)])
def test_layout_keeps_objects_apart(task_name, level):
  task = make_task("point", task_name, level=level)
  navs = jax.jit(jax.vmap(task.reset))(jax.random.split(jax.random.PRNGKey(0), 64))
  spec = task.layout
  assert navs.sim_state.hazards.shape == (64, spec.hazards, 2)
  nav = navs.sim_state
  goal = [nav.goal[:, None]] if task_name == "goal" else []   # Button's goal is a button
  objects = jnp.concatenate([nav.hazards, nav.vases, nav.buttons, nav.gremlin_spots, *goal,
                             nav.pose.pos[:, None]], axis=1)
  gaps = jnp.linalg.norm(objects[:, :, None] - objects[:, None, :], axis=-1)
  gaps = gaps + 10.0 * jnp.eye(objects.shape[1])
  assert float(gaps.min()) >= tasks.CELL - 2 * np.sqrt(2) * tasks.JITTER - 1e-6
  assert float(jnp.abs(objects).max()) <= spec.extent


def test_pseudo_lidar_bins_and_aliasing():
  pos, heading = jnp.array([1.0, 1.0]), jnp.asarray(jnp.pi / 2)   # facing +y
  # An object 2 m straight ahead, at the start of bin 0: bin 0 reads exp(-2), its left
  # neighbour (bin 15) gets the alias weight 1 - 0 = 1, its right neighbour 0.
  ahead = pseudo_lidar(jnp.array([[1.0, 3.0]]), pos, heading)
  np.testing.assert_allclose(ahead[0], np.exp(-2.0), rtol=1e-5)
  np.testing.assert_allclose(ahead[LIDAR_BINS - 1], np.exp(-2.0), rtol=1e-5)
  assert float(ahead[1]) < 1e-5 and float(ahead[8]) == 0.0
  # Two objects in the middle of bin 8 (bearing 8.5 / 16 of a turn, a little right of behind):
  # the nearest wins, and each neighbour bin gets half of it.
  bearing = heading + 2 * jnp.pi * 8.5 / LIDAR_BINS
  direction = jnp.stack([jnp.cos(bearing), jnp.sin(bearing)])
  behind = pseudo_lidar(jnp.stack([pos + direction, pos + 2 * direction]), pos, heading)
  np.testing.assert_allclose(behind[7:10], np.exp(-1.0) * np.array([0.5, 1.0, 0.5]), rtol=1e-4)
  assert float(jnp.abs(behind).sum() - behind[7:10].sum()) < 1e-6
  np.testing.assert_array_equal(pseudo_lidar(jnp.zeros((0, 2)), pos, heading), np.zeros(16))


@pytest.mark.parametrize("robot,task_name", [("point", "goal"), ("car", "button"),
                                             ("car", "circle")])
def test_smooth_cost_gradient_matches_finite_differences(robot, task_name):
  """d(sum of smooth costs and rewards over 8 steps)/d(actions) against central differences."""
  with jax.enable_x64(True):
    task = make_task(robot, task_name, smooth_cost=True)
    state = task.reset(jax.random.PRNGKey(4))
    nav = state.sim_state
    if task_name == "circle":
      start = jnp.array([1.05, 0.3])                  # driving out through the wall at x = 1.125
      heading = 0.2
    else:
      start = nav.hazards[0] + jnp.array([0.25, 0.05])  # just outside a hazard, heading into it
      heading = jnp.pi + 0.3
    pose = nav.pose.replace(pos=start, heading=jnp.asarray(heading), speed=jnp.asarray(0.8))
    state = jax.tree_util.tree_map(
        lambda x: x.astype(jnp.float64) if x.dtype == jnp.float32 else x,
        state.replace(sim_state=nav.replace(pose=pose)))

    def total(actions, weight):
      def body(s, a):
        s = task.step(s, a)
        return s, s.cost + weight * s.reward
      return jnp.sum(jax.lax.scan(body, state, actions)[1])

    actions = 0.3 * jax.random.normal(jax.random.PRNGKey(5), (8, 2), jnp.float64)
    f, df = jax.jit(total), jax.jit(jax.grad(total))
    cost = float(f(actions, 0.0))
    assert cost > 0.05, "the start must put the robot into the violation for the test to bite"
    for weight in (0.0, 1.0):             # the cost alone, then cost + reward
      grad = np.asarray(df(actions, weight))
      eps = 1e-6
      fd = np.zeros_like(grad)
      for i in np.ndindex(grad.shape):
        step = np.zeros(grad.shape)
        step[i] = eps
        fd[i] = (float(f(actions + step, weight)) - float(f(actions - step, weight))) / (2 * eps)
      np.testing.assert_allclose(grad, fd, rtol=1e-4, atol=1e-7)
      assert np.abs(grad).max() > 1e-3


@pytest.mark.slow  # ~45 s of compiles; the CLI itself is tested in make test (test_cli.py)
def test_cli_trains_on_point_button_checkpoints_and_draws_a_gif(tmp_path, capsys):
  """A tiny `jaxsafe train ppo-lag point-button --env-set fixed_layout=true ...`, then
  `jaxsafe eval RUN --video out.gif`.

  Button has no vases: the checkpoint must hold the env state's (0, 2) array (Orbax refuses
  empty arrays; see train/checkpoints.py) and eval must restore it.
  """
  from conftest import TINY
  from PIL import Image

  from jaxsafe.cli import main
  from jaxsafe.train.runner import load_states

  run_dir, gif = str(tmp_path / "run"), str(tmp_path / "episode.gif")
  sets = [arg for k, v in TINY.items() for arg in ("--set", f"{k}={v}")]
  assert main(["train", "ppo-lag", "point-button", "--total-steps", "1600", "--run-dir", run_dir,
               "--quiet", "--env-set", "fixed_layout=true", "--env-set", "layout_seed=3",
               *sets]) == 0
  capsys.readouterr()
  p, _, _ = load_states(run_dir)            # the task options travel with the run
  assert p.spec.env_options == {"fixed_layout": True, "layout_seed": 3}
  task = p.agent.env.unwrapped
  assert task.fixed_layout and task.layout_seed == 3
  assert main(["eval", run_dir, "--episodes", "1", "--video", gif]) == 0
  out = capsys.readouterr().out
  assert "250 frames" in out and gif in out
  with Image.open(gif) as image:
    assert image.n_frames == 250 and image.size == (320, 320)


#: The documented PPO-Lag run on point-goal (docs/benchmarks.md, "PPO-Lag on point-goal"):
#: one 1000-step episode per env per update, so every update sees 16 finished episodes.
POINT_GOAL_RUN = ["train", "ppo-lag", "point-goal", "--total-steps", "4000000",
                  "--set", "num_envs=16", "--set", "rollout_length=1000",
                  "--set", "update_epochs=4", "--quiet"]


@pytest.mark.slow
def test_ppo_lag_learns_point_goal_within_the_cost_limit(tmp_path):
  """Issue 5, acceptance 3 (about 6 minutes on 2 CPU cores), on 3 seeds (shifted by
  JAXSAFE_SEED_OFFSET): the seeds' mean last-10% episode cost is within 25% of the limit 25; on
  each seed the last 30% of training (75 updates, 1200 episodes) has a clearly positive return (a
  random policy earns about 0, a scripted goal-seeker that ignores hazards about 22 at cost about
  73) and a mean episode cost within 25% of the limit.

  One seed's last 10% (25 updates) is too short a window to judge: the multiplier swings the cost
  by several units over it, and on 16 seeds its last-10% cost ranged 17.0-31.9. Measured on seeds
  0-9, 100-102, 200-202 (docs/benchmarks.md): last-30% cost 23.98-27.29 and return 14.7-21.6 per
  seed; every 3 of the 16 seeds have a mean last-10% cost in 20.0-30.7."""
  import json

  from conftest import learning_seeds

  from jaxsafe.cli import main
  from jaxsafe.train.logger import read_progress

  seeds = learning_seeds(0, 1, 2)
  run_dir = str(tmp_path / "run")
  assert main([*POINT_GOAL_RUN, "--seeds", "3", "--seed-offset", str(seeds[0]),
               "--run-dir", run_dir]) == 0
  with open(f"{run_dir}/summary.json") as f:
    last10_costs = [r["last10pct_episode_cost"] for r in json.load(f)["runs"]]
  assert 0.75 * 25 <= np.mean(last10_costs) <= 1.25 * 25, last10_costs
  progress = read_progress(run_dir)
  for seed in seeds:
    rows = progress["seed"] == float(seed)
    window = slice(-round(0.3 * rows.sum()), None)
    episode_return = progress["episode_return"][rows][window].mean()
    episode_cost = progress["episode_cost"][rows][window].mean()
    assert episode_return > 10.0, (seed, episode_return)
    assert 0.75 * 25 <= episode_cost <= 1.25 * 25, (seed, episode_cost)
