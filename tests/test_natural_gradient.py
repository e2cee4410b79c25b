"""``solvers.natural_gradient`` against dense linear algebra on a small Gaussian policy (issue 15,
acceptance 1): the Fisher-vector product equals the dense Fisher (the KL's Hessian) times the
vector, and conjugate gradient solves (F + damping I) x = g to 1e-6 relative residual, like a
dense solve. In float64, so that the comparison measures the method and not float32 rounding."""

from __future__ import annotations

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from jaxsafe.core.networks import GaussianActor
from jaxsafe.solvers.natural_gradient import (
  backtracking_line_search,
  conjugate_gradient,
  fisher_vector_product,
)

DAMPING = 0.1


@pytest.fixture(scope="module")
def problem():
  """(kl(flat theta), flat theta_old, g, unravel) for a (3 -> 8 -> 2) Gaussian policy, 64 states."""
  jax.config.update("jax_enable_x64", True)
  try:
    actor = GaussianActor(action_size=2, hidden_sizes=(8,))
    k_init, k_noise, k_obs, k_g = jax.random.split(jax.random.PRNGKey(0), 4)
    obs = jax.random.normal(k_obs, (64, 3), jnp.float64)
    params = jax.tree.map(lambda p: p.astype(jnp.float64), actor.init(k_init, obs))
    flat_old, unravel = ravel_pytree(params)
    # Away from the initialisation (whose mean head is scaled by 0.01), so F is not near-singular.
    flat_old = flat_old + 0.5 * jax.random.normal(k_noise, flat_old.shape, jnp.float64)

    def policy(flat):
      mean, log_std = actor.apply(unravel(flat), obs)
      return distrax.MultivariateNormalDiag(mean, jnp.exp(log_std))

    old = jax.tree.map(jax.lax.stop_gradient, policy(flat_old))
    kl = lambda flat: old.kl_divergence(policy(flat)).mean()
    g = jax.random.normal(k_g, flat_old.shape, jnp.float64)
    yield kl, flat_old, g, unravel
  finally:
    jax.config.update("jax_enable_x64", False)


def test_fisher_vector_product_is_the_dense_fisher_times_the_vector(problem):
  kl, flat_old, g, _ = problem
  fisher = np.asarray(jax.jit(jax.hessian(kl))(flat_old))
  assert np.allclose(fisher, fisher.T) and np.linalg.eigvalsh(fisher).min() > -1e-10
  for damping in (0.0, DAMPING):
    product = fisher_vector_product(kl, flat_old, damping)(g)
    np.testing.assert_allclose(np.asarray(product), (fisher + damping * np.eye(len(g))) @ g,
                               rtol=1e-9, atol=1e-12)


def test_fisher_vector_product_on_parameter_pytrees(problem):
  """The agents call it on the params pytree: the same numbers as on the flat vector."""
  kl, flat_old, g, unravel = problem
  tree_kl = lambda params: kl(ravel_pytree(params)[0])
  product = fisher_vector_product(tree_kl, unravel(flat_old), DAMPING)(unravel(g))
  np.testing.assert_allclose(np.asarray(ravel_pytree(product)[0]),
                             np.asarray(fisher_vector_product(kl, flat_old, DAMPING)(g)), rtol=1e-12)


def test_conjugate_gradient_matches_a_dense_solve(problem):
  kl, flat_old, g, _ = problem
  matrix = np.asarray(jax.jit(jax.hessian(kl))(flat_old)) + DAMPING * np.eye(len(g))
  dense = np.linalg.solve(matrix, np.asarray(g))
  fvp = fisher_vector_product(kl, flat_old, DAMPING)
  x = np.asarray(jax.jit(conjugate_gradient, static_argnums=(0, 2))(fvp, g, len(g)))
  residual = np.linalg.norm(matrix @ x - np.asarray(g)) / np.linalg.norm(np.asarray(g))
  assert residual < 1e-6, residual
  np.testing.assert_allclose(x, dense, rtol=1e-6, atol=1e-8 * np.abs(dense).max())
  # With few iterations (as the agents run it) CG is an approximation that still improves on
  # the zero start, and it vmaps: each of three right-hand sides alone gives the same answer.
  few = lambda b: conjugate_gradient(fvp, b, 10)
  rhs = jnp.stack([g, 2.0 * g[::-1], -g])
  batched = np.asarray(jax.jit(jax.vmap(few))(rhs))
  for b, x_b in zip(rhs, batched):
    np.testing.assert_allclose(x_b, np.asarray(few(b)), rtol=1e-9, atol=1e-12)
    assert np.linalg.norm(matrix @ x_b - np.asarray(b)) < 0.5 * np.linalg.norm(np.asarray(b))


