"""CPPO's E-step (``jaxsafe.core.ratio_region``) against independent float64 solutions.

Random instances of Eq. 4a-4b bucketed by N (2 ... 4096; one vmapped, jitted ``e_step`` per size and
dtype), with radii from 1e-8 to the config maximum sqrt(2 N 10), min_ratio 0 ... 0.99, inputs scaled
by 1e-6 ... 1e3 and degenerate families (A parallel or anti-parallel to A_c, A_c = 0, A = 0, ties
at the floor, the recovery problem). The references, in float64 numpy/scipy:

* the Lagrange dual in (mu, lambda) >= 0, minimised by L-BFGS-B, with the inner maximisation over
  {sum(v) = 0, v >= floor} a sort-based projection: its value at any (mu, lambda) bounds the optimum
  from above, so dual - ours is a certificate of the objective gap;
* for infeasible budgets and the recovery problem, the same dual without mu, for the least cost;
* for A = 0, the least-norm feasible point by bisection on the step along -A_c;
* SLSQP on the primal for N <= 8, as a second opinion that no feasible point beats ours.

Gaps are in units of R |A~| (the unconstrained optimum), violations in units of R (ball, floor,
sum) and R |A_c~| (budget). The fast tier runs ~200 instances; ``-m slow`` the full sweep.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import one_blas_thread
from scipy import optimize

from jaxsafe.core import ratio_region as rr

_E_STEP = jax.jit(jax.vmap(lambda a, c, b, r, m, rec: rr.e_step(a, c, b, r, m, recover=rec)))
FAMILIES = ("generic",) * 6 + ("parallel", "anti", "no_cost", "no_reward", "ties", "recover")
#: tolerances per dtype: objective gap / (R |A~|), violations / R and / (R |A_c~|).
TOL = {np.float32: {"gap": 2e-5, "viol": 2e-6}, np.float64: {"gap": 1e-8, "viol": 1e-12}}


def _instances(rng, n, count):
  rows = []
  for i in range(count):
    family = FAMILIES[i % len(FAMILIES)]
    s_a, s_c = 10 ** rng.uniform(-6, 3, size=2)
    adv = rng.normal(size=n) * s_a + rng.normal() * s_a  # offsets: centring matters
    cost = rng.normal(size=n) * s_c + rng.normal() * s_c
    if family == "parallel":
      cost = adv * s_c / s_a
    elif family == "anti":
      cost = -adv * s_c / s_a
    elif family == "no_cost":
      cost = np.full(n, cost[0])
    elif family == "no_reward":
      adv = np.full(n, adv[0])
    elif family == "ties":
      adv = rng.integers(0, 3, size=n) * s_a
      cost = rng.integers(-1, 2, size=n) * s_c
    radius = 10 ** rng.uniform(-8, np.log10(np.sqrt(2 * n * 10)))
    min_ratio = rng.choice([0.0, 0.05, 0.5, 0.99])
    c = cost - cost.mean()
    # Budgets: half on the scale of the ball, half the cost of a random point of the set.
    x = rng.normal(size=n)
    x -= x.mean()
    x *= rng.uniform(0, 1) * radius / max(np.linalg.norm(x), 1e-300)
    x *= min(1.0, (1 - min_ratio) / max(-x.min(), 1e-300))
    budget = (rng.uniform(-1.5, 1.5) * radius * np.linalg.norm(c) if i % 2 else x @ c)
    if family == "no_cost":  # not a rounding residue (which float32 flushes to 0 as a denormal)
      budget = rng.choice([-1.0, 0.0, 1.0]) * s_c * radius
    rows.append((adv, cost, budget, radius, min_ratio, family == "recover", family))
  return rows


def _run(rows, dtype):
  adv, cost, budget, radius, min_ratio, recover, _ = zip(*rows)
  with jax.enable_x64(dtype == np.float64):
    args = [jnp.asarray(np.stack(adv), dtype), jnp.asarray(np.stack(cost), dtype),
            jnp.asarray(budget, dtype), jnp.asarray(radius, dtype),
            jnp.asarray(min_ratio, dtype), jnp.asarray(recover)]
    sol = jax.block_until_ready(_E_STEP(*args))
    return jax.tree.map(np.asarray, sol)


def _proj(z, floor):
  """argmin |x - z| s.t. sum(x) = 0, x >= floor (floor < 0): a shifted simplex projection."""
  n = z.size
  w, total = z - floor, -n * floor
  s = np.sort(w)[::-1]
  cs = np.cumsum(s) - total
  k = max(int(np.sum(s - cs / np.arange(1, n + 1) > 0)), 1)
  return np.maximum(w - cs[k - 1] / k, 0) + floor


def _dual(a, c, b, floor, use_cost=True):
  """min over mu, lam >= 0 of max_{sum x = 0, x >= floor} (a - mu c).x - lam/2 (|x|^2 - 1) + mu b
  (the problem scaled to R = 1). Returns (dual value, x at the minimiser)."""

  def f(z):
    mu, lam = (z[0], z[1]) if use_cost else (0.0, z[0])
    lam = max(lam, 1e-12)
    y = a - mu * c
    x = _proj(y / lam, floor)
    val = y @ x - lam / 2 * (x @ x - 1) + mu * b
    grad = [b - c @ x, (1 - x @ x) / 2] if use_cost else [(1 - x @ x) / 2]
    return val, np.array(grad)

  best = None
  for lam0 in (1.0, 1e-2):
    z0 = [0.1, lam0] if use_cost else [lam0]
    bounds = [(0, 1e9), (1e-12, None)] if use_cost else [(1e-12, None)]
    res = optimize.minimize(f, z0, jac=True, method="L-BFGS-B", bounds=bounds,
                            options={"maxiter": 3000, "ftol": 1e-15, "gtol": 1e-13})
    if best is None or res.fun < best.fun:
      best = res
  mu, lam = (best.x[0], best.x[1]) if use_cost else (0.0, best.x[0])
  return best.fun, _proj((a - mu * c) / max(lam, 1e-12), floor)


def _inner_value(y, floor):
  """max y.x over {sum x = 0, x >= floor, |x| <= 1} as the dual value min_lam D(lam): bisection
  on log(lam) for |Proj(y / lam)| = 1 (the norm falls as lam grows); any lam bounds from above."""
  n = y.size
  vertex = np.full(n, floor)
  vertex[np.argmax(y)] = -floor * (n - 1)
  if vertex @ vertex <= 1:  # the simplex vertex fits: the ball is inactive (lam = 0)
    return y @ vertex
  lo, hi = -60.0, 60.0
  for _ in range(120):
    mid = 0.5 * (lo + hi)
    x = _proj(y / np.exp(mid), floor)
    lo, hi = (mid, hi) if x @ x > 1 else (lo, mid)
  lam = np.exp(hi)
  x = _proj(y / lam, floor)
  return y @ x - lam / 2 * (x @ x - 1)


def _dual_nested(a, c, b, floor):
  """The dual by Brent's method on the angle of mu, with the inner maximum exact: a second,
  slower certificate for instances where L-BFGS-B stalls (A parallel to A_c)."""
  phi = lambda t: _inner_value(a - np.tan(t) * c, floor) + np.tan(t) * b
  res = optimize.minimize_scalar(phi, bounds=(0, np.pi / 2 - 1e-9), method="bounded",
                                 options={"xatol": 1e-13, "maxiter": 400})
  return min(res.fun, phi(0.0))


def _least_norm(c, b, floor):
  """The feasible point nearest 0 (for A = 0), R = 1: x(s) = Proj(-s c), bisection on s."""
  if b >= 0:
    return np.zeros_like(c)
  lo, hi = 0.0, 1.0
  while _proj(-hi * c, floor) @ c > b and hi < 1e12:
    hi *= 2
  for _ in range(200):
    mid = 0.5 * (lo + hi)
    lo, hi = (mid, hi) if _proj(-mid * c, floor) @ c > b else (lo, mid)
  x = _proj(-hi * c, floor)
  return x if x @ x <= 1 + 1e-12 else None


def _slsqp(a, c, b, floor):
  n = a.size
  cons = [{"type": "eq", "fun": lambda x: x.sum(), "jac": lambda x: np.ones(n)},
          {"type": "ineq", "fun": lambda x: 1 - x @ x, "jac": lambda x: -2 * x},
          {"type": "ineq", "fun": lambda x: x - floor, "jac": lambda x: np.eye(n)},
          {"type": "ineq", "fun": lambda x: b - x @ c, "jac": lambda x: -c}]
  best = -np.inf
  for seed in range(3):
    x0 = np.random.default_rng(seed).normal(size=n) * 1e-3
    x = optimize.minimize(lambda x: -a @ x, x0 - x0.mean(), jac=lambda x: -a, constraints=cons,
                          method="SLSQP", options={"maxiter": 500, "ftol": 1e-14}).x
    if (abs(x.sum()) < 1e-9 and x @ x <= 1 + 1e-9 and x.min() >= floor - 1e-9
        and x @ c <= b + 1e-9):
      best = max(best, a @ x)
  return best


def _unit(x):
  x = x - x.mean()
  norm = np.linalg.norm(x)
  return (x / norm, norm) if norm > 0 else (np.zeros_like(x), 0.0)


def _check(rows, sol, dtype, stats):
  tol = TOL[dtype]
  for i, (adv, cost, budget, radius, min_ratio, recover, family) in enumerate(rows):
    # The instance as the solver saw it (rounded to dtype), scaled to R = 1 and unit A~, A_c~.
    adv, cost = adv.astype(dtype).astype(np.float64), cost.astype(dtype).astype(np.float64)
    radius, budget = float(np.asarray(radius, dtype)), float(np.asarray(budget, dtype))
    floor = (float(np.asarray(min_ratio, dtype)) - 1) / radius
    a, a_norm = _unit(adv)
    if family == "no_reward":
      a, a_norm = np.zeros_like(a), 0.0
    c, c_norm = _unit(cost)
    if family == "no_cost":
      c, c_norm = np.zeros_like(c), 0.0
    b = budget / (radius * c_norm) if c_norm > 0 else (0.0 if budget >= 0 else -1.0)
    assert bool(sol.ok[i])
    x = sol.v_bar[i].astype(np.float64) / radius
    viol = max(abs(x.sum()), x @ x - 1, floor - x.min(), 0.0)
    stats["viol"] = max(stats["viol"], viol)
    assert viol <= tol["viol"] * max(1.0, np.abs(floor)), (i, family, viol)
    cost_x = x @ c
    if int(sol.case[i]) == rr.RECOVERY:
      if c_norm > 0:  # the least cost over the set: our cost is that to tolerance
        neg_min = _inner_value(-c, floor)
        stats["recovery"] = max(stats["recovery"], cost_x + neg_min)
        assert cost_x + neg_min <= tol["gap"], (i, family, cost_x, -neg_min)
        assert recover or b < -neg_min + tol["gap"], (i, family, b, -neg_min)  # truly infeasible
      else:
        assert recover or b < 0
      continue
    assert not recover
    over = cost_x - b
    stats["budget"] = max(stats["budget"], over)
    assert over <= tol["viol"] * max(1.0, abs(b)), (i, family, over)
    if a_norm == 0:  # no reward signal: the feasible point nearest 0
      ref = _least_norm(c, b, floor)
      if ref is not None:
        gap = np.linalg.norm(x) - np.linalg.norm(ref)
        stats["gap"] = max(stats["gap"], gap)
        assert gap <= tol["gap"], (i, family, np.linalg.norm(x), np.linalg.norm(ref))
      continue
    upper, _ = _dual(a, c, b, floor)
    if upper - a @ x > tol["gap"]:
      upper = min(upper, _dual_nested(a, c, b, floor))
    gap = upper - a @ x
    stats["gap"] = max(stats["gap"], gap)
    stats["count"] += 1
    assert gap <= tol["gap"], (i, family, int(sol.case[i]), gap, radius, min_ratio, a.size)
    if a.size <= 8:
      best = _slsqp(a, c, b, floor)
      stats["slsqp"] = max(stats["slsqp"], best - a @ x)
      assert best - a @ x <= tol["gap"], (i, family, best, a @ x)


SIZES_FAST = {2: 24, 3: 12, 8: 24, 40: 12, 300: 12, 4096: 8}
SIZES_SLOW = {2: 150, 3: 150, 8: 200, 40: 200, 300: 200, 1024: 100, 4096: 60}


def _sweep(sizes, dtype, seed):
  stats = {"gap": 0.0, "viol": 0.0, "budget": 0.0, "recovery": 0.0, "slsqp": 0.0, "count": 0}
  total = 0
  with one_blas_thread():
    for n, count in sizes.items():
      rows = _instances(np.random.default_rng(seed + n), n, count)
      sol = _run(rows, dtype)
      assert sol.v_bar.dtype == dtype
      _check(rows, sol, dtype, stats)
      total += count
  print(f"\n{np.dtype(dtype).name}: {total} instances, max gap/(R|A~|) {stats['gap']:.2e}, "
        f"max violation/R {stats['viol']:.2e}, budget {stats['budget']:.2e}, recovery "
        f"{stats['recovery']:.2e}, SLSQP better by {stats['slsqp']:.2e}")
  return stats


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_e_step_matches_references(dtype):
  _sweep(SIZES_FAST, dtype, seed=0)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_e_step_matches_references_full(dtype):
  _sweep(SIZES_SLOW, dtype, seed=1000)
