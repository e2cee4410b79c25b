"""Tests for ``jaxsafe.solvers.trust_region``: the CGPO sub-problem (Eq. 10) against scipy's SLSQP.

One batch of random instances (generic ones and degenerate families: q = 0, g = 0, g parallel
and anti-parallel to q, c = 0, tiny delta, dimension 1, extreme scales), padded with zeros to a
common dimension so that one vmapped, jitted ``solve`` handles them all. Padding does not change
the problem: the extra coordinates of g and q are zero and so are those of the step. float64
runs inside ``jax.enable_x64(True)`` so that nothing leaks into other test modules.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import one_blas_thread
from scipy import optimize

from jaxsafe.solvers import trust_region as tr

DIM = 50
_SOLVE = jax.jit(jax.vmap(tr.solve))


def _instances(seed: int = 0) -> dict[str, np.ndarray]:
  """Random instances (g, q, c, delta, dim, family) in float64, padded to DIM."""
  rng = np.random.default_rng(seed)
  rows = []

  def add(family, g, q, c, delta):
    n = g.size
    rows.append((np.pad(g, (0, DIM - n)), np.pad(q, (0, DIM - n)), float(c), float(delta), n,
                 family))

  def vec(n):
    return rng.normal(size=n) * 10 ** rng.uniform(-2, 2)

  def offset(q, delta, lo=-2.5, hi=2.5):
    """c with c / (|q| sqrt(delta)) uniform in [lo, hi]: about 40% outside the ball, mixed sign."""
    return rng.uniform(lo, hi) * np.linalg.norm(q) * np.sqrt(delta)

  def dim():
    return int(rng.integers(1, DIM + 1))

  def radius2():
    return 10 ** rng.uniform(-4, 2)

  for _ in range(700):
    n, delta = dim(), radius2()
    q = vec(n)
    add("generic", vec(n), q, offset(q, delta), delta)
  for i in range(90):
    n, delta = dim(), radius2()
    add("q=0", vec(n), np.zeros(n), (i % 3 - 1) * 10 ** rng.uniform(-3, 3), delta)  # c <0, 0, >0
  for _ in range(120):
    n, delta = dim(), radius2()
    q = vec(n)
    add("g=0", np.zeros(n), q, offset(q, delta), delta)
  for _ in range(120):
    n, delta = dim(), radius2()
    q = vec(n)
    add("g=q", 10 ** rng.uniform(-3, 3) * q, q, offset(q, delta), delta)
  for _ in range(120):
    n, delta = dim(), radius2()
    q = vec(n)
    add("g=-q", -(10 ** rng.uniform(-3, 3)) * q, q, offset(q, delta), delta)
  for _ in range(80):
    n, delta = dim(), radius2()
    q = vec(n)
    g = 10 ** rng.uniform(-3, 3) * (q + 1e-6 * np.linalg.norm(q) * rng.normal(size=n) / np.sqrt(n))
    add("g~q", g, q, offset(q, delta), delta)
  for _ in range(120):
    n, delta = dim(), radius2()
    add("c=0", vec(n), vec(n), 0.0, delta)
  for _ in range(120):
    n = dim()
    q = vec(n)
    add("delta=1e-12", vec(n), q, offset(q, 1e-12), 1e-12)
  for _ in range(100):
    delta = radius2()
    q = vec(1)
    add("dim=1", vec(1), q, offset(q, delta), delta)
  for _ in range(100):
    n, delta = dim(), 10 ** rng.uniform(-8, 8)
    g, q = vec(n) * 10 ** rng.uniform(-6, 6), vec(n) * 10 ** rng.uniform(-6, 6)
    add("scales", g, q, offset(q, delta), delta)

  g, q, c, delta, n, family = zip(*rows)
  return {"g": np.stack(g), "q": np.stack(q), "c": np.array(c), "delta": np.array(delta),
          "dim": np.array(n), "family": np.array(family)}


def _run(inst, dtype):
  """The vmapped solve on the batch, as numpy arrays (float64 under a local enable_x64)."""
  with jax.enable_x64(dtype == np.float64):
    args = [jnp.asarray(inst[k], dtype) for k in ("g", "q", "c", "delta")]
    sol = jax.block_until_ready(_SOLVE(*args))
    return jax.tree.map(np.asarray, sol)


def _theorem_case(g, q, c, delta):
  """Theorem 5.1 / Cor. 5.2 in numpy; q = 0 is feasible iff c <= 0."""
  t = q @ q
  if t == 0:
    return tr.RECOVERY if c > 0 else tr.FEASIBLE
  if c**2 / t - delta > 0:
    return tr.RECOVERY if c > 0 else tr.FEASIBLE
  return tr.PARTIAL


def _slsqp(g, q, c, delta, seed):
  """max g.d s.t. c + q.d <= 0, d.d <= delta by SLSQP, on x = d / sqrt(delta) with both
  functions scaled to O(1).

  Tries two strictly feasible starts, each with the ball written as 1 - |x| >= 0 and as
  1 - x.x >= 0, and returns (d, "converged") for the first run that exits with status 0 and a
  feasible point. When every run ends in status 8 (SLSQP's "positive directional derivative for
  linesearch": it cannot decrease its merit function, which with ftol 1e-12 happens when both
  constraints are active and the ball is violated by ~1e-9), the best feasible such point is
  returned as (d, "stalled"): the objective checks of the caller then decide, and a stall short
  of the optimum would fail them. None if no run gives a feasible point.
  """
  radius = np.sqrt(delta)
  gs = np.linalg.norm(g) or 1.0
  qn = np.linalg.norm(q)
  cs = abs(c) + radius * qn or 1.0
  balls = [{"type": "ineq", "fun": lambda x: 1.0 - np.linalg.norm(x),
            "jac": lambda x: -x / max(np.linalg.norm(x), 1e-300)},
           {"type": "ineq", "fun": lambda x: 1.0 - x @ x, "jac": lambda x: -2.0 * x}]
  # For q = 0 the cost constraint is the constant c <= 0 (solvable instances only): left out.
  cost = [{"type": "ineq", "fun": lambda x: -(c + radius * (q @ x)) / cs,
           "jac": lambda x: -radius * q / cs}] if qn > 0 else []
  v = q / qn if qn > 0 else np.zeros_like(q)
  hr = c / (qn * radius) if qn > 0 else 0.0  # the plane is v.x = -hr, hr <= 1 here
  x0 = -0.5 * (max(hr, 0.0) + 1.0) * v  # midway between the plane (or 0) and the far pole
  perp = np.random.default_rng(seed).normal(size=g.size)
  perp -= (perp @ v) * v
  perp /= np.linalg.norm(perp) or 1.0
  x1 = -np.clip(hr, -1, 1) * v + 0.5 * np.sqrt(max(1 - hr**2, 0.0)) * perp  # on the plane
  stalled = None
  for start in (x0, x1):
    for ball in balls:
      res = optimize.minimize(lambda x: -(g @ x) / gs, start, jac=lambda x: -g / gs,
                              method="SLSQP", constraints=[ball] + cost,
                              options={"ftol": 1e-12, "maxiter": 500})
      x = res.x
      if not (x @ x <= 1 + 1e-8 and (qn == 0 or c + radius * (q @ x) <= 1e-8 * cs)):
        continue
      if res.status == 0:
        return radius * x, "converged"
      if res.status == 8 and (stalled is None or g @ x > g @ stalled):
        stalled = x
  return None if stalled is None else (radius * stalled, "stalled")


def _algorithm2(g, q, c, delta):
  """Algorithm 2 as printed, in numpy, with closed intervals Lambda_a, Lambda_b (the paper's
  interval list is wrong when -s/c < 0 and omits c = 0). Only for generic PARTIAL instances
  (r > 0, g not parallel to q, c^2/t < delta): elsewhere it divides by zero."""
  r, s, t = g @ g, g @ q, q @ q
  inf = np.inf
  if c > 0:
    lam_a_set, lam_b_set = (max(0, -s / c), inf), ((0, -s / c) if s <= 0 else None)
  elif c < 0:
    lam_a_set, lam_b_set = ((0, -s / c) if s > 0 else None), (max(0, -s / c), inf)
  else:
    lam_a_set, lam_b_set = ((0, inf), None) if s > 0 else (None, (0, inf))
  lam_a = np.sqrt((r - s**2 / t) / (delta - c**2 / t))
  lam_b = np.sqrt(r / delta)
  l_a = l_b = -inf
  if lam_a_set is not None:
    lam_a = np.clip(lam_a, *lam_a_set)
    l_a = (s**2 / t - r) / (2 * lam_a) + lam_a / 2 * (c**2 / t - delta) + s * c / t
  if lam_b_set is not None:
    lam_b = np.clip(lam_b, *lam_b_set)
    l_b = -0.5 * (r / lam_b + lam_b * delta)
  lam = lam_a if l_a > l_b else lam_b
  nu = max((lam * c + s) / t, 0.0)
  return lam, nu, (g - nu * q) / lam


@pytest.fixture(scope="module")
def batch():
  inst = _instances()
  return inst, _run(inst, np.float64)


def test_agrees_with_slsqp(batch):
  inst, sol = batch
  cases = sol.case
  for k, name in enumerate(tr.CASE_NAMES):
    assert np.sum(cases == k) >= 100, (name, np.sum(cases == k))
  inactive = (cases == tr.PARTIAL) & (sol.nu == 0)  # Algorithm 2's nu* = 0 branch, d along g
  assert np.sum(inactive) >= 100 and np.sum((cases == tr.PARTIAL) & ~inactive) >= 100

  outcomes = {"converged": 0, "stalled": 0, "failed": 0}
  with one_blas_thread():
    refs = [None if cases[i] == tr.RECOVERY else
            _slsqp(inst["g"][i, :inst["dim"][i]], inst["q"][i, :inst["dim"][i]], inst["c"][i],
                   inst["delta"][i], seed=i) for i in range(len(inst["c"]))]
  for i in range(len(inst["c"])):
    n = inst["dim"][i]
    g, q, c, delta = inst["g"][i, :n], inst["q"][i, :n], inst["c"][i], inst["delta"][i]
    d = sol.step[i, :n]
    assert np.all(sol.step[i, n:] == 0)
    qn, radius = np.linalg.norm(q), np.sqrt(delta)
    if cases[i] == tr.RECOVERY:  # unsolvable: the steepest descent of the cost, zero if q = 0
      expected = -radius * q / qn if qn > 0 else np.zeros(n)
      np.testing.assert_allclose(d, expected, rtol=1e-12, atol=1e-14 * radius)
      assert c > 0 and (qn == 0 or c - radius * qn > 0)  # truly infeasible everywhere
      continue
    scale = abs(c) + qn * radius
    assert c + q @ d <= 1e-6 * scale, (i, inst["family"][i])
    assert d @ d <= delta * (1 + 1e-6)
    np.testing.assert_allclose(sol.predicted_objective[i], g @ d, rtol=1e-9,
                               atol=1e-12 * np.linalg.norm(g) * radius)
    np.testing.assert_allclose(sol.predicted_constraint[i], c + q @ d, rtol=1e-9,
                               atol=1e-12 * scale)
    ref = refs[i]
    outcomes["failed" if ref is None else ref[1]] += 1
    if ref is None:
      continue
    f_ours, f_ref = g @ d, g @ ref[0]
    tol = 1e-5 * max(1.0, abs(f_ref))
    assert abs(f_ours - f_ref) <= tol, (i, inst["family"][i], f_ours, f_ref)
    assert f_ours >= f_ref - tol
    # The same in units of |g| sqrt(delta), where objectives lie in [-1, 1]: tighter for small
    # delta or small g, where the absolute tolerance above says little.
    unit = (np.linalg.norm(g) * radius) or 1.0
    assert abs(f_ours - f_ref) / unit <= 1e-5, (i, inst["family"][i], f_ours / unit, f_ref / unit)
  assert outcomes["failed"] == 0, outcomes
  assert outcomes["converged"] + outcomes["stalled"] >= 1000, outcomes
  assert outcomes["stalled"] <= 0.02 * outcomes["converged"], outcomes


def test_case_matches_theorem(batch):
  inst, sol = batch
  expected = np.array([_theorem_case(inst["g"][i], inst["q"][i], inst["c"][i], inst["delta"][i])
                       for i in range(len(inst["c"]))])
  np.testing.assert_array_equal(sol.case, expected)
  assert sol.case.dtype == np.int32
  for leaf in jax.tree.leaves(sol):
    assert np.all(np.isfinite(leaf))
  assert set(np.unique(inst["family"][sol.case == tr.RECOVERY])) >= {"q=0", "generic"}


def test_multipliers_satisfy_kkt(batch):
  """-g + nu q + lam d = 0 (Eq. 12), nu (c + q.d) = 0 (Eq. 13), lam (d.d - delta) = 0 (Eq. 14)."""
  inst, sol = batch
  for i in np.flatnonzero(sol.case != tr.RECOVERY):
    g, q, c, delta, d = inst["g"][i], inst["q"][i], inst["c"][i], inst["delta"][i], sol.step[i]
    lam, nu = sol.lam[i], sol.nu[i]
    assert lam >= 0 and nu >= 0
    if lam > 1e300:  # delta - c^2/t ~ 0 (ball touching the plane): lambda* infinite, clipped
      continue
    gq = np.linalg.norm(g) + nu * np.linalg.norm(q)
    np.testing.assert_allclose(-g + nu * q + lam * d, 0, atol=1e-8 * gq)
    assert abs(nu * (c + q @ d)) <= 1e-8 * gq * np.sqrt(delta) + 1e-8 * nu * abs(c)
    assert abs(lam * (d @ d - delta)) <= 1e-8 * lam * delta


def test_algorithm2_as_printed(batch):
  """On generic PARTIAL instances the paper's Algorithm 2 gives our lambda*, nu* and step.

  Generic: g not parallel to q and the ball not touching the plane, where Algorithm 2 divides
  by zero (lambda* = 0 in Eq. 40, or delta - c^2/t = 0 in lambda_a)."""
  inst, sol = batch
  checked = 0
  for i in np.flatnonzero((sol.case == tr.PARTIAL) & np.isin(inst["family"], ["generic", "c=0"])):
    g, q, c, delta = inst["g"][i], inst["q"][i], inst["c"][i], inst["delta"][i]
    cos = g @ q / (np.linalg.norm(g) * np.linalg.norm(q))
    if delta - c**2 / (q @ q) < 1e-6 * delta or abs(cos) > 1 - 1e-6:  # incl. every dim = 1
      continue
    lam, nu, d = _algorithm2(g, q, c, delta)
    np.testing.assert_allclose([sol.lam[i], sol.nu[i]], [lam, nu], rtol=1e-8, atol=1e-12 * lam)
    np.testing.assert_allclose(sol.step[i], d, rtol=1e-8, atol=1e-10 * np.sqrt(delta))
    checked += 1
  assert checked >= 300


def test_step_continuous_at_case_boundary():
  """c^2 / q.q = delta: RECOVERY and PARTIAL (c > 0), FEASIBLE and PARTIAL (c < 0) agree."""
  rng = np.random.default_rng(1)
  g, q = rng.normal(size=(40, 8)), rng.normal(size=(40, 8))
  delta = 10 ** rng.uniform(-6, 2, size=40)
  sign = np.where(np.arange(40) % 2 == 0, 1.0, -1.0)
  wiggle = 1 + rng.choice([-1e-15, 0.0, 1e-15], size=40)
  c = sign * np.sqrt(delta) * np.linalg.norm(q, axis=1) * wiggle
  sol = _run({"g": g, "q": q, "c": c, "delta": delta}, np.float64)
  radius = np.sqrt(delta)[:, None]
  u = g / np.linalg.norm(g, axis=1, keepdims=True)
  v = q / np.linalg.norm(q, axis=1, keepdims=True)
  expected = np.where(sign[:, None] > 0, -radius * v, radius * u)
  # c = (1 - eps) sqrt(delta) |q| leaves a circle of radius sqrt(2 eps) sqrt(delta) on the plane.
  np.testing.assert_allclose(sol.step / radius, expected / radius, atol=1e-6)
  assert np.all(np.isfinite(sol.lam)) and np.all(np.isfinite(sol.nu))


def test_float32_finite_and_close(batch):
  """jit + vmap in float32: finite everywhere (degenerate families included), close to float64."""
  inst, sol64 = batch
  sol = _run(inst, np.float32)
  assert sol.step.dtype == np.float32 and sol.case.dtype == np.int32
  for leaf in jax.tree.leaves(sol):
    assert np.all(np.isfinite(leaf))
  g, q, c, delta = inst["g"], inst["q"], inst["c"], inst["delta"]
  radius = np.sqrt(delta)
  qn, gn = np.linalg.norm(q, axis=1), np.linalg.norm(g, axis=1)
  margin = np.abs(np.abs(c) - qn * radius) / (np.abs(c) + qn * radius + 1e-300)
  clear = margin > 1e-4  # away from the case boundary, where rounding may pick the other side
  np.testing.assert_array_equal(sol.case[clear], sol64.case[clear])
  d = sol.step.astype(np.float64)
  ok = sol.case != tr.RECOVERY
  scale = np.abs(c) + qn * radius
  assert np.all((c + np.sum(q * d, 1) <= 1e-5 * scale)[ok])
  assert np.all((np.sum(d * d, 1) <= delta * (1 + 1e-5))[ok])
  unit = np.where(gn > 0, gn * radius, 1.0)
  gap = np.abs(np.sum(g * d, 1) - sol64.predicted_objective) / unit
  assert np.all(gap[clear & ok] <= 1e-4), np.max(gap[clear & ok])


@pytest.mark.parametrize("scale", [1e-30, 1e30])
def test_float32_extreme_scales(scale):
  """Entries near the float32 range: no overflow in |g|, |q| or c / |q|."""
  rng = np.random.default_rng(2)
  g, q = rng.normal(size=(6, 5)) * scale, rng.normal(size=(6, 5)) / scale
  c = np.array([1.0, -1.0, 0.0, 1e-30, -1e30, 1e30])
  delta = np.full(6, 1e-12)
  sol = _run({"g": g, "q": q, "c": c, "delta": delta}, np.float32)
  for leaf in jax.tree.leaves(sol):
    assert np.all(np.isfinite(leaf))
  g32, q32, c32 = (x.astype(np.float32).astype(np.float64) for x in (g, q, c))
  expected = [_theorem_case(*args) for args in zip(g32, q32, c32, delta.astype(np.float32))]
  np.testing.assert_array_equal(sol.case, expected)
  assert np.all(np.linalg.norm(sol.step.astype(np.float64), axis=1) <= 1e-6 * (1 + 1e-5))


def test_scalar_inputs_and_degenerate_float32():
  """Python scalars for c and delta, unbatched; q = 0 and g = 0 give the documented steps."""
  zero, ones = jnp.zeros(3), jnp.ones(3)
  sol = jax.jit(tr.solve)(ones, zero, 1.0, 4.0)  # q = 0, c > 0: unsolvable, zero step
  assert int(sol.case) == tr.RECOVERY and np.all(np.asarray(sol.step) == 0)
  sol = tr.solve(ones, zero, 0.0, 4.0)  # q = 0, c <= 0: everything feasible
  assert int(sol.case) == tr.FEASIBLE
  np.testing.assert_allclose(sol.step, 2 / np.sqrt(3) * np.ones(3), rtol=1e-6)
  sol = tr.solve(zero, ones, -10.0, 4.0)  # g = 0, whole ball feasible: zero step
  assert int(sol.case) == tr.FEASIBLE and np.all(np.asarray(sol.step) == 0)
  sol = tr.solve(zero, ones, 1.0, 4.0)  # g = 0, partial: the least-norm feasible point
  assert int(sol.case) == tr.PARTIAL
  np.testing.assert_allclose(sol.step, -np.ones(3) / 3, rtol=1e-6)
  sol = tr.solve(zero, zero, 0.0, 0.0)
  assert int(sol.case) == tr.FEASIBLE and np.all(np.isfinite(np.asarray(sol.lam)))
  assert tr.CASE_NAMES[tr.RECOVERY] == "recovery" and len(tr.CASE_NAMES) == 3


def test_flatten_apply_step_roundtrip():
  params = {"params": {"Dense_0": {"kernel": jnp.arange(12.0).reshape(3, 4), "bias": jnp.ones(4)},
                       "Dense_1": {"kernel": jnp.full((4, 2), 2.0), "bias": jnp.zeros(2)}},
            "log_std": jnp.array([-0.5, 0.5])}
  flat, unravel = tr.flatten(params)
  assert flat.shape == (12 + 4 + 8 + 2 + 2,)
  back = unravel(flat)
  assert jax.tree.structure(back) == jax.tree.structure(params)
  jax.tree.map(np.testing.assert_array_equal, back, params)
  jax.tree.map(np.testing.assert_array_equal, tr.apply_step(params, jnp.zeros_like(flat)), params)
  moved = jax.jit(tr.apply_step)(params, jnp.arange(flat.size, dtype=flat.dtype))
  jax.tree.map(np.testing.assert_array_equal, moved,
               jax.tree.map(jnp.add, params, unravel(jnp.arange(flat.size, dtype=flat.dtype))))
  # With a real sub-problem step on gradients of the same pytree.
  sol = tr.solve(flat, -flat, 1.0, 0.25)
  new = tr.apply_step(params, sol.step)
  np.testing.assert_allclose(tr.flatten(new)[0] - flat, sol.step, atol=1e-6)


@pytest.mark.parametrize("bad", ["g", "q", "c", "delta"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_inputs_give_zero_step_and_flag(bad, value):
  """NaN or inf anywhere: no step (not a step computed as if it were 0) and ``ok`` False."""
  args = {"g": np.ones(4), "q": np.array([1.0, -2.0, 0.5, 0.0]), "c": 0.3, "delta": 1.0}
  sol = jax.jit(tr.solve)(**args)
  assert bool(sol.ok) and np.any(np.asarray(sol.step) != 0)
  if bad in ("g", "q"):
    args[bad] = args[bad].copy()
    args[bad][1] = value
  else:
    args[bad] = value
  sol = jax.jit(tr.solve)(**args)
  assert not bool(sol.ok)
  assert np.all(np.asarray(sol.step) == 0) and int(sol.case) == tr.RECOVERY
  for leaf in jax.tree.leaves(sol):
    assert np.all(np.isfinite(np.asarray(leaf)))


def test_negative_delta():
  with pytest.raises(ValueError, match="delta must be >= 0"):
    tr.solve(jnp.ones(3), jnp.ones(3), 0.0, -1.0)
  sol = jax.jit(tr.solve)(jnp.ones(3), jnp.ones(3), 0.0, -1.0)  # traced: flagged
  assert not bool(sol.ok) and np.all(np.asarray(sol.step) == 0)
  sol = jax.vmap(tr.solve)(jnp.ones((2, 3)), jnp.ones((2, 3)), jnp.zeros(2), jnp.array([1.0, -1.0]))
  np.testing.assert_array_equal(np.asarray(sol.ok), [True, False])


def _in_metric_reference(hess, g, b, c, delta):
  """x* of max g.x s.t. c + b.x <= 0, x^T H x <= delta by whitening all n dimensions and
  calling ``solve`` on the n-vectors H^(-1/2) g and H^(-1/2) b: no 2-D reduction involved."""
  w, v = np.linalg.eigh(hess)
  inv_sqrt = v @ np.diag(w ** -0.5) @ v.T
  solution = tr.solve(jnp.asarray(inv_sqrt @ g), jnp.asarray(inv_sqrt @ b), c, delta)
  return inv_sqrt @ np.asarray(solution.step), int(solution.case)


@pytest.mark.parametrize("shape", ["random", "parallel", "g_zero", "b_zero"])
def test_solve_in_metric_matches_whitening_all_dimensions(shape):
  """CPO's form (scalars g^T H^-1 g, g^T H^-1 b, b^T H^-1 b) gives the step the full whitened
  problem gives, in every case, with x^T H x <= delta and, unless in recovery, c + b.x <= 0; and
  recovery happens exactly when the linearised problem is infeasible (c > 0, c^2 / s > delta)."""
  rng = np.random.default_rng(3)
  seen = set()
  with jax.enable_x64(True):
    for _ in range(60):
      n = 6
      a = rng.normal(size=(n, n))
      hess = a @ a.T + 0.1 * np.eye(n)
      g, b = rng.normal(size=n), rng.normal(size=n)
      if shape == "parallel":
        b = -1.7 * g
      elif shape == "g_zero":
        g = np.zeros(n)
      elif shape == "b_zero":
        b = np.zeros(n)
      hg, hb = np.linalg.solve(hess, g), np.linalg.solve(hess, b)
      c, delta = rng.normal() * 2.0, rng.uniform(0.05, 2.0)
      solution, alpha, beta = tr.solve_in_metric(g @ hg, g @ hb, b @ hb, c, delta)
      x = float(alpha) * hg + float(beta) * hb
      expected, case = _in_metric_reference(hess, g, b, c, delta)
      assert int(solution.case) == case
      seen.add(case)
      np.testing.assert_allclose(x, expected, atol=1e-9 * (1 + np.abs(expected).max()))
      assert x @ hess @ x <= delta * (1 + 1e-9)
      infeasible = (c > 0) and (b @ hb == 0 or c ** 2 / (b @ hb) > delta)
      assert (case == tr.RECOVERY) == infeasible
      if case != tr.RECOVERY:
        assert c + b @ x <= 1e-9
  assert seen >= ({tr.RECOVERY, tr.FEASIBLE} if shape == "b_zero" else set(range(3)) - (
      {tr.PARTIAL} if shape == "parallel" else set())), seen


def test_inputs_of_the_wrong_shape_fail_at_the_boundary():
  """g and q must be flat vectors of one length, c and delta scalars (chex, at trace time)."""
  with pytest.raises(AssertionError, match="assert_equal_shape"):
    tr.solve(jnp.ones(3), jnp.ones(4), 0.0, 1e-3)
  with pytest.raises(AssertionError, match="assert_rank"):
    tr.solve(jnp.ones((2, 3)), jnp.ones((2, 3)), 0.0, 1e-3)
  with pytest.raises(AssertionError, match="assert_rank"):
    tr.solve(jnp.ones(3), jnp.ones(3), jnp.zeros(2), 1e-3)
