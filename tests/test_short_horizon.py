"""The first-order gradient estimator, the TD(lambda) targets, the world model and the buffer."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxsafe import envs
from jaxsafe.core import normalize, replay, returns, short_horizon
from jaxsafe.core.experience import Transition, flatten_steps
from jaxsafe.models.world_model import ModelEnv, WorldModel


def _td_lambda_reference(rewards, next_values, terminal, window, lam):
  """Eq. 67 literally: (1 - lam) sum_n lam^(n-1) G_{t:t+n} + lam^(m-1) G_{t:t+m} up to the
  window end, with n-step returns G_{t:t+n} = r_t + ... + r_{t+n-1} + V(s_{t+n}) cut at terminals."""
  horizon, n_envs = rewards.shape
  out = np.zeros_like(rewards)
  for i in range(n_envs):
    for t in range(horizon):
      end = min((t // window + 1) * window, horizon)
      m = end - t  # steps to the window end
      n_step = []
      for n in range(1, m + 1):
        total, stopped = 0.0, False
        for k in range(t, t + n):
          total += rewards[k, i]
          if terminal[k, i]:
            stopped = True
            break
        if not stopped:
          total += next_values[t + n - 1, i]
        n_step.append(total)
      weights = [(1 - lam) * lam ** (n - 1) for n in range(1, m)] + [lam ** (m - 1)]
      out[t, i] = float(np.dot(weights, n_step))
  return out


def test_td_lambda_targets_match_eq_67():
  rng = np.random.default_rng(0)
  horizon, n_envs, window, lam = 12, 3, 5, 0.8
  rewards = rng.normal(size=(horizon, n_envs)).astype(np.float32)
  next_values = rng.normal(size=(horizon, n_envs)).astype(np.float32)
  next_values[-1] = 0.0  # V(s_T, T) = 0
  terminal = np.zeros((horizon, n_envs), np.float32)
  terminal[7, 1] = 1.0  # env 1 terminates at t = 7; later steps carry zero reward
  rewards[8:, 1] = 0.0
  got = returns.td_lambda_targets(jnp.asarray(rewards), jnp.asarray(next_values),
                                        jnp.asarray(terminal), window, lam)
  want = _td_lambda_reference(rewards, next_values, terminal, window, lam)
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)


@short_horizon.action_policy
def _policy(params, obs, key):
  """A tiny reparameterised linear-Gaussian policy: a = tanh(w s + b + 0.1 eps)."""
  eps = jax.random.normal(key, obs.shape[:-1] + (1,))
  return jnp.tanh(obs @ params["w"] + params["b"] + 0.1 * eps)


@pytest.fixture(scope="module")
def function_env():
  return envs.make("function", num_envs=4)


def test_bptt_gradient_matches_finite_differences(function_env):
  """h = T, no critics: g and q are the exact gradients of the sampled episodes' mean return
  and cost; checked in float64 against central differences along random directions."""
  with jax.enable_x64(True):
    env = function_env
    params = {"w": jnp.array([[0.3]], jnp.float64), "b": jnp.array([0.2], jnp.float64)}
    start = env.reset(jax.random.PRNGKey(0))
    key = jax.random.PRNGKey(1)
    horizon = 20

    def losses(p):
      return short_horizon.rollout_losses(p, env, _policy, None, start, key, horizon, horizon)[0]

    g, q, episodes = short_horizon.gradients(params, env, _policy, None, start, key, horizon, horizon)
    loss_r, _ = losses(params)
    np.testing.assert_allclose(float(loss_r), float(episodes.reward.sum(0).mean()), rtol=1e-12)
    rng = np.random.default_rng(0)
    eps = 1e-6
    for _ in range(3):
      v = {"w": jnp.asarray(rng.normal(size=(1, 1))), "b": jnp.asarray(rng.normal(size=(1,)))}
      plus = losses(jax.tree_util.tree_map(lambda a, b: a + eps * b, params, v))
      minus = losses(jax.tree_util.tree_map(lambda a, b: a - eps * b, params, v))
      for grad, index in ((g, 0), (q, 1)):
        fd = (float(plus[index]) - float(minus[index])) / (2 * eps)
        analytic = sum(float(jnp.vdot(grad[k], v[k])) for k in v)
        assert abs(fd - analytic) <= 1e-6 * max(1.0, abs(fd)), (index, fd, analytic)


def test_windows_cut_the_gradient_at_their_start(function_env):
  """On `function` r_t = f(x_t) depends on a_{t-1}, not a_t. With windows of one step the state
  is detached before every action, so (with zero critics) nothing reaches the policy: g = 0.
  With windows of two steps the gradient flows from r_{t+1} to a_t: g != 0."""
  env = function_env
  params = {"w": jnp.array([[0.3]]), "b": jnp.array([0.2])}
  start = env.reset(jax.random.PRNGKey(0))
  zero_values = lambda obs, t: (jnp.zeros(obs.shape[0]), jnp.zeros(obs.shape[0]))
  key = jax.random.PRNGKey(1)
  g1, q1, _ = short_horizon.gradients(params, env, _policy, zero_values, start, key, 10, 1)
  g2, _, _ = short_horizon.gradients(params, env, _policy, zero_values, start, key, 10, 2)
  assert all(float(jnp.abs(x).max()) == 0.0 for x in jax.tree_util.tree_leaves((g1, q1)))
  assert float(jnp.abs(g2["b"]).max()) > 1e-4


def test_critics_bootstrap_only_at_window_ends(function_env):
  """Constant critics V = 1: L_R = J_R + (number of window ends before T) for live envs."""
  env = function_env
  params = {"w": jnp.array([[0.3]]), "b": jnp.array([0.2])}
  start = env.reset(jax.random.PRNGKey(0))
  ones = lambda obs, t: (jnp.ones(obs.shape[0]), 2.0 * jnp.ones(obs.shape[0]))
  (loss_r, loss_c), episodes = short_horizon.rollout_losses(
      params, env, _policy, ones, start, jax.random.PRNGKey(1), 20, 5)
  np.testing.assert_allclose(float(loss_r), float(episodes.reward.sum(0).mean()) + 3.0, rtol=1e-6)
  np.testing.assert_allclose(float(loss_c), float(episodes.cost.sum(0).mean()) + 6.0, rtol=1e-6)


def test_buffer_wraps_around_and_samples_filled_part():
  buf = replay.init({"x": jnp.zeros(2)}, capacity=5)
  buf = replay.add(buf, {"x": jnp.arange(6.0).reshape(3, 2)})
  assert int(buf.size) == 3 and int(buf.position) == 3
  buf = replay.add(buf, {"x": jnp.arange(6.0, 12.0).reshape(3, 2)})
  assert int(buf.size) == 5 and int(buf.position) == 1
  # Item 0 was overwritten by the last added row.
  np.testing.assert_array_equal(np.asarray(buf.data["x"][0]), [10.0, 11.0])
  sample = replay.sample(replay.add(replay.init({"x": jnp.zeros(2)}, 10), {"x": jnp.ones((2, 2))}),
                         jax.random.PRNGKey(0), 50)
  np.testing.assert_array_equal(np.asarray(sample["x"]), np.ones((50, 2)))


def test_world_model_loss_is_eq_85():
  model = WorldModel(obs_size=2, action_size=1, hidden_sizes=(8,))
  params = model.init(jax.random.PRNGKey(0))
  stats = normalize.init(2)
  zeros = jnp.zeros(2)
  batch = Transition(obs=jnp.array([[0.5, -1.0], [2.0, 0.0]]), action=jnp.array([[0.3], [-0.7]]),
                     raw_action=None, next_obs=jnp.array([[0.6, -0.9], [1.5, 0.2]]),
                     reward=jnp.array([1.0, -2.0]), cost=jnp.array([0.0, 3.0]), terminal=zeros,
                     done=zeros, alive=jnp.array([1.0, 1.0]))
  next_obs, reward, cost = model.predict(params, stats, batch.obs, batch.action)
  by_hand = np.mean([np.sum((np.asarray(next_obs[i]) - np.asarray(batch.next_obs[i])) ** 2)
                     + (float(reward[i]) - float(batch.reward[i])) ** 2
                     + (float(cost[i]) - float(batch.cost[i])) ** 2 for i in range(2)])
  np.testing.assert_allclose(float(model.loss(params, stats, batch)), by_hand, rtol=1e-6)
  # A zero weight drops an item.
  half = batch.replace(alive=jnp.array([1.0, 0.0]))
  first = (np.sum((np.asarray(next_obs[0]) - np.asarray(batch.next_obs[0])) ** 2)
           + (float(reward[0]) - 1.0) ** 2 + float(cost[0]) ** 2)
  np.testing.assert_allclose(float(model.loss(params, stats, half)), first, rtol=1e-6)


def _function_floor_transitions(key, n_envs, horizon):
  env = envs.make("function-floor", num_envs=n_envs)
  policy = short_horizon.action_policy(
      lambda p, obs, k: jax.random.uniform(k, obs.shape, minval=-1.0, maxval=1.0))
  _, episodes = short_horizon.rollout_losses(None, env, policy, None, env.reset(key),
                                             jax.random.fold_in(key, 1), horizon, horizon)
  return flatten_steps(episodes)


def test_world_model_loss_falls_on_held_out_transitions():
  """Acceptance: the model's Eq. 85 loss on held-out real transitions of `function-floor` falls
  during training (to below a quarter of its initial value)."""
  train = _function_floor_transitions(jax.random.PRNGKey(0), 64, 100)
  held_out = _function_floor_transitions(jax.random.PRNGKey(1), 16, 100)
  model = WorldModel(obs_size=1, action_size=1, hidden_sizes=(64, 64))
  stats = normalize.update(normalize.init(1), train.obs)
  tx = optax.adam(1e-3)
  params = model.init(jax.random.PRNGKey(2))

  @jax.jit
  def fit(params, key):
    opt_state = tx.init(params)

    def one_step(carry, k):
      params, opt_state = carry
      index = jax.random.randint(k, (256,), 0, train.obs.shape[0])
      batch = jax.tree_util.tree_map(lambda x: x[index], train)
      params, opt_state, loss = model.sgd_step(params, opt_state, tx, stats, batch)
      return (params, opt_state), loss

    (params, _), _ = jax.lax.scan(one_step, (params, opt_state), jax.random.split(key, 1500))
    return params

  before = float(model.loss(params, stats, held_out))
  trained = fit(params, jax.random.PRNGKey(3))
  after = float(model.loss(trained, stats, held_out))
  assert after < 0.25 * before, (before, after)
  # The imagined env steps like the model predicts.
  imagined = ModelEnv(model, trained, stats, episode_length=100, cost_limit=8.0)
  state = imagined.step(ModelEnv.from_obs(held_out.obs[:5]), held_out.action[:5])
  np.testing.assert_allclose(np.asarray(state.obs),
                             np.asarray(model.predict(trained, stats, held_out.obs[:5], held_out.action[:5])[0]))


def test_paper_metrics_by_hand():
  from jaxsafe.train.paper_metrics import convergence_step, violation_ratio
  steps = [10, 20, 30, 40, 50, 60]
  returns = [1.0, 5.0, 9.0, 9.5, 9.2, 9.4]
  costs = [0.0, 0.0, 9.0, 7.0, 7.5, 7.9]
  # From index 2 the return settles (within 0.6) but its cost 9 > 8; index 3 is the first
  # feasible settled point.
  assert convergence_step(steps, returns, costs, cost_limit=8.0, window=3, threshold=0.6) == 40
  assert convergence_step(steps, returns, costs, cost_limit=8.0, window=3, threshold=0.1) == -1
  # Critical area: cost > 8 - 1.5 = 6.5 -> 9, 7, 7.5, 7.9 (4 points); violations > 8 + 0.5: one.
  assert violation_ratio(costs, 8.0, critical_radius=1.5, soft_margin=0.5) == 0.25
  assert violation_ratio([0.0, 1.0], 8.0, critical_radius=1.5, soft_margin=0.5) == -1.0


def test_settling_step_by_hand():
  from jaxsafe.train.paper_metrics import settling_step
  steps = [10, 20, 30, 40, 50, 60]
  returns = [1.0, 5.0, 9.0, 9.5, 9.2, 9.4]  # range 8.5: within 0.85 of 9.4 from index 2 on
  costs = [0.0, 0.0, 9.0, 7.2, 8.3, 7.9]  # <= 8.4 except at index 2
  assert settling_step(steps, returns, costs, 8.0, soft_margin=0.4) == 40
  assert settling_step(steps, returns, [0.0] * 6, 8.0, 0.4) == 30
  assert settling_step(steps, returns, [0.0] * 6, 8.0, 0.4, return_tolerance=0.01) == 60
  assert settling_step(steps, returns, costs[:5] + [8.5], 8.0, 0.4) == -1  # ends infeasible
  assert settling_step(steps, returns[:5] + [1.0], [0.0] * 6, 8.0, 0.4) == 60
  # b < 0 (cartpole-position: J_C = -sum x^2 <= b): feasible from index 1.
  assert settling_step([1, 2, 3], [0.0] * 3, [-10.0, -52.0, -48.0], -50.0, 2.5) == 2
  with pytest.raises(ValueError, match="length"):
    settling_step(steps, returns[:5], costs, 8.0, 0.4)


def test_cumulative_cost_by_hand():
  from jaxsafe.train.paper_metrics import cumulative_cost
  # T = 100 env steps, 50 per update: an episode ends every second update. Run 0's episodes cost
  # 30 then 10; the last update has no finished episode and is charged at the last one's 10.
  steps = [50, 100, 150, 200, 250]
  costs = [[np.nan, 30.0, np.nan, 10.0, np.nan], [np.nan] * 5]
  total, violation = cumulative_cost(steps, costs, episode_length=100, cost_limit=20.0)
  np.testing.assert_allclose(total, [[15, 30, 35, 40, 45], [0, 0, 0, 0, 0]])
  np.testing.assert_allclose(violation, [[5, 10, 10, 10, 10], [0, 0, 0, 0, 0]])
  with pytest.raises(ValueError, match="updates"):
    cumulative_cost(steps[:4], costs, episode_length=100, cost_limit=20.0)
