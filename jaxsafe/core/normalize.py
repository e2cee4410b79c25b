"""Running observation normalisation (parallel Welford / Chan et al. update)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class RunningStats:
  """Mean and variance of everything seen so far, with the count of samples."""

  mean: jax.Array
  var: jax.Array
  count: jax.Array


def init(size: int) -> RunningStats:
  return RunningStats(mean=jnp.zeros(size), var=jnp.ones(size), count=jnp.zeros(()))


def update(stats: RunningStats, batch: jax.Array, weights: jax.Array | None = None) -> RunningStats:
  """Merges a batch ``[..., size]`` into the statistics (Chan et al. 1979 parallel variance).

  ``weights`` (shape ``batch.shape[:-1]``, 0 or 1) leaves out rows, e.g. the steps after an
  episode terminated; a batch with no weight leaves the statistics unchanged.
  """
  batch = batch.reshape(-1, stats.mean.shape[-1])
  if weights is None:
    n = batch.shape[0]
    b_mean = batch.mean(0)
    b_var = batch.var(0)
  else:
    w = weights.reshape(-1, 1).astype(batch.dtype)
    n = w.sum()
    safe_n = jnp.maximum(n, 1.0)
    b_mean = (w * batch).sum(0) / safe_n
    b_var = (w * jnp.square(batch - b_mean)).sum(0) / safe_n
  total = stats.count + n
  safe_total = jnp.maximum(total, 1.0)
  delta = b_mean - stats.mean
  mean = stats.mean + delta * n / safe_total
  m2 = stats.var * stats.count + b_var * n + delta**2 * stats.count * n / safe_total
  return RunningStats(mean=mean, var=jnp.where(total > 0, m2 / safe_total, stats.var), count=total)


def normalize(stats: RunningStats, x: jax.Array, clip: float = 10.0, eps: float = 1e-8) -> jax.Array:
  """(x - mean) / sqrt(var + eps), clipped to [-clip, clip]."""
  return jnp.clip((x - stats.mean) / jnp.sqrt(stats.var + eps), -clip, clip)
