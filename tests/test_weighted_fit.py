"""CVPO's M-step (``jaxsafe.solvers.weighted_fit``): the decoupled KLs, and an M-step on an E-step's
weights that keeps both KLs within their bounds while the weighted log-likelihood rises."""

from __future__ import annotations

from types import SimpleNamespace

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxsafe.core.networks import GaussianActor
from jaxsafe.solvers import action_weights, weighted_fit

#: the authors' M-step settings (liuzuxin/cvpo-safe-rl, script/config/config_cvpo.yaml)
HP = SimpleNamespace(kl_mean_bound=0.001, kl_cov_bound=0.001, mean_dual_lr=1.0, cov_dual_lr=100.0,
                     mean_dual_max=0.1, cov_dual_max=10.0)


def test_decoupled_kl_is_the_kl_when_one_part_moves():
  rng = np.random.default_rng(0)
  mean, log_std = rng.normal(size=(5, 3)), rng.normal(size=(5, 3)) * 0.3
  new_mean, new_log_std = mean + rng.normal(size=(5, 3)), log_std + rng.normal(size=(5, 3)) * 0.2
  exact = lambda m, s: float(jnp.mean(distrax.MultivariateNormalDiag(mean, jnp.exp(log_std))
                                      .kl_divergence(distrax.MultivariateNormalDiag(m, jnp.exp(s)))))
  c_mean, c_cov = weighted_fit.decoupled_kl(mean, log_std, new_mean, log_std)
  assert float(c_mean) == pytest.approx(exact(new_mean, log_std), rel=1e-5) and float(c_cov) == 0.0
  c_mean, c_cov = weighted_fit.decoupled_kl(mean, log_std, mean, new_log_std)
  assert float(c_cov) == pytest.approx(exact(mean, new_log_std), rel=1e-5) and float(c_mean) == 0.0


@pytest.fixture(scope="module")
def batch():
  """An E-step on 128 states x 32 actions of a small actor: Q_r pulls each state's actions
  towards a target that depends on the state, Q_c charges |a|^2 with a binding threshold."""
  k_obs, k_params, k_actions = jax.random.split(jax.random.PRNGKey(0), 3)
  obs = jax.random.normal(k_obs, (128, 6))
  actor = GaussianActor(2, (32, 32))
  params = actor.init(k_params, obs)
  mean, log_std = actor.apply(params, obs)
  raw = mean[:, None] + jnp.exp(log_std)[:, None] * jax.random.normal(k_actions, (128, 32, 2))
  q_reward = -jnp.sum(jnp.square(raw - 0.8 * obs[:, None, :2]), axis=-1)
  q_cost = jnp.sum(jnp.square(raw), axis=-1)
  e_step = action_weights.solve(q_reward, q_cost, 0.6 * float(jnp.mean(q_cost)), 0.1)
  assert bool(e_step.feasible) and float(e_step.lam) > 0.0  # both E-step constraints bind
  return actor.apply, params, obs, raw, e_step.weights


def _m_step(batch, hp, iterations=30, learning_rate=1e-2):
  apply, params, obs, raw, weights = batch
  tx = optax.adam(learning_rate)
  run = jax.jit(lambda p: weighted_fit.m_step(apply, p, tx.init(p), tx, weighted_fit.init_duals(),
                                              obs, raw, weights, hp, iterations))
  return run(params)


def test_m_step_keeps_both_kl_bounds_and_raises_the_fit(batch):
  """Acceptance 2 of issue 14, with a control: the same steps without bounds go past them."""
  _, _, _, metrics = _m_step(batch, HP)
  assert float(metrics["kl_mean"]) <= 1.1 * HP.kl_mean_bound
  assert float(metrics["kl_cov"]) <= 1.1 * HP.kl_cov_bound
  assert float(metrics["fit_after"]) > float(metrics["fit_before"])
  assert float(metrics["step_length"]) > 0.0
  unbounded = SimpleNamespace(**{**vars(HP), "kl_mean_bound": 1e9, "kl_cov_bound": 1e9})
  _, _, _, free = _m_step(batch, unbounded)
  assert float(free["kl_mean"]) > 2 * HP.kl_mean_bound and float(free["kl_cov"]) > 2 * HP.kl_cov_bound
  assert float(free["fit_after"]) > float(metrics["fit_after"])


def test_duals_rise_while_a_kl_is_over_its_bound(batch):
  """Eq. 56-57: beta grows by alpha (C - eps) while C > eps and stays in [0, max]."""
  _, _, _, metrics = _m_step(batch, HP)
  assert 0.0 < float(metrics["beta_cov"]) <= HP.cov_dual_max
  assert 0.0 < float(metrics["beta_mean"]) <= HP.mean_dual_max
  _, _, _, still = _m_step(batch, HP, iterations=1, learning_rate=1e-6)
  assert float(still["beta_mean"]) == 0.0 and float(still["beta_cov"]) == 0.0
