"""Tests for ``jaxsafe.envs``: FunctionEnv, the registry and the wrappers.

The Brax tasks are only checked to be registered here (they are not constructed).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsafe import envs
from jaxsafe.envs.core import Env, State
from jaxsafe.envs.function import FunctionEnv, function_value
from jaxsafe.envs.registry import UnknownEnvError
from jaxsafe.envs.wrappers import (
  AutoReset,
  BlockGradient,
  EpisodeStats,
  TimeLimit,
  VmapAutoReset,
  VmapWrapper,
)

ALL_IDS = ("function", "function-floor", "cruise", "cartpole-position", "reacher-position",
           "halfcheetah-velocity", "ant-velocity", "swimmer-velocity")


def _f_eq70(x):
  return (x / 10.0) ** 2 + 0.1 + 0.1 * np.sin(8.0 * x / np.pi)


def _f_eq83(x):
  return (np.floor(x) / 10.0) ** 2 + 0.1 + 0.1 * np.sin(8.0 * x / np.pi)


def _scan_rollout(env, state, actions):
  """Steps ``env`` through ``actions`` [T, ...]; returns the final state and the stacked states."""

  def body(s, a):
    s = env.step(s, a)
    return s, s

  return jax.lax.scan(body, state, actions)


@pytest.fixture(scope="module")
def function_env():
  return envs.make("function")


@pytest.fixture(scope="module")
def jitted(function_env):
  """Jitted reset / step / rollout of the (time-limited, unbatched) FunctionEnv."""
  return {
      "reset": jax.jit(function_env.reset),
      "step": jax.jit(function_env.step),
      "rollout": jax.jit(lambda key, actions: _scan_rollout(
          function_env, function_env.reset(key), actions)[1]),
  }


# --------------------------------------------------------------------------------------------
# FunctionEnv
# --------------------------------------------------------------------------------------------


class TestFunctionEnv:

  def test_constants(self, function_env):
    assert function_env.observation_size == 1
    assert function_env.action_size == 1
    assert function_env.episode_length == 100
    assert function_env.cost_limit == 8.0
    assert function_env.differentiable is True
    assert isinstance(function_env.unwrapped, FunctionEnv)
    floor = envs.make("function-floor")
    assert floor.differentiable is False
    assert floor.episode_length == 100 and floor.cost_limit == 8.0

  def test_shapes(self, jitted):
    state = jitted["reset"](jax.random.PRNGKey(0))
    assert state.obs.shape == (1,)
    assert state.reward.shape == state.cost.shape == state.done.shape == ()
    assert abs(float(state.obs[0])) <= 0.5  # x_0 ~ U(-0.5, 0.5)
    assert float(state.reward) == float(state.cost) == float(state.done) == 0.0
    nxt = jitted["step"](state, jnp.array([0.3]))
    assert nxt.obs.shape == (1,)
    assert nxt.reward.shape == nxt.cost.shape == nxt.done.shape == ()

  @pytest.mark.parametrize("x", [1.5, -1.5, 0.0, 3.7, -12.25])
  def test_function_value_by_hand(self, x):
    np.testing.assert_allclose(function_value(jnp.float32(x)), _f_eq70(x), rtol=1e-6)
    np.testing.assert_allclose(function_value(jnp.float32(x), floor=True), _f_eq83(x), rtol=1e-6)

  def test_function_value_hand_numbers(self):
    # x = 1.5: (0.15)^2 + 0.1 + 0.1 sin(12 / pi);  floor: (1 / 10)^2 + ...
    s = 0.1 * np.sin(12.0 / np.pi)
    np.testing.assert_allclose(function_value(jnp.float32(1.5)), 0.0225 + 0.1 + s, rtol=1e-6)
    np.testing.assert_allclose(function_value(jnp.float32(1.5), True), 0.01 + 0.1 + s, rtol=1e-6)
    # x = -1.5: floor(-1.5) = -2 -> (-0.2)^2 = 0.04 in the quadratic term only.
    np.testing.assert_allclose(function_value(jnp.float32(-1.5), True), 0.04 + 0.1 - s, rtol=1e-6)

  @pytest.mark.parametrize("env_id,ref", [("function", _f_eq70), ("function-floor", _f_eq83)])
  def test_step_cost_is_f_of_position_before_move(self, env_id, ref):
    env = envs.make(env_id)
    state = env.reset(jax.random.PRNGKey(3))
    state = state.replace(sim_state=jnp.array([2.5]), obs=jnp.array([2.5]))
    nxt = jax.jit(env.step)(state, jnp.array([-0.5]))
    np.testing.assert_allclose(nxt.obs, [2.4], rtol=1e-6)
    np.testing.assert_allclose(nxt.cost, ref(2.5), rtol=1e-6)
    assert float(nxt.reward) == float(nxt.cost)
    assert float(nxt.done) == 0.0

  def test_action_is_clipped(self, jitted):
    state = jitted["reset"](jax.random.PRNGKey(0))
    x = float(state.obs[0])
    np.testing.assert_allclose(jitted["step"](state, jnp.array([5.0])).obs, [x + 0.2], rtol=1e-6)
    np.testing.assert_allclose(jitted["step"](state, jnp.array([-7.0])).obs, [x - 0.2],
                               rtol=1e-6)
    np.testing.assert_allclose(jitted["step"](state, jnp.array([0.25])).obs, [x + 0.05],
                               rtol=1e-6)

  def test_vmap(self):
    env = envs.make("function", num_envs=8)
    assert env.num_envs == 8 and env.episode_length == 100
    state = jax.jit(env.reset)(jax.random.PRNGKey(0))
    assert state.obs.shape == (8, 1)
    assert len(np.unique(np.asarray(state.obs))) == 8
    actions = jnp.linspace(-1.0, 1.0, 8)[:, None]
    nxt = jax.jit(env.step)(state, actions)
    assert nxt.obs.shape == (8, 1) and nxt.reward.shape == nxt.cost.shape == (8,)
    np.testing.assert_allclose(nxt.obs, state.obs + 0.2 * actions, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(nxt.cost, _f_eq70(np.asarray(state.obs[:, 0], np.float64)),
                               rtol=1e-5)

  def test_determinism(self, jitted):
    actions = jax.random.uniform(jax.random.PRNGKey(9), (20, 1), minval=-1.0, maxval=1.0)
    a = jitted["rollout"](jax.random.PRNGKey(5), actions)
    b = jitted["rollout"](jax.random.PRNGKey(5), actions)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
      np.testing.assert_array_equal(x, y)
    s0 = jitted["reset"](jax.random.PRNGKey(5)).obs
    s1 = jitted["reset"](jax.random.PRNGKey(6)).obs
    assert float(s0[0]) != float(s1[0])

  @pytest.mark.parametrize("quantity", ["reward", "cost"])
  def test_gradient_matches_finite_differences(self, function_env, quantity):
    key = jax.random.PRNGKey(1)
    T = 10

    def total(actions):
      states = _scan_rollout(function_env, function_env.reset(key), actions)[1]
      return getattr(states, quantity).sum()

    # Actions well inside (-1, 1) so that +-eps never hits the clip.
    actions = jax.random.uniform(jax.random.PRNGKey(2), (T, 1), minval=-0.8, maxval=0.8)
    grad = jax.jit(jax.grad(total))(actions)
    assert grad.shape == (T, 1) and np.all(np.isfinite(grad))
    # The last action moves x_T, which is never charged (cost of step t is f(x_t)).
    assert float(grad[-1, 0]) == 0.0
    # Central differences in float32 with eps = 1e-3: the rounding error of a ~1.5-sized return is
    # ~1e-7 / 1e-3 = 1e-4 and the truncation error O(eps^2) is smaller, so rtol 1e-2 plus atol 1e-3
    # (for entries near 0) is a safe yet meaningful tolerance (the gradients are O(0.01 - 1)).
    eps = 1e-3
    perturb = eps * jnp.eye(T)[:, :, None]
    total_batch = jax.jit(jax.vmap(total))
    fd = (total_batch(actions + perturb) - total_batch(actions - perturb)) / (2 * eps)
    np.testing.assert_allclose(grad[:, 0], fd, rtol=1e-2, atol=1e-3)
    assert np.max(np.abs(grad)) > 1e-2  # not trivially zero

  def test_unknown_id(self):
    with pytest.raises(UnknownEnvError, match="did you mean: function"):
      envs.make("functon")
    assert issubclass(UnknownEnvError, ValueError)
    with pytest.raises(UnknownEnvError, match="valid ids"):
      envs.make("zzzzzzzz")

  def test_list_envs(self):
    listed = envs.list_envs()
    for env_id in ALL_IDS:
      assert env_id in listed
      assert isinstance(listed[env_id], str) and listed[env_id]

  def test_invalid_init_range(self):
    with pytest.raises(ValueError):
      FunctionEnv(init_range=-1.0)


class TestCruise:
  """envs/cruise.py: Eq. 1-2 by hand, the frontier of Eq. 3, and gradients through ``step``."""

  def test_dynamics_reward_and_cost_by_hand(self):
    env = envs.make("cruise")
    assert (env.episode_length, env.cost_limit, env.unwrapped.differentiable) == (100, 25.0, True)
    state = env.reset(jax.random.PRNGKey(3))
    v0 = float(state.obs[0])
    assert abs(v0) <= 0.1
    state = env.step(state, jnp.array([2.0]))  # clipped to 1
    v1 = 0.8 * v0 + 0.2
    assert float(state.obs[0]) == pytest.approx(v1, rel=1e-6)
    assert float(state.reward) == pytest.approx(v1, rel=1e-6)
    assert float(state.cost) == pytest.approx(v1**2, rel=1e-6)

  def test_no_policy_beats_the_frontier(self):
    """Random action sequences: J_R <= sqrt(T J_C) (Eq. 3) on every episode; a constant speed
    of 0.5 (after the first steps) comes within 2% of it at J_C ~ b."""
    from jaxsafe.envs.cruise import efficiency
    env = envs.make("cruise", num_envs=64)

    def episode(key, actions):
      def step(state, a):
        state = env.step(state, a)
        return state, (state.reward, state.cost)
      _, (r, c) = jax.lax.scan(step, env.reset(key), actions)
      return r.sum(0), c.sum(0)

    actions = jax.random.uniform(jax.random.PRNGKey(0), (100, 64, 1), minval=-1, maxval=1)
    ret, cost = jax.jit(episode)(jax.random.PRNGKey(1), actions)
    assert bool(jnp.all(efficiency(ret, cost) <= 1.0 + 1e-6))
    hold = jnp.full((100, 64, 1), 0.5)  # v -> 0.5: a = v (1 - 0.8) / 0.2
    ret, cost = jax.jit(episode)(jax.random.PRNGKey(1), hold)
    assert bool(jnp.all(efficiency(ret, cost) > 0.98)) and bool(jnp.all(jnp.abs(cost - 25) < 2))

  def test_gradient_of_the_cost_through_step(self):
    env = envs.make("cruise")
    total = lambda a: jax.lax.scan(
        lambda s, x: (env.step(s, x), env.step(s, x).cost), env.reset(jax.random.PRNGKey(0)),
        a)[1].sum()
    actions = jnp.full((10, 1), 0.3)
    grad = jax.grad(total)(actions)
    eps = 1e-3
    fd = (total(actions.at[4, 0].add(eps)) - total(actions.at[4, 0].add(-eps))) / (2 * eps)
    np.testing.assert_allclose(grad[4, 0], fd, rtol=1e-2)
    assert float(grad[4, 0]) > 0  # speeding up costs

  def test_invalid_init_speed(self):
    with pytest.raises(ValueError, match="init_speed"):
      envs.make("cruise", init_speed=-1.0)


# --------------------------------------------------------------------------------------------
# Wrappers
# --------------------------------------------------------------------------------------------


class _TerminatingEnv(Env):
  """A counter that terminates (done = 1) on step ``terminate_at``; obs is the counter."""

  episode_length = 1000
  cost_limit = 0.0
  differentiable = True

  def __init__(self, terminate_at: int):
    self.terminate_at = terminate_at

  @property
  def observation_size(self) -> int:
    return 1

  @property
  def action_size(self) -> int:
    return 1

  def reset(self, key):
    zero = jnp.zeros(())
    return State(sim_state=zero, obs=jnp.zeros((1,)), reward=zero, cost=zero, done=zero)

  def step(self, state, action):
    count = state.sim_state + 1.0
    done = (count == self.terminate_at).astype(jnp.float32)
    return state.replace(sim_state=count, obs=count[None], reward=jnp.ones(()),
                         cost=jnp.zeros(()), done=done)


def _run(env, key, steps, action=0.5):
  run = jax.jit(lambda k: _scan_rollout(env, env.reset(k), jnp.full((steps, 1), action)))
  return jax.tree_util.tree_map(np.asarray, run(key)[1])


class TestTimeLimit:

  def test_truncates_at_limit(self):
    states = _run(TimeLimit(_TerminatingEnv(terminate_at=99), episode_length=3),
                  jax.random.PRNGKey(0), 3)
    np.testing.assert_array_equal(states.done, [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(states.info["truncation"], [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(states.info["steps"], [1, 2, 3])

  def test_task_termination_at_limit_is_not_truncation(self):
    states = _run(TimeLimit(_TerminatingEnv(terminate_at=3), episode_length=3),
                  jax.random.PRNGKey(0), 3)
    np.testing.assert_array_equal(states.done, [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(states.info["truncation"], [0.0, 0.0, 0.0])

  def test_termination_before_limit(self):
    states = _run(TimeLimit(_TerminatingEnv(terminate_at=2), episode_length=3),
                  jax.random.PRNGKey(0), 2)
    np.testing.assert_array_equal(states.done, [0.0, 1.0])
    np.testing.assert_array_equal(states.info["truncation"], [0.0, 0.0])

  def test_default_and_invalid_length(self):
    assert TimeLimit(FunctionEnv()).episode_length == 100
    assert envs.make("function", episode_length=7).episode_length == 7
    with pytest.raises(ValueError):
      TimeLimit(FunctionEnv(), episode_length=-1)
    with pytest.raises(ValueError):
      TimeLimit(FunctionEnv(), episode_length=0)


@pytest.fixture(scope="module")
def states():
  """x_0 and 7 steps of AutoReset(TimeLimit(FunctionEnv, T=3)) with a constant action 0.5."""
  env = AutoReset(TimeLimit(FunctionEnv(), episode_length=3))
  reset = env.reset(jax.random.PRNGKey(4))
  return np.asarray(reset.obs), _run(env, jax.random.PRNGKey(4), 7)


class TestAutoReset:

  def test_resets_with_fresh_initial_state(self, states):
    x0, s = states
    np.testing.assert_array_equal(s.done, [0, 0, 1, 0, 0, 1, 0])
    # Within an episode x moves by 0.2 * 0.5.
    np.testing.assert_allclose(s.obs[0], x0 + 0.1, rtol=1e-6)
    np.testing.assert_allclose(s.obs[1], x0 + 0.2, rtol=1e-6)
    # After the finishing step obs is a new s_0 ~ U(-0.5, 0.5), different from the first one.
    second_start = s.obs[2]
    assert abs(float(second_start[0])) <= 0.5
    assert float(second_start[0]) != float(x0[0])
    np.testing.assert_allclose(s.obs[3], second_start + 0.1, rtol=1e-5, atol=1e-6)
    third_start = s.obs[5]
    assert float(third_start[0]) not in (float(x0[0]), float(second_start[0]))
    np.testing.assert_array_equal(s.info["steps"], [1, 2, 0, 1, 2, 0, 1])

  def test_keeps_finishing_step(self, states):
    x0, s = states
    # reward / cost / done / truncation of the finishing step are those of that step ...
    np.testing.assert_allclose(s.reward[2], _f_eq70(float(x0[0]) + 0.2), rtol=1e-5)
    np.testing.assert_array_equal(s.cost, s.reward)
    assert s.done[2] == 1.0 and s.info["truncation"][2] == 1.0
    # ... and final_obs is the observation the episode ended in, before the reset.
    np.testing.assert_allclose(s.info["final_obs"][2], x0 + 0.3, rtol=1e-5)
    # Elsewhere final_obs is simply obs.
    not_done = s.done == 0
    np.testing.assert_array_equal(s.info["final_obs"][not_done], s.obs[not_done])


class TestEpisodeStats:

  def test_episode_totals(self):
    env = envs.make("function", auto_reset=True, episode_length=5)
    s = _run(env, jax.random.PRNGKey(7), 12, action=-0.7)
    finished = np.zeros(12)
    finished[[4, 9]] = 1.0
    np.testing.assert_array_equal(s.info["episode_finished"], finished)
    np.testing.assert_array_equal(s.done, finished)
    rewards = s.reward.astype(np.float64)
    costs = s.cost.astype(np.float64)
    # Before any episode finished: zeros. Then the totals of the last finished episode.
    np.testing.assert_array_equal(s.info["episode_return"][:4], np.zeros(4))
    for last, (lo, hi) in [(slice(4, 9), (0, 5)), (slice(9, 12), (5, 10))]:
      np.testing.assert_allclose(s.info["episode_return"][last], rewards[lo:hi].sum(), rtol=1e-5)
      np.testing.assert_allclose(s.info["episode_cost"][last], costs[lo:hi].sum(), rtol=1e-5)
      np.testing.assert_array_equal(s.info["episode_length"][last], 5.0)
    # Running totals restart after each finished episode.
    np.testing.assert_allclose(s.info["running_return"][10:], np.cumsum(rewards[10:]), rtol=1e-5)
    assert s.info["running_return"][9] == 0.0 and s.info["running_length"][11] == 2.0

  def test_vmapped_stack(self):
    env = envs.make("function", num_envs=3, auto_reset=True, episode_length=4)
    assert isinstance(env, EpisodeStats) and isinstance(env.env, VmapAutoReset)
    run = jax.jit(lambda k: _scan_rollout(env, env.reset(k), jnp.zeros((4, 3, 1)))[1])
    s = jax.tree_util.tree_map(np.asarray, run(jax.random.PRNGKey(0)))
    assert s.info["episode_return"].shape == (4, 3)
    np.testing.assert_array_equal(s.info["episode_finished"][:, 0], [0, 0, 0, 1])
    np.testing.assert_allclose(s.info["episode_return"][3], s.reward.sum(0), rtol=1e-5)


  @staticmethod
  def _staggered_starts(env, key, steps=13):
    """Rolls 8 envs (T = 4, step counters started at 0..3, so 1-4 episodes end per step) and
    returns (the stacked states, every episode's first obs: the 8 at reset, then each restart)."""
    offsets = jnp.array([0, 1, 2, 3, 3, 2, 0, 1], jnp.int32)
    start = env.reset(key)
    start = start.replace(info={**start.info, "steps": start.info["steps"] + offsets})
    actions = jnp.linspace(-1.0, 1.0, steps * 8).reshape(steps, 8, 1)
    return start.obs, _scan_rollout(env, start, actions)[1]

  def test_vmap_auto_reset_starts_every_episode_fresh(self):
    """Every episode starts from its own draw of rho_0: 8 + 26 episode starts over 13 steps
    (more than the pool of 8, so it is refilled several times), all different, all in the
    support of rho_0, with the EpisodeStats and step counters restarted."""
    task = TimeLimit(FunctionEnv(), episode_length=4)
    env = EpisodeStats(VmapAutoReset(task, 8))
    first, s = jax.jit(lambda k: self._staggered_starts(env, k))(jax.random.PRNGKey(5))
    done = np.asarray(s.done) > 0.5
    starts = np.concatenate([np.asarray(first)[:, 0], np.asarray(s.obs)[done][:, 0]])
    assert done.sum() == 26 and len(np.unique(starts)) == len(starts)
    assert np.all(np.abs(starts) <= task.unwrapped.init_range)
    np.testing.assert_array_equal(np.asarray(s.info["steps"])[done], 0)
    np.testing.assert_array_equal(np.asarray(s.info["running_length"])[done], 0.0)
    # The finished step's own transition is kept: final_obs is where the episode ended.
    ended = np.asarray(s.info["final_obs"])[done][:, 0]
    assert not np.isin(ended, starts).any()

  def test_vmap_auto_reset_is_the_same_under_an_outer_vmap(self):
    """Seeds in parallel (the conds run as selects) give each seed's own episodes (to float
    rounding: the vmapped program may fuse the task's arithmetic differently)."""
    env = EpisodeStats(VmapAutoReset(TimeLimit(FunctionEnv(), episode_length=4), 8))
    keys = jax.random.split(jax.random.PRNGKey(3), 2)
    batched = jax.jit(jax.vmap(lambda k: self._staggered_starts(env, k)))(keys)
    for i in range(2):
      alone = jax.jit(lambda k: self._staggered_starts(env, k))(keys[i])
      for x, y in zip(jax.tree_util.tree_leaves(alone), jax.tree_util.tree_leaves(batched),
                      strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y)[i], rtol=1e-6, atol=1e-7)
    assert not np.array_equal(np.asarray(batched[0][0]), np.asarray(batched[0][1]))


