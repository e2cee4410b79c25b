"""Advantages and value targets: GAE (Schulman et al. 2016) and finite-horizon TD(lambda) (CGPO Eq. 67)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def gae(rewards: jax.Array, values: jax.Array, next_values: jax.Array, terminations: jax.Array,
        dones: jax.Array, gamma: float, lam: float) -> tuple[jax.Array, jax.Array]:
  """Generalised advantage estimation over a rollout of shape [T, ...].

  delta_t = r_t + gamma (1 - term_t) V(s_{t+1}) - V(s_t)
  A_t     = delta_t + gamma lam (1 - done_t) A_{t+1}

  ``next_values`` is V of the observation the step ended in (the final observation of a
  truncated episode, not the reset one), so truncation bootstraps and termination does not;
  ``dones`` (termination or truncation) cuts the recursion at episode boundaries.

  Returns:
    ``(advantages, targets)`` with targets = advantages + values (the TD(lambda) returns).
  """
  deltas = rewards + gamma * (1.0 - terminations) * next_values - values

  def backward(carry, x):
    delta, done = x
    adv = delta + gamma * lam * (1.0 - done) * carry
    return adv, adv

  _, adv = jax.lax.scan(backward, jnp.zeros_like(deltas[-1]), (deltas, dones), reverse=True)
  return adv, adv + values


def td_lambda_targets(rewards: jax.Array, next_values: jax.Array, terminal: jax.Array,
                      window: int, lam: float | jax.Array) -> jax.Array:
  """Finite-horizon TD(lambda) targets truncated at window ends (CGPO Eq. 66-67), [T, N].

  ``next_values[t]`` is V(s_{t+1}, t+1) (zero at t = T - 1, since V(s_T, T) = 0); ``terminal[t]``
  stops bootstrapping after a terminal step. Undiscounted, as the paper's finite-horizon values:

      G_t = r_t + (1 - terminal_t) V(s_{t+1})                        at a window's last step,
      G_t = r_t + (1 - terminal_t) [(1 - lam) V(s_{t+1}) + lam G_{t+1}]        otherwise,

  which equals Eq. 67's weighted sum of n-step returns up to the window end.
  """
  horizon = rewards.shape[0]
  last_in_window = (jnp.arange(1, horizon + 1) % window == 0) | (jnp.arange(1, horizon + 1) == horizon)

  def backward(g_next, inputs):
    r, v_next, term, last = inputs
    cont = jnp.where(last, v_next, (1.0 - lam) * v_next + lam * g_next)
    g = r + (1.0 - term) * cont
    return g, g

  _, targets = jax.lax.scan(backward, jnp.zeros_like(rewards[0]),
                            (rewards, next_values, terminal, last_in_window), reverse=True)
  return targets
