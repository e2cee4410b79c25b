"""The faithful navigation tasks (envs/navigation/faithful.py) against Safety-Gymnasium itself.

From the state of a live ``SafetyPointGoal1-v0`` (through the bridge's compatibility layer), the
JAX task and Safety-Gymnasium take the same actions for 100 steps; every step compares each
observation group, the reward and the cost. A goal drawn after an arrival is random in both, so
Safety-Gymnasium's new goal is copied over (the reward of the arrival step is compared first).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import safety_gymnasium_or_none

from jaxsafe.envs import navigation
from jaxsafe.envs.navigation import faithful

SG = safety_gymnasium_or_none()
pytestmark = pytest.mark.skipif(SG is None, reason="needs the safety-gymnasium extra")

TASK = navigation.make_task("point", "goal", dynamics="safety-gymnasium")
CIRCLE = navigation.make_task("point", "circle", dynamics="safety-gymnasium")
#: compiled once per dtype (float64 under ``jax.enable_x64``), shared by the tests
STEP = {task: jax.jit(task.step) for task in (TASK, CIRCLE)}
OBSERVE = jax.jit(TASK._observe)
SENSORS = {"accelerometer": slice(0, 3), "velocimeter": slice(3, 6), "gyro": slice(6, 9),
           "magnetometer": slice(9, 12)}
GROUPS = {**SENSORS, "goal_lidar": slice(12, 28), "hazards_lidar": slice(28, 44),
          "vases_lidar": slice(44, 60)}
CIRCLE_GROUPS = {**SENSORS, "circle_lidar": slice(12, 28)}


@pytest.fixture(scope="module")
def sg_env():
  env = SG.make("SafetyPointGoal1-v0")
  yield env
  env.close()


def bearing_to(sg_task, target) -> float:
  """The target's bearing in the robot's frame (rad), from Safety-Gymnasium's own state."""
  x, y = sg_task._ego_xy(np.asarray(target)[:2])
  return float(np.arctan2(y, x))


def steer(sg_task, target: str, rng) -> np.ndarray:
  """Full forward push and a yaw command at the goal or the nearest hazard, plus noise."""
  if target == "goal":
    aim = sg_task.goal.pos
  else:
    hazards = np.asarray(sg_task.hazards.pos)
    aim = hazards[np.argmin(np.linalg.norm(hazards[:, :2] - sg_task.agent.pos[:2], axis=1))]
  return np.clip([1.0, 2.0 * bearing_to(sg_task, aim)] + rng.normal(0, 0.3, 2), -1, 1)


def compare(sg_env, seed: int, actions, steps: int = 100, resync: bool = False, task=TASK,
            groups=GROUPS):
  """Largest per-step error of each observation group, of the reward and of the cost.

  ``actions(sg_task, rng)`` picks each action. With ``resync`` the JAX state is read from
  Safety-Gymnasium before every step (one-step errors); without, both run open loop from the
  same start, and a goal drawn after an arrival is copied over (it is random in both).
  """
  obs, _ = sg_env.reset(seed=seed)
  builder = sg_env.unwrapped
  sg_task = builder.task
  rng = np.random.default_rng(seed)
  errors = {name: 0.0 for name in [*groups, "reward", "cost"]}
  events = {"goal_met": 0, "cost": 0}
  state = faithful.state_from_safety_gymnasium(task, builder)
  errors["observation at reset"] = float(np.abs(np.asarray(state.obs) - obs).max())
  for _ in range(steps):
    if resync:
      state = faithful.state_from_safety_gymnasium(task, builder)
    action = actions(sg_task, rng)
    obs, reward, cost, _, _, info = sg_env.step(action)
    state = STEP[task](state, jnp.asarray(action))
    errors["reward"] = max(errors["reward"], abs(float(state.reward) - reward))
    errors["cost"] = max(errors["cost"], abs(float(state.cost) - cost))
    events["cost"] += cost > 0
    if info.get("goal_met"):
      events["goal_met"] += 1
      nav = state.sim_state
      goal = jnp.asarray(np.asarray(sg_task.goal.pos)[:2], nav.goal.dtype)
      nav = nav.replace(goal=goal, last_distance=jnp.linalg.norm(goal - nav.pose.pos))
      state = state.replace(sim_state=nav, obs=OBSERVE(nav))
    for name, part in groups.items():
      errors[name] = max(errors[name], float(np.abs(np.asarray(state.obs)[part] - obs[part]).max()))
  return errors, events