class TestVmapAndBlockGradient:

  def test_vmap_wrapper_rejects_zero(self):
    with pytest.raises(ValueError):
      VmapWrapper(FunctionEnv(), num_envs=0)
    with pytest.raises(ValueError):
      envs.make("function", num_envs=0)

  def test_block_gradient(self):
    inner = envs.make("function")
    env = BlockGradient(inner)
    assert env.differentiable is False and inner.differentiable is True
    assert env.episode_length == 100 and env.cost_limit == 8.0
    state = env.reset(jax.random.PRNGKey(0))

    def cost(action, x):
      s = state.replace(sim_state=x, obs=x)
      nxt = env.step(env.step(s, action), action)
      return nxt.cost + nxt.obs.sum()

    x = jnp.array([1.3])
    g_action, g_x = jax.jit(jax.grad(cost, argnums=(0, 1)))(jnp.array([0.4]), x)
    np.testing.assert_array_equal(g_action, [0.0])
    np.testing.assert_array_equal(g_x, [0.0])
    # The unwrapped env does carry a gradient; the values are unchanged by the wrapper.
    g_inner = jax.grad(lambda a: inner.step(state, a).obs.sum())(jnp.array([0.4]))
    np.testing.assert_allclose(g_inner, [0.2], rtol=1e-6)
    a = jnp.array([0.4])
    np.testing.assert_array_equal(env.step(state, a).obs, inner.step(state, a).obs)


