"""Orbax checkpoints of the whole training state (all runs at once).

Orbax writes each step into a temporary directory and renames it when complete, so a crash
mid-save never leaves a half-written checkpoint that looks valid; ``latest_step`` only sees
finished ones.

Orbax refuses arrays with no elements (a navigation task without vases holds a (0, 2) array of
them), so such leaves are saved as a one-element placeholder and rebuilt from ``like`` (their
shape and dtype are all there is to them) on restore.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp


def _is_empty(x) -> bool:
  return getattr(x, "size", 1) == 0


def _fill_empty(tree: Any) -> Any:
  """Replaces every zero-size array by a one-element array of its dtype (Orbax can't save them)."""
  return jax.tree_util.tree_map(lambda x: jnp.zeros((1,), x.dtype) if _is_empty(x) else x, tree)


class Checkpointer:
  """Saves and restores the stacked agent state under ``run_dir/checkpoints/<iteration>``."""

  def __init__(self, run_dir: str, max_to_keep: int = 2):
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                           enable_async_checkpointing=False)
    self._manager = ocp.CheckpointManager(os.path.abspath(os.path.join(run_dir, "checkpoints")),
                                          options=options)

  def save(self, iteration: int, state: Any) -> None:
    self._manager.save(iteration, args=ocp.args.StandardSave(_fill_empty(state)))
    self._manager.wait_until_finished()

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def restore(self, iteration: int, like: Any) -> Any:
    """Restores into the structure, shapes, dtypes and shardings of ``like``."""
    abstract = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
        _fill_empty(like))
    restored = self._manager.restore(iteration, args=ocp.args.StandardRestore(abstract))
    return jax.tree_util.tree_map(lambda x, r: jnp.zeros(x.shape, x.dtype) if _is_empty(x) else r,
                                  like, restored)

  def close(self) -> None:
    self._manager.close()
