"""CVPO's E-step: weights over K sampled actions per state from a convex dual (Liu et al.,
"Constrained Variational Policy Optimization for Safe Reinforcement Learning", ICML 2022,
Sec. 3.2, Theorem 1-2, App. A.2-A.3).

For B states with K actions each sampled from the old policy pi_i, and critic values Q_r, Q_c
[B, K], the E-step asks for the non-parametric q(.|s) that maximises E_q[Q_r] subject to
E_q[Q_c] <= eps_1 (the cost threshold) and KL(q || pi_i) <= eps_2 (the trust region), averaged over
the batch (Eq. 7). Its solution (Eq. 8) re-weights the samples,

    q*(a_k | s_b) = softmax_k( (Q_r - lambda* Q_c)[b, k] / eta* ),

where (eta*, lambda*) minimise the dual (Eq. 9, with the expectation over pi_i estimated by the K
samples)

    g(eta, lambda) = lambda eps_1 + eta eps_2 + eta mean_b log mean_k exp((Q_r - lambda Q_c) / eta),

convex on eta > 0, lambda >= 0 (Theorem 2). Its gradient is

    dg/dlambda = eps_1 - mean_b E_w[Q_c],     dg/deta = eps_2 + mean_b (L_b - E_w[Q_r - lambda Q_c] / eta),

with w the weights above and L_b the log-mean-exp: lambda rises while the re-weighted cost is above
eps_1, and eta falls while the weights' KL to the uniform weights (i.e. to pi_i) is below eps_2.

Method (``solve``): projected Newton in (eta, lambda) on the box [ETA_MIN, ETA_MAX] x [0,
LAMBDA_MAX], a fixed number of iterations (``iterations``, default 30), so that it jits, vmaps and
costs the same on every batch. Each iteration computes the exact 2x2 Hessian (``jax.hessian``),
drops the coordinates that sit on a bound with the gradient pushing outwards (Bertsekas' projected
Newton), and evaluates the dual at a grid of step lengths along the Newton direction and along the
projected negative gradient; it moves to the best candidate if that lowers the dual. Every accepted
step lowers g, so the answer is never worse than the start, and the gradient fallback keeps
progress where the Hessian is singular (Q_c constant over the actions makes the dual linear in
lambda; Q_r proportional to Q_c makes it flat along a ray). ``init`` warm-starts the solver from
the previous batch's answer, as the authors' implementation does.

Infeasible batches (Remark 4: no q within KL eps_2 of pi_i meets eps_1) have dg/dlambda < 0
everywhere, so lambda runs to LAMBDA_MAX and the weights put almost all mass on each state's
least-cost actions within the trust region: finite, never NaN (``Solution.feasible`` reports it).
The bounds are those of the authors' SLSQP call, (1e-6, 1e5) for both variables (docs/algorithms.md).
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
from flax import struct

ETA_MIN, ETA_MAX = 1e-6, 1e5
LAMBDA_MAX = 1e5
#: step lengths tried along each direction per iteration: 2^1, 2^-1, ..., 2^-23 (Newton) and, for
#: the gradient, the same relative to |x| / |grad| so that scale does not matter. Every other power
#: of 2 (13, not 26): the grid is most of the solver's time, and the scipy comparison holds.
_STEPS = 2.0 ** jnp.arange(1, -25, -2)


@struct.dataclass
class Solution:
  eta: jax.Array            # temperature eta* of Eq. 8
  lam: jax.Array            # cost multiplier lambda* of Eq. 8
  weights: jax.Array        # q*(a_k | s_b) [B, K], each row sums to 1
  dual: jax.Array           # g(eta*, lambda*)
  feasible: jax.Array       # whether lambda* is below its bound (Remark 4's case when False)
  projected_gradient: jax.Array  # |projected grad g| at the answer (0 at the optimum)


def dual(eta, lam, q_reward, q_cost, cost_threshold, kl_bound):
  """g(eta, lambda) of Eq. 9 with pi_i's expectation estimated by the K samples per state.

  Evaluated in the equal form eta eps_2 + eta mean_b log mean_k exp((Q~_r - lambda Q~_c) / eta)
  + mean(Q_r), with Q~_r = Q_r - mean_k Q_r per state and Q~_c = Q_c - eps_1: where the cost
  constraint binds, lambda eps_1 and the lambda Q_c inside the log cancel, and in float32 that
  cancellation alone left the minimiser 0.5% off (B = 256, K = 64)."""
  reward_mean = jnp.mean(q_reward, axis=-1, keepdims=True)
  logits = ((q_reward - reward_mean) - lam * (q_cost - cost_threshold)) / eta
  log_mean_exp = jax.nn.logsumexp(logits, axis=-1) - jnp.log(logits.shape[-1])
  return eta * kl_bound + eta * jnp.mean(log_mean_exp) + jnp.mean(reward_mean)


def weights(eta, lam, q_reward, q_cost):
  """q* of Eq. 8: per state, softmax over the K sampled actions (pi_i's density cancels because the
  actions were drawn from it)."""
  return jax.nn.softmax((q_reward - lam * q_cost) / eta, axis=-1)


def _derivatives(eta, lam, q_reward, q_cost, cost_threshold, kl_bound):
  """Gradient and Hessian of Eq. 9 in (eta, lambda), in closed form from the weights w (autodiff
  of the log-sum-exp loses dg/deta to cancellation once eta is small against Q's spread):

      dg/deta = eps_2 - mean_b KL(w_b || uniform),     dg/dlambda = eps_1 - mean_b E_w[Q_c],
      H = mean_b [[Var_w(z), Cov_w(z, Q_c)], [Cov_w(z, Q_c), Var_w(Q_c)]] / eta,   z = (Q_r - lambda Q_c) / eta.
  """
  z = (q_reward - lam * q_cost) / eta
  log_w = jax.nn.log_softmax(z, axis=-1)
  w = jnp.exp(log_w)
  kl_to_uniform = jnp.sum(w * log_w, axis=-1) + jnp.log(z.shape[-1])
  mean = lambda x: jnp.sum(w * x, axis=-1, keepdims=True)
  z_c, cost_c = z - mean(z), q_cost - mean(q_cost)
  cov = lambda a, b: jnp.mean(jnp.sum(w * a * b, axis=-1))
  grad = jnp.stack([kl_bound - jnp.mean(kl_to_uniform), cost_threshold - jnp.mean(mean(q_cost))])
  hess = jnp.stack([jnp.stack([cov(z_c, z_c), cov(z_c, cost_c)]),
                    jnp.stack([cov(z_c, cost_c), cov(cost_c, cost_c)])]) / eta
  return grad.astype(z.dtype), hess.astype(z.dtype)


def solve(q_reward: jax.Array, q_cost: jax.Array, cost_threshold, kl_bound,
          init: tuple[jax.Array, jax.Array] | None = None, iterations: int = 30) -> Solution:
  """Minimises Eq. 9 over eta in [ETA_MIN, ETA_MAX], lambda in [0, LAMBDA_MAX] (module docstring).

  Args:
    q_reward, q_cost: critic values [B, K] of K actions sampled from the old policy per state.
    cost_threshold: eps_1, the bound on the re-weighted Q_c (the per-step-discounted cost limit).
    kl_bound: eps_2 > 0, the E-step's KL trust region.
    init: (eta, lambda) to start from (the previous batch's answer); default (1, 0) scaled to the
      spread of Q_r so that the first Newton steps are well conditioned.
    iterations: Newton iterations (fixed, for jit).
  """
  chex.assert_rank(q_reward, 2)
  chex.assert_equal_shape([q_reward, q_cost])
  dtype = jnp.result_type(q_reward.dtype, jnp.float32)
  q_reward, q_cost = q_reward.astype(dtype), q_cost.astype(dtype)
  lower = jnp.asarray([ETA_MIN, 0.0], dtype)
  upper = jnp.asarray([ETA_MAX, LAMBDA_MAX], dtype)
  objective = lambda x: dual(x[0], x[1], q_reward, q_cost, cost_threshold, kl_bound)
  if init is None:
    spread = jnp.mean(jnp.std(q_reward, axis=-1))
    x = jnp.stack([jnp.maximum(spread, 1.0), 0.0]).astype(dtype)
  else:
    x = jnp.stack(init).astype(dtype)
  x = jnp.clip(x, lower, upper)
  steps = _STEPS.astype(dtype)

  def free_mask(x, grad):
    at_lower = (x <= lower) & (grad > 0)
    at_upper = (x >= upper) & (grad < 0)
    return ~(at_lower | at_upper)

  def newton_iteration(x, _):
    value = objective(x)
    grad, hess = _derivatives(x[0], x[1], q_reward, q_cost, cost_threshold, kl_bound)
    free = free_mask(x, grad)
    # Newton on the free coordinates only (identity on the fixed ones), with a small damping
    # relative to the Hessian's scale where it is singular.
    both = free[:, None] & free[None, :]
    reduced = jnp.where(both, hess, jnp.eye(2, dtype=dtype))
    reduced = reduced + 1e-10 * (jnp.trace(jnp.abs(reduced)) + 1e-30) * jnp.eye(2, dtype=dtype)
    g_free = jnp.where(free, grad, 0.0)
    newton = -jnp.linalg.solve(reduced, g_free)
    newton = jnp.where(jnp.all(jnp.isfinite(newton)) & (newton @ g_free < 0), newton, -g_free)
    gradient = -g_free * (jnp.linalg.norm(x) + 1.0) / (jnp.linalg.norm(g_free) + 1e-30)
    candidates = jnp.concatenate([x + steps[:, None] * newton, x + steps[:, None] * gradient])
    candidates = jnp.clip(candidates, lower, upper)
    values = jax.vmap(objective)(candidates)
    values = jnp.where(jnp.isfinite(values), values, jnp.inf)
    best = jnp.argmin(values)
    x = jnp.where(values[best] < value, candidates[best], x)
    return x, None

  x, _ = jax.lax.scan(newton_iteration, x, None, length=iterations)
  grad, _ = _derivatives(x[0], x[1], q_reward, q_cost, cost_threshold, kl_bound)
  projected = jnp.where(free_mask(x, grad), grad, 0.0)
  eta, lam = x[0], x[1]
  return Solution(eta=eta, lam=lam, weights=weights(eta, lam, q_reward, q_cost),
                  dual=objective(x), feasible=lam < LAMBDA_MAX,
                  projected_gradient=jnp.linalg.norm(projected))
