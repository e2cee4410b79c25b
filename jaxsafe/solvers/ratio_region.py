"""The E-step of CPPO: the best centred probability ratios of a batch, exact on the whole domain.

Given a batch of N samples with reward advantages A and cost advantages A_c, CPPO's E-step
(Xuan et al., "Constrained Proximal Policy Optimization", 2023, as summarised in the
Dyna-CPPO specification, Eq. 4a-4b) finds the centred ratio v_bar = q(a|s) / pi(a|s) - 1 that
solves

    max_v  v.A    s.t.   v.A_c <= B,   |v|_2 <= R,   sum(v) = 0,   v >= f element-wise,     (P)

with B = N d' (the cost budget of Eq. 2b), R the radius of the ratio ball (Eq. 4a) and the floor
f = -1 + ``min_ratio`` (the v_bar > -1 bound of Eq. 4b, kept a little away from -1).

Method. Because sum(v) = 0, A and A_c may be centred (a = A~, c = A_c~). Substituting
v = f 1 + m p with m = -N f > 0 turns sum(v) = 0, v >= f into p in the probability simplex and the
ball into |p|^2 <= rho^2 = (R^2 + N f^2) / m^2, so (P) is a linear objective over the convex set
S = simplex ∩ ball plus one linear constraint. Its Lagrange dual has one multiplier mu >= 0 for
the cost; for fixed mu the inner problem

    max_{v in S} y.v,   y = a - mu c,                                                      (I)

is solved exactly by v = f + m Proj_simplex(t y) with the scalar t >= 0 at which the ball binds
(or t -> inf when the simplex vertex, or the face of tied maxima, already fits in the ball). On the
k entries of y that stay above the floor (the k largest), this is, in closed form,

    v_i = f (k - N) / k + W_k (y_i - ybar_k) / |y_K - ybar_k|,   W_k^2 = R^2 - N f^2 (N - k) / k,

and v_i = f elsewhere; k is the largest count for which the k-th entry stays above the floor,
found by bisection on a threshold of y (masked sums, no sort; see ``_inner``). The outer problem
is a bisection on the angle theta in [0, pi/2] of y = cos(theta) a/|a| - sin(theta) c/|c| (mu =
tan(theta) |a| / |c|: bounded and scale-invariant), on which the cost c.v(theta) is non-increasing:

  INTERIOR  theta = 0 meets the budget: v = v(0), the best point of S.
  RECOVERY  even theta = pi/2, the most cost-reducing point of S, misses the budget (no v is
            feasible); v = v(pi/2). ``recover=True`` asks for this point whatever the budget:
            CPPO's recovery update while its policy violates the constraint.
  BOUNDARY  the budget binds: bisection keeps a theta_lo whose v breaks the budget and a
            theta_hi whose v meets it, and the answer is the convex combination of the two that
            meets it with equality. It is feasible (S is convex) and, as the bracket closes, optimal
            also where v(theta) jumps (ties, A parallel to A_c, where the optimum is a mix of two
            maximisers of (I)).

Degenerate inputs: A_c~ = 0 (cost independent of v: INTERIOR if B >= 0, else RECOVERY with v = 0);
A~ = 0 (no reward signal: every feasible point is optimal and the one nearest 0 is returned, by
the same bisection on the radius of the ball instead of the angle); ties are resolved towards the
least-norm maximiser. Everything is a fixed number of steps (jittable, vmappable) and in the dtype
of the inputs. Non-finite inputs or a negative radius give v = 0 and ``ok = False`` (a negative
concrete radius raises ``ValueError``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

RECOVERY, INTERIOR, BOUNDARY = 0, 1, 2
CASE_NAMES = ("recovery", "interior", "boundary")
#: what an agent's flag of the E-step's ``ok`` at 0 means (the runner's divergence message).
NOT_FINITE = ("the E-step's inputs (advantages, budget or radius) were not finite, so no step "
              "was taken")


class Solution(NamedTuple):
  v_bar: jax.Array  # (N,) centred ratios, v = 1 + v_bar
  case: jax.Array  # int32: RECOVERY / INTERIOR / BOUNDARY
  cost_multiplier: jax.Array  # mu >= 0 of v.A_c <= B, in units of A per unit of A_c (inf: RECOVERY)
  fixed: jax.Array  # (N,) bool, entries held at the floor
  ok: jax.Array  # bool: inputs finite and radius >= 0 (otherwise v_bar = 0)


def _norm(x: jax.Array) -> jax.Array:
  """|x|_2 via max|x_i| scaling: no overflow or underflow of the squares."""
  m = jnp.max(jnp.abs(x))
  return m * jnp.sqrt(jnp.sum(jnp.square(x / jnp.where(m > 0, m, 1))))


def _centred_unit(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(x~ / |x~|, |x~|) with x~ = x - mean(x); (0, 0) when x~ is zero up to rounding."""
  eps = jnp.finfo(x.dtype).eps
  xc = x - jnp.mean(x)
  xc = xc - jnp.mean(xc)  # second pass: the mean of x~ is 0 to rounding of x~, not of x
  norm = _norm(xc)
  zero = jnp.max(jnp.abs(xc)) <= 8 * eps * jnp.max(jnp.abs(x))
  unit = jnp.where(zero, 0, xc / jnp.where(norm > 0, norm, 1))
  return unit, jnp.where(zero, 0, norm)


