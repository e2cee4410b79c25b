"""Tests of the Brax CMDP tasks (envs/brax_tasks.py; CGPO App. E and F.4.1).

XLA compilation dominates the cost of these tests, so each task's jitted functions are built
once and cached for the whole module (``_compiled``): the jitted ``reset`` and ``step`` of
``envs.make(id, num_envs=4)``, shared by the shape, vmapped-stepping, determinism and cost tests
(rollouts are Python loops over that one compiled step); per differentiable task, one float64
``value_and_grad`` of a 5-step single-env rollout that gives both the gradients and the finite
differences; for the swimmer, one ``value_and_grad`` of a rollout. Ant is never compiled here
(its compile takes minutes on CPU).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsafe import envs
from jaxsafe.envs import brax_tasks

NUM_ENVS = 4
HORIZON = 5

#: id -> (observation_size, action_size, T, b, differentiable)
SPECS = {
    "cartpole-position": (4, 1, 300, -50.0, True),
    "reacher-position": (11, 2, 300, 400.0, True),
    "halfcheetah-velocity": (18, 6, 200, 400.0, True),
    "swimmer-velocity": (8, 2, 300, 150.0, False),
}


def _weighted_total(env, actions, state, weights):
  """w_r * sum_t r_t + w_c * sum_t c_t of a single-env rollout from ``state``."""
  def body(state, action):
    state = env.step(state, action)
    return state, (state.reward, state.cost)
  _, (rewards, costs) = jax.lax.scan(body, state, actions)
  return weights[0] * rewards.sum() + weights[1] * costs.sum()


class Compiled:
  """One task with its jitted functions; each is compiled on first use, once per module."""

  def __init__(self, task_id: str):
    self.task_id = task_id
    self.env = brax_tasks.TASKS[task_id]()
    self.vec_env = envs.make(task_id, num_envs=NUM_ENVS)
    self.reset = jax.jit(self.vec_env.reset)
    self.step = jax.jit(self.vec_env.step)
    self._grad64 = None
    self._grad32 = None

  def actions(self, seed: int, batch: tuple[int, ...] = (NUM_ENVS,)) -> jax.Array:
    shape = (HORIZON, *batch, self.env.action_size)
    return jax.random.uniform(jax.random.PRNGKey(seed), shape, minval=-0.5, maxval=0.5)

  def rollout(self, key: jax.Array, actions: jax.Array) -> list:
    """States of a vmapped rollout (Python loop over the compiled step)."""
    states = [self.reset(key)]
    for action in actions:
      states.append(self.step(states[-1], action))
    return states

  def value_and_grad64(self, actions, key, weights):
    """Float64 value and gradient w.r.t. actions of a single-env rollout."""
    with jax.enable_x64(True):
      if self._grad64 is None:
        env64 = brax_tasks.TASKS[self.task_id]()  # built under x64: float64 system constants
        total = lambda a, k, w: _weighted_total(env64, a, env64.reset(k), w)
        self._grad64 = jax.jit(jax.value_and_grad(total))
      total, grad = self._grad64(jnp.asarray(actions, jnp.float64), key,
                                 jnp.asarray(weights, jnp.float64))
      assert grad.dtype == jnp.float64
      return float(total), np.asarray(grad)

  def value_and_grad32(self, actions, key, weights):
    """Float32 value and gradient w.r.t. actions of a single-env rollout."""
    if self._grad32 is None:
      env = self.env
      total = lambda a, k, w: _weighted_total(env, a, env.reset(k), w)
      self._grad32 = jax.jit(jax.value_and_grad(total))
    total, grad = self._grad32(actions, key, jnp.asarray(weights))
    return float(total), np.asarray(grad)


_COMPILED: dict[str, Compiled] = {}


def _compiled(task_id: str) -> Compiled:
  if task_id not in _COMPILED:
    _COMPILED[task_id] = Compiled(task_id)
  return _COMPILED[task_id]


@pytest.fixture(scope="module", autouse=True)
def _release_compiled():
  yield
  _COMPILED.clear()


#: Their contract tests compile a Brax pipeline for ~15-30 s each on 2 CPU cores: `make test-slow`
#: (cartpole keeps the contracts in `make test`; `make smoke` steps every task).
SLOW_CONTRACT_TASKS = ("halfcheetah-velocity", "swimmer-velocity", "reacher-position")


@pytest.fixture(params=[pytest.param(t, marks=pytest.mark.slow) if t in SLOW_CONTRACT_TASKS else t
                        for t in SPECS])
def task(request) -> Compiled:
  return _compiled(request.param)


#: Their float64 gradient programs take 75-110 s each to compile on 2 CPU cores, so their
#: finite-difference checks run with `make test-slow`; cartpole's runs in `make test`.
SLOW_GRADIENT_TASKS = ("reacher-position", "halfcheetah-velocity")


@pytest.fixture(params=[pytest.param(t, marks=pytest.mark.slow) if t in SLOW_GRADIENT_TASKS else t
                        for t in SPECS if SPECS[t][4]])
def diff_task(request) -> Compiled:
  return _compiled(request.param)


def _row(tree, i: int):
  """Env ``i`` of a vmapped pytree, as numpy."""
  return jax.tree_util.tree_map(lambda x: np.asarray(x)[i], tree)


# ---------------------------------------------------------------------------------------------
# Declared constants and shapes
# ---------------------------------------------------------------------------------------------


def test_registry_lists_all_brax_tasks():
  listed = envs.list_envs()
  for name in [*SPECS, "ant-velocity"]:
    assert name in listed and name in brax_tasks.TASKS


def test_ant_declares_paper_constants_without_compiling():
  env = brax_tasks.TASKS["ant-velocity"]()
  assert (env.episode_length, env.cost_limit, env.differentiable) == (300, 1000.0, True)
  assert env.action_size == 8
  # 27 = q without the torso's x, y (15 - 2) + qd (14), as in the paper; traced, not compiled.
  sys = env.brax_env.sys
  assert (sys.q_size(), sys.qd_size()) == (15, 14)
  assert env.observation_size == 27
  assert env.backend == env.default_backend == env.brax_env.backend


def test_constants_and_jitted_vmapped_reset_step(task):
  obs_size, act_size, horizon, limit, differentiable = SPECS[task.task_id]
  env = task.env
  assert (env.observation_size, env.action_size) == (obs_size, act_size)
  assert (env.episode_length, env.cost_limit, env.differentiable) == (horizon, limit, differentiable)
  assert env.backend in ("generalized", "positional", "spring")
  assert env.brax_env.backend == env.backend
  assert task.vec_env.episode_length == horizon  # TimeLimit's T is the task's

  state = task.reset(jax.random.PRNGKey(0))
  assert state.obs.shape == (NUM_ENVS, obs_size)
  for x in (state.reward, state.cost, state.done):
    np.testing.assert_array_equal(np.asarray(x), 0.0)
  # float32, not a weak type, so later calls with strongly typed actions reuse this compile.
  state = task.step(state, jnp.full((NUM_ENVS, act_size), 0.3, jnp.float32))
  assert state.obs.shape == (NUM_ENVS, obs_size)
  for x in (state.reward, state.cost, state.done):
    assert x.shape == (NUM_ENVS,) and x.dtype == jnp.float32
  assert np.isfinite(np.asarray(state.obs)).all() and np.isfinite(np.asarray(state.cost)).all()
  np.testing.assert_array_equal(np.asarray(state.info["steps"]), 1)


def test_reset_is_random_and_fixed_by_the_key(task):
  a = np.asarray(task.reset(jax.random.PRNGKey(0)).obs)
  b = np.asarray(task.reset(jax.random.PRNGKey(1)).obs)
  np.testing.assert_array_equal(a, np.asarray(task.reset(jax.random.PRNGKey(0)).obs))
  assert not np.array_equal(a, b)
  assert len({tuple(row) for row in a.round(6)}) == NUM_ENVS  # the copies start apart


def test_vmapped_rollout_is_deterministic(task):
  actions = task.actions(0)
  run_a = task.rollout(jax.random.PRNGKey(7), actions)
  run_b = task.rollout(jax.random.PRNGKey(7), actions)
  for state_a, state_b in zip(run_a, run_b):
    for x, y in zip(jax.tree_util.tree_leaves(state_a), jax.tree_util.tree_leaves(state_b)):
      np.testing.assert_array_equal(np.asarray(x), np.asarray(y))  # bitwise
  assert np.isfinite(np.asarray(run_a[-1].obs)).all()
  run_c = task.rollout(jax.random.PRNGKey(8), actions)
  assert not np.array_equal(np.asarray(run_c[-1].obs), np.asarray(run_a[-1].obs))


# ---------------------------------------------------------------------------------------------
# Costs by hand
# ---------------------------------------------------------------------------------------------


def _hand_cost(task_id: str, pipeline_state, obs) -> float:
  """c_t of App. E / F.4.1 in numpy, from the quantities the paper names."""
  if task_id == "cartpole-position":
    return -float(np.asarray(pipeline_state.q)[0]) ** 2                 # -x_cart^2
  if task_id == "reacher-position":
    return float(np.sum(np.asarray(obs)[-3:] ** 2))                     # |tip - target|^2
  return float(np.linalg.norm(np.asarray(pipeline_state.xd.vel)[0]))   # |v_torso|


def test_step_cost_is_computed_from_the_new_state(task):
  actions = jnp.full((2, NUM_ENVS, task.env.action_size), 0.7, jnp.float32)  # strong type: no
  states = task.rollout(jax.random.PRNGKey(3), actions)                     # re-compile of step
  prev, new = states[-2], states[-1]
  for i in range(NUM_ENVS):
    cost = float(np.asarray(new.cost)[i])
    np.testing.assert_allclose(
        cost, _hand_cost(task.task_id, _row(new.sim_state, i), _row(new.obs, i)),
        rtol=1e-5, atol=1e-7)
    assert cost != _hand_cost(task.task_id, _row(prev.sim_state, i), _row(prev.obs, i))


def _known_state(task_id: str, env):
  """A pipeline state with hand-picked q, qd, and its cost computed by hand."""
  brax_env = env.brax_env
  q = np.asarray(brax_env.sys.init_q, np.float64).copy()
  qd = np.zeros(brax_env.sys.qd_size())
  if task_id == "cartpole-position":
    q[:] = [0.3, 0.05]                        # cart at x = 0.3, pole tilted
    qd[:] = [0.5, -0.2]
    expected = -0.3 ** 2
  elif task_id == "reacher-position":
    th0, th1, tx, ty = 0.4, -1.1, 0.12, -0.07  # joint angles and target position
    q[:] = [th0, th1, tx, ty]
    # Forward kinematics: link 0 of length 0.1, fingertip 0.11 along link 1; target and arm at
    # the same height, so the z-difference is 0.
    tip = 0.1 * np.array([np.cos(th0), np.sin(th0)]) + 0.11 * np.array(
        [np.cos(th0 + th1), np.sin(th0 + th1)])
    expected = float(np.sum((tip - np.array([tx, ty])) ** 2))
  elif task_id == "halfcheetah-velocity":
    # Root joints (rootx, rootz, rooty) then 6 leg joints; the torso translates with
    # (vx, vz) and does not rotate, so its speed is |(vx, vz)| whatever the legs do.
    qd[:3] = [1.5, -0.8, 0.0]
    qd[3:] = 0.7
    expected = float(np.hypot(1.5, -0.8))
  else:  # swimmer: slider1 (x), slider2 (y), rot (z), then two rotors
    qd[:] = [0.6, 0.25, 0.0, 1.0, -1.0]
    expected = float(np.hypot(0.6, 0.25))
  pipeline_state = brax_env.pipeline_init(jnp.asarray(q, jnp.float32), jnp.asarray(qd, jnp.float32))
  return pipeline_state, expected


def test_cost_of_a_known_state_matches_hand_computation(task):
  pipeline_state, expected = _known_state(task.task_id, task.env)
  obs = task.env.brax_env._get_obs(pipeline_state)
  cost = task.env.cost(pipeline_state, obs)
  np.testing.assert_allclose(float(cost), expected, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------------------------------------
# Gradients
# ---------------------------------------------------------------------------------------------

#: The check runs in float64 (the env is rebuilt under ``jax.enable_x64``): HalfCheetah's spring
#: contacts make the return non-smooth at action perturbations of ~1e-3, so float32 central
#: differences (which need eps >~ 1e-2 to beat round-off) do not converge there. In float64,
#: eps = 1e-5 is below the contact kinks and its round-off (~1e-16 |f| / eps) and truncation
#: (~eps^2) errors are ~1e-10 relative (measured <= 1e-9); rtol = 1e-5 leaves a wide margin while
#: any wrong or missing gradient path is off by O(1). (Measured separately: float32 and float64
#: reverse-mode gradients from the same initial state agree to ~1e-5, see docs/envs.md.)
FD_EPS = 1e-5
FD_RTOL = 1e-5


@pytest.mark.parametrize("which", ["return", "cost"])
def test_gradients_match_finite_differences(diff_task, which):
  task = diff_task
  key = jax.random.PRNGKey(11)
  actions = np.asarray(task.actions(1, batch=()), np.float64)
  direction = np.asarray(jax.random.normal(jax.random.PRNGKey(2), actions.shape), np.float64)
  direction /= np.linalg.norm(direction)
  weights = [1.0, 0.0] if which == "return" else [0.0, 1.0]

  _, grad = task.value_and_grad64(actions, key, weights)
  assert grad.shape == actions.shape and np.isfinite(grad).all()
  ad = float(np.vdot(grad, direction))
  plus, _ = task.value_and_grad64(actions + FD_EPS * direction, key, weights)
  minus, _ = task.value_and_grad64(actions - FD_EPS * direction, key, weights)
  fd = (plus - minus) / (2 * FD_EPS)
  if task.task_id == "cartpole-position" and which == "return":
    # r_t = 1 whatever the action: the gradient of the return is exactly zero.
    assert ad == 0.0 and fd == 0.0
    return
  assert abs(fd) > 1e-5, "degenerate direction: the check would be vacuous"
  np.testing.assert_allclose(ad, fd, rtol=FD_RTOL)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["swimmer-velocity"], indirect=True)
def test_swimmer_gradients_are_exactly_zero(task):
  assert isinstance(task.env, envs.BlockGradient) and not task.env.differentiable
  actions = task.actions(1, batch=())
  for weights in ([1.0, 0.0], [0.0, 1.0]):
    total, grad = task.value_and_grad32(actions, jax.random.PRNGKey(11), weights)
    assert total != 0.0 and grad.shape == actions.shape
    np.testing.assert_array_equal(grad, 0.0)
