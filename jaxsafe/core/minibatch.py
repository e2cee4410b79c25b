"""Epochs of minibatch SGD over a batch: shuffle, split, scan (shared by every agent)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax


def epochs(step: Callable[[Any, Any], tuple[Any, Any]], carry: Any, data: Any, key: jax.Array,
           num_epochs: int, num_minibatches: int) -> tuple[Any, Any]:
  """Runs ``num_epochs`` passes of ``step(carry, minibatch) -> (carry, aux)`` over ``data``.

  Each pass draws a fresh permutation of the leading axis of every leaf of ``data`` (from
  ``jax.random.split(key, num_epochs)``) and splits it into ``num_minibatches`` equal minibatches.
  Returns the final carry and ``aux`` stacked as ``[num_epochs, num_minibatches, ...]``.
  """
  size = jax.tree_util.tree_leaves(data)[0].shape[0]
  if size % num_minibatches:
    raise ValueError(f"{size} items do not split into {num_minibatches} equal minibatches")

  def epoch(carry, k):
    perm = jax.random.permutation(k, size)
    shuffled = jax.tree_util.tree_map(
        lambda x: x[perm].reshape((num_minibatches, -1) + x.shape[1:]), data)
    return jax.lax.scan(step, carry, shuffled)

  return jax.lax.scan(epoch, carry, jax.random.split(key, num_epochs))