def _inner(y: jax.Array, radius: jax.Array, floor: jax.Array,
           num_iterations: int) -> tuple[jax.Array, jax.Array]:
  """argmax y.v over S = {sum(v) = 0, v >= floor, |v| <= radius} (problem (I)); floor < 0.

  The entries above the floor are those with y_i >= s for a threshold s, found by bisection on
  [min y, max y]: the set K = {y_i >= s} is admissible iff its closed-form solution keeps its lowest
  entry above the floor, which holds for every s above the optimal threshold and fails below it.
  Each step is a few masked reductions over N (no sort). Returns (v, active). Among several
  maximisers (ties of y, or y = 0) the one of least norm.
  """
  n = y.shape[0]
  dtype = y.dtype
  nf2 = n * floor * floor
  r2 = radius * radius

  def admissible(s):
    # The count-k solution keeps its k-th entry above the floor iff t_k k (ybar_k - y_k) <= 1 in
    # the simplex picture, i.e. W_k^2 k^2 (ybar_k - y_k)^2 <= (N f)^2 V_k (true while W_k^2 <= 0).
    m = y >= s
    k = jnp.sum(m).astype(dtype)
    y_bar = jnp.sum(jnp.where(m, y, 0)) / k
    var = jnp.sum(jnp.where(m, jnp.square(y - y_bar), 0))
    gap = k * (y_bar - jnp.min(jnp.where(m, y, jnp.inf)))
    w2 = r2 - nf2 * ((n - k) / k)
    return (w2 <= 0) | (w2 * gap * gap <= nf2 * n * var)

  lo, hi = jnp.min(y), jnp.max(y)
  hi = jnp.where(admissible(lo), lo, hi)  # every entry above the floor

  def step(_, bracket):
    lo, hi = bracket
    mid = 0.5 * (lo + hi)
    good = admissible(mid)
    return jnp.where(good, lo, mid), jnp.where(good, mid, hi)

  _, hi = jax.lax.fori_loop(0, num_iterations, step, (lo, hi))
  active = y >= hi
  kf = jnp.sum(active).astype(dtype)
  y_bar = jnp.sum(jnp.where(active, y, 0)) / kf
  dev = jnp.where(active, y - y_bar, 0)
  dev = jnp.where(active, dev - jnp.sum(dev) / kf, 0)  # centred to rounding of dev
  dev_norm = _norm(dev)
  u = jnp.where(dev_norm > 0, dev / jnp.where(dev_norm > 0, dev_norm, 1), 0)
  base = -floor * ((n - kf) / kf)  # exactly 0 when every entry is above the floor
  w = jnp.sqrt(jnp.maximum(r2 - nf2 * ((n - kf) / kf), 0))
  # Rounding guard: the lowest active entry must not cross the floor (shrinking w keeps the sum).
  u_min = jnp.min(jnp.where(active, u, 0))
  w = jnp.minimum(w, (base - floor) / jnp.maximum(-u_min, jnp.finfo(dtype).tiny))
  return jnp.where(active, base + w * u, floor), active


def _is_tracer(x) -> bool:
  return isinstance(x, jax.core.Tracer)


