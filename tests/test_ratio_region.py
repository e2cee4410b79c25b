"""Tests for ``jaxsafe.solvers.ratio_region``: CPPO's E-step (Eq. 4a-4b).

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

from jaxsafe.solvers import ratio_region as rr

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


# Each N is a compilation (~5 s on a busy 2-core machine); 64 runs in the slow tier only. The
# tests below use N = 8 and 512 with the same argument types, so they reuse these compilations.
@pytest.mark.parametrize("n", [8, pytest.param(64, marks=pytest.mark.slow), 512, 4096])
def test_e_step_constraints_hold(n):
  rng = np.random.default_rng(n)
  with_fixed = 0
  for i in range(40):
    adv, cost_adv, budget, radius = _instance(rng, n, FAMILIES[i % len(FAMILIES)])
    sol = _E_STEP(adv, cost_adv, budget, radius, MIN_RATIO)
    v = np.asarray(sol.v_bar, np.float64)
    assert bool(sol.ok)
    assert abs(v.sum()) <= 1e-6 * np.abs(v).sum() + 1e-30
    assert np.linalg.norm(v) <= radius * (1 + 1e-6)
    assert v.min() >= -1.0 + MIN_RATIO - 1e-6
    with_fixed += bool(np.asarray(sol.fixed).any())
    if int(sol.case) != rr.RECOVERY:  # feasible: the cost constraint holds (no safeguard now)
      c = cost_adv - cost_adv.mean()
      assert v @ cost_adv <= budget + 1e-6 * (abs(budget) + radius * np.linalg.norm(c))
  assert with_fixed >= 5  # the element-wise step v_bar > -1 was exercised


def test_e_step_recovery_is_the_most_cost_reducing_ratio():
  rng = np.random.default_rng(1)
  n = 512
  adv, cost_adv = rng.normal(size=n), rng.normal(size=n)
  radius = 0.1 * np.sqrt(n)  # small: no entry reaches the floor
  c = cost_adv - cost_adv.mean()
  sol = _E_STEP(adv, cost_adv, -2.0 * radius * np.linalg.norm(c), radius, MIN_RATIO)
  assert int(sol.case) == rr.RECOVERY
  np.testing.assert_allclose(np.asarray(sol.v_bar), -radius * c / np.linalg.norm(c), atol=1e-5)


def test_e_step_slack_budget_follows_the_reward_advantage():
  rng = np.random.default_rng(2)
  n = 512
  adv, cost_adv = rng.normal(size=n), rng.normal(size=n)
  radius = 0.1 * np.sqrt(n)
  sol = _E_STEP(adv, cost_adv, np.float64(1e6), radius, MIN_RATIO)
  a = adv - adv.mean()
  assert int(sol.case) == rr.INTERIOR
  np.testing.assert_allclose(np.asarray(sol.v_bar), radius * a / np.linalg.norm(a), atol=1e-5)


def test_e_step_matches_slsqp_on_small_batches():
  """Objective within 1e-5 (relative) of SLSQP's best of three starts on every instance."""
  rng = np.random.default_rng(0)
  ratios = []
  with one_blas_thread():
    for i in range(150):
      n = 8  # one shape, compiled once (by test_e_step_constraints_hold[8])
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
  assert np.all(ratios <= 1e-5), np.sort(ratios)[-5:]  # was 5% with the fix-and-re-solve solver


def test_e_step_non_finite_inputs_and_negative_radius():
  """NaN or inf anywhere: the zero step and ok = False; a negative radius raises when concrete
  and is flagged when traced."""
  adv, cost_adv = np.linspace(-1, 1, 8), np.cos(np.arange(8.0))  # N = 8 as below: one compilation
  assert bool(_E_STEP(adv, cost_adv, 0.1, 1.0, MIN_RATIO).ok)
  for bad in ("adv", "cost", "budget", "radius"):
    for value in (np.nan, np.inf):
      args = [adv.copy(), cost_adv.copy(), 0.1, 1.0]
      if bad == "adv":
        args[0][2] = value
      elif bad == "cost":
        args[1][0] = value
      else:
        args[{"budget": 2, "radius": 3}[bad]] = value
      sol = _E_STEP(*args, MIN_RATIO)
      assert not bool(sol.ok) and np.all(np.asarray(sol.v_bar) == 0), (bad, value)
  with pytest.raises(ValueError, match="radius must be >= 0"):
    rr.e_step(adv, cost_adv, 0.1, -1.0)
  sol = _E_STEP(adv, cost_adv, 0.1, -1.0, MIN_RATIO)
  assert not bool(sol.ok) and np.all(np.asarray(sol.v_bar) == 0)


@pytest.mark.parametrize("scale", [1e-6, 1e-3, 1.0, 1e3])
def test_e_step_is_scale_invariant(scale):
  """A and (A_c, B) scaled together by 1e-6 ... 1e3 give the same v (float32)."""
  rng = np.random.default_rng(3)
  n = 512
  adv, cost_adv = rng.normal(size=n), rng.normal(size=n)
  radius = 0.8 * np.sqrt(n)  # large: many entries at the floor
  budget = -0.2 * radius * np.linalg.norm(cost_adv - cost_adv.mean())
  ref = np.asarray(_E_STEP(adv, cost_adv, budget, radius, MIN_RATIO).v_bar)
  sol = _E_STEP(scale * adv, scale * cost_adv, scale * budget, radius, MIN_RATIO)
  assert int(sol.case) == rr.BOUNDARY and np.asarray(sol.fixed).sum() >= 10
  np.testing.assert_allclose(np.asarray(sol.v_bar), ref, atol=1e-5 * radius / np.sqrt(n))


def test_e_step_dtype_follows_inputs():
  adv, cost_adv = np.linspace(-1, 1, 8), np.sin(np.arange(8.0))
  assert _E_STEP(np.float32(adv), np.float32(cost_adv), 0.0, 1.0).v_bar.dtype == np.float32
  with jax.enable_x64(True):
    sol = jax.jit(rr.e_step)(adv, cost_adv, 0.0, 1.0)
    assert sol.v_bar.dtype == np.float64 and sol.cost_multiplier.dtype == np.float64
    assert sol.case.dtype == np.int32
