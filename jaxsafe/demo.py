"""``make demo``: train PPO-Lag on cartpole-position (2 seeds, one program), then plot it.

Cart-pole with the position constraint of the CGPO paper (App. E.1): reward 1 per step while the
pole stays up, cost -x_cart^2, limit b = -50 over T = 300 steps, so the cart must keep away from
the origin while balancing. The budget is small enough to finish in a few minutes on 2 CPU cores;
pass ``--total-steps`` for a longer run.
"""

from __future__ import annotations

import argparse
import os
import time

from jaxsafe import train
from jaxsafe.train.plotting import plot_runs


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--total-steps", type=int, default=400_000)
  parser.add_argument("--run-dir", default=None)
  args = parser.parse_args()
  run_dir = args.run_dir or os.path.join("runs", time.strftime("demo_%Y%m%d-%H%M%S"))
  spec = train.RunSpec("ppo-lag", "cartpole-position", seeds=2, total_steps=args.total_steps,
                       overrides={"num_envs": 32, "rollout_length": 250, "num_minibatches": 8})
  print(f"Training ppo-lag on cartpole-position: 2 seeds x {args.total_steps:,} env steps "
        f"(one compiled program) into {run_dir}")
  t0 = time.perf_counter()
  summary = train.run(spec, run_dir)
  for r in summary["runs"]:
    print(f"  seed {r['seed']}: episode return {r['final_episode_return']:.1f} (max 300), "
          f"episode cost {r['final_episode_cost']:.1f} (limit {r['cost_limit']:g})")
  png = plot_runs([run_dir], os.path.join(run_dir, "curves.png"))
  print(f"Done in {time.perf_counter() - t0:.0f} s "
        f"({summary['steps_per_second']:,.0f} env steps/s after {summary['compile_s']:.0f} s compile).")
  print(f"Plot: {os.path.abspath(png)}")
  print(f"Evaluate with: .venv/bin/jaxsafe eval {run_dir}")


if __name__ == "__main__":
  main()
