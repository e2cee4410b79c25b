"""Unit tests for ``jaxsafe.core``: networks, distributions, normalisation, GAE, Lagrange, rollout.

In the style of optax's ``*_test.py``: the function under test is jitted and its values are
checked against a hand computation or a plain numpy / plain-Python reference, together with
shapes and finiteness. Sizes are tiny and jitted functions are shared through module fixtures.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsafe import envs
from jaxsafe.core import distributions, experience, lagrange, networks, normalize, returns, rollout
from jaxsafe.core.experience import ActionSample
from jaxsafe.envs.function import function_value

KEY = jax.random.PRNGKey(0)


# --------------------------------------------------------------------------------------------
# networks.py
# --------------------------------------------------------------------------------------------


class TestNetworks:

  @pytest.mark.parametrize("batch", [(), (5,), (2, 3)])
  def test_mlp_shapes(self, batch):
    net = networks.MLP(hidden_sizes=(8, 8), out_size=3)
    x = jnp.ones(batch + (4,))
    params = net.init(KEY, x)
    out = jax.jit(net.apply)(params, x)
    assert out.shape == batch + (3,)
    assert np.all(np.isfinite(out))

  @pytest.mark.parametrize("activation", sorted(networks.ACTIVATIONS))
  def test_mlp_activations(self, activation):
    net = networks.MLP(hidden_sizes=(4,), out_size=2, activation=activation)
    x = jnp.linspace(-1.0, 1.0, 6).reshape(2, 3)
    out = net.apply(net.init(KEY, x), x)
    assert out.shape == (2, 2)
    assert np.all(np.isfinite(out))

  def test_mlp_no_hidden_is_linear(self):
    net = networks.MLP(hidden_sizes=(), out_size=2)
    x = jnp.arange(6.0).reshape(2, 3)
    params = net.init(KEY, x)
    dense = params["params"]["Dense_0"]
    expected = np.asarray(x) @ np.asarray(dense["kernel"]) + np.asarray(dense["bias"])
    np.testing.assert_allclose(net.apply(params, x), expected, rtol=1e-5, atol=1e-6)

  @pytest.mark.parametrize("batch", [(), (5,)])
  def test_gaussian_actor_shapes_and_log_std(self, batch):
    actor = networks.GaussianActor(action_size=2, hidden_sizes=(8,), log_std_init=-0.5)
    obs = jnp.ones(batch + (3,))
    params = actor.init(KEY, obs)
    np.testing.assert_allclose(params["params"]["log_std"], [-0.5, -0.5])
    # log_std is the (state-independent) parameter, broadcast to the mean's shape.
    params = jax.tree_util.tree_map(lambda p: p, params)
    params["params"]["log_std"] = jnp.array([0.3, -1.2])
    mean, log_std = jax.jit(actor.apply)(params, obs)
    assert mean.shape == batch + (2,)
    assert log_std.shape == batch + (2,)
    np.testing.assert_allclose(log_std, np.broadcast_to([0.3, -1.2], batch + (2,)), rtol=1e-6)
    assert np.all(np.isfinite(mean))

  def test_gaussian_actor_mean_depends_on_obs(self):
    actor = networks.GaussianActor(action_size=1, hidden_sizes=(8,))
    obs = jnp.array([[0.0, 0.0], [1.0, -1.0]])
    mean, _ = actor.apply(actor.init(KEY, obs), obs)
    assert not np.allclose(mean[0], mean[1])
    # Small output scale (0.01): the initial mean is close to zero.
    assert np.all(np.abs(mean) < 0.1)

  @pytest.mark.parametrize("batch", [(), (5,), (2, 3)])
  def test_critic_shapes(self, batch):
    critic = networks.Critic(hidden_sizes=(8,))
    obs = jnp.ones(batch + (3,))
    value = jax.jit(critic.apply)(critic.init(KEY, obs), obs)
    assert value.shape == batch
    assert np.all(np.isfinite(value))

  def test_two_head_critic_shapes_and_heads_differ(self):
    critic = networks.TwoHeadCritic(hidden_sizes=(8,))
    obs = jnp.ones((5, 3))
    value_r, value_c = jax.jit(critic.apply)(critic.init(KEY, obs), obs)
    assert value_r.shape == value_c.shape == (5,)
    assert not np.allclose(value_r, value_c)

  def test_time_critic_shapes(self):
    critic = networks.TimeCritic(horizon=10, hidden_sizes=(8,))
    params = critic.init(KEY, jnp.ones((3,)), jnp.zeros(()))
    apply = jax.jit(critic.apply)
    assert apply(params, jnp.ones((3,)), jnp.array(4)).shape == ()
    assert apply(params, jnp.ones((5, 3)), jnp.arange(5)).shape == (5,)
    # A scalar t broadcasts over a batch of observations.
    batched = apply(params, jnp.ones((5, 3)), jnp.array(2))
    single = apply(params, jnp.ones((3,)), jnp.array(2))
    np.testing.assert_allclose(batched, np.full(5, single), rtol=1e-6)

  def test_time_critic_depends_on_t(self):
    critic = networks.TimeCritic(horizon=10, hidden_sizes=(8,))
    params = critic.init(KEY, jnp.ones((3,)), jnp.zeros(()))
    obs = jnp.ones((4, 3))
    values = jax.jit(critic.apply)(params, obs, jnp.array([0, 3, 6, 9]))
    assert len(np.unique(np.asarray(values))) == 4
    # Input is [s, t / T]: equals the inner Critic applied to the concatenation.
    inner = networks.Critic(hidden_sizes=(8,))
    inner_params = {"params": params["params"]["Critic_0"]}
    tau = jnp.array([0.0, 0.3, 0.6, 0.9])[:, None]
    np.testing.assert_allclose(
        values, inner.apply(inner_params, jnp.concatenate([obs, tau], -1)), rtol=1e-5)


# --------------------------------------------------------------------------------------------
# distributions.py
# --------------------------------------------------------------------------------------------


def _gauss_logpdf(raw, mean, log_std):
  raw, mean, log_std = (np.asarray(a, np.float64) for a in (raw, mean, log_std))
  std = np.exp(log_std)
  return np.sum(-0.5 * ((raw - mean) / std) ** 2 - log_std - 0.5 * np.log(2 * np.pi), axis=-1)


def _log1m_tanh2(raw):
  """log(1 - tanh(raw)^2) computed stably in float64 (= 2 (log 2 - raw - softplus(-2 raw)))."""
  raw = np.asarray(raw, np.float64)
  return 2.0 * (np.log(2.0) - np.abs(raw) - np.log1p(np.exp(-2.0 * np.abs(raw))))


MEAN = np.array([[0.1, -0.4], [1.0, 0.0], [0.0, 0.3]], np.float32)
LOG_STD = np.array([[-0.5, 0.2], [0.0, -1.0], [0.4, 0.4]], np.float32)


@pytest.fixture(scope="module")
def fns():
  """Jitted distribution functions, the kind static."""

  def lp(kind, mean, log_std, raw):
    return distributions.log_prob(distributions.make_distribution(kind, mean, log_std), raw)

  def smp(kind, mean, log_std, key):
    return distributions.sample(distributions.make_distribution(kind, mean, log_std), key)

  def md(kind, mean, log_std):
    return distributions.mode(distributions.make_distribution(kind, mean, log_std))

  def ent(kind, mean, log_std):
    return distributions.entropy(distributions.make_distribution(kind, mean, log_std))

  return {name: jax.jit(f, static_argnums=0)
          for name, f in {"log_prob": lp, "sample": smp, "mode": md, "entropy": ent}.items()}


class TestDistributions:

  def test_kinds(self):
    assert distributions.KINDS == ("normal", "tanh_normal")

  def test_unknown_kind_raises(self):
    with pytest.raises(ValueError, match="unknown distribution 'beta'"):
      distributions.make_distribution("beta", jnp.zeros(2), jnp.zeros(2))

  # For ``normal`` this also guards against treating distrax's MultivariateNormalDiag (a
  # subclass of Transformed) as a squashed distribution: raw must be the action itself.
  @pytest.mark.parametrize("kind", ["normal", "tanh_normal"])
  def test_log_prob_matches_numpy(self, fns, kind):
    raw = np.array([[0.3, -1.2], [2.0, 0.5], [-0.7, 0.0]], np.float32)
    expected = _gauss_logpdf(raw, MEAN, LOG_STD)
    if kind == "tanh_normal":
      expected = expected - np.sum(np.log(1.0 - np.tanh(raw.astype(np.float64)) ** 2), axis=-1)
    got = fns["log_prob"](kind, MEAN, LOG_STD, raw)
    assert got.shape == (3,)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)

  def test_tanh_log_prob_finite_at_large_raw(self, fns):
    raw = np.array([[10.0, -10.0], [15.0, 9.0], [-12.0, 0.0]], np.float32)
    # In float32 these pre-squash values round to actions of exactly +-1 ...
    assert np.all(np.abs(np.tanh(raw[:, 0])) == 1.0)
    # ... yet log pi, evaluated at raw, stays finite and matches the float64 reference.
    got = fns["log_prob"]("tanh_normal", MEAN, LOG_STD, raw)
    assert np.all(np.isfinite(got))
    expected = _gauss_logpdf(raw, MEAN, LOG_STD) - np.sum(_log1m_tanh2(raw), axis=-1)
    np.testing.assert_allclose(got, expected, rtol=1e-5)

  @pytest.mark.parametrize("kind", ["normal", "tanh_normal"])
  def test_sample(self, fns, kind):
    action, raw, log_prob = fns["sample"](kind, MEAN, LOG_STD, KEY)
    assert action.shape == raw.shape == (3, 2)
    assert log_prob.shape == (3,)
    if kind == "tanh_normal":
      np.testing.assert_allclose(action, np.tanh(raw), rtol=1e-6, atol=1e-7)
      assert np.all(np.abs(action) < 1.0)
    else:
      np.testing.assert_array_equal(action, raw)
    # The returned log-prob is log_prob evaluated at raw.
    np.testing.assert_allclose(log_prob, fns["log_prob"](kind, MEAN, LOG_STD, raw), rtol=1e-6)

  def test_tanh_sample_in_open_interval_with_wide_std(self, fns):
    mean = jnp.zeros((1000, 1))
    log_std = jnp.full((1000, 1), 1.0)
    action, raw, log_prob = fns["sample"]("tanh_normal", mean, log_std, KEY)
    assert np.all(np.abs(action) <= 1.0)
    assert np.all(np.isfinite(log_prob))
    # Sample statistics of the pre-squash Gaussian: std e.
    assert abs(float(np.std(raw)) - math.e) < 0.25

  def test_mode(self, fns):
    np.testing.assert_allclose(fns["mode"]("normal", MEAN, LOG_STD), MEAN)
    np.testing.assert_allclose(fns["mode"]("tanh_normal", MEAN, LOG_STD), np.tanh(MEAN),
                               rtol=1e-6)

  @pytest.mark.parametrize("kind", ["normal", "tanh_normal"])
  def test_entropy_closed_form(self, fns, kind):
    expected = np.sum(0.5 * np.log(2 * np.pi * np.e) + LOG_STD.astype(np.float64), axis=-1)
    got = fns["entropy"](kind, MEAN, LOG_STD)
    assert got.shape == (3,)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


# --------------------------------------------------------------------------------------------
# normalize.py
# --------------------------------------------------------------------------------------------


class TestNormalize:

  def test_init(self):
    stats = normalize.init(3)
    np.testing.assert_array_equal(stats.mean, np.zeros(3))
    np.testing.assert_array_equal(stats.var, np.ones(3))
    assert float(stats.count) == 0.0

  def test_running_stats_match_numpy(self):
    rng = np.random.default_rng(0)
    # Batches of different sizes and leading shapes, with a non-zero mean and scale.
    batches = [rng.normal(3.0, 2.0, size=s).astype(np.float32)
               for s in [(5, 3), (2, 4, 3), (1, 3), (17, 3)]]
    update = jax.jit(normalize.update)
    stats = normalize.init(3)
    for batch in batches:
      stats = update(stats, jnp.asarray(batch))
    data = np.concatenate([b.reshape(-1, 3) for b in batches]).astype(np.float64)
    assert float(stats.count) == data.shape[0]
    np.testing.assert_allclose(stats.mean, data.mean(0), rtol=1e-5)
    np.testing.assert_allclose(stats.var, data.var(0), rtol=1e-5)

  def test_weighted_update_ignores_rows_with_zero_weight(self):
    rng = np.random.default_rng(1)
    kept, dropped = rng.normal(size=(20, 3)), 100.0 + rng.normal(size=(5, 3))
    stats = normalize.update(normalize.init(3), jnp.asarray(rng.normal(size=(7, 3))))
    want = normalize.update(stats, jnp.asarray(kept))
    batch = jnp.asarray(np.concatenate([kept, dropped]))
    weights = jnp.asarray(np.r_[np.ones(20), np.zeros(5)])
    got = normalize.update(stats, batch, weights)
    for a, b in ((got.mean, want.mean), (got.var, want.var), (got.count, want.count)):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    # No weight at all: unchanged.
    same = normalize.update(stats, batch, jnp.zeros(25))
    np.testing.assert_allclose(np.asarray(same.mean), np.asarray(stats.mean))
    np.testing.assert_allclose(np.asarray(same.var), np.asarray(stats.var))

  def test_normalize_and_clip(self):
    stats = normalize.RunningStats(mean=jnp.array([1.0, -2.0]), var=jnp.array([4.0, 0.25]),
                                   count=jnp.array(10.0))
    x = jnp.array([[3.0, -2.5], [1.0, 100.0], [-1e3, -2.0]])
    got = jax.jit(normalize.normalize, static_argnames="clip")(stats, x, clip=5.0)
    expected = np.clip((np.asarray(x) - [1.0, -2.0]) / np.sqrt(np.array([4.0, 0.25]) + 1e-8),
                       -5.0, 5.0)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert float(got[1, 1]) == 5.0 and float(got[2, 0]) == -5.0


# --------------------------------------------------------------------------------------------
# returns.py
# --------------------------------------------------------------------------------------------


def _gae_reference(rewards, values, next_values, terminations, truncations, gamma, lam):
  """Plain-Python GAE: termination does not bootstrap; truncation bootstraps but cuts the sum."""
  T, N = rewards.shape
  adv = np.zeros((T, N))
  for n in range(N):
    next_adv = 0.0
    for t in reversed(range(T)):
      done = terminations[t, n] or truncations[t, n]
      bootstrap = 0.0 if terminations[t, n] else next_values[t, n]
      delta = rewards[t, n] + gamma * bootstrap - values[t, n]
      next_adv = delta + (0.0 if done else gamma * lam * next_adv)
      adv[t, n] = next_adv
  return adv


@pytest.fixture(scope="module")
def gae():
  return jax.jit(returns.gae, static_argnames=("gamma", "lam"))


class TestGAE:

  @pytest.mark.parametrize("gamma,lam", [(0.99, 0.95), (0.9, 0.5), (1.0, 1.0)])
  def test_matches_reference(self, gae, gamma, lam):
    rng = np.random.default_rng(1)
    T, N = 7, 3
    rewards = rng.normal(size=(T, N)).astype(np.float32)
    values = rng.normal(size=(T, N)).astype(np.float32)
    next_values = rng.normal(size=(T, N)).astype(np.float32)
    terminations = (rng.random((T, N)) < 0.2).astype(np.float32)
    truncations = ((rng.random((T, N)) < 0.2) & (terminations == 0)).astype(np.float32)
    # Make sure both kinds of episode end occur.
    terminations[2, 0], truncations[2, 0] = 1.0, 0.0
    truncations[4, 1], terminations[4, 1] = 1.0, 0.0
    dones = np.maximum(terminations, truncations)
    adv, targets = gae(rewards, values, next_values, terminations, dones, gamma=gamma, lam=lam)
    expected = _gae_reference(rewards, values, next_values, terminations, truncations, gamma,
                              lam)
    assert adv.shape == targets.shape == (T, N)
    np.testing.assert_allclose(adv, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(targets, expected + values, rtol=1e-5, atol=1e-5)

  def test_lambda_one_is_monte_carlo(self, gae):
    rng = np.random.default_rng(2)
    T, N, gamma = 7, 3, 0.9
    rewards = rng.normal(size=(T, N)).astype(np.float32)
    values = rng.normal(size=(T, N)).astype(np.float32)
    # One episode without dones: next_values[t] = values[t + 1], bootstrap V_T at the end.
    last = rng.normal(size=(N,)).astype(np.float32)
    next_values = np.concatenate([values[1:], last[None]])
    zeros = np.zeros((T, N), np.float32)
    adv, targets = gae(rewards, values, next_values, zeros, zeros, gamma=gamma, lam=1.0)
    mc = np.zeros((T, N))
    for t in range(T):
      mc[t] = sum(gamma**k * rewards[t + k] for k in range(T - t)) + gamma ** (T - t) * last
    np.testing.assert_allclose(adv, mc - values, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(targets, mc, rtol=1e-5, atol=1e-5)

  def test_lambda_zero_is_td_error(self, gae):
    rng = np.random.default_rng(3)
    T, N, gamma = 7, 3, 0.95
    rewards, values, next_values = (rng.normal(size=(T, N)).astype(np.float32) for _ in range(3))
    terminations = (rng.random((T, N)) < 0.3).astype(np.float32)
    adv, _ = gae(rewards, values, next_values, terminations, terminations, gamma=gamma, lam=0.0)
    np.testing.assert_allclose(
        adv, rewards + gamma * (1 - terminations) * next_values - values, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------
# lagrange.py
# --------------------------------------------------------------------------------------------


def _pid_reference(costs, limit, kp, ki, kd, delta_ema, d_ema):
  """Stooke, Achiam and Abbeel (2020) Alg. 2 as documented in ``pid_update``, in plain Python."""
  integral, prev_cost, smoothed, out = 0.0, 0.0, 0.0, []
  for jc in costs:
    delta = jc - limit
    smoothed = delta_ema * smoothed + (1 - delta_ema) * delta
    integral = max(0.0, integral + delta)
    cost = d_ema * prev_cost + (1 - d_ema) * jc
    derivative = max(0.0, cost - prev_cost)
    prev_cost = cost
    out.append(max(0.0, kp * smoothed + ki * integral + kd * derivative))
  return out


class TestLagrange:

  def test_init(self):
    state = lagrange.init(0.5)
    assert float(state.multiplier) == 0.5
    assert state.multiplier.dtype == jnp.float32 and state.multiplier.shape == ()
    for leaf in (state.integral, state.prev_cost, state.smoothed_delta):
      assert float(leaf) == 0.0

  def test_gradient_ascent_by_hand(self):
    update = jax.jit(lagrange.gradient_ascent_update)
    state = lagrange.init(0.5)
    limit, lr = 8.0, 0.1
    # 0.5 + 0.1 (10 - 8) = 0.7
    state = update(state, 10.0, limit, lr)
    np.testing.assert_allclose(state.multiplier, 0.7, rtol=1e-6)
    # 0.7 + 0.1 (5 - 8) = 0.4
    state = update(state, 5.0, limit, lr)
    np.testing.assert_allclose(state.multiplier, 0.4, rtol=1e-6)
    # 0.4 + 0.1 (2 - 8) = -0.2 -> projected to 0
    state = update(state, 2.0, limit, lr)
    assert float(state.multiplier) == 0.0
    # Staying below the limit keeps it at 0; going above moves it up again.
    state = update(state, 7.0, limit, lr)
    assert float(state.multiplier) == 0.0
    state = update(state, 9.0, limit, lr)
    np.testing.assert_allclose(state.multiplier, 0.1, rtol=1e-6)

  @pytest.mark.parametrize("kp,ki,kd,delta_ema,d_ema", [
      (0.5, 0.1, 0.2, 0.0, 0.0),
      (0.5, 0.1, 0.2, 0.9, 0.5),
      (1.0, 0.05, 2.0, 0.3, 0.8),
  ])
  def test_pid_matches_reference(self, kp, ki, kd, delta_ema, d_ema):
    update = jax.jit(lagrange.pid_update)
    limit = 8.0
    # Above, then well below the limit (integral clipped at 0), then above again.
    costs = [12.0, 9.0, 2.0, 1.0, 15.0]
    expected = _pid_reference(costs, limit, kp, ki, kd, delta_ema, d_ema)
    state = lagrange.init()
    for jc, lam in zip(costs, expected):
      state = update(state, jc, limit, kp, ki, kd, delta_ema, d_ema)
      assert np.isfinite(float(state.multiplier))
      np.testing.assert_allclose(state.multiplier, lam, rtol=1e-5, atol=1e-6)
    assert float(state.integral) >= 0.0

  def test_pid_integral_only(self):
    update = jax.jit(lagrange.pid_update)
    limit, ki = 8.0, 0.1
    # All above the limit: lambda = ki * cumulative sum of (J_C - b).
    state = lagrange.init()
    costs = [9.0, 10.0, 8.5, 12.0]
    for k, jc in enumerate(costs):
      state = update(state, jc, limit, 0.0, ki, 0.0)
      np.testing.assert_allclose(state.multiplier, ki * sum(c - limit for c in costs[:k + 1]),
                                 rtol=1e-5)
    # Mixed signs: lambda = ki * I_k with I_k = max(0, I_{k-1} + Delta_k).
    state = lagrange.init()
    integral = 0.0
    for jc in [10.0, 5.0, 4.0, 11.0, 9.0]:
      integral = max(0.0, integral + jc - limit)
      state = update(state, jc, limit, 0.0, ki, 0.0)
      np.testing.assert_allclose(state.multiplier, ki * integral, rtol=1e-5, atol=1e-7)
      np.testing.assert_allclose(state.integral, integral, rtol=1e-6)


# --------------------------------------------------------------------------------------------
# rollout.py
# --------------------------------------------------------------------------------------------

NUM_ENVS, LENGTH, CONST_ACTION = 4, 150, 0.5


@pytest.fixture(scope="module")
def rollout_data():
  env = envs.make("function", num_envs=NUM_ENVS, auto_reset=True)

  def act(obs, key):
    del key
    action = jnp.full(obs.shape, CONST_ACTION)
    return ActionSample(action, action, jnp.zeros(obs.shape[:-1]))

  run = jax.jit(lambda key: rollout.rollout(env, env.reset(key), act, key, LENGTH))
  final_state, data = run(jax.random.PRNGKey(42))
  return env, final_state, jax.tree_util.tree_map(np.asarray, data)


class TestRollout:

  def test_shapes(self, rollout_data):
    _, final_state, data = rollout_data
    T, N = LENGTH, NUM_ENVS
    assert data.obs.shape == data.next_obs.shape == data.raw_action.shape == (T, N, 1)
    assert data.action.shape == (T, N, 1)
    for leaf in (data.log_prob, data.reward, data.cost, data.done, data.terminal, data.alive,
                 data.episode_finished, data.episode_return, data.episode_cost):
      assert leaf.shape == (T, N)
    assert final_state.obs.shape == (N, 1)
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(data))

  def test_transitions_and_reset(self, rollout_data):
    _, final_state, data = rollout_data
    # next_obs is the observation the step ended in: obs + 0.2 a everywhere, including at the
    # episode end (where it is the final obs before the auto-reset).
    np.testing.assert_allclose(data.next_obs, data.obs + 0.2 * CONST_ACTION, rtol=1e-6, atol=1e-6)
    ends = np.zeros(LENGTH, bool)
    ends[99] = True  # T = 100 -> the 100th step ends the episode (truncation).
    np.testing.assert_array_equal(data.done, np.broadcast_to(ends[:, None], data.done.shape))
    np.testing.assert_array_equal(data.terminal, 0.0)  # truncated by the time limit: bootstrap
    np.testing.assert_array_equal(data.alive, 1.0)
    np.testing.assert_array_equal(data.episode_finished, data.done)
    # Within an episode, obs[t + 1] is next_obs[t] ...
    keep = ~ends[:-1]
    np.testing.assert_array_equal(data.obs[1:][keep], data.next_obs[:-1][keep])
    # ... but after the episode end obs is a fresh s_0 ~ U(-0.5, 0.5), not the final obs.
    fresh = data.obs[100]
    assert np.all(np.abs(fresh) <= 0.5)
    assert np.all(np.abs(data.next_obs[99] - fresh) > 1.0)
    assert not np.allclose(fresh, data.obs[0])  # a new initial state, not a replay
    np.testing.assert_allclose(final_state.obs, data.next_obs[-1], rtol=1e-6)

  def test_rewards_and_costs(self, rollout_data):
    _, _, data = rollout_data
    f = np.asarray(function_value(jnp.asarray(data.obs[..., 0])))
    np.testing.assert_allclose(data.reward, f, rtol=1e-6)
    np.testing.assert_array_equal(data.cost, data.reward)

  def test_finished_episode_means(self, rollout_data):
    _, _, data = rollout_data
    mean_return, mean_cost, count = jax.jit(experience.finished_episode_means)(data)
    assert float(count) == NUM_ENVS
    f = np.asarray(function_value(jnp.asarray(data.obs[:100, :, 0])), np.float64)
    expected = f.sum(0).mean()
    np.testing.assert_allclose(mean_return, expected, rtol=1e-5)
    np.testing.assert_allclose(mean_cost, expected, rtol=1e-5)
    np.testing.assert_allclose(data.episode_return[99], f.sum(0), rtol=1e-5)

  def test_finished_episode_means_nan_without_episodes(self, rollout_data):
    _, _, data = rollout_data
    head = jax.tree_util.tree_map(lambda x: x[:50], data)
    mean_return, mean_cost, count = jax.jit(experience.finished_episode_means)(head)
    assert float(count) == 0.0
    assert np.isnan(mean_return) and np.isnan(mean_cost)