def test_conjugate_gradient_is_exact_in_the_scale_of_b():
  """CG is linear in b, and scaling b by a power of two is exact: in float32 the answer for a
  gradient of ~1e-20 is the same numbers scaled (plain CG loses x there: r.r underflows; a
  residual that collapsed below float32's range gave trpo-lag an infinite step on ``function``).
  b = 0 gives x = 0. The matrix: damping plus a rank-6 Fisher-like term."""
  k_basis, k_b = jax.random.split(jax.random.PRNGKey(0))
  basis = jnp.linalg.qr(jax.random.normal(k_basis, (200, 6), jnp.float32))[0]
  spectrum = jnp.arange(1.0, 7.0, dtype=jnp.float32)
  matvec = lambda v: DAMPING * v + basis @ (spectrum * (basis.T @ v))
  b = jax.random.normal(k_b, (200,), jnp.float32)
  solve = jax.jit(conjugate_gradient, static_argnums=(0, 2))
  reference = np.asarray(solve(matvec, b, 15))
  assert reference.dtype == np.float32 and np.isfinite(reference).all()
  for exponent in (-40, -70):
    scaled = np.asarray(solve(matvec, b * 2.0 ** exponent, 15)) * 2.0 ** -exponent
    np.testing.assert_array_equal(scaled, reference)
  np.testing.assert_array_equal(np.asarray(solve(matvec, jnp.zeros_like(b), 15)), 0.0)


def test_backtracking_line_search_takes_the_first_accepted_fraction():
  params = {"w": jnp.zeros(2)}
  step = {"w": jnp.array([1.0, 0.0])}

  def search(radius):
    accept = lambda p: jnp.linalg.norm(p["w"]) <= radius
    return backtracking_line_search(params, step, accept, max_backtracks=5, decay=0.5)

  new, fraction = search(1.0)  # the full step passes
  assert float(fraction) == 1.0 and np.allclose(new["w"], [1.0, 0.0])
  new, fraction = search(0.3)  # 1 and 0.5 fail, 0.25 passes
  assert float(fraction) == 0.25 and np.allclose(new["w"], [0.25, 0.0])
  new, fraction = search(0.01)  # 0.5^4 = 0.0625 is the last candidate: none passes
  assert float(fraction) == 0.0 and np.allclose(new["w"], 0.0)
  # Under vmap each member stops at its own k.
  new, fraction = jax.jit(jax.vmap(search))(jnp.array([1.0, 0.3, 0.01]))
  np.testing.assert_allclose(np.asarray(fraction), [1.0, 0.25, 0.0])
  np.testing.assert_allclose(np.asarray(new["w"][:, 0]), [1.0, 0.25, 0.0])


def test_backtracking_line_search_keeps_params_when_a_rejected_step_is_not_finite():
  """A step with an infinity (CPO's binding case when g and b are parallel) that no candidate
  passes leaves the parameters as they were: not params + 0 * inf = NaN."""
  params = {"w": jnp.array([0.5, -1.0])}
  step = {"w": jnp.array([jnp.inf, 1.0])}
  new, fraction = backtracking_line_search(params, step, lambda p: jnp.all(jnp.isfinite(p["w"])),
                                           max_backtracks=3)
  assert float(fraction) == 0.0
  np.testing.assert_array_equal(np.asarray(new["w"]), [0.5, -1.0])
