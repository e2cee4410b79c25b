"""Tests for ``jaxsafe.core.ratio_region``: CPPO's E-step (Eq. 4a-4b).

Random advantages for N from 8 to 4096, with budgets from "must cut cost hard" to "slack", radii
small and large (large ones make v_bar > -1 bind), and degenerate advantages (A_c = 0, A parallel
to A_c, A = 0). Properties are checked on every instance; on small N the objective is compared
with scipy's SLSQP on the same problem.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from conftest import one_blas_thread
from scipy import optimize

from jaxsafe.core import ratio_region as rr

MIN_RATIO = 0.05
_E_STEP = jax.jit(rr.e_step)


def _instance(rng, n, family="generic"):
  adv = rng.normal(size=n) * rng.uniform(0.1, 3.0)
  cost_adv = rng.normal(size=n) * rng.uniform(0.1, 3.0)
  if family == "parallel":
    cost_adv = rng.choice([-1.0, 1.0]) * 0.7 * adv
  elif family == "no_cost_signal":
    cost_adv = np.zeros(n)
  elif family == "no_reward_signal":
    adv = np.zeros(n)
  # Per-entry RMS radius from 0.05 to 0.9: the large ones push entries below -1.
  radius = rng.uniform(0.05, 0.9) * np.sqrt(n)
  scale = radius * max(np.linalg.norm(cost_adv - cost_adv.mean()), 1e-3)
  budget = rng.uniform(-1.5, 1.5) * scale
  return adv, cost_adv, budget, radius


FAMILIES = ("generic",) * 7 + ("parallel", "no_cost_signal", "no_reward_signal")


def _is_feasible(cost_adv, budget, radius):
  """Whether some v with sum 0, |v| <= R, v >= floor has v.A_c <= B (a small LP-like check)."""
  c = cost_adv - cost_adv.mean()
  if np.linalg.norm(c) < 1e-9:
    return budget >= 0
  # The most cost-reducing feasible point, by SLSQP from -R c/|c| clipped to the floor.
  return _min_cost(cost_adv, radius) <= budget - 1e-6


def _constraints(n, radius, cost_adv=None, budget=None):
  """SLSQP constraints of Eq. 4 (the cost row only when ``cost_adv`` is given)."""
  cons = [{"type": "eq", "fun": lambda x: x.sum(), "jac": lambda x: np.ones(n)},
          {"type": "ineq", "fun": lambda x: radius**2 - x @ x, "jac": lambda x: -2 * x},
          {"type": "ineq", "fun": lambda x: x + 1 - MIN_RATIO, "jac": lambda x: np.eye(n)}]
  if cost_adv is not None:
    cons.append({"type": "ineq", "fun": lambda x: budget - x @ cost_adv, "jac": lambda x: -cost_adv})
  return cons


def _slsqp_max(objective, x0, cons):
  """argmax of objective.x over ``cons`` by SLSQP from ``x0``."""
  return optimize.minimize(lambda x: -x @ objective, x0, jac=lambda x: -objective,
                           constraints=cons, method="SLSQP",
                           options={"maxiter": 500, "ftol": 1e-12}).x


def _min_cost(cost_adv, radius):
  x = _slsqp_max(-cost_adv, np.zeros(cost_adv.size), _constraints(cost_adv.size, radius))
  return x @ cost_adv


@pytest.mark.parametrize("n", [8, 64, 512, 4096])
def test_e_step_constraints_hold(n):
  rng = np.random.default_rng(n)
  with_fixed = 0
  for i in range(40):
    adv, cost_adv, budget, radius = _instance(rng, n, FAMILIES[i % len(FAMILIES)])
    sol = _E_STEP(adv, cost_adv, budget, radius, MIN_RATIO)
    v = np.asarray(sol.v_bar, np.float64)
    assert abs(v.mean()) <= 1e-5 * max(1.0, np.abs(v).max())
    assert np.linalg.norm(v) <= radius * (1 + 1e-5)
    assert v.min() > -1.0
    with_fixed += bool(np.asarray(sol.fixed).any())
    if int(sol.case) != rr.RECOVERY and float(sol.scaled) >= 1 - 1e-5:
      # The problem was feasible and the safeguard did no more than round: the cost constraint holds.
      assert v @ cost_adv <= budget + 1e-4 * (abs(budget) + radius * np.abs(cost_adv).max())
  assert with_fixed >= 5  # the element-wise step v_bar > -1 was exercised


def test_e_step_recovery_is_the_most_cost_reducing_ratio():
  rng = np.random.default_rng(1)
  n = 256
  adv, cost_adv = rng.normal(size=n), rng.normal(size=n)
  radius = 0.1 * np.sqrt(n)  # small: no entry reaches the floor
  c = cost_adv - cost_adv.mean()
  sol = _E_STEP(adv, cost_adv, -2.0 * radius * np.linalg.norm(c), radius, MIN_RATIO)
  assert int(sol.case) == rr.RECOVERY
  np.testing.assert_allclose(np.asarray(sol.v_bar), -radius * c / np.linalg.norm(c), atol=1e-5)


def test_e_step_slack_budget_follows_the_reward_advantage():
  rng = np.random.default_rng(2)
  n = 256
  adv, cost_adv = rng.normal(size=n), rng.normal(size=n)
  radius = 0.1 * np.sqrt(n)
  sol = _E_STEP(adv, cost_adv, 1e6, radius, MIN_RATIO)
  a = adv - adv.mean()
  assert int(sol.case) == rr.INTERIOR
  np.testing.assert_allclose(np.asarray(sol.v_bar), radius * a / np.linalg.norm(a), atol=1e-5)


def test_e_step_matches_slsqp_on_small_batches():
  """Objective within 5% of SLSQP's best of three starts, as a distribution over instances."""
  rng = np.random.default_rng(0)
  ratios = []
  with one_blas_thread():
    for i in range(150):
      n = (8, 16, 24)[i % 3]  # few shapes: one compilation each
      adv, cost_adv, budget, radius = _instance(rng, n, FAMILIES[i % len(FAMILIES)])
      if not _is_feasible(cost_adv, budget, radius):
        continue
      cons = _constraints(n, radius, cost_adv, budget)
      best = -np.inf
      for _ in range(3):
        x = _slsqp_max(adv, rng.normal(size=n) * 0.01, cons)
        ok = (abs(x.sum()) < 1e-6 and x @ cost_adv <= budget + 1e-6 and x @ x <= radius**2 + 1e-6
              and x.min() >= -1 + MIN_RATIO - 1e-6)
        if ok:
          best = max(best, x @ adv)
      if not np.isfinite(best):
        continue
      v = np.asarray(_E_STEP(adv, cost_adv, budget, radius, MIN_RATIO).v_bar, np.float64)
      gap = (best - v @ adv) / max(abs(best), 1e-3 * radius * np.linalg.norm(adv - adv.mean()), 1e-9)
      ratios.append(gap)
  ratios = np.array(ratios)
  print(f"\nE-step vs SLSQP on {ratios.size} feasible instances: relative objective gap "
        f"quantiles 0/50/95/100% = {np.quantile(ratios, [0, 0.5, 0.95, 1.0])}")
  assert ratios.size >= 80
  assert np.all(ratios <= 0.05), np.sort(ratios)[-5:]
  assert np.median(ratios) <= 1e-4