def test_observation_is_safety_gymnasiums_layout(sg_env):
  assert TASK.observation_size == sg_env.observation_space.shape[0] == 60
  assert list(sg_env.unwrapped.task.obs_info.obs_space_dict) == list(GROUPS)


@pytest.mark.parametrize("target", ["goal", "hazard"])
def test_every_step_agrees_with_safety_gymnasium_in_float64(sg_env, target):
  """One step from each of Safety-Gymnasium's states along an episode that seeks ``target``."""
  with jax.enable_x64(True):
    results = [compare(sg_env, seed, lambda t, rng: steer(t, target, rng), 150, resync=True)
               for seed in (0, 1)]
  for errors, events in results:
    # each run exercises what it compares: an arrival (goal) or hazard costs (hazard); seeds 0-5
    # gave 1-2 arrivals and 11-24 steps of cost
    assert events["goal_met"] >= 1 if target == "goal" else events["cost"] >= 5, events
    assert errors["reward"] < 1e-9 and errors["cost"] == 0.0, errors
    assert max(errors[name] for name in GROUPS) < 1e-6, errors
    assert errors["observation at reset"] < 1e-9, errors


def test_circle_agrees_with_safety_gymnasium_step_by_step_in_float64():
  """SafetyPointCircle1-v0: one step from each state (full push, random turns, so the robot
  crosses the walls), then 100 steps open loop with gentle actions."""
  env = SG.make("SafetyPointCircle1-v0")
  assert CIRCLE.observation_size == env.observation_space.shape[0] == 28
  assert list(env.unwrapped.task.obs_info.obs_space_dict) == list(CIRCLE_GROUPS)
  assert CIRCLE.episode_length == env.unwrapped.task.num_steps == 500
  compare_circle = functools.partial(compare, env, task=CIRCLE, groups=CIRCLE_GROUPS)
  with jax.enable_x64(True):
    for seed in (0, 1):
      errors, events = compare_circle(seed, lambda _, rng: np.array([1.0, rng.uniform(-1, 1)]),
                                      200, resync=True)
      assert events["cost"] >= 20, events
      assert errors["reward"] < 1e-9 and errors["cost"] == 0.0, errors
      assert max(errors[name] for name in CIRCLE_GROUPS) < 1e-6, errors
    errors, _ = compare_circle(2, lambda _, rng: rng.uniform(-0.1, 0.1, 2), 100)
    assert errors["reward"] < 1e-9 and errors["cost"] == 0.0, errors
    assert max(errors[name] for name in CIRCLE_GROUPS) < 1e-6, errors
  env.close()


def test_open_loop_rollout_agrees_over_100_steps_in_float64(sg_env):
  """The same start and action sequence, uniform in [-0.1, 0.1]^2: no drift over 100 steps.

  |a_0| >= 0.05 already saturates the forward push, so the robot drives at full force; turns
  stay gentle. Under yaw commands near +-1 the yaw servo (time constant 0.3 ms against MuJoCo's
  2 ms step) chatters on its clamp and rounding differences grow after 13-108 steps (measured
  on 6 seeds with uniform actions in [-0.3, 0.3]^2 and [-1, 1]^2), as they do between MuJoCo and
  MJX (mujoco_point.py); the one-step tests above cover those actions.
  """
  with jax.enable_x64(True):
    for seed in (0, 1, 2):
      errors, _ = compare(sg_env, seed, lambda _, rng: rng.uniform(-0.1, 0.1, 2), 100)
      assert errors["reward"] < 1e-9 and errors["cost"] == 0.0, errors
      assert max(errors[name] for name in GROUPS) < 1e-6, errors


