"""Sensors of the navigation suite: the ego frame, Safety-Gym's pseudo-LiDAR and a compass."""

from __future__ import annotations

import jax
import jax.numpy as jnp

#: Bins of every pseudo-LiDAR (Safety-Gym's ``lidar_num_bins``).
LIDAR_BINS = 16
#: Exponential fall-off of the pseudo-LiDAR: a reading is exp(-LIDAR_GAIN * distance).
LIDAR_GAIN = 1.0
_EPS = 1e-12


def to_ego(points: jax.Array, pos: jax.Array, heading: jax.Array) -> jax.Array:
  """World points (..., 2) in the robot's frame: x along the heading, y to its left."""
  c, s = jnp.cos(heading), jnp.sin(heading)
  d = points - pos
  return jnp.stack([c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1]], axis=-1)


def safe_norm(x: jax.Array) -> jax.Array:
  """|x| over the last axis with a finite gradient at 0."""
  return jnp.sqrt(jnp.sum(x * x, axis=-1) + _EPS)


def pseudo_lidar(points: jax.Array, pos: jax.Array, heading: jax.Array,
                 max_dist: float | None = None) -> jax.Array:
  """Safety-Gym's pseudo-LiDAR (``lidar_type='pseudo'``, ``lidar_alias=True``) of k objects.

  Each object falls into the bin of its ego-frame bearing and gives the reading
  exp(-LIDAR_GAIN * distance), or with ``max_dist`` D the linear max(0, D - distance) / D
  (Safety-Gymnasium's default, D = 3); a bin keeps the largest reading of its objects. With aliasing an
  object also lights its two neighbour bins, in proportion to how close its bearing is to them,
  so the sensor is continuous in the bearing (and differentiable almost everywhere).

  Args:
    points: object positions (k, 2) in the world; k may be 0 (all readings 0).
  Returns:
    (LIDAR_BINS,) readings in [0, 1].
  """
  ego = to_ego(points, pos, heading)
  bearing = jnp.mod(jnp.arctan2(ego[:, 1], ego[:, 0]), 2 * jnp.pi)
  position = bearing / (2 * jnp.pi) * LIDAR_BINS
  index = jnp.clip(jnp.floor(jax.lax.stop_gradient(position)), 0, LIDAR_BINS - 1).astype(jnp.int32)
  alias = position - index                       # in [0, 1): how far into its bin the bearing is
  distance = safe_norm(ego)
  if max_dist is None:
    reading = jnp.exp(-LIDAR_GAIN * distance)
  else:
    reading = jax.nn.relu(max_dist - distance) / max_dist
  bins = jnp.arange(LIDAR_BINS)
  onehot = lambda i: (bins == jnp.mod(i, LIDAR_BINS)[:, None]).astype(reading.dtype)
  per_object = reading[:, None] * (onehot(index) + alias[:, None] * onehot(index + 1)
                                   + (1.0 - alias[:, None]) * onehot(index - 1))
  return jnp.max(per_object, axis=0, initial=0.0)


def compass(target: jax.Array, pos: jax.Array, heading: jax.Array) -> jax.Array:
  """Direction and nearness of a target: (cos, sin of its ego bearing, exp(-distance)), (3,)."""
  ego = to_ego(target, pos, heading)
  distance = safe_norm(ego)
  return jnp.concatenate([ego / distance, jnp.exp(-distance)[None]])
