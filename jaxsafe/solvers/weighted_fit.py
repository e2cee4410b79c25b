"""CVPO's M-step: a Gaussian policy fitted to weighted action samples under decoupled KL bounds
(Liu et al., "Constrained Variational Policy Optimization for Safe Reinforcement Learning",
ICML 2022, App. B.1, Eq. 53-58; the decoupling is MPO's, Abdolmaleki et al. 2018).

Given B states, K raw (pre-squash) actions per state sampled from the old policy pi_i and the
E-step's weights q*(a_k | s_b) (``solvers.action_weights``), the M-step maximises the Lagrangian of
Eq. 54,

    L(theta, beta_mu, beta_Sigma) = E_s sum_k q*_k [log N(a_k; mu_theta, Sigma_i) + log N(a_k; mu_i, Sigma_theta)]
                                    + beta_mu (eps_mu - C_mu) + beta_Sigma (eps_Sigma - C_Sigma),

over theta and minimises it over beta >= 0, by alternating one step of each (Eq. 56-58; Eq. 58 as
printed descends on L, a sign slip: theta ascends). The log-likelihood is split as in MPO, so the
mean is fitted with the old covariance and the covariance with the old mean, and each KL term is
charged to its own part (Eq. 53, diagonal Gaussians):

    C_mu    = E_s 1/2 sum_d (mu - mu_i)^2 / sigma_i^2,
    C_Sigma = E_s 1/2 sum_d (sigma_i^2 / sigma^2 - 1 + ln(sigma^2 / sigma_i^2)),

which sum to E_s KL(pi_i || pi_theta) when only one of mean and covariance moves. The pre-squash
Gaussian is the one fitted: a tanh squashing is a fixed bijection, so its Jacobian does not depend
on theta and the KL between squashed policies equals the KL between their Gaussians.

The duals take Eq. 56-57's plain gradient steps, clipped to [0, max] as in the authors' code, and
persist from one M-step to the next. Alternating single steps do not keep the KLs within their
bounds inside one M-step (measured: 0.2-2x the bound after 30 steps, with the fit sometimes lower),
so the step ends with a backtracking line search along theta - theta_i (as TRPO's): the longest of
1, 0.8, 0.8^2, ... whose C_mu and C_Sigma are within eps_mu and eps_Sigma and whose fit is not
below pi_i's, or no step (docs/algorithms.md, "CVPO").
"""

from __future__ import annotations

from collections.abc import Callable

import chex
import jax
import jax.numpy as jnp
import optax
from flax import struct

_LOG_2PI = jnp.log(2.0 * jnp.pi)


#: step lengths of the final line search along theta - theta_i
_LINE_SEARCH = 0.8 ** jnp.arange(20)


@struct.dataclass
class KLDuals:
  mean: jax.Array  # beta_mu
  cov: jax.Array   # beta_Sigma


def init_duals() -> KLDuals:
  """beta_mu = beta_Sigma = 0, as the authors' code starts them."""
  return KLDuals(jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32))


def decoupled_kl(old_mean, old_log_std, mean, log_std):
  """(C_mu, C_Sigma) of Eq. 53 for diagonal Gaussians [B, A], averaged over the states."""
  old_var, var = jnp.exp(2.0 * old_log_std), jnp.exp(2.0 * log_std)
  c_mean = 0.5 * jnp.sum(jnp.square(mean - old_mean) / old_var, axis=-1)
  c_cov = 0.5 * jnp.sum(old_var / var - 1.0 + 2.0 * (log_std - old_log_std), axis=-1)
  return jnp.mean(c_mean), jnp.mean(c_cov)


def _log_normal(x, mean, log_std):
  return jnp.sum(-0.5 * jnp.square((x - mean) / jnp.exp(log_std)) - log_std - 0.5 * _LOG_2PI,
                 axis=-1)


def weighted_log_likelihood(mean, log_std, raw_actions, weights, old_mean=None, old_log_std=None):
  """E_s sum_k q*_k log pi(a_k | s) for means, log-stds [B, A], actions [B, K, A], weights [B, K].

  With ``old_mean`` and ``old_log_std`` it is Eq. 54's decoupled form: the mean's term with the
  old std plus the std's term with the old mean."""
  mean, log_std = mean[:, None], log_std[:, None]
  if old_mean is None:
    return jnp.mean(jnp.sum(weights * _log_normal(raw_actions, mean, log_std), axis=-1))
  old_mean, old_log_std = old_mean[:, None], old_log_std[:, None]
  log_prob = (_log_normal(raw_actions, mean, old_log_std)
              + _log_normal(raw_actions, old_mean, log_std))
  return jnp.mean(jnp.sum(weights * log_prob, axis=-1))


