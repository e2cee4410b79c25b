"""CGPO trust-region sub-problem (Sec. 5.1 and App. A.2 of the CGPO paper).

With g = grad J_R, q = grad J_C, c = J_C - b and the squared radius delta (the paper's delta hat),
Eq. 9-10 ask for the step

    d* = argmax_d g.d   s.t.   c + q.d <= 0,   d.d <= delta.

Theorem 5.1 and Corollary 5.2 split it into three cases (Fig. 2, App. A.2.2):

  RECOVERY (a)  c^2 / q.q > delta and c > 0: no point of the ball is feasible (unsolvable);
                step along the steepest descent of the cost, d = -sqrt(delta) q / |q| (Eq. 33),
                or, given a finite ``recovery_weight`` mu, the elastic step below.
  FEASIBLE (b)  c^2 / q.q > delta and c <= 0: the whole ball is feasible; d = sqrt(delta) g / |g|
                (Eq. 34).
  PARTIAL  (c)  otherwise: the KKT system Eq. 11-15, solved for the dual variables (lambda*, nu*)
                by Algorithm 2 (Eq. 40-46), and d = (g - nu* q) / lambda* (Eq. 40, 47).

Elastic recovery (an exact-penalty / Sl1QP step; our addition, docs/algorithms.md). With the
objective and the constraint each scaled by its gradient's norm (which changes neither the
feasible set nor the KKT points), the exact-penalty sub-problem is

    min_d  -g.d / |g| + mu (c + q.d)_+ / |q|   s.t.   d.d <= delta.

In case (a) the whole ball has c + q.d > 0, so the penalty is linear there and the minimiser is
d = sqrt(delta) (u - mu v) / |u - mu v| with u = g / |g|, v = q / |q|. It tends to Eq. 33 as
mu -> inf; at mu = 1 it bisects "more return" and "less cost", and for any mu >= 1 the linear model
predicts a cost decrease (v.d < 0). Cases (b) and (c) are unchanged.

``solve`` is branch-free (every case is computed and one is selected with ``jnp.where``), so it
jits and vmaps, in float32 and float64. Case (c) is Algorithm 2 rewritten in a form that cannot
divide by zero (see the comment in ``solve``): it gives the same lambda*, nu* and d wherever
Algorithm 2 is defined, and a finite answer where it is not. Degenerate inputs:

  * q = 0: c + q.d = c does not depend on d. c <= 0 is FEASIBLE; c > 0 is unsolvable and no
    step reduces the cost, so the result is a zero step with case RECOVERY.
  * g = 0: every feasible point is optimal. FEASIBLE returns the zero step; PARTIAL returns the
    feasible point of least norm (zero when c <= 0, -c q / q.q when c > 0).
  * g parallel to q, with the cost constraint binding (the trust region is then inactive,
    lambda* = 0 and Eq. 40 divides by zero): the optimum is not unique and the least-norm point
    of the plane c + q.d = 0, d = -c q / q.q, is returned.
  * c^2 / q.q = delta (the ball touches the plane): the PARTIAL step is continuous with the
    neighbouring RECOVERY / FEASIBLE steps; lambda* is infinite there and is reported clipped.

Non-finite inputs (NaN or inf in g, q, c or delta) and a negative delta give the zero step with
``ok = False`` (case RECOVERY, multipliers and predictions 0) instead of a step computed from
garbage; a concrete negative delta raises ``ValueError``. The agents report ``ok`` as a metric
that stops training (``cgpo/trust_region_inputs_finite``, meaning ``NOT_FINITE``).

Classification compares |c| / |q| with sqrt(delta), which is c^2 / q.q > delta without the
overflow of squaring. Norms are taken after scaling by the largest entry, so no intermediate
overflows in float32 either.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.flatten_util import ravel_pytree

RECOVERY = 0
FEASIBLE = 1
PARTIAL = 2
CASE_NAMES = ("recovery", "feasible", "partial")
#: what an agent's flag of ``Solution.ok`` at 0 means (the runner's divergence message).
NOT_FINITE = ("the trust-region sub-problem's inputs (g, q, c or the radius) were not finite, so "
              "no step was taken")


@struct.dataclass
class Solution:
  """The step d and what goes with it.

  ``lam`` and ``nu`` are the KKT multipliers of Eq. 12-15 (trust region and cost constraint):
  ``lam = |g| / sqrt(delta)``, ``nu = 0`` in FEASIBLE, Algorithm 2's (lambda*, nu*) in PARTIAL,
  and 0, 0 in RECOVERY (the problem has no KKT point). Where the true value is infinite
  (delta = 0, or the ball touching the plane) it is clipped to the largest finite float.
  """

  step: jax.Array
  case: jax.Array  # int32: RECOVERY, FEASIBLE or PARTIAL
  lam: jax.Array
  nu: jax.Array
  predicted_objective: jax.Array  # g.d
  predicted_constraint: jax.Array  # c + q.d
  ok: jax.Array  # bool: g, q, c, delta finite and delta >= 0 (otherwise the zero step)


def _norm(x: jax.Array) -> jax.Array:
  """|x| computed as max|x_i| * |x / max|x_i||: no overflow or underflow of the squares."""
  m = jnp.max(jnp.abs(x))
  return m * jnp.sqrt(jnp.sum(jnp.square(x / jnp.where(m > 0, m, 1))))


def _unit(x: jax.Array, norm: jax.Array) -> jax.Array:
  """x / |x|, and the zero vector for x = 0."""
  return jnp.where(norm > 0, x / jnp.where(norm > 0, norm, 1), 0)


def _ratio(num: jax.Array, den: jax.Array) -> jax.Array:
  """num / den for num, den >= 0: 0 where num = 0, clipped to the largest finite float."""
  finfo = jnp.finfo(num.dtype)
  return jnp.where(num > 0, jnp.minimum(num / jnp.maximum(den, finfo.tiny), finfo.max), 0)


def solve(g: jax.Array, q: jax.Array, c: jax.Array, delta: jax.Array,
          recovery_weight: jax.Array | float = float("inf")) -> Solution:
  """Solves max_d g.d s.t. c + q.d <= 0, d.d <= delta (Eq. 10) for flat vectors g, q.

  Args:
    g: objective gradient, shape [n].
    q: constraint gradient, shape [n].
    c: scalar J_C - b (positive: the current policy violates the constraint).
    delta: squared trust-region radius (the paper's delta hat), >= 0.
    recovery_weight: mu of the elastic recovery step in case (a); inf (the default) gives the
      paper's Eq. 33.

  Returns:
    A ``Solution``; see the module docstring for the cases and the degenerate inputs.

  Raises:
    ValueError: if delta is concrete and negative (a traced one is reported by ``ok``).
  """
  if not isinstance(delta, jax.core.Tracer) and np.any(np.asarray(delta) < 0):
    raise ValueError(f"delta must be >= 0, got {delta}")
  chex.assert_rank(g, 1)
  chex.assert_equal_shape([g, q])
  chex.assert_rank([c, delta, recovery_weight], 0)
  dtype = jnp.result_type(g, q, c, delta, float)
  g, q = jnp.asarray(g, dtype), jnp.asarray(q, dtype)
  c, delta = jnp.asarray(c, dtype), jnp.asarray(delta, dtype)
  ok = (jnp.all(jnp.isfinite(g)) & jnp.all(jnp.isfinite(q)) & jnp.isfinite(c)
        & jnp.isfinite(delta) & (delta >= 0))
  # Sanitised inputs, so nothing below sees NaN or inf; the answer is the zero step anyway.
  g, q = jnp.where(ok, g, 0), jnp.where(ok, q, 0)
  c, delta = jnp.where(ok, c, 0), jnp.where(ok, delta, 0)
  radius = jnp.sqrt(jnp.maximum(delta, 0))
  g_norm, q_norm = _norm(g), _norm(q)
  u, v = _unit(g, g_norm), _unit(q, q_norm)
  cos = u @ v  # 0 when g = 0 or q = 0
  # The plane c + q.d = 0 is v.d = -h: its point nearest the origin is -h v, at distance |h|.
  h = c / jnp.where(q_norm > 0, q_norm, 1)

  # Theorem 5.1 / Cor. 5.2: the ball misses the plane iff c^2 / q.q > delta, i.e. |h| > radius.
  # q = 0 counts as "misses" (the feasible set is everything or nothing).
  separated = (q_norm == 0) | (jnp.abs(h) > radius)
  case = jnp.where(separated, jnp.where(c > 0, RECOVERY, FEASIBLE), PARTIAL).astype(jnp.int32)

  recovery = -radius * v  # Eq. 33 (zero when q = 0)
  mu = jnp.asarray(recovery_weight, dtype)
  elastic_dir = u - jnp.where(jnp.isfinite(mu), mu, 0) * v
  elastic_norm = _norm(elastic_dir)
  # mu = inf is Eq. 33; so is u - mu v = 0 (g = q direction at mu = 1), where no elastic
  # direction exists, and q = 0 keeps its zero step.
  use_elastic = jnp.isfinite(mu) & (elastic_norm > 0) & (q_norm > 0)
  recovery = jnp.where(use_elastic, radius * _unit(elastic_dir, elastic_norm), recovery)
  ascent = radius * u  # Eq. 34 (zero when g = 0)

  # Case (c), Algorithm 2. With r = g.g, s = g.q, t = q.q, maximising the dual over nu (Eq. 42)
  # leaves a concave, differentiable function of lambda made of two pieces (Eq. 45):
  #   nu = 0 (Lambda_b): stationary at lambda_b = sqrt(r / delta), d = g / lambda_b = sqrt(delta) u.
  #   nu > 0 (Lambda_a): nu = (lambda c + s) / t, so q.d = -c (on the plane), and d.d = delta gives
  #     lambda_a = sqrt((r - s^2/t) / (delta - c^2/t)); substituting into Eq. 40,
  #     d = g_perp / lambda_a - (c / t) q = -h v + sqrt(delta - h^2) g_perp / |g_perp|,
  #     where g_perp = g - (s/t) q is g with its q component removed.
  # Comparing L_a(lambda_a) with L_b(lambda_b) picks the piece holding the dual maximum; because
  # the dual is concave and C^1 this is the same as asking whether lambda_b lies in Lambda_b,
  # i.e. lambda_b c + s <= 0, i.e. whether the Eq. 34 step is feasible: h + radius cos <= 0.
  # That test and the geometric form of d need no division by lambda (0 when g is parallel to q)
  # or by delta - c^2/t (0 when the ball touches the plane), and handle g = 0 (Algorithm 2 then
  # ties at lambda = 0 and picks the infeasible d = 0 when c > 0).
  h_in = jnp.clip(h, -radius, radius)  # |h| <= radius in case (c); clipping keeps the rest finite
  perp = u - cos * v
  perp = perp - (v @ perp) * v  # twice is enough: v.perp ~ eps even when g is nearly parallel to q
  perp_norm = _norm(perp)  # sin of the angle between g and q
  parallel = perp_norm <= 16 * jnp.finfo(dtype).eps
  w = jnp.where(parallel, 0, _unit(perp, perp_norm))
  side = jnp.sqrt((radius - h_in) * (radius + h_in))  # sqrt(delta - c^2 / t)
  on_plane = -h_in * v + side * w
  inactive = h_in + radius * cos <= 0  # nu* = 0: the cost constraint does not bind
  partial = jnp.where(inactive, ascent, on_plane)

  lam_b = _ratio(g_norm, radius)  # sqrt(r / delta)
  lam_a = _ratio(jnp.where(parallel, 0, g_norm * perp_norm), side)  # |g_perp| / sqrt(delta - h^2)
  nu_a = _ratio(jnp.maximum(lam_a * h_in + g_norm * cos, 0), q_norm)  # Eq. 46: ((lam c + s) / t)_+

  step = jnp.select([case == RECOVERY, case == FEASIBLE], [recovery, ascent], partial)
  zero = jnp.zeros((), dtype)
  lam = jnp.select([case == RECOVERY, (case == FEASIBLE) | inactive], [zero, lam_b], lam_a)
  nu = jnp.where((case == PARTIAL) & ~inactive, nu_a, zero)
  return Solution(step=jnp.where(ok, step, 0), case=jnp.where(ok, case, RECOVERY), lam=lam,
                  nu=nu, predicted_objective=g_norm * (u @ step),
                  predicted_constraint=jnp.where(ok, c + q_norm * (v @ step), 0), ok=ok)


def flatten(params: Any) -> tuple[jax.Array, Callable[[jax.Array], Any]]:
  """Params pytree -> (flat vector, unravel), via ``jax.flatten_util.ravel_pytree``."""
  return ravel_pytree(params)


def apply_step(params: Any, step: jax.Array) -> Any:
  """params + unravel(step): the update theta_{k+1} = theta_k + d (Eq. 33, 34, 47)."""
  flat, unravel = flatten(params)
  return unravel(flat + jnp.asarray(step, flat.dtype))


def solve_in_metric(ghg: jax.Array, ghb: jax.Array, bhb: jax.Array, c: jax.Array,
                    delta: jax.Array, recovery_weight: jax.Array | float = float("inf")
                    ) -> tuple[Solution, jax.Array, jax.Array]:
  """The same problem with the ball measured in a metric H (CPO: Achiam et al. 2017, Sec. 6):

      x* = argmax_x g.x   s.t.   c + b.x <= 0,   x^T H x <= delta,

  given only the scalars g^T H^-1 g, g^T H^-1 b and b^T H^-1 b (CPO's q, r, s; from conjugate
  gradient). For CPO's KL ball 1/2 x^T H x <= delta_KL pass delta = 2 delta_KL.

  In whitened coordinates y = H^(1/2) x it is ``solve``'s problem with g' = H^(-1/2) g and
  b' = H^(-1/2) b, and its solution lies in span(g', b') (Eq. 40: y = (g' - nu b') / lambda, or
  along b' in recovery). Any two 2-vectors with the Gram matrix [[ghg, ghb], [ghb, bhb]] describe
  that plane exactly; we take g2 = (sqrt(ghg), 0) and b2 = (ghb, sqrt(ghg bhb - ghb^2)) / sqrt(ghg)
  (the Cholesky factor), solve there, and write y2 = alpha g2 + beta b2, so that
  x* = alpha H^-1 g + beta H^-1 b. Cases, multipliers and predictions carry over unchanged: CPO's
  infeasible case is RECOVERY (x = -sqrt(delta / s) H^-1 b), its whole-ball-feasible case is
  FEASIBLE (the TRPO step sqrt(delta / q) H^-1 g).

  Returns:
    (the 2-D ``Solution``, alpha, beta). Where g' and b' are parallel (or b = 0) any split gives
    the same x and beta = 0 is returned; where g = 0, alpha = 0.
  """
  dtype = jnp.result_type(ghg, ghb, bhb, c, delta, float)
  ghg, ghb, bhb = (jnp.asarray(x, dtype) for x in (ghg, ghb, bhb))
  g_len = jnp.sqrt(jnp.maximum(ghg, 0))
  safe_g_len = jnp.where(g_len > 0, g_len, 1)
  along = jnp.where(g_len > 0, ghb / safe_g_len, 0)  # b2's component along g2
  across = jnp.sqrt(jnp.maximum(bhb - along ** 2, 0))  # and across it
  g2 = jnp.stack([g_len, jnp.zeros((), dtype)])
  b2 = jnp.stack([along, across])
  solution = solve(g2, b2, c, delta, recovery_weight)
  y0, y1 = solution.step[0], solution.step[1]
  # Back-substitution of [g2 b2] (alpha, beta) = y2; guarded where a column vanishes.
  beta = jnp.where(across > 0, y1 / jnp.where(across > 0, across, 1), 0)
  alpha = jnp.where(g_len > 0, (y0 - beta * along) / safe_g_len, 0)
  return solution, alpha, beta