def test_every_step_agrees_in_float32_to_single_precision(sg_env):
  """The tasks train in float32: one-step errors stay at single precision's scale."""
  errors, _ = compare(sg_env, 4, lambda t, rng: steer(t, "goal", rng), 100, resync=True)
  assert errors["reward"] < 1e-5 and errors["cost"] == 0.0, errors
  # Within a step the chattering yaw servo amplifies rounding: the yaw rate (up to ~3 rad/s)
  # and the accelerometer (up to ~30 m/s^2) keep 4-5 digits, the rest 5-6.
  assert errors["accelerometer"] < 1e-2 and errors["gyro"] < 1e-3, errors
  assert max(errors[name] for name in GROUPS if name not in ("accelerometer", "gyro")) < 1e-4, errors


def test_smooth_cost_is_safety_gymnasiums_penetration_cost(sg_env):
  """With ``constrain_indicator`` off Safety-Gymnasium charges sum(0.2 - d) inside hazards."""
  smooth = navigation.make_task("point", "goal", dynamics="safety-gymnasium", smooth_cost=True)
  step = jax.jit(smooth.step)
  sg_env.reset(seed=5)
  builder = sg_env.unwrapped
  builder.task.cost_conf.constrain_indicator = False
  try:
    with jax.enable_x64(True):
      costs = []
      for _ in range(60):
        state = faithful.state_from_safety_gymnasium(smooth, builder)
        hazards = np.asarray(builder.task.hazards.pos)
        aim = hazards[np.argmin(np.linalg.norm(hazards[:, :2] - builder.task.agent.pos[:2], axis=1))]
        action = np.array([1.0, np.clip(2.0 * bearing_to(builder.task, aim), -1, 1)])
        _, _, cost, _, _, _ = sg_env.step(action)
        state = step(state, jnp.asarray(action))
        costs.append((cost, float(state.cost)))
  finally:
    builder.task.cost_conf.constrain_indicator = True
  costs = np.array(costs)
  assert np.sum(costs[:, 0] > 0) >= 5 and costs[:, 0].max() < 0.2
  np.testing.assert_allclose(costs[:, 1], costs[:, 0], atol=1e-9)


@pytest.fixture(scope="module")
def layouts():
  """4,000 fresh episodes' states."""
  return jax.jit(jax.vmap(TASK.reset))(jax.random.split(jax.random.PRNGKey(0), 4000))


def test_layouts_keep_safety_gymnasiums_keepouts_and_spread(layouts):
  states = layouts
  nav = states.sim_state
  points = np.concatenate([np.asarray(nav.pose.pos)[:, None], np.asarray(nav.goal)[:, None],
                           np.asarray(nav.hazards), np.asarray(nav.vases)], axis=1)
  keepouts = TASK._keepouts
  gaps = (np.linalg.norm(points[:, :, None] - points[:, None], axis=-1)
          - (keepouts[:, None] + keepouts[None]))
  gaps[:, np.arange(len(keepouts)), np.arange(len(keepouts))] = np.inf
  assert gaps.min() >= 0, gaps.min()
  assert np.all(np.abs(points) <= 1.5 - keepouts[None, :, None] + 1e-6)
  # the robot starts at rest, headings are uniform, the robot is never inside a hazard
  assert np.all(np.asarray(nav.pose.velocity) == 0)
  heading = np.asarray(nav.pose.heading)
  assert heading.min() >= 0 and heading.max() < 2 * np.pi and abs(np.mean(np.cos(heading))) < 0.05
  assert float(jnp.max(states.cost)) == 0.0


@pytest.mark.slow
def test_layout_distribution_matches_safety_gymnasiums(sg_env, layouts):
  """Distances robot-goal and robot-nearest hazard over 100 resets of Safety-Gymnasium."""
  def summary(robot, goal, hazards):
    return (np.linalg.norm(goal - robot, axis=-1).mean(),
            np.linalg.norm(hazards - robot[:, None], axis=-1).min(-1).mean())

  sg_layouts = []
  for seed in range(100):
    sg_env.reset(seed=1000 + seed)
    task = sg_env.unwrapped.task
    sg_layouts.append((task.agent.pos[:2], np.asarray(task.goal.pos)[:2],
                       np.asarray(task.hazards.pos)[:, :2]))
  robot, goal, hazards = (np.array(x) for x in zip(*sg_layouts, strict=True))
  nav = layouts.sim_state
  ours = summary(np.asarray(nav.pose.pos), np.asarray(nav.goal), np.asarray(nav.hazards))
  theirs = summary(robot, goal, hazards)
  # standard errors over 100 resets are ~0.05 and ~0.015
  assert abs(ours[0] - theirs[0]) < 0.15 and abs(ours[1] - theirs[1]) < 0.05, (ours, theirs)