@pytest.mark.parametrize("task,zero_return,zero_falls", [
    ("reach-around", (-205.0, -195.0), False), ("swing-up", (-200.5, -199.0), False),
    ("push-wall", (-112.0, -108.0), False), ("balance", (25.0, 60.0), True)])
def test_control_tasks_doing_nothing_and_their_gradients(task, zero_return, zero_falls):
  """envs/control.py: the zero-action returns their docstrings state, and a finite, non-zero
  gradient of the episode return with respect to the actions (the tasks exist for BPTT)."""
  env = envs.make(task, num_envs=16)

  def episode_return(actions):
    def step(carry, action):
      state, alive = carry
      state = env.step(state, action)
      terminal = state.done * (1.0 - state.info.get("truncation", 0.0))
      return (state, alive * (1.0 - terminal)), (alive * state.reward, alive)
    start = (env.reset(jax.random.PRNGKey(0)), jnp.ones(16))
    _, (reward, alive) = jax.lax.scan(step, start, actions)
    return reward.sum(0).mean(), alive[-1].mean()

  actions = jnp.zeros((env.episode_length, 16, env.action_size))
  (ret, alive_at_end), grad = jax.jit(jax.value_and_grad(episode_return, has_aux=True))(actions)
  assert zero_return[0] <= float(ret) <= zero_return[1]
  assert (float(alive_at_end) < 0.5) == zero_falls
  assert bool(jnp.all(jnp.isfinite(grad))) and float(jnp.abs(grad).max()) > 0
