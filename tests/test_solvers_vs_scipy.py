"""CPPO's E-step (``jaxsafe.solvers.ratio_region``) and CGPO's trust-region sub-problem
(``jaxsafe.solvers.trust_region``) against independent float64 solutions; the sub-problem's sweep is
described above its code, further down.

E-step: random instances of Eq. 4a-4b bucketed by N (2 ... 4096; one vmapped, jitted ``e_step``
per size and dtype), with radii from 1e-8 to the config maximum sqrt(2 N 10), min_ratio 0 ... 0.99,
inputs scaled by 1e-6 ... 1e3 and degenerate families (A parallel or anti-parallel to A_c,
A_c = 0, A = 0, ties at the floor, the recovery problem). The references, in float64 numpy/scipy:

* the Lagrange dual in (mu, lambda) >= 0, minimised by L-BFGS-B, with the inner maximisation over
  {sum(v) = 0, v >= floor} a sort-based projection: its value at any (mu, lambda) bounds the optimum
  from above, so dual - ours is a certificate of the objective gap;
* for infeasible budgets and the recovery problem, the same dual without mu, for the least cost;
* for A = 0, the least-norm feasible point by bisection on the step along -A_c;
* SLSQP on the primal for N <= 8, as a second opinion that no feasible point beats ours.

Gaps are in units of R |A~| (the unconstrained optimum), violations in units of R (ball, floor,
sum) and R |A_c~| (budget). The fast tier runs 48 instances per dtype (N = 2, 4096 in float32,
8, 300 in float64); ``-m slow`` the full sweep (1,060 per dtype, every N in both).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import one_blas_thread
from scipy import optimize

from jaxsafe.solvers import ratio_region as rr
from jaxsafe.solvers import trust_region as tr

_E_STEP = jax.jit(jax.vmap(lambda a, c, b, r, m, rec: rr.e_step(a, c, b, r, m, recover=rec)))
FAMILIES = ("generic",) * 6 + ("parallel", "anti", "no_cost", "no_reward", "ties", "recover")
#: tolerances per dtype: objective gap / (R |A~|), violations / R and / (R |A_c~|).
#: refine: a gap above this sends the instance to the slower nested dual, whose certificate is
#: tighter than L-BFGS-B's (which alone left up to 1.9e-5 in float32, all of it the reference's:
#: that N = 2 instance is within 3e-8 of its exact solution). Both stop near 1e-8 in float64.
TOL = {np.float32: {"gap": 2e-5, "viol": 2e-6, "refine": 1e-6},
       np.float64: {"gap": 1e-8, "viol": 1e-12, "refine": 1e-10}}


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
    if upper - a @ x > tol["refine"]:
      upper = min(upper, _dual_nested(a, c, b, floor))
    gap = upper - a @ x
    stats["gap"] = max(stats["gap"], gap)
    stats["count"] += 1
    assert gap <= tol["gap"], (i, family, int(sol.case[i]), gap, radius, min_ratio, a.size)
    if a.size <= 8:
      best = _slsqp(a, c, b, floor)
      stats["slsqp"] = max(stats["slsqp"], best - a @ x)
      assert best - a @ x <= tol["gap"], (i, family, best, a @ x)


#: The fast tier splits four N buckets between the dtypes (each size is one ~5 s compilation on a
#: busy 2-core machine): each dtype at a small and a large N, every family in every size; the slow
#: tier runs every bucket in both dtypes.
SIZES_FAST = {np.float32: {2: 24, 4096: 24}, np.float64: {8: 24, 300: 24}}
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
  _sweep(SIZES_FAST[dtype], dtype, seed=0)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_e_step_matches_references_full(dtype):
  _sweep(SIZES_SLOW, dtype, seed=1000)


# --- CGPO's trust-region sub-problem (jaxsafe.solvers.trust_region) -------------------------------
#
# max_d g.d s.t. c + q.d <= 0, d.d <= delta, on random instances bucketed by N (one vmapped,
# jitted ``solve`` per size and dtype), delta from 1e-8 to 1e2, |g|, |q| scaled by 1e-6 ... 1e3,
# c of either sign, zero, or on the case boundary, and degenerate families. The reference, in
# float64 on the instance as the solver saw it (rounded to dtype):
#
# * unsolvable (c > 0 and c > sqrt(delta) |q|, or q = 0 and c > 0): the least cost over the ball,
#   q.d = -sqrt(delta) |q| at d = -sqrt(delta) q / |q| (zero for q = 0);
# * otherwise the Lagrange dual D(nu) = sqrt(delta) |g - nu q| - nu c, minimised over nu >= 0 by
#   scipy's bounded Brent (on nu = |g| / |q| tan(theta), so that nu can reach ~1e12 when the ball
#   touches the plane): any D(nu) bounds the primal optimum from above, so D_min - g.d is a
#   certificate of the objective gap;
# * g = 0: the least-norm feasible point, max(c, 0) / |q| from the origin.
#
# Gaps are in units of sqrt(delta) |g| (objectives then lie in [-1, 1]), the ball violation in
# units of delta and the cost violation in units of |c| + sqrt(delta) |q|. Where the ball nearly
# touches the plane (h = c / (sqrt(delta) |q|) ~ +-1) the optimum is ill-conditioned: the feasible
# circle on the plane has radius sqrt(1 - h^2), so an error eps in h (rounding of |q| or c, in our
# solver or in the reference) moves the objective by up to min(eps / sqrt(|1 - h^2|),
# sqrt(2 eps)); the gap tolerance adds that for eps = 8 ulp of the dtype (1.7e-15 in float64 and
# 9.5e-7 in float32 away from the boundary, at most 6e-8 and 1.4e-3 on it).

_TR_SOLVE = jax.jit(jax.vmap(tr.solve))
TR_FAMILIES = ("generic",) * 6 + ("q=0", "g=0", "parallel", "anti", "near_parallel", "c=0",
                                  "touch", "delta=0", "nonfinite")
#: per dtype: objective gap / (sqrt(delta) |g|), ball / delta and cost / (|c| + sqrt(delta) |q|).
TR_TOL = {np.float32: {"gap": 1e-5, "viol": 1e-5}, np.float64: {"gap": 1e-12, "viol": 1e-13}}


def _tr_instances(rng, n, count):
  rows = []
  for i in range(count):
    family = TR_FAMILIES[i % len(TR_FAMILIES)]
    s_g, s_q = 10 ** rng.uniform(-6, 3, size=2)
    g, q = rng.normal(size=n) * s_g, rng.normal(size=n) * s_q
    delta = 10 ** rng.uniform(-8, 2)
    radius = np.sqrt(delta)
    # c / (|q| sqrt(delta)) uniform in [-2.5, 2.5]: ~40% of the balls miss the plane, both signs.
    c = rng.uniform(-2.5, 2.5) * np.linalg.norm(q) * radius
    if family == "generic" and i % 4 == 3:  # c on its own scale, unrelated to the ball
      c = rng.choice([-1.0, 1.0]) * 10 ** rng.uniform(-6, 3)
    elif family == "q=0":
      q = np.zeros(n)
      c = ((i // len(TR_FAMILIES) + n) % 3 - 1) * 10 ** rng.uniform(-6, 3)  # c < 0, = 0 or > 0
    elif family == "g=0":
      g = np.zeros(n)
    elif family in ("parallel", "anti"):
      g = (1.0 if family == "parallel" else -1.0) * q * s_g / s_q
    elif family == "near_parallel":
      g = (q + 1e-6 * np.linalg.norm(q) * rng.normal(size=n) / np.sqrt(n)) * s_g / s_q
    elif family == "c=0":
      c = 0.0
    elif family == "touch":  # c^2 / |q|^2 = delta: the ball touches the plane (up to rounding)
      c = rng.choice([-1.0, 1.0]) * np.linalg.norm(q) * radius
    elif family == "delta=0":
      delta = 0.0
    elif family == "nonfinite":
      bad = rng.choice([np.nan, np.inf, -np.inf])
      where = rng.integers(4)
      if where == 0:
        g[rng.integers(n)] = bad
      elif where == 1:
        q[rng.integers(n)] = bad
      elif where == 2:
        c = bad
      else:
        delta = np.inf
    rows.append((g, q, c, delta, family))
  return rows


def _tr_run(rows, dtype, pad=0):
  """The vmapped solve, with g and q zero-padded to ``pad`` entries if given (the same problem:
  the extra entries of the step are 0), as numpy arrays."""
  g, q, c, delta, _ = zip(*rows)
  if pad:
    g, q = ([np.pad(x, (0, pad - x.size)) for x in v] for v in (g, q))
  with jax.enable_x64(dtype == np.float64):
    args = [jnp.asarray(np.stack(x) if i < 2 else np.array(x), dtype)
            for i, x in enumerate((g, q, c, delta))]
    sol = jax.block_until_ready(_TR_SOLVE(*args))
    return jax.tree.map(np.asarray, sol)


def _tr_dual(g, q, c, radius):
  """min over nu >= 0 of D(nu) / (radius |g|) with D(nu) = radius |g - nu q| - nu c, for g, q != 0
  and radius > 0, on nu = |g| / |q| tan(theta): scipy's bounded Brent, then golden-section
  search around its answer to float64 resolution (Brent stops at sqrt(eps) relative in theta,
  which leaves ~1e-10 where g is nearly parallel to q and D is nearly a kink). D is convex in
  nu, so unimodal in theta.

  In units x = nu |q| / |g|: D / (radius |g|) = |u - x v| - x h with u, v the unit g, q and
  h = c / (radius |q|) <= 1. For large x it is evaluated as x (1 - h) - cos + sin^2 / (|u - x v|
  + x - cos), which does not cancel when h ~ 1 (the ball touching the plane, x* large)."""
  u, v = g / np.linalg.norm(g), q / np.linalg.norm(q)
  cos = u @ v
  sin2 = np.sum(np.square(u - cos * v))
  h = c / (radius * np.linalg.norm(q))
  one_minus_h = (radius * np.linalg.norm(q) - c) / (radius * np.linalg.norm(q))

  def dual(t):
    x = np.tan(t)
    a = x - cos
    norm = np.sqrt(a * a + sin2)
    return norm - x * h if a <= 0 else x * one_minus_h - cos + sin2 / (norm + a)

  top = np.pi / 2 - 1e-12
  res = optimize.minimize_scalar(dual, bounds=(0.0, top), method="bounded",
                                 options={"xatol": 1e-14, "maxiter": 500})
  width = 1e-6 * max(res.x, 1e-3)
  lo, hi = max(res.x - width, 0.0), min(res.x + width, top)
  if dual(lo) < res.fun or dual(hi) < res.fun:  # not bracketed: search the whole interval
    lo, hi = 0.0, top
  ratio = (np.sqrt(5) - 1) / 2
  a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
  fa, fb = dual(a), dual(b)
  for _ in range(150):
    if fa <= fb:
      hi, b, fb = b, a, fa
      a = hi - ratio * (hi - lo)
      fa = dual(a)
    else:
      lo, a, fa = a, b, fb
      b = lo + ratio * (hi - lo)
      fb = dual(b)
  return min(res.fun, fa, fb, dual(0.0), dual(np.arctan(max(cos, 0.0))))


def _tr_check(rows, sol, dtype, stats):
  tol = TR_TOL[dtype]
  for i, (g, q, c, delta, family) in enumerate(rows):
    g, q = g.astype(dtype).astype(np.float64), q.astype(dtype).astype(np.float64)
    c, delta = float(np.asarray(c, dtype)), float(np.asarray(delta, dtype))
    d = sol.step[i].astype(np.float64)
    assert np.all(d[g.size:] == 0), (i, family)  # padding
    d = d[:g.size]
    if family == "nonfinite":
      assert not bool(sol.ok[i]) and np.all(d == 0) and int(sol.case[i]) == tr.RECOVERY, i
      stats["nonfinite"] += 1
      continue
    assert bool(sol.ok[i]), (i, family)
    stats["seen"].add((family, np.sign(c)) if family == "q=0" else family)
    stats["seen"].add(("case", int(sol.case[i]), float(sol.nu[i]) > 0))
    radius, g_norm, q_norm = np.sqrt(delta), np.linalg.norm(g), np.linalg.norm(q)
    if delta == 0:
      assert np.all(d == 0), (i, family)
      continue
    ball = max(d @ d / delta - 1, 0.0)
    stats["ball"] = max(stats["ball"], ball)
    assert ball <= tol["viol"], (i, family, ball)
    if c > 0 and (q_norm == 0 or c > radius * q_norm):  # unsolvable: the least cost over the ball
      if q_norm == 0:
        assert np.all(d == 0) and int(sol.case[i]) == tr.RECOVERY, (i, family)
      else:
        recovery = (q @ d) / (radius * q_norm) + 1  # >= 0 up to the ball violation
        stats["recovery"] = max(stats["recovery"], recovery)
        assert recovery <= tol["gap"], (i, family, recovery)
      stats["count"] += 1
      continue
    cost = (c + q @ d) / (abs(c) + radius * q_norm) if q_norm > 0 else 0.0
    stats["cost"] = max(stats["cost"], cost)
    assert cost <= tol["viol"], (i, family, cost)
    if g_norm == 0:  # every feasible point is optimal; ours is the least-norm one
      excess = np.linalg.norm(d) / radius - (max(c, 0.0) / q_norm / radius if q_norm > 0 else 0.0)
      stats["least_norm"] = max(stats["least_norm"], excess)
      assert excess <= tol["gap"], (i, family, excess)
      stats["count"] += 1
      continue
    upper = 1.0 if q_norm == 0 else _tr_dual(g, q, c, radius)
    gap = upper - (g @ d) / (radius * g_norm)
    key = "_touch" if family == "touch" else ""
    stats["gap" + key] = max(stats["gap" + key], gap)
    stats["below" + key] = min(stats["below" + key], gap)
    stats["count"] += 1
    eps = 8 * np.finfo(dtype).eps
    slack = abs(1 - (c / (radius * q_norm)) ** 2) if q_norm > 0 else 1.0
    allowed = tol["gap"] + min(eps / np.sqrt(max(slack, eps**2)), np.sqrt(2 * eps))
    # gap < 0 only by our violations times the multiplier (weak duality), or by conditioning
    assert -2 * tol["viol"] - allowed <= gap <= allowed, (i, family, int(sol.case[i]), gap, allowed)


#: The fast tier pads every size to 4096 (one compilation per dtype); the slow one does not.
TR_SIZES_FAST = {2: 30, 16: 30, 256: 30, 4096: 30}
TR_SIZES_SLOW = {2: 180, 3: 150, 16: 180, 64: 150, 256: 150, 1024: 150, 4096: 120}


def _tr_sweep(sizes, dtype, seed, pad=0):
  stats = {"gap": 0.0, "gap_touch": 0.0, "below": 0.0, "below_touch": 0.0, "ball": 0.0, "cost": 0.0,
           "recovery": 0.0, "least_norm": 0.0, "count": 0, "nonfinite": 0, "seen": set()}
  total = 0
  with one_blas_thread():
    for n, count in sizes.items():
      rows = _tr_instances(np.random.default_rng(seed + n), n, count)
      sol = _tr_run(rows, dtype, pad)
      assert sol.step.dtype == dtype
      _tr_check(rows, sol, dtype, stats)
      total += count
  print(f"\n{np.dtype(dtype).name}: {total} instances ({stats['count']} checked, "
        f"{stats['nonfinite']} non-finite), gap/(sqrt(delta)|g|) {stats['below']:.2e} ... "
        f"{stats['gap']:.2e}, touching {stats['below_touch']:.2e} ... {stats['gap_touch']:.2e}, "
        f"ball {stats['ball']:.2e}, cost {stats['cost']:.2e}, "
        f"recovery {stats['recovery']:.2e}, least-norm excess {stats['least_norm']:.2e}")
  # Every family (q = 0 with c < 0, = 0, > 0) and every case, PARTIAL with nu* = 0 and > 0.
  families = set(TR_FAMILIES) - {"q=0", "nonfinite"} | {("q=0", s) for s in (-1.0, 0.0, 1.0)}
  cases = {("case", k, False) for k in range(3)} | {("case", tr.PARTIAL, True)}
  assert stats["nonfinite"] > 0 and stats["seen"] >= families | cases, stats["seen"]
  return stats


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_trust_region_matches_dual(dtype):
  _tr_sweep(TR_SIZES_FAST, dtype, seed=0, pad=max(TR_SIZES_FAST))


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_trust_region_matches_dual_full(dtype):
  _tr_sweep(TR_SIZES_SLOW, dtype, seed=1000)
