"""A hyper-parameter sweep as one vmapped program versus one process per run.

Trains `ppo-lag` on `function` for 2 multiplier learning rates x 2 seeds, (a) as a single
`jaxsafe train ... --sweep multiplier_learning_rate=0.01,0.1 --seeds 2` and (b) as 4 separate
`jaxsafe train ... --set multiplier_learning_rate=V --seeds 1` processes run one after the other, each with
the same per-run budget. Wall times include process start, compile and training; results go to
stdout as a markdown table.

    .venv/bin/python benchmarks/sweep.py [--total-steps 100000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

JAXSAFE = os.path.join(os.path.dirname(sys.executable), "jaxsafe")


def _timed(args: list[str]) -> float:
  t0 = time.perf_counter()
  subprocess.run([JAXSAFE, *args, "--quiet"], check=True, stdout=subprocess.DEVNULL)
  return time.perf_counter() - t0


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--total-steps", type=int, default=100_000)
  args = parser.parse_args()
  steps = str(args.total_steps)
  with tempfile.TemporaryDirectory() as tmp:
    sweep = _timed(["train", "ppo-lag", "function", "--sweep", "multiplier_learning_rate=0.01,0.1",
                    "--seeds", "2", "--total-steps", steps, "--run-dir", f"{tmp}/sweep"])
    separate = [
        _timed(["train", "ppo-lag", "function", "--set", f"multiplier_learning_rate={lr}", "--seeds", "1",
                "--seed-offset", str(seed), "--total-steps", steps, "--run-dir", f"{tmp}/lr{lr}_seed{seed}"])
        for lr in ("0.01", "0.1") for seed in (0, 1)]
  print(f"| ppo-lag on function, {args.total_steps:,} env steps per run | wall time (s) |")
  print("|---|---|")
  print(f"| one program: `--sweep multiplier_learning_rate=0.01,0.1 --seeds 2` (4 runs) | {sweep:.1f} |")
  print(f"| 4 separate processes, one after the other | {sum(separate):.1f} "
        f"({', '.join(f'{s:.1f}' for s in separate)}) |")
  print(f"| speed-up | {sum(separate) / sweep:.2f}x |")


if __name__ == "__main__":
  main()
