"""Advantage estimation: GAE (Schulman et al. 2016) for reward and cost alike."""

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