def test_new_goals_keep_out_of_the_robot_and_objects(layouts):
  """One new goal in each of 4,000 layouts: valid, or (if all candidates failed) nearly.

  Measured over 40,000 layouts: 2 fallbacks, 2.7 mm and 0.5 mm inside a keep-out.
  """
  nav = layouts.sim_state
  draws = jax.random.uniform(jax.random.PRNGKey(4), (4000, 2 * faithful.CANDIDATES))
  goals = np.asarray(jax.jit(jax.vmap(TASK._new_goal))(nav, draws))
  others = np.concatenate([np.asarray(nav.pose.pos)[:, None], nav.hazards, nav.vases], axis=1)
  keepouts = np.delete(TASK._keepouts, 1)
  gaps = (np.linalg.norm(goals[:, None] - others, axis=-1) - keepouts - 0.305).min(axis=1)
  assert np.sum(gaps < 0) <= 4 and gaps.min() > -0.01, np.sort(gaps)[:5]
  assert np.all(np.abs(goals) <= 1.5 - 0.305)


def test_options_and_errors():
  with pytest.raises(ValueError, match="robots"):
    navigation.make_task("ant", "goal", dynamics="safety-gymnasium")
  with pytest.raises(ValueError, match="unknown dynamics"):
    navigation.make_task("point", "goal", dynamics="mujoco")
  with pytest.raises(ValueError, match="tasks"):
    navigation.make_task("point", "button", dynamics="safety-gymnasium")
  fixed = navigation.make_task("point", "goal", dynamics="safety-gymnasium", fixed_layout=True)
  reset = jax.jit(fixed.reset)
  a, b = (reset(jax.random.PRNGKey(k)).sim_state for k in (0, 1))
  np.testing.assert_array_equal(a.hazards, b.hazards)
  assert not np.allclose(a.pose.pos, b.pose.pos)


@pytest.mark.slow  # ~1 min each of compiles and a 2-episode evaluation on the real task
@pytest.mark.parametrize("env_id,real", [("point-goal", "sg/SafetyPointGoal1-v0"),
                                         ("car-goal", "sg/SafetyCarGoal1-v0")])
def test_trains_resumes_draws_and_runs_on_the_real_task(tmp_path, capsys, env_id, real):
  """`jaxsafe train ppo-lag ENV --env-set dynamics=safety-gymnasium`, a resume, then
  `eval --video` and `eval --env sg/...` (the policy runs on the real task)."""
  from conftest import TINY
  from PIL import Image

  from jaxsafe.cli import main
  from jaxsafe.train.runner import load_states

  run_dir, gif = str(tmp_path / "run"), str(tmp_path / "episode.gif")
  sets = [arg for k, v in TINY.items() for arg in ("--set", f"{k}={v}")]
  assert main(["train", "ppo-lag", env_id, "--total-steps", "1600", "--run-dir", run_dir,
               "--quiet", "--env-set", "dynamics=safety-gymnasium", *sets]) == 0
  assert main(["train", "--resume", run_dir, "--total-steps", "3200", "--quiet"]) == 0
  p, _, iteration = load_states(run_dir)
  assert p.spec.env_options == {"dynamics": "safety-gymnasium"}
  assert isinstance(p.agent.env.unwrapped, faithful.FaithfulGoal)
  assert p.agent.env.unwrapped.robot.name == env_id.split("-")[0]
  assert iteration * p.agent.steps_per_update >= 3200
  capsys.readouterr()
  assert main(["eval", run_dir, "--episodes", "1", "--video", gif]) == 0
  assert "250 frames" in capsys.readouterr().out
  with Image.open(gif) as image:
    assert image.n_frames == 250
  assert main(["eval", run_dir, "--episodes", "2", "--env", real]) == 0
  out = capsys.readouterr().out
  assert f"evaluated on {real}" in out and "2 episodes" in out