def e_step(advantage: jax.Array, cost_advantage: jax.Array, cost_budget: jax.Array,
           radius: jax.Array, min_ratio: float = 0.05, num_iterations: int | None = None,
           recover: jax.Array | bool = False) -> Solution:
  """Solves Eq. 4a-4b (problem (P) of the module docstring) for one batch; arguments may be traced.

  Args:
    advantage: (N,) reward advantages A (any scale: only their direction matters).
    cost_advantage: (N,) cost advantages A_c, in cost units (the budget is compared with v.A_c).
    cost_budget: B = N d', the largest allowed v.A_c (negative when cost must fall).
    radius: R >= 0, the bound on |v_bar|_2.
    min_ratio: in [0, 1): v_bar >= -1 + min_ratio element-wise.
    num_iterations: bisection steps of the multiplier angle; None: enough to close the bracket to
      the resolution of the dtype (mantissa bits + 4: 27 in float32, 56 in float64).
    recover: (may be traced) solve the recovery problem instead: max -v.A_c over the same set
      (v_bar = -R A_c~/|A_c~| while no entry reaches the floor), reported as RECOVERY.

  Returns:
    ``Solution``; ``v_bar`` has sum 0, |v_bar| <= R, v_bar >= -1 + min_ratio, all to rounding,
    in the dtype of the advantages.
  """
  if not _is_tracer(radius) and np.any(np.asarray(radius) < 0):
    raise ValueError(f"radius must be >= 0, got {radius}")
  if not _is_tracer(min_ratio) and not 0 <= float(min_ratio) < 1:
    raise ValueError(f"min_ratio must be in [0, 1), got {min_ratio}")
  chex.assert_rank(advantage, 1)
  chex.assert_equal_shape([advantage, cost_advantage])
  chex.assert_rank([cost_budget, radius], 0)
  dtype = jnp.result_type(advantage, cost_advantage, float)
  adv = jnp.asarray(advantage, dtype)
  cost_adv = jnp.asarray(cost_advantage, dtype)
  budget = jnp.asarray(cost_budget, dtype)
  radius = jnp.asarray(radius, dtype)
  floor = jnp.asarray(min_ratio, dtype) - 1
  inner_iterations = jnp.finfo(dtype).nmant + 4
  if num_iterations is None:
    num_iterations = inner_iterations
  ok = (jnp.all(jnp.isfinite(adv)) & jnp.all(jnp.isfinite(cost_adv)) & jnp.isfinite(budget)
        & jnp.isfinite(radius) & (radius >= 0) & (floor < 0) & (floor >= -1))
  # Sanitised copies, so that nothing below sees a NaN (the answer is replaced by 0 anyway).
  adv = jnp.where(ok, adv, 0)
  cost_adv = jnp.where(ok, cost_adv, 0)
  budget = jnp.where(ok, budget, 0)
  radius = jnp.where(ok, radius, 0)
  floor = jnp.where(ok, floor, -1)

  a_hat, a_norm = _centred_unit(adv)
  c_hat, c_norm = _centred_unit(cost_adv)
  # The budget in units of |A_c~|; with A_c~ = 0 the cost is 0 for every v: feasible iff B >= 0.
  b_hat = jnp.where(c_norm > 0, budget / jnp.where(c_norm > 0, c_norm, 1),
                    jnp.where(budget >= 0, 0, -1))
  no_reward = (a_norm == 0) & ~jnp.asarray(recover)
  a_hat = jnp.where(recover, -c_hat, a_hat)
  half_pi = math.pi / 2

  def solve_at(x):
    """v at bisection parameter x in [0, 1]: angle theta = x pi/2, or radius x R if A~ = 0."""
    theta = jnp.where(no_reward, half_pi, x * half_pi)
    y = jnp.cos(theta) * a_hat - jnp.sin(theta) * c_hat
    v, active = _inner(y, jnp.where(no_reward, x * radius, radius), floor, inner_iterations)
    return v, active, v @ c_hat

  # The two ends in one batched solve: x = 0 (best point of S) and x = 1 (least cost).
  ends = jnp.array([0, 1], dtype)
  v_ends, active_ends, cost_ends = jax.vmap(solve_at)(ends)
  v0, v1 = v_ends[0], v_ends[1]
  interior = (cost_ends[0] <= b_hat) & ~jnp.asarray(recover)
  infeasible = (cost_ends[1] > b_hat) | jnp.asarray(recover)
  case = jnp.where(infeasible, RECOVERY, jnp.where(interior, INTERIOR, BOUNDARY))

  def bisect(_, carry):
    lo, hi, v_lo, v_hi, c_lo, c_hi = carry
    mid = 0.5 * (lo + hi)
    v, _, cost = solve_at(mid)
    meets = cost <= b_hat
    return (jnp.where(meets, lo, mid), jnp.where(meets, mid, hi),
            jnp.where(meets, v_lo, v), jnp.where(meets, v, v_hi),
            jnp.where(meets, c_lo, cost), jnp.where(meets, cost, c_hi))

  init = (ends[0], ends[1], v0, v1, cost_ends[0], cost_ends[1])
  lo, hi, v_lo, v_hi, c_lo, c_hi = jax.lax.fori_loop(0, num_iterations, bisect, init)
  # The combination of the bracket's ends that meets the budget with equality.
  span = c_lo - c_hi
  lam = jnp.clip(jnp.where(span > 0, (c_lo - b_hat) / jnp.where(span > 0, span, 1), 1), 0, 1)
  v_mix = jnp.maximum(v_lo + lam * (v_hi - v_lo), floor)

  v = jnp.select([case == RECOVERY, case == INTERIOR], [v1, v0], v_mix)
  fixed = jnp.select([case == RECOVERY, case == INTERIOR], [~active_ends[1], ~active_ends[0]],
                     (v <= floor))
  theta = jnp.where(case == BOUNDARY, 0.5 * (lo + hi) * half_pi, 0)
  scale = a_norm / jnp.where(c_norm > 0, c_norm, 1)
  multiplier = jnp.where(case == RECOVERY, jnp.inf,
                         jnp.where(no_reward, 0, jnp.tan(theta) * scale)).astype(dtype)
  v = jnp.where(ok, v, 0)
  fixed = fixed & ok
  case = jnp.where(ok, case, INTERIOR).astype(jnp.int32)
  return Solution(v_bar=v, case=case, cost_multiplier=jnp.where(ok, multiplier, 0),
                  fixed=fixed, ok=ok)
