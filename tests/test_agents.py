"""Every algorithm's policy step as a pure function, on batches small enough to check by hand.

The agents' ``update`` functions call exactly these (agents/on_policy/ppo.py, cppo.py, cgpo.py,
shac_lag.py; dyna-cppo takes cppo's step, mb-cgpo cgpo's); the learning tests check the loop.
"""

from __future__ import annotations

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsafe import agents, envs
from jaxsafe.agents.first_order import cgpo, shac_lag
from jaxsafe.agents.first_order.base import PreviousStep, recovery_weight_update
from jaxsafe.agents.on_policy import appo, cost_rules, cppo, pdo, ppo, trpo
from jaxsafe.agents.on_policy.base import standardize
from jaxsafe.core import lagrange
from jaxsafe.solvers import trust_region

SQRT_HALF = np.sqrt(0.5)


def test_clipped_surrogate_by_hand():
  """rho = (0.5, 1, 1.5), A = (1, -1, 2), eps = 0.2: min terms 0.5, -1, 2.4 (clipped)."""
  hp = ppo.PPOConfig(clip_eps=0.2)
  loss, aux = ppo.clipped_surrogate_loss(jnp.array([0.5, 1.0, 1.5]), None,
                                         jnp.array([1.0, -1.0, 2.0]), hp)
  np.testing.assert_allclose(float(loss), -(0.5 - 1.0 + 2.4) / 3, rtol=1e-6)
  np.testing.assert_allclose(float(aux["clip_fraction"]), 2 / 3, rtol=1e-6)


def test_pdo_and_appo_losses_by_hand():
  """PDO: -E[rho A] unclipped. APPO with rho = (0.5, 1.5), eps = 0.2: the reward term takes the
  smaller of rho a and clip(rho) a (0.8 a_1 for a_1 = 1 is larger than 0.5: 0.5 is kept), the cost
  term the larger: for a_c = (2, 2), max(0.5 * 2, 0.8 * 2) = 1.6 and max(1.5 * 2, 1.2 * 2) = 3."""
  rho = jnp.array([0.5, 1.5])
  loss, _ = pdo.importance_surrogate_loss(rho, None, jnp.array([1.0, 2.0]), None)
  np.testing.assert_allclose(float(loss), -(0.5 + 3.0) / 2, rtol=1e-6)
  hp = appo.APPOConfig(clip_eps=0.2)
  target = jnp.array([[1.0, 2.0], [1.0, 2.0]])  # (a_r, a_c) per sample
  loss, aux = appo.appo_loss(rho, None, target, hp)
  np.testing.assert_allclose(float(loss), -(0.5 + 1.2) / 2 + (1.6 + 3.0) / 2, rtol=1e-6)
  assert float(aux["clip_fraction"]) == 1.0
  # f = max(0, lambda + sigma (J_C - b)): the quadratic term acts before lambda has grown.
  hp = appo.APPOConfig(cost_limit=25.0, penalty_sigma=0.1)
  assert float(appo.augmented_factor(jnp.float32(0.0), jnp.float32(35.0), hp)) == pytest.approx(1.0)
  assert float(appo.augmented_factor(jnp.float32(0.5), jnp.float32(15.0), hp)) == 0.0
  assert float(appo.augmented_factor(jnp.float32(2.0), jnp.float32(15.0), hp)) == pytest.approx(1.0)


