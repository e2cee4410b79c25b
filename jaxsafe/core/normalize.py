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


def update(stats: RunningStats, batch: jax.Array) -> RunningStats:
  """Merges a batch ``[..., size]`` into the statistics (Chan et al. 1979 parallel variance)."""
  batch = batch.reshape(-1, stats.mean.shape[-1])
  n = batch.shape[0]
  b_mean = batch.mean(0)
  b_var = batch.var(0)
  total = stats.count + n
  delta = b_mean - stats.mean
  mean = stats.mean + delta * n / total
  m2 = stats.var * stats.count + b_var * n + delta**2 * stats.count * n / total
  return RunningStats(mean=mean, var=m2 / total, count=total)


def normalize(stats: RunningStats, x: jax.Array, clip: float = 10.0, eps: float = 1e-8) -> jax.Array:
  """(x - mean) / sqrt(var + eps), clipped to [-clip, clip]."""
  return jnp.clip((x - stats.mean) / jnp.sqrt(stats.var + eps), -clip, clip)
