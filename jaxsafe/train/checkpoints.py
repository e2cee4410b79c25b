"""Orbax checkpoints of the whole training state (all runs at once).

Orbax writes each step into a temporary directory and renames it when complete, so a crash
mid-save never leaves a half-written checkpoint that looks valid; ``latest_step`` only sees
finished ones.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpointer:
  """Saves and restores the stacked agent state under ``run_dir/checkpoints/<iteration>``."""

  def __init__(self, run_dir: str, max_to_keep: int = 2):
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                           enable_async_checkpointing=False)
    self._manager = ocp.CheckpointManager(os.path.abspath(os.path.join(run_dir, "checkpoints")),
                                          options=options)

  def save(self, iteration: int, state: Any) -> None:
    self._manager.save(iteration, args=ocp.args.StandardSave(state))
    self._manager.wait_until_finished()

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def restore(self, iteration: int, like: Any) -> Any:
    """Restores into the structure, shapes, dtypes and shardings of ``like``."""
    abstract = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
        like)
    return self._manager.restore(iteration, args=ocp.args.StandardRestore(abstract))

  def close(self) -> None:
    self._manager.close()