def m_step(policy: Callable, params, opt_state, tx: optax.GradientTransformation, duals: KLDuals,
           obs, raw_actions, weights, hp, iterations: int):
  """``iterations`` alternating steps of Eq. 58 (theta, ascending) and Eq. 56-57 (the duals), then
  the line search that makes the bounds hold (module docstring).

  Args:
    policy: ``policy(params, obs) -> (mean, log_std)`` of the pre-squash Gaussian [B, A].
    params, opt_state, tx: the policy's parameters and optimiser.
    duals: ``KLDuals`` carried over from the last M-step.
    obs [B, ...], raw_actions [B, K, A], weights [B, K]: the E-step's batch and q*.
    hp: has ``kl_mean_bound``, ``kl_cov_bound`` (eps_mu, eps_Sigma), ``mean_dual_lr``,
      ``cov_dual_lr`` (alpha_mu, alpha_Sigma) and ``mean_dual_max``, ``cov_dual_max``.
  Returns (params, opt_state, duals, metrics): the KLs, the fit (weighted log-likelihood of the
  full policy) before and after, the line search's step length and the duals.
  """
  chex.assert_rank([raw_actions, weights], [3, 2])
  chex.assert_equal_shape_prefix([raw_actions, weights], 2)
  chex.assert_equal_shape_prefix([obs, raw_actions], 1)
  old_params = params
  old_mean, old_log_std = jax.lax.stop_gradient(policy(params, obs))

  def lagrangian(theta, duals):
    mean, log_std = policy(theta, obs)
    fit = weighted_log_likelihood(mean, log_std, raw_actions, weights, old_mean, old_log_std)
    c_mean, c_cov = decoupled_kl(old_mean, old_log_std, mean, log_std)
    value = (fit + duals.mean * (hp.kl_mean_bound - c_mean)
             + duals.cov * (hp.kl_cov_bound - c_cov))
    return value, (c_mean, c_cov)

  def one_iteration(carry, _):
    params, opt_state, duals = carry
    grads, (c_mean, c_cov) = jax.grad(lagrangian, has_aux=True)(params, duals)
    updates, opt_state = tx.update(jax.tree_util.tree_map(jnp.negative, grads), opt_state, params)
    params = optax.apply_updates(params, updates)
    duals = KLDuals(  # Eq. 56-57: beta <- beta - alpha (eps - C), kept in [0, max]
      jnp.clip(duals.mean - hp.mean_dual_lr * (hp.kl_mean_bound - c_mean), 0.0, hp.mean_dual_max),
      jnp.clip(duals.cov - hp.cov_dual_lr * (hp.kl_cov_bound - c_cov), 0.0, hp.cov_dual_max))
    return (params, opt_state, duals), None

  (params, opt_state, duals), _ = jax.lax.scan(one_iteration, (params, opt_state, duals), None,
                                               length=iterations)

  def evaluate(t):
    theta = jax.tree_util.tree_map(lambda new, old: old + t * (new - old), params, old_params)
    mean, log_std = policy(theta, obs)
    c_mean, c_cov = decoupled_kl(old_mean, old_log_std, mean, log_std)
    return c_mean, c_cov, weighted_log_likelihood(mean, log_std, raw_actions, weights)

  fit_before = weighted_log_likelihood(old_mean, old_log_std, raw_actions, weights)
  c_mean, c_cov, fit = jax.vmap(evaluate)(_LINE_SEARCH)
  ok = (c_mean <= hp.kl_mean_bound) & (c_cov <= hp.kl_cov_bound) & (fit >= fit_before)
  first = jnp.argmax(ok)  # the longest acceptable step (index 0 if none is: masked below)
  t = jnp.where(ok[first], _LINE_SEARCH[first], 0.0)
  params = jax.tree_util.tree_map(lambda new, old: old + t * (new - old), params, old_params)
  metrics = {"kl_mean": jnp.where(ok[first], c_mean[first], 0.0),
             "kl_cov": jnp.where(ok[first], c_cov[first], 0.0),
             "fit_before": fit_before, "fit_after": jnp.where(ok[first], fit[first], fit_before),
             "step_length": t, "beta_mean": duals.mean, "beta_cov": duals.cov}
  return params, opt_state, duals, metrics
