"""The metrics every agent reports, and the finite-parameter check the runner stops on.

Every ``update`` returns these names (the runner's progress bar, ``progress.csv``, the summary
and the learning tests read them); algorithm-specific metrics are prefixed ``"<agent>/"``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

#: the flag metric every agent reports (1 good, 0 bad), and what a 0 means.
STANDARD_FLAGS = {"params_finite": "the parameters are not finite"}


def all_finite(tree: Any) -> jax.Array:
  """1.0 when every leaf of ``tree`` is finite, else 0.0 (a flag metric: the runner stops on 0)."""
  leaves = jax.tree_util.tree_leaves(tree)
  return jnp.all(jnp.stack([jnp.isfinite(x).all() for x in leaves])).astype(jnp.float32)


def standard(iteration: jax.Array, steps_per_update: int, episode_return: jax.Array,
             episode_cost: jax.Array, episodes: jax.Array, cost_limit: jax.Array,
             params: Any) -> dict[str, jax.Array]:
  """The shared metrics after update number ``iteration`` (counted from 1)."""
  return {"iteration": iteration,
          "env_steps": iteration * steps_per_update,
          "episode_return": episode_return,
          "episode_cost": episode_cost,
          "episodes": jnp.asarray(episodes, jnp.float32),
          "cost_limit": cost_limit,
          "params_finite": all_finite(params)}


def prefixed(name: str, metrics: dict[str, jax.Array]) -> dict[str, jax.Array]:
  """``metrics`` with every key prefixed by ``"<name>/"``."""
  return {f"{name}/{k}": v for k, v in metrics.items()}
