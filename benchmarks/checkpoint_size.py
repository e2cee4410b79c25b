"""Time of one ``Checkpointer.save`` and ``restore`` of a state holding a replay buffer of
1,000,000 transitions (obs and next_obs [1e6, 30], action [1e6, 8], reward, cost and done [1e6],
float32: 280 MB), as the runner writes it after a chunk; it sizes ``RunSpec.checkpoint_every``.

  python benchmarks/checkpoint_size.py [--transitions 1000000] [--repeats 3] [--dir DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxsafe.train.checkpoints import Checkpointer


def _buffer(n: int, key) -> dict:
  """Random (incompressible) float32 transitions, on the device like a real agent state."""
  k = jax.random.split(key, 6)
  shapes = {"obs": (n, 30), "next_obs": (n, 30), "action": (n, 8), "reward": (n,),
            "cost": (n,), "done": (n,)}
  return {name: jax.random.normal(k[i], shape) for i, (name, shape) in enumerate(shapes.items())}


def _du(path: str) -> int:
  return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--transitions", type=int, default=1_000_000)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--dir", help="where to write (default a temporary directory)")
  args = parser.parse_args()
  state = {"buffer": _buffer(args.transitions, jax.random.PRNGKey(0)),
           "step": jnp.int32(0), "key": jax.random.PRNGKey(1)}
  jax.block_until_ready(state)
  mb = sum(x.nbytes for x in jax.tree_util.tree_leaves(state)) / 1e6
  like = jax.tree_util.tree_map(jnp.zeros_like, state)
  saves, restores = [], []
  with tempfile.TemporaryDirectory(dir=args.dir, prefix="ckpt-bench-") as run_dir:
    ckpt = Checkpointer(run_dir)  # max_to_keep=2 as in the runner: later saves also delete one
    for step in range(1, args.repeats + 1):
      t0 = time.perf_counter()
      ckpt.save(step, state)
      saves.append(time.perf_counter() - t0)
      t0 = time.perf_counter()  # read back right after writing: likely from the page cache
      restored = jax.block_until_ready(ckpt.restore(step, like))
      restores.append(time.perf_counter() - t0)
    disk = _du(os.path.join(run_dir, "checkpoints", str(args.repeats))) / 1e6
    ckpt.close()
  for a, b in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(restored)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  print(f"state {mb:.0f} MB ({args.transitions:,} transitions), {disk:.0f} MB on disk; "
        f"{os.cpu_count()} CPUs, jax {jax.__version__} on {jax.devices()[0].platform}")
  for name, times in (("save", saves), ("restore", restores)):
    med = statistics.median(times)
    print(f"{name:<8} median {med:.2f} s ({mb / med:.0f} MB/s); min {min(times):.2f} s, "
          f"max {max(times):.2f} s over {len(times)}")


if __name__ == "__main__":
  main()
