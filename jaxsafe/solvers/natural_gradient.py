"""Natural-gradient machinery of the trust-region agents (TRPO, TRPO-Lag, CPO): Fisher-vector
products, conjugate gradient and a backtracking line search, on parameter pytrees.

TRPO (Schulman et al. 2015, Sec. 6 and App. C) and CPO (Achiam et al. 2017, Sec. 6) approximate
the KL trust region KL(pi_old || pi_theta) <= delta by its second-order model
1/2 (theta - theta_old)^T F (theta - theta_old), with F the Fisher information: the Hessian of the
mean KL at theta = theta_old. F is never formed:

- ``fisher_vector_product``: v -> (F + damping I) v by forward-over-reverse differentiation of the
  KL (``jax.linearize`` of its gradient, so the forward pass is shared by every product);
- ``conjugate_gradient``: x ~ (F + damping I)^-1 g after a fixed number of iterations, fewer
  only once CG has converged to rounding (``jax.scipy.sparse.linalg.cg``; the program jits and
  vmaps over seeds);
- ``backtracking_line_search``: theta_old + decay^k step for the first k whose candidate passes
  the caller's test (surrogate improved, KL within bound, for CPO the cost surrogate), else
  theta_old.

Everything is a pure function of pytrees: it jits, and it vmaps (over seeds and settings).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

Params = Any


def fisher_vector_product(kl: Callable[[Params], jax.Array], params: Params,
                          damping: float | jax.Array = 0.0) -> Callable[[Params], Params]:
  """Returns v -> (F + damping I) v, F the Hessian of the scalar ``kl`` at ``params``.

  ``kl(theta)`` must be the mean KL(pi_old || pi_theta) over the batch with pi_old held fixed
  (computed from stopped old outputs); at theta = theta_old its Hessian is the Fisher matrix of
  the policy (TRPO App. C). ``damping`` adds a multiple of the identity (CG's conditioning; 0.1
  in OpenAI's and OmniSafe's TRPO/CPO).
  """
  _, hessian_vector = jax.linearize(jax.grad(kl), params)

  def product(v: Params) -> Params:
    return optax.tree.add_scale(hessian_vector(v), damping, v)

  return product


#: CG stops once |r| <= this x |b|: only where it has converged to rounding (see below).
CG_RELATIVE_TOLERANCE = 1e-15


def conjugate_gradient(matvec: Callable[[Params], Params], b: Params, iterations: int) -> Params:
  """x with matvec(x) ~ b after ``iterations`` CG iterations, starting from x = 0; fewer only once
  the residual is below ``CG_RELATIVE_TOLERANCE`` |b|. ``matvec`` must be symmetric positive
  definite; b = 0 gives x = 0.

  Where the matrix has few distinct eigenvalues (a Fisher matrix of low rank plus damping: a
  policy of a 1-D observation on ``function``), CG converges exactly in a few iterations; run on,
  r.r falls below float32's range, p.Ap rounds to 0 and the step r.r / p.Ap is infinite (seen as
  a NaN in trpo-lag on ``function``). The stop prevents that. b is first scaled by a power of two
  (exact: every iterate scales with it) to a largest entry in [0.5, 1), so the stop does not
  depend on b's units nor does r.r underflow for a gradient of 1e-20; where the stop does not
  trigger, x is bit-for-bit the fixed-count answer."""
  peak = jnp.max(jnp.stack([jnp.max(jnp.abs(leaf)) for leaf in jax.tree.leaves(b)]))
  _, exponent = jnp.frexp(jnp.where(peak > 0, peak, 1.0))  # peak = m 2^exponent, 0.5 <= m < 1
  unit = jax.tree.map(lambda leaf: jnp.ldexp(leaf, -exponent), b)
  x, _ = jax.scipy.sparse.linalg.cg(matvec, unit, tol=CG_RELATIVE_TOLERANCE, atol=0.0,
                                    maxiter=iterations)
  return jax.tree.map(lambda leaf: jnp.ldexp(leaf, exponent), x)


def backtracking_line_search(params: Params, step: Params,
                             accept: Callable[[Params], jax.Array], max_backtracks: int = 10,
                             decay: float = 0.8) -> tuple[Params, jax.Array]:
  """(params + decay^k step for the least k < ``max_backtracks`` with ``accept`` true, that
  fraction decay^k), or (params, 0) if no candidate is accepted.

  The candidates are tried in order in a ``lax.while_loop``, so the expected cost is that of the
  first few; under vmap the loop runs until every member of the batch has stopped.
  """
  candidate = lambda fraction: optax.tree.add_scale(params, fraction, step)

  def searching(carry):
    k, found = carry
    return (k < max_backtracks) & ~found

  def body(carry):
    k, _ = carry
    found = accept(candidate(decay ** k))
    return jnp.where(found, k, k + 1), found

  k, found = jax.lax.while_loop(searching, body, (jnp.int32(0), jnp.bool_(False)))
  fraction = jnp.where(found, decay ** k, 0.0)
  # Not params + 0 * step: a rejected step may hold infinities (0 * inf = NaN).
  kept = jax.tree.map(lambda new, old: jnp.where(found, new, old), candidate(fraction), params)
  return kept, fraction