def test_kl_early_stopping_skips_the_rest_of_the_epochs():
  """With a threshold below any KL, only the first minibatch step (taken at KL 0) is applied;
  with a huge one, every step is, as without early stopping."""
  from jaxsafe.agents.on_policy.base import ActorCritic
  from jaxsafe.core.rollout import rollout
  agent = agents.make("pdo", "function", num_envs=4, rollout_length=8, update_epochs=2,
                      num_minibatches=4, hidden_sizes=(8,))
  ac = ActorCritic(agent.env, agent.config)
  state = agent.init(jax.random.PRNGKey(0))
  _, data = rollout(agent.env, state.env_state, ac.act(state), jax.random.PRNGKey(1), 8)
  adv = ac.advantages(state, data)
  target = standardize(adv.reward)

  def sgd(kl_stop):
    return ac.sgd(state, data, target, adv, pdo.importance_surrogate_loss, jax.random.PRNGKey(2),
                  kl_stop)

  stopped_params, _, stopped = sgd(jnp.float32(1e-12))
  full_params, _, full = sgd(jnp.float32(1e6))
  plain_params, _, _ = sgd(None)
  assert float(stopped["early_stopped"]) == pytest.approx(7 / 8)  # 7 of 2 x 4 steps skipped
  assert float(full["early_stopped"]) == 0.0
  for a, b in zip(jax.tree.leaves(full_params), jax.tree.leaves(plain_params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-9)
  moved = [np.abs(np.asarray(a) - np.asarray(b)).max() for a, b in
           zip(jax.tree.leaves(stopped_params["actor"]), jax.tree.leaves(full_params["actor"]))]
  assert max(moved) > 0


def test_lagrangian_advantage_by_hand():
  """Standardised A^R = (-s, 0, s), A^C = (s, -s, 0) with s = sqrt(3/2); lambda = 1 halves
  their difference."""
  s = np.sqrt(1.5)
  adv = cost_rules.lagrangian_advantage(jnp.array([1.0, 2.0, 3.0]), jnp.array([3.0, 1.0, 2.0]), 1.0)
  np.testing.assert_allclose(np.asarray(adv), [-s, s / 2, s / 2], rtol=1e-5)
  # lambda = 0 is PPO's standardised reward advantage.
  np.testing.assert_allclose(np.asarray(cost_rules.lagrangian_advantage(
      jnp.array([1.0, 2.0, 3.0]), jnp.array([3.0, 1.0, 2.0]), 0.0)), [-s, 0.0, s], rtol=1e-5)


def test_multiplier_steps_by_hand():
  hp = ppo.PPOLagConfig(cost_limit=25.0, multiplier_learning_rate=0.1)
  lag = lagrange.init(0.5)
  assert float(cost_rules.ascent_step(lag, 30.0, hp).multiplier) == pytest.approx(1.0)  # 0.5 + 0.1 * 5
  assert float(cost_rules.ascent_step(lag, 10.0, hp).multiplier) == 0.0  # projected at 0
  # PID without EMA: P = J_C - b = 5, I = 5, D = max(0, J_C - 0) = 30.
  pid = ppo.PIDLagConfig(cost_limit=25.0, pid_kp=0.1, pid_ki=0.01, pid_kd=0.01, pid_delta_ema=0.0,
                         pid_d_ema=0.0)
  new = cost_rules.pid_step(lagrange.init(0.0), 30.0, pid)
  assert float(new.multiplier) == pytest.approx(0.1 * 5 + 0.01 * 5 + 0.01 * 30)
  assert float(new.integral) == pytest.approx(5.0)
  # trpo-lag's PI step: the ascent's integral lr * sum(J_C - b) plus Kp times an EMA of J_C - b.
  pi = trpo.TRPOLagConfig(cost_limit=25.0, multiplier_learning_rate=0.1, multiplier_kp=0.2,
                          multiplier_p_ema=0.5)
  first = cost_rules.proportional_integral_step(lagrange.init(0.0), 30.0, pi)
  assert float(first.multiplier) == pytest.approx(0.1 * 5 + 0.2 * 2.5)  # EMA from 0: 0.5 * 5
  second = cost_rules.proportional_integral_step(first, 22.0, pi)  # J_C - b = -3
  assert float(second.multiplier) == pytest.approx(0.1 * 2 + 0.2 * (0.5 * 2.5 - 0.5 * 3))


def test_e_step_by_hand():
  """N = 4, delta = 0.02: R = sqrt(2 N delta) = 0.4. With the budget slack, v_bar = R A / |A|;
  while J_c > b (recovery), v_bar = -R A_c / |A_c| (both A and A_c are centred already)."""
  hp = cppo.CPPOConfig(kl_bound=0.02, cost_limit=25.0, gamma=0.99)
  adv_r, adv_c = jnp.array([1.0, -1.0, 0.0, 0.0]), jnp.array([0.0, 0.0, 1.0, -1.0])
  v, metrics = cppo.e_step(adv_r, adv_c, jnp.asarray(5.0), hp)
  np.testing.assert_allclose(np.asarray(v), [1 + 0.4 * SQRT_HALF, 1 - 0.4 * SQRT_HALF, 1, 1],
                             atol=1e-5)
  np.testing.assert_allclose(float(metrics["budget"]), 0.01 * 20.0, rtol=1e-5)
  v, _ = cppo.e_step(adv_r, adv_c, jnp.asarray(40.0), hp)
  np.testing.assert_allclose(np.asarray(v), [1, 1, 1 - 0.4 * SQRT_HALF, 1 + 0.4 * SQRT_HALF],
                             atol=1e-5)


def test_weighted_likelihood_loss_by_hand():
  """-E[v log(pi/pi_old)] = -(1.2 * 0.1 - 0.8 * 0.2) / 2 = 0.02."""
  log_ratio = jnp.array([0.1, -0.2])
  loss, aux = cppo.weighted_likelihood_loss(jnp.exp(log_ratio), log_ratio, jnp.array([1.2, 0.8]),
                                            None)
  np.testing.assert_allclose(float(loss), 0.02, rtol=1e-5)
  want = np.mean(np.abs(np.exp([0.1, -0.2]) - [1.2, 0.8]))
  np.testing.assert_allclose(float(aux["ratio_error"]), want, rtol=1e-5)


def test_radius_update_follows_eq_18():
  hp = cgpo.CGPOConfig()  # eta 0.25 / 0.75, beta 0.8 / 1.25, delta in [1e-5, 1e-2]
  r = jnp.asarray(1e-3)
  assert float(cgpo.radius_update(r, hp, 0.1, 5.0)) == pytest.approx(0.8e-3)  # rho too small
  assert float(cgpo.radius_update(r, hp, 1.0, 0.1)) == pytest.approx(0.8e-3)  # zeta too small
  assert float(cgpo.radius_update(r, hp, 1.0, 1.0)) == pytest.approx(1.25e-3)  # both good
  assert float(cgpo.radius_update(r, hp, 0.5, 1.0)) == pytest.approx(1e-3)  # in between
  assert float(cgpo.radius_update(jnp.asarray(1e-5), hp, 0.0, 0.0)) == pytest.approx(1e-5)  # floor
  assert float(cgpo.radius_update(jnp.asarray(1e-4), hp, 0.0, 0.0)) == pytest.approx(0.8e-4)
  assert float(cgpo.radius_update(jnp.asarray(1e-2), hp, 1.0, 1.0)) == pytest.approx(1e-2)  # ceiling


def test_trust_region_step_by_hand():
  """g = (1, 0), q = (0, 1), J_C = 15 < b = 25, delta = 1e-4: c^2 / q.q = 100 > delta and
  c <= 0, so the whole ball is feasible (case b) and d = sqrt(delta) g / |g| = (0.01, 0)."""
  hp = cgpo.CGPOConfig(cost_limit=25.0)
  g, q = jnp.array([1.0, 0.0]), jnp.array([0.0, 1.0])
  sol, radius, _, metrics = cgpo.trust_region_step(g, q, 10.0, 15.0, jnp.asarray(1e-4),
                                                   PreviousStep.unknown(), hp)
  np.testing.assert_allclose(np.asarray(sol.step), [0.01, 0.0], atol=1e-7)
  assert int(sol.case) == trust_region.FEASIBLE and float(radius) == pytest.approx(1e-4)
  assert np.isnan(float(metrics["rho"]))  # nothing measured before the first step
  # The last step predicted +0.01 of return and +0.5 of cost; 0.01 and 0.5 were measured: rho =
  # 1, zeta = |25 - 15| / 0.5 = 20, both >= eta_2, so the radius grows by beta_2 first.
  previous = PreviousStep(*map(jnp.asarray, (9.99, 14.5, 0.01, 0.5)))
  sol, radius, _, metrics = cgpo.trust_region_step(g, q, 10.0, 15.0, jnp.asarray(1e-4), previous,
                                                   hp)
  assert float(radius) == pytest.approx(1.25e-4)
  np.testing.assert_allclose(float(metrics["rho"]), 1.0, rtol=1e-3)
  np.testing.assert_allclose(float(metrics["zeta"]), 20.0, rtol=1e-3)
  np.testing.assert_allclose(np.asarray(sol.step), [np.sqrt(1.25e-4), 0.0], rtol=1e-5)
  # Infeasible beyond the ball (J_C = 35): recovery along -q (Eq. 33, no weight given).
  sol, _, _, _ = cgpo.trust_region_step(g, q, 10.0, 35.0, jnp.asarray(1e-4),
                                        PreviousStep.unknown(), hp)
  assert int(sol.case) == trust_region.RECOVERY
  np.testing.assert_allclose(np.asarray(sol.step), [0.0, -0.01], atol=1e-7)


def test_rho_is_one_where_both_return_changes_are_within_the_noise():
  """``rho_noise`` k: a step that predicted +0.01 and measured -0.02, with a standard error of the
  measured change of 0.05, gives rho = 1 at k = 2 (no evidence against the model, e.g. at a
  saturated return) and Eq. 18's rho = -2 at k = 0; a prediction beyond the noise keeps Eq. 18."""
  g, q = jnp.array([1.0, 0.0]), jnp.array([0.0, 1.0])
  previous = PreviousStep(*map(jnp.asarray, (10.02, 14.5, 0.01, 0.5)))
  rho = {}
  for k in (0.0, 2.0):
    hp = cgpo.CGPOConfig(cost_limit=25.0, rho_noise=k)
    rho[k] = float(cgpo.trust_region_step(g, q, 10.0, 15.0, jnp.asarray(1e-4), previous, hp,
                                          return_change_noise=0.05)[3]["rho"])
  assert rho == pytest.approx({0.0: -2.0, 2.0: 1.0}, rel=1e-4)  # float32
  beyond = PreviousStep(*map(jnp.asarray, (10.02, 14.5, 0.5, 0.5)))
  hp = cgpo.CGPOConfig(cost_limit=25.0, rho_noise=2.0)
  _, _, _, metrics = cgpo.trust_region_step(g, q, 10.0, 15.0, jnp.asarray(1e-4), beyond, hp,
                                            return_change_noise=0.05)
  assert float(metrics["rho"]) == pytest.approx(-0.04, rel=1e-4)


def test_elastic_recovery_step_by_hand():
  """The elastic step (Sl1QP) on the infeasible case only: with unit u = g/|g|, v = q/|q|,
  d = sqrt(delta) (u - mu v) / |u - mu v|; g = (3, 0), q = (0, 2) (so u = (1, 0), v = (0, 1)) and
  mu = 1 give d = 0.01 (1, -1) / sqrt(2); as mu grows d tends to Eq. 33's -0.01 v."""
  g, q, delta = jnp.array([3.0, 0.0]), jnp.array([0.0, 2.0]), jnp.asarray(1e-4)
  sol = trust_region.solve(g, q, jnp.asarray(10.0), delta, 1.0)
  assert int(sol.case) == trust_region.RECOVERY
  np.testing.assert_allclose(np.asarray(sol.step), 0.01 * np.array([1.0, -1.0]) / np.sqrt(2),
                             rtol=1e-6)
  np.testing.assert_allclose(float(sol.predicted_constraint), 10.0 - 2 * 0.01 / np.sqrt(2),
                             rtol=1e-6)
  # mu = 3: (1, -3) / sqrt(10); then the distance to Eq. 33 shrinks like 1 / mu.
  sol = trust_region.solve(g, q, jnp.asarray(10.0), delta, 3.0)
  np.testing.assert_allclose(np.asarray(sol.step), 0.01 * np.array([1.0, -3.0]) / np.sqrt(10),
                             rtol=1e-6)
  paper = np.array([0.0, -0.01])
  gaps = [np.linalg.norm(np.asarray(trust_region.solve(g, q, jnp.asarray(10.0), delta, mu).step)
                         - paper) for mu in (1.0, 10.0, 100.0, 1e4)]
  assert all(a > b for a, b in itertools.pairwise(gaps)) and gaps[-1] < 1e-5
  np.testing.assert_allclose(gaps[2], 0.01 / 100, rtol=1e-3)  # |d - d_33| ~ sqrt(delta) / mu
  # Not used outside the infeasible case: feasible (c = -10) and partial (c = 0.005) steps are
  # the same with and without a weight.
  for c in (-10.0, 0.005):
    with_mu = trust_region.solve(g, q, jnp.asarray(c), delta, 1.0)
    without = trust_region.solve(g, q, jnp.asarray(c), delta)
    assert int(with_mu.case) != trust_region.RECOVERY
    np.testing.assert_array_equal(np.asarray(with_mu.step), np.asarray(without.step))


def test_recovery_weight_update_by_hand():
  """After a step that started infeasible (J_C = 30 > b = 25, J_R = 10): mu stays when the cost
  fell, halves when the cost rose with the return falling (shorter episodes: lean on g), doubles
  when the cost rose with the return rising or flat (lean on q); it returns to mu_0 after a
  feasible start and stays before the first measurement. The predictions play no part."""
  hp = cgpo.CGPOConfig(cost_limit=25.0)  # growth 2
  mu = jnp.asarray(4.0)

  def after(cost_before, return_now, cost_now, predicted=-1.0):
    previous = PreviousStep(*map(jnp.asarray, (10.0, cost_before, 0.01, predicted)))
    return float(recovery_weight_update(mu, hp, previous, jnp.asarray(return_now),
                                        jnp.asarray(cost_now)))

  assert after(30.0, 9.0, 29.0) == 4.0  # the cost fell (whatever the return did)
  assert after(30.0, 11.0, 29.9, predicted=0.5) == 4.0
  assert after(30.0, 9.0, 30.5) == 2.0  # cost up, return down: the episodes got shorter
  assert after(30.0, 11.0, 30.5) == 8.0  # cost up with the return: the reward side pushed it
  assert after(30.0, 10.0, 30.5) == 8.0  # ... or at a saturated (unchanged) return
  assert after(20.0, 9.0, 30.5) == hp.recovery_weight_init  # started feasible: back to mu_0
  assert after(float("nan"), 9.0, 30.5) == 4.0  # nothing measured yet
  # Through trust_region_step: the updated weight shapes this iteration's recovery step.
  g, q = jnp.array([3.0, 0.0]), jnp.array([0.0, 2.0])
  previous = PreviousStep(*map(jnp.asarray, (10.0, 34.0, 0.01, -0.5)))
  sol, radius, weight, metrics = cgpo.trust_region_step(g, q, 10.0, 35.0, jnp.asarray(1e-4),
                                                        previous, hp, jnp.asarray(0.5))
  assert float(weight) == 1.0 and float(metrics["recovery_weight"]) == 1.0  # rose, flat return
  assert float(radius) == pytest.approx(0.8e-4)  # rho = 0 / 0.01 < eta_1: shrink (floor 1e-5)
  np.testing.assert_allclose(np.asarray(sol.step),
                             np.sqrt(0.8e-4) * np.array([1.0, -1.0]) / np.sqrt(2), rtol=1e-6)


def test_lagrangian_gradient_step_by_hand():
  """lambda: 0 -> 0.1 * (35 - 25) = 1; direction -(g - lambda q) = -(1 - 2 * 1) = +1 on w, so
  Adam's first step (|m_hat / sqrt(v_hat)| = 1) moves w by -lr = -2e-3: cost first."""
  hp = shac_lag.BPTTLagConfig(cost_limit=25.0, multiplier_learning_rate=0.1,
                              multiplier_rule="ascent")
  actor = {"w": jnp.zeros(1)}
  opt_state = shac_lag.adam(hp.actor_learning_rate, hp.max_grad_norm).init(actor)
  new, _, lag = shac_lag.lagrangian_gradient_step(actor, {"w": jnp.ones(1)}, {"w": 2 * jnp.ones(1)},
                                                  opt_state, lagrange.init(0.0), 35.0, hp)
  assert float(lag.multiplier) == pytest.approx(1.0)
  np.testing.assert_allclose(np.asarray(new["w"]), [-2e-3], rtol=1e-4)


@pytest.mark.parametrize("excess, recovery, weight, multiplier, step", [
    (0.003, "descend", 1.0, 10 ** 0.4, (-1, -1)),  # to cut J_C by 0.003 only lambda > 1 does
    (0.001, "descend", 1.0, 1e-3, (1, -1)),        # to cut it by 0.001 any lambda in (0, 1) does
    (-0.001, "descend", 1.0, 1e-3, (1, -1)),       # 0.001 of slack: the reward step is too much
    (-0.01, "descend", 1.0, 0.0, (1, 0)),          # 0.01 of slack: the reward step alone
    (1.0, "descend", 1.0, 1e3, (-1, -1)),          # no step cuts 1.0: the grid's top
    (1.0, "elastic", 1.0, 1.0, (1, -1)),           # ... or mu |g| / |q|, here below 1
    (1.0, "elastic", 4.0, 4.0, (-1, -1)),          # ... and with mu = 4 above it
    (1.0, "elastic", 1e-4, 1e-3, (1, -1)),         # ... but no less than holds J_C (0 < lambda)
    (0.003, "elastic", 4.0, 10 ** 0.4, (-1, -1)),  # mu is not read where a step reaches b
])
def test_predictive_multiplier_by_hand(excess, recovery, weight, multiplier, step):
  """g = (1, 0), q = (1, 2). Adam's first step is -lr sign(-(g - lambda q)), so it changes J_C by
  q.u = lr (at lambda = 0), -lr (0 < lambda < 1) or -3 lr (lambda > 1), lr = 2e-3. The multiplier
  is the smallest on the grid |g| / |q| * {0, 10^(k/10)} whose change is <= b - J_C; where none
  is, the grid's top or mu |g| / |q| (the elastic recovery's weight mu), but no less than the
  smallest lambda predicted not to raise J_C."""
  hp = shac_lag.BPTTLagConfig(cost_limit=25.0, recovery=recovery)
  actor = {"w": jnp.zeros(2)}
  opt_state = shac_lag.adam(hp.actor_learning_rate, hp.max_grad_norm).init(actor)
  new, _, lag = shac_lag.lagrangian_gradient_step(
      actor, {"w": jnp.array([1.0, 0.0])}, {"w": jnp.array([1.0, 2.0])}, opt_state,
      lagrange.init(0.0), 25.0 + excess, hp, weight)
  assert float(lag.multiplier) == pytest.approx(multiplier / np.sqrt(5.0), rel=1e-5)
  np.testing.assert_allclose(np.asarray(new["w"]), 2e-3 * np.array(step), atol=1e-7)


@pytest.mark.parametrize("name", list(agents.list_agents()))
def test_config_holds_only_what_the_algorithm_reads(name):
  """Each algorithm's config class is its own, and its hyper-parameters are a pytree whose
  leaves are exactly the sweepable fields (what ``--sweep`` vmaps over)."""
  cfg = agents.default_config(name)
  fields = {f.name for f in dataclasses.fields(cfg)}
  assert ("multiplier_learning_rate" in fields) == (name in ("ppo-lag", "trpo-lag", "pdo", "appo", "cup",
                                                                   "shac-lag", "bptt-lag"))
  assert ("delta_init" in fields) == (name in ("cgpo", "mb-cgpo"))
  assert ("short_horizon" in fields) == (name in ("cgpo", "mb-cgpo", "shac-lag"))
  assert ("model_learning_rate" in fields) == (name in ("dyna-cppo", "mb-cgpo"))
  hp = agents.base.hparams_of(dataclasses.replace(cfg, cost_limit=1.0))
  assert len(jax.tree_util.tree_leaves(hp)) == len(agents.base.sweepable(cfg))


def test_cup_projection_loss_holds_the_improved_policy_and_lowers_the_cost_surrogate():
  """At pi_theta = pi_{k+1/2} with lambda = 0 the projection loss is 0 and flat (the KL term's
  minimum); with lambda > 0 a small step against its gradient lowers E[rho A^C]."""
  from jaxsafe.agents.base import hparams_of
  from jaxsafe.agents.on_policy import cup
  from jaxsafe.agents.on_policy.base import ActorCritic
  from jaxsafe.core import distributions
  agent = agents.make("cup", "function", hidden_sizes=(8,), normalize_observations=False)
  ac = ActorCritic(agent.env, agent.config)
  hp = hparams_of(agent.config)
  k_init, k_obs, k_act, k_adv = jax.random.split(jax.random.PRNGKey(0), 4)
  obs = jax.random.normal(k_obs, (64, agent.env.observation_size))
  actor = ac.actor.init(k_init, obs[0])
  sample = distributions.sample(ac.dist(actor, None, obs), k_act)
  half_mean, half_log_std = ac.actor.apply(actor, obs)
  adv_c = jax.random.normal(k_adv, (64,))
  batch = {"obs": obs, "raw_action": sample.raw_action, "log_prob": sample.log_prob,
           "adv_c": adv_c - adv_c.mean(), "half_mean": half_mean, "half_log_std": half_log_std}

  (loss, _), grad = jax.value_and_grad(cup.projection_loss, argnums=1, has_aux=True)(
      ac, actor, None, batch, jnp.float32(0.0), hp)
  assert abs(float(loss)) < 1e-6
  assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grad)) < 1e-5

  def cost_surrogate(params):
    dist = ac.dist(params, None, obs)
    return float((jnp.exp(distributions.log_prob(dist, batch["raw_action"]) - batch["log_prob"])
                  * batch["adv_c"]).mean())

  grad = jax.grad(lambda p: cup.projection_loss(ac, p, None, batch, jnp.float32(1.0), hp)[0])(actor)
  stepped = jax.tree.map(lambda p, g: p - 1e-2 * g, actor, grad)
  assert cost_surrogate(stepped) < cost_surrogate(actor) - 1e-4


@pytest.mark.parametrize("improve", [False, True])
def test_cup_keeps_the_policy_from_an_infeasible_batch(improve):
  """With ``improve_while_infeasible=False`` an infeasible batch (b = -1 < J_C) skips the reward
  step; with lambda held at 0 the projection is then the KL to pi_k alone, whose gradient is 0
  up to rounding, so the actor stays (measured: 4e-5, Adam normalising float32 noise). OmniSafe's
  order (True) takes the reward step: Adam moves parameters by ~lr = 3e-4 (measured: 6e-4)."""
  from conftest import AGENT_SMALL

  small = {**AGENT_SMALL["cup"], "rollout_length": envs.make("function").episode_length}
  agent = agents.make("cup", "function", **small, cost_limit=-1.0, multiplier_init=0.0,
                      multiplier_learning_rate=0.0, improve_while_infeasible=improve)
  state = agent.init(jax.random.PRNGKey(0))
  new, _ = jax.jit(agent.update)(state)
  moved = max(float(jnp.abs(a - b).max()) for a, b in
              zip(jax.tree.leaves(new.params["actor"]), jax.tree.leaves(state.params["actor"])))
  assert (moved > 1.5e-4) == improve, moved
