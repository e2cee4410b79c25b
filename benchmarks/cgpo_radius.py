"""Adaptive versus fixed trust-region radius for CGPO on `function` (CGPO Fig. 7 / Fig. 14).

Two runs of the runner, each one vmapped program of 3 radii x ``--seeds`` seeds:
(a) adaptive: Eq. 18 with the Table-4 bounds [1e-4, 1e-2] (the paper's floor, not our default
    1e-5, to reproduce its figure), starting from each radius;
(b) fixed: beta_1 = beta_2 = 1, so the radius stays at its initial value.
For every run it reports, from ``progress.csv``, the last-10% mean episode cost, its mean
distance from the limit, and the App. F.2 metrics (``jaxsafe.train.paper_metrics``): Conv. Steps
(window of 10 logged iterations, return settled within 0.25) and Vio. Ratio (critical area
J_C > b - 0.5, violation J_C > b + 0.2), averaged over seeds.

    .venv/bin/python benchmarks/cgpo_radius.py                  # 100 iterations x 32 envs
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings

import numpy as np

warnings.filterwarnings("ignore")

RADII = [1e-4, 1e-3, 1e-2]


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--iterations", type=int, default=100)
  parser.add_argument("--num-envs", type=int, default=32)
  parser.add_argument("--seeds", type=int, default=3)
  args = parser.parse_args()
  from jaxsafe import train
  from jaxsafe.train.logger import read_progress
  from jaxsafe.train.paper_metrics import convergence_step, violation_ratio

  steps = args.iterations * args.num_envs * 100
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    for mode, extra in (("adaptive", {}), ("fixed", {"beta_1": 1.0, "beta_2": 1.0})):
      run_dir = os.path.join(tmp, mode)
      t0 = time.perf_counter()
      spec = train.RunSpec("cgpo", "function", seeds=args.seeds, total_steps=steps,
                           overrides={"num_envs": args.num_envs, "delta_lower": 1e-4, **extra},
                           sweep={"delta_init": RADII}, chunk_iters=args.iterations)
      train.run(spec, run_dir, progress=False)
      print(f"{mode}: {time.perf_counter() - t0:.0f} s for {len(RADII)} x {args.seeds} runs", flush=True)
      cols = read_progress(run_dir)
      for setting, radius in enumerate(RADII):
        per_seed = []
        for seed in range(args.seeds):
          sel = (cols["setting"] == setting) & (cols["seed"] == seed)
          cost, ret, env_steps = cols["episode_cost"][sel], cols["episode_return"][sel], cols["env_steps"][sel]
          last = cost[-max(1, len(cost) // 10):]
          per_seed.append((last.mean(), np.abs(last - 8.0).mean(),
                           convergence_step(env_steps, ret, cost, 8.0, window=10, threshold=0.25),
                           violation_ratio(cost, 8.0, critical_radius=0.5, soft_margin=0.2)))
        a = np.array(per_seed)
        conv = a[:, 2]
        conv_text = (f"{conv[conv >= 0].mean():,.0f} ({(conv >= 0).sum()}/{len(conv)} seeds)"
                     if (conv >= 0).any() else "never")
        rows.append(f"| {mode} | {radius:g} | {a[:, 0].mean():.3f} +- {a[:, 0].std():.3f} | "
                    f"{a[:, 1].mean():.3f} | {conv_text} | {a[:, 3].mean():.3f} |")
  print(f"\nfunction, {args.num_envs} envs x 100 steps x {args.iterations} iterations, "
        f"{args.seeds} seeds; limit b = 8")
  print("| radius | delta_init | last-10% J_C | last-10% mean abs(J_C - b) | Conv. Steps | Vio. Ratio |")
  print("|---|---:|---:|---:|---:|---:|")
  print("\n".join(rows))


if __name__ == "__main__":
  main()
