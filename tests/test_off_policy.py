"""The off-policy stages (``agents/off_policy/base.py``), ``cvpo`` and the Lagrangian baselines
(``agents/off_policy/lagrangian.py``) end to end on small settings: the cost threshold, Polyak averaging,
warm-up, the replay buffer in the state, vmapped seeds, the shared critics, TD3's policy delay,
the PID multiplier, and a resume (buffer included) equal to an uninterrupted run."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import AGENT_SMALL

from jaxsafe import agents, train
from jaxsafe.agents.off_policy import base as off_policy
from jaxsafe.core import lagrange
from jaxsafe.train.logger import read_progress

#: 4 envs x 4 steps per update, 2 gradient steps of 8 transitions; learning starts at update 3.
TINY_OFF = {"num_envs": 4, "rollout_length": 4, "gradient_steps": 2, "batch_size": 8,
            "buffer_capacity": 40, "warmup_steps": 32, "hidden_sizes": (8,),
            "num_action_samples": 4, "e_step_iterations": 3, "m_step_iterations": 2}


def test_cost_threshold_spreads_the_episode_limit_over_the_discounted_steps():
  # b = 25 over T = 100 steps: 0.25 per step, discounted sum 0.25 (1 - 0.99^100) / 0.01.
  assert off_policy.cost_threshold(25.0, 0.99, 100) == pytest.approx(15.8496, rel=1e-4)
  assert off_policy.cost_threshold(25.0, 1.0 - 1e-9, 100) == pytest.approx(25.0, rel=1e-5)


def test_polyak_moves_targets_by_one_minus_rho():
  target, online = {"w": jnp.zeros(3)}, {"w": jnp.ones(3)}
  np.testing.assert_allclose(off_policy.polyak(target, online, 0.9)["w"], 0.1, rtol=1e-6)


@pytest.fixture(scope="module")
def cvpo_states():
  """Four updates of 2 seeds of cvpo on cruise, one vmapped program; the states after each."""
  agent = agents.make("cvpo", "cruise", **TINY_OFF)
  init, update = jax.jit(jax.vmap(agent.init)), jax.jit(jax.vmap(agent.update))
  state = init(jax.random.split(jax.random.PRNGKey(0), 2))
  history = []
  for _ in range(4):
    state, metrics = update(state)
    history.append((state, jax.device_get(metrics)))
  return agent, history


def test_warm_up_then_learning_with_the_buffer_in_the_state(cvpo_states):
  agent, history = cvpo_states
  sizes = [np.asarray(s.buffer.size) for s, _ in history]
  np.testing.assert_array_equal(sizes, [[16, 16], [32, 32], [40, 40], [40, 40]])  # FIFO at 40
  learning = [m["cvpo/learning"] for _, m in history]
  np.testing.assert_array_equal(learning, [[0, 0], [0, 0], [1, 1], [1, 1]])
  # No gradient step during the warm-up: the actor is untouched; then it moves.
  first, second, third = (h[0].params["actor"] for h in history[:3])
  same = jax.tree_util.tree_map(lambda a, b: bool(jnp.all(a == b)), first, second)
  assert all(jax.tree_util.tree_leaves(same))
  moved = jax.tree_util.tree_map(lambda a, b: bool(jnp.any(a != b)), second, third)
  assert any(jax.tree_util.tree_leaves(moved))
  for _, metrics in history[2:]:
    for key in ("cvpo/kl_mean", "cvpo/kl_cov", "cvpo/eta", "cvpo/reward_critic_loss"):
      assert np.all(np.isfinite(metrics[key])), key
    assert np.all(metrics["cvpo/kl_mean"] <= agent.config.kl_mean_bound * 1.0001)
    assert np.all(metrics["cvpo/kl_cov"] <= agent.config.kl_cov_bound * 1.0001)
  seeds_differ = history[-1][0].params["actor"]["params"]["MLP_0"]["Dense_0"]["kernel"]
  assert not np.allclose(seeds_differ[0], seeds_differ[1])


#: TINY_OFF without CVPO's own fields: the Lagrangian baselines' tiny settings.
TINY_LAG = {k: v for k, v in TINY_OFF.items()
            if k not in ("num_action_samples", "e_step_iterations", "m_step_iterations")}


@pytest.mark.parametrize("algo,reward_critics,target_actor",
                         [("sac-lag", 2, False), ("td3-lag", 2, True), ("ddpg-lag", 1, True)])
def test_baselines_share_the_off_policy_state(algo, reward_critics, target_actor):
  """The three baselines differ from cvpo only in their policy update: the same buffer and
  critics (twin only where the base algorithm has them), a target actor for TD3 and DDPG."""
  agent = agents.make(algo, "cruise", **TINY_LAG)
  state = jax.jit(agent.init)(jax.random.PRNGKey(0))
  kernel = state.params["reward_critic"]["params"]["MLP_0"]["Dense_0"]["kernel"]
  assert kernel.shape[0] == reward_critics
  assert ("actor" in state.target_params) == target_actor
  assert state.buffer.capacity == TINY_OFF["buffer_capacity"]
  actions = agent.policy(state, jnp.zeros((5, 1)), jax.random.PRNGKey(1))
  assert actions.shape == (5, 1) and bool(jnp.all(jnp.abs(actions) <= 1.0))


def test_td3_moves_its_actor_every_policy_delay_steps():
  """policy_delay = 2: of the 2 gradient steps of an update only the second moves the actor, and
  the multiplier metric comes from that step alone; with delay 3 the actor never moves."""
  moved = {}
  for delay in (2, 3):
    agent = agents.make("td3-lag", "cruise", **{**TINY_LAG, "warmup_steps": 0,
                                                "policy_delay": delay})
    state = jax.jit(agent.init)(jax.random.PRNGKey(0))
    new, metrics = jax.jit(agent.update)(state)
    same = jax.tree_util.tree_map(lambda a, b: bool(jnp.all(a == b)), state.params["actor"],
                                  new.params["actor"])
    moved[delay] = not all(jax.tree_util.tree_leaves(same))
    assert np.isfinite(metrics["td3-lag/reward_critic_loss"])
  assert moved == {2: True, 3: False}


@pytest.mark.slow  # ~30 s; in the fast tier the sac-lag quick claim fails if lambda never rises
def test_pid_multiplier_rises_while_q_cost_exceeds_the_threshold():
  """With the limit at 0 every Q_c(s, pi(s)) > eps_1 = 0 once the cost critic has learnt some
  cost: the PID integral grows and so does lambda; with a huge limit lambda stays 0."""
  lam = {}
  for limit in (0.0, 1e4):
    agent = agents.make("sac-lag", "cruise", **{**TINY_LAG, "warmup_steps": 0,
                                                "cost_limit": limit, "pid_ki": 0.1,
                                                "multiplier_signal": "q_cost"})
    update = jax.jit(agent.update)
    state = jax.jit(agent.init)(jax.random.PRNGKey(0))
    trace = []
    for _ in range(8):
      state, metrics = update(state)
      trace.append(float(metrics["sac-lag/multiplier"]))
    lam[limit] = trace
  assert lam[1e4] == [0.0] * 8
  assert lam[0.0][-1] > lam[0.0][2] > 0.0


# Both run in the slow tier (cvpo's, a 2-setting sweep, ~50 s; td3-lag's ~36 s), to keep `make
# test` clear of its 8 minutes; tests/test_train.py covers the runner's resume path in `make test`.
@pytest.mark.parametrize("algo", [pytest.param("cvpo", marks=pytest.mark.slow),
                                  pytest.param("td3-lag", marks=pytest.mark.slow)])
def test_resume_equals_uninterrupted(algo, tmp_path):
  """Checkpoint and resume with the replay buffer and the algorithm's carried state in it (cvpo:
  the E- and M-step duals, here in a sweep of 2 settings x 2 seeds; td3-lag: the target actor,
  the policy delay, the PID state)."""
  tiny = TINY_OFF if algo == "cvpo" else TINY_LAG
  sweep = {"kl_mean_bound": [1e-3, 1e-2]} if algo == "cvpo" else {}
  spec = lambda steps: train.RunSpec(algo=algo, env="cruise", seeds=2, total_steps=steps,
                                     overrides={k: str(v) if not isinstance(v, tuple) else
                                                ",".join(map(str, v)) for k, v in tiny.items()},
                                     sweep=sweep, chunk_iters=2)
  straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
  train.run(spec(6 * 16), straight, progress=False)
  train.run(spec(2 * 16), resumed, progress=False)
  train.resume(resumed, total_steps=6 * 16, progress=False)
  a, b = read_progress(straight), read_progress(resumed)
  assert sorted(a) == sorted(b)
  for name in a:
    np.testing.assert_array_equal(a[name], b[name], err_msg=name)
  assert len(set(zip(a["setting"], a["seed"]))) == (4 if sweep else 2)


def test_action_penalty_weights_pull_samples_into_the_box():
  """MO-MPO's penalty weights favour the samples closest to the box, within their KL bound, and
  leave a state whose samples are all inside unweighted."""
  from jaxsafe.agents.off_policy.cvpo import action_penalty_weights
  key_out, key_in = jax.random.split(jax.random.PRNGKey(0))
  outside = 1.5 + 0.3 * jax.random.normal(key_out, (64, 32, 2))  # mostly beyond a = 1
  inside = 0.2 * jax.random.normal(key_in, (64, 32, 2))
  for raw, pulls in ((outside, True), (inside, False)):
    solution = jax.jit(action_penalty_weights, static_argnums=3)(raw, 1e-3, jnp.ones(()), 30)
    w = np.asarray(solution.weights)
    kl = np.mean(np.sum(w * np.log(w * w.shape[-1] + 1e-30), axis=-1))
    weighted_mean = np.sum(w[..., None] * np.asarray(raw), axis=1).mean()
    if pulls:
      assert kl == pytest.approx(1e-3, rel=0.1)
      assert weighted_mean < float(raw.mean()) - 0.005  # ~0.3 sqrt(2 eps) at the bound
    else:
      np.testing.assert_allclose(w, 1.0 / 32, atol=1e-6)


def test_the_multiplier_can_follow_the_measured_episode_cost():
  """``multiplier_signal="episode_cost"`` (issue 39): the PID's error is the latest measured J_C
  against b, in Q_c's units (eps_1 / b per unit of cost), whatever Q_c says; before any episode
  has been measured the multiplier stays."""
  agent = agents.make("sac-lag", "function", multiplier_signal="episode_cost",
                      **AGENT_SMALL["sac-lag"])
  hp, update = agent.config, jax.jit(agent.update)
  state = agent.init(jax.random.PRNGKey(0))
  unmeasured, _ = update(state)
  assert float(unmeasured.lagrange.multiplier) == 0.0
  violating = state.replace(last_episode=jnp.array([0.0, 2.0 * hp.cost_limit], jnp.float32))
  stepped, _ = update(violating)
  # Two PID steps on the same error Delta: lambda = Kp Delta + Ki 2 Delta (the D term is gone
  # at the second step, where the smoothed cost no longer rises).
  delta = hp.cost_limit * off_policy.cost_threshold(1.0, hp.gamma, agent.env.episode_length)
  expected = delta * (hp.pid_kp + 2 * hp.pid_ki)
  np.testing.assert_allclose(float(stepped.lagrange.multiplier), expected, rtol=1e-5)


def test_cvpo_measured_threshold_by_hand():
  """``threshold_rule="measured"``: the batch's Q_c moved by the share (b - J_C) / |J_C|, clipped
  to [-1, 1], of its magnitude; eps_1 while nothing has been measured."""
  from jaxsafe.agents.off_policy.cvpo import measured_threshold
  at = lambda q, j_c, b=25.0: float(measured_threshold(jnp.asarray(q), jnp.asarray(j_c), b, 7.0))
  assert at(2.0, 50.0) == pytest.approx(1.0)  # twice the limit: halve Q_c
  assert at(-2.0, 50.0) == pytest.approx(-3.0)  # a negative Q_c is pushed down as well
  assert at(2.0, 20.0) == pytest.approx(2.5)  # below b: Q_c may rise by a quarter
  assert at(2.0, 1.0) == pytest.approx(4.0)  # the rise is capped at 100%
  assert at(2.0, 0.0) == pytest.approx(4.0)  # J_C = 0
  assert at(2.0, float("nan")) == 7.0
  # b < 0 (cartpole-position): J_C = -30 must fall to -50, a share of -2/3.
  assert at(3.0, -30.0, b=-50.0) == pytest.approx(1.0)


def test_cvpo_threshold_shift_integrates_the_measured_excess():
  """``threshold_gain`` k (issue 39): S grows by (J_C - b) eps_1 / b per gradient step, in Q_c's
  units, and is capped where the threshold eps_1 - k S would fall below 0; a NaN J_C (nothing
  measured) or k = 0 keeps S."""
  from jaxsafe.agents.off_policy.cvpo import CVPOConfig, measured_threshold_shift
  T, b = 100, 25.0
  hp = CVPOConfig(cost_limit=b, threshold_gain=0.01)
  eps_1 = off_policy.cost_threshold(b, hp.gamma, T)
  per_cost = off_policy.cost_threshold(1.0, hp.gamma, T)
  shift = lambda s, j_c, config=hp: float(measured_threshold_shift(
      jnp.asarray(s), jnp.asarray(j_c), eps_1, config, T))
  assert shift(2.0, 35.0) == pytest.approx(2.0 + 10.0 * per_cost, rel=1e-5)
  assert shift(2.0, 5.0) == pytest.approx(2.0 - 20.0 * per_cost, rel=1e-5)  # below b: S falls
  assert shift(eps_1 / 0.01 - 0.1, 1e4) == pytest.approx(eps_1 / 0.01, rel=1e-5)  # the cap
  assert shift(2.0, float("nan")) == 2.0
  assert shift(2.0, 35.0, CVPOConfig(cost_limit=b)) == 2.0  # k = 0: the paper's eps_1


def test_measured_cost_step_by_hand():
  """The multiplier of sac-/td3-/ddpg-lag and of cvpo's ``threshold_rule="multiplier"``: the PID
  on the measured J_C - b in Q_c's units, f = (1 - gamma^T) / (T (1 - gamma)) per unit of episode
  cost; kept while nothing has been measured (J_C NaN)."""
  from jaxsafe.agents.off_policy.cvpo import CVPOConfig
  from jaxsafe.agents.off_policy.lagrangian import measured_cost_step
  T, f = 100, (1.0 - 0.99 ** 100) / (100 * 0.01)
  hp = CVPOConfig(cost_limit=25.0, gamma=0.99, pid_kp=0.1, pid_ki=0.01, pid_kd=0.0)
  first = measured_cost_step(lagrange.init(0.0), jnp.asarray(35.0), hp, T)
  assert float(first.multiplier) == pytest.approx((0.1 + 0.01) * 10.0 * f, rel=1e-5)
  second = measured_cost_step(first, jnp.asarray(20.0), hp, T)  # below b: P < 0, I shrinks
  assert float(second.integral) == pytest.approx(5.0 * f, rel=1e-5)
  assert float(second.multiplier) == pytest.approx(max(0.0, -0.5 * f + 0.05 * f), abs=1e-6)
  kept = measured_cost_step(first, jnp.asarray(float("nan")), hp, T)
  assert float(kept.multiplier) == float(first.multiplier)
