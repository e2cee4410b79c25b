"""The E-step of CPPO: the best centred probability ratios of a batch, in closed form.

Given a batch of N samples with reward advantages A and cost advantages A_c, CPPO's E-step
(Xuan et al. 2023, as summarised in ``shared/papers/000``, Eq. 4a-4b) finds the centred ratio
v_bar = q(a|s) / pi(a|s) - 1 that solves

    max_v  v.A    s.t.   v.A_c <= B,   |v|_2 <= R,   sum(v) = 0,   v > -1 element-wise,

with B = N d' (the cost budget of Eq. 2b) and R the radius of the ratio ball (Eq. 4a writes it
2 N delta'). Without the element-wise bound the solution lies on the plane of the centred,
orthonormalised advantages (Eq. 4 and the text below it):

    v = R (cos t e_c + sin t e_r),   e_c = A_c~ / |A_c~|,   e_r = the part of A~ orthogonal to e_c,

where ~ subtracts the batch mean (so sum(v) = 0). The angle t is the objective's own angle
t* = atan2(A~.e_r, A~.e_c) when that already satisfies the cost constraint ("interior"); otherwise
the constraint is active and cos t = kappa = B / (R |A_c~|), sin t >= 0 ("boundary"); and when even
the most cost-reducing point of the ball, -R e_c, cannot meet the budget (kappa < -1), the step is
that point ("recovery"). ``recover=True`` asks for that point directly, whatever the budget:
CPPO's recovery update while its policy violates the constraint.

The element-wise bound v > -1 is enforced by the iterative step the specification describes: the
entries that break it are fixed at ``floor`` (= -1 + ``min_ratio``), and the plane problem is solved
again on the remaining entries with the budgets the fixed ones leave (their sum, squared norm and
cost are subtracted), a fixed number of times so the whole E-step is one jittable program. A last
safeguard scales v towards 0 if an entry is still below the floor or the norm exceeds R (scaling
keeps sum(v) = 0 and shrinks the norm; it can loosen the cost constraint, and is counted in
``Solution.scaled``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

RECOVERY, INTERIOR, BOUNDARY = 0, 1, 2
CASE_NAMES = ("recovery", "interior", "boundary")
_TINY = 1e-12
_PARALLEL = 1e-5


class Solution(NamedTuple):
  v_bar: jax.Array  # (N,) centred ratios, v = 1 + v_bar
  case: jax.Array  # RECOVERY / INTERIOR / BOUNDARY of the last plane solve
  kappa: jax.Array  # B / (R |A_c~|) of the last plane solve: cos t must not exceed it
  fixed: jax.Array  # (N,) bool, entries held at the floor
  scaled: jax.Array  # the safeguard's scale factor (1.0 when it did not act)


def _plane_solve(adv, cost_adv, budget, radius):
  """max w.adv s.t. w.cost_adv <= budget, |w| <= radius, for centred adv and cost_adv.

  Returns (w, case, kappa). Entries where both vectors are zero stay zero.
  """
  norm_c = jnp.linalg.norm(cost_adv)
  e_c = cost_adv / jnp.maximum(norm_c, _TINY)
  along = adv @ e_c
  perp = adv - along * e_c
  norm_perp = jnp.linalg.norm(perp)
  norm_a = jnp.sqrt(along**2 + norm_perp**2)
  # A parallel to A_c up to float32 rounding: the rounding noise is no direction, e_r = 0.
  parallel = norm_perp <= _PARALLEL * norm_a
  norm_perp = jnp.where(parallel, 0.0, norm_perp)
  e_r = jnp.where(parallel, 0.0, perp / jnp.maximum(norm_perp, _TINY))
  radius = jnp.maximum(radius, 0.0)
  # kappa: the largest cos t the cost constraint allows (+inf when A_c~ = 0 and the budget is >= 0).
  kappa = jnp.where(norm_c > _TINY, budget / jnp.maximum(radius * norm_c, _TINY),
                    jnp.where(budget >= 0, jnp.inf, -jnp.inf))
  # The objective's own direction. With no reward signal every feasible point is optimal; cos t* = 0
  # (and e_r = 0) picks the one nearest v = 0: w = 0 if the budget allows it, else R kappa e_c.
  cos_star = jnp.where(norm_a > _TINY, along / jnp.maximum(norm_a, _TINY), 0.0)
  sin_star = jnp.where(norm_a > _TINY, norm_perp / jnp.maximum(norm_a, _TINY), 0.0)
  case = jnp.where(kappa < -1.0, RECOVERY, jnp.where(kappa >= cos_star, INTERIOR, BOUNDARY))
  kappa_c = jnp.clip(kappa, -1.0, 1.0)
  cos_t = jnp.where(case == INTERIOR, cos_star, jnp.where(case == RECOVERY, -1.0, kappa_c))
  sin_t = jnp.where(case == INTERIOR, sin_star,
                    jnp.where(case == RECOVERY, 0.0, jnp.sqrt(jnp.maximum(1.0 - kappa_c**2, 0.0))))
  w = radius * (cos_t * e_c + sin_t * e_r)
  return w, case, kappa


def e_step(advantage: jax.Array, cost_advantage: jax.Array, cost_budget: jax.Array,
           radius: jax.Array, min_ratio: float = 0.05, num_iterations: int = 8,
           recover: jax.Array | bool = False) -> Solution:
  """Solves Eq. 4a-4b for one batch; every argument may be traced.

  Args:
    advantage: (N,) reward advantages A (any scale: only their direction matters).
    cost_advantage: (N,) cost advantages A_c, in cost units (the budget is compared with v.A_c).
    cost_budget: B = N d', the largest allowed v.A_c (negative when cost must fall).
    radius: R, the bound on |v_bar|_2.
    min_ratio: entries that would go below -1 are fixed at v_bar = -1 + min_ratio.
    num_iterations: fix-and-re-solve rounds of the element-wise step.
    recover: (may be traced) solve the recovery problem instead: max -v.A_c over the same set
      (v_bar = -R A_c~/|A_c~| while no entry reaches the floor), reported as RECOVERY.

  Returns:
    ``Solution`` with ``v_bar``: sum 0, |v_bar| <= R, v_bar > -1.
  """
  cost_adv = jnp.asarray(cost_advantage, jnp.float32)
  adv = jnp.where(recover, -cost_adv, jnp.asarray(advantage, jnp.float32))
  cost_budget = jnp.where(recover, jnp.inf, cost_budget)
  n = adv.shape[0]
  floor = -1.0 + min_ratio

  def solve(fixed):
    free = ~fixed
    n_free = jnp.maximum(free.sum(), 1)
    v_fixed = jnp.where(fixed, floor, 0.0)
    shift = -v_fixed.sum() / n_free  # the free entries' mean, so that sum(v) = 0
    mean_free = lambda x: jnp.where(free, x, 0.0).sum() / n_free
    a = jnp.where(free, adv - mean_free(adv), 0.0)
    c = jnp.where(free, cost_adv - mean_free(cost_adv), 0.0)
    budget = cost_budget - v_fixed @ cost_adv - shift * n_free * mean_free(cost_adv)
    radius_free = jnp.sqrt(jnp.maximum(radius**2 - (v_fixed**2).sum() - n_free * shift**2, 0.0))
    w, case, kappa = _plane_solve(a, c, budget, radius_free)
    return jnp.where(free, shift + w, v_fixed), case, kappa

  def round_(_, fixed):
    v, _, _ = solve(fixed)
    return fixed | (v < floor)

  fixed = jax.lax.fori_loop(0, num_iterations, round_, jnp.zeros((n,), bool))
  v, case, kappa = solve(fixed)
  # Safeguard: scale towards 0 (keeps the sum at 0) if the rounds did not settle.
  norm = jnp.linalg.norm(v)
  scale = jnp.minimum(1.0, jnp.minimum(radius / jnp.maximum(norm, _TINY),
                                       (1.0 - min_ratio) / jnp.maximum(-v.min(), _TINY)))
  case = jnp.where(recover, RECOVERY, case)
  return Solution(v_bar=scale * v, case=case, kappa=kappa, fixed=fixed, scaled=scale)
