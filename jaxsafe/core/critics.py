"""Critic regression with its own optimiser: epochs of minibatch SGD on weighted squared errors.

Used by the first-order agents' time-conditioned critics (CGPO Eq. 66-68) and meant for every
critic trained apart from the policy (the off-policy agents' Q-functions).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxsafe.core import minibatch


def weighted_mse(prediction: jax.Array, target: jax.Array, weight: jax.Array) -> jax.Array:
  """sum w (prediction - target)^2 / max(sum w, 1)."""
  return (weight * (prediction - target) ** 2).sum() / jnp.maximum(weight.sum(), 1.0)


def regress(predict: Callable[[Any, dict], jax.Array], critics: dict, opt_state: optax.OptState,
            tx: optax.GradientTransformation, data: dict, targets: dict, key: jax.Array,
            epochs: int, minibatches: int):
  """Fits every critic ``critics[name]`` to ``targets[name]`` by minibatch SGD.

  ``predict(params, batch)`` is a critic's prediction on a minibatch of ``data`` (a dict of
  [B, ...] arrays with a ``"weight"`` entry); the loss is the sum over critics of their weighted
  squared errors, one optimiser step on all of them per minibatch. Returns the new critics,
  optimiser state, and each critic's loss averaged over the last epoch's minibatches.
  """
  batches = {**data, **{f"target/{k}": v for k, v in targets.items()}}

  def loss_fn(critics, batch):
    losses = {k: weighted_mse(predict(critics[k], batch), batch[f"target/{k}"], batch["weight"])
              for k in critics}
    return sum(losses.values()), losses

  def sgd_step(carry, batch):
    critics, opt_state = carry
    (_, losses), grads = jax.value_and_grad(loss_fn, has_aux=True)(critics, batch)
    updates, opt_state = tx.update(grads, opt_state, critics)
    return (optax.apply_updates(critics, updates), opt_state), losses

  (critics, opt_state), losses = minibatch.epochs(sgd_step, (critics, opt_state), batches, key,
                                                  epochs, minibatches)
  return critics, opt_state, jax.tree_util.tree_map(lambda x: x[-1].mean(), losses)
