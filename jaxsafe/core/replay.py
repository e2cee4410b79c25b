"""A fixed-capacity FIFO replay buffer as a pytree: pure ``add`` and ``sample``, jittable.

The buffer holds any pytree of arrays with a leading item axis. ``add`` writes a batch at the
insertion point, wrapping around and overwriting the oldest items once full; ``sample`` draws
uniformly among the items written so far.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class Buffer:
  data: Any  # pytree of [capacity, ...] arrays
  position: jax.Array  # next write index
  size: jax.Array  # items written, at most capacity

  @property
  def capacity(self) -> int:
    return jax.tree_util.tree_leaves(self.data)[0].shape[0]


def init(example: Any, capacity: int) -> Buffer:
  """An empty buffer for items shaped like ``example`` (one item, no leading axis)."""
  if capacity < 1:
    raise ValueError(f"capacity must be >= 1, got {capacity}")
  data = jax.tree_util.tree_map(lambda x: jnp.zeros((capacity,) + jnp.shape(x), jnp.result_type(x)),
                                example)
  return Buffer(data=data, position=jnp.zeros((), jnp.int32), size=jnp.zeros((), jnp.int32))


def add(buffer: Buffer, batch: Any) -> Buffer:
  """Appends ``batch`` (leading axis = items); the oldest items are overwritten when full."""
  n = jax.tree_util.tree_leaves(batch)[0].shape[0]
  capacity = buffer.capacity
  if n > capacity:  # only the newest `capacity` items can survive
    batch = jax.tree_util.tree_map(lambda x: x[n - capacity:], batch)
    n = capacity
  index = (buffer.position + jnp.arange(n)) % capacity
  data = jax.tree_util.tree_map(lambda d, x: d.at[index].set(x.astype(d.dtype)), buffer.data, batch)
  return Buffer(data=data, position=(buffer.position + n) % capacity,
                size=jnp.minimum(buffer.size + n, capacity))


def sample(buffer: Buffer, key: jax.Array, batch_size: int) -> Any:
  """``batch_size`` items drawn uniformly with replacement from the filled part."""
  index = jax.random.randint(key, (batch_size,), 0, jnp.maximum(buffer.size, 1))
  return jax.tree_util.tree_map(lambda d: d[index], buffer.data)
