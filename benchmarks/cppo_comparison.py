"""CPPO against PPO-Lag and PID-Lag, and Dyna-CPPO against CPPO (issue 4's experiment).

Every algorithm trains ``--seeds`` seeds as one vmapped runner program with the same overrides
(``--set``, applied to all) and budget. From each run's per-update curve (``progress.csv``):

- steps to target: env steps at the first update whose episode return reaches ``--target`` while
  the episode cost is within the limit (J_C <= b); "never" if it does not happen;
- cumulative violation: sum over updates of max(0, J_C - b) x (episodes in the update), i.e. the
  cost over the limit summed over all training episodes (episodes = env steps / T);
- final return and cost: means over the last 10% of updates.

Each row is the mean over seeds (steps to target over the seeds that reach it, with their count).

    .venv/bin/python benchmarks/cppo_comparison.py --env function --total-steps 240000 \\
        --target 7.2 --set num_envs=16 --set shared_critic=true
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
from runs import print_table, train_each

warnings.filterwarnings("ignore")


def curve_metrics(cols, seed, limit, horizon, target):
  sel = cols["seed"] == seed
  steps, ret, cost = cols["env_steps"][sel], cols["episode_return"][sel], cols["episode_cost"][sel]
  episodes = np.diff(np.concatenate([[0.0], steps])) / horizon
  violation = float(np.nansum(np.maximum(cost - limit, 0.0) * episodes))
  hit = np.flatnonzero((ret >= target) & (cost <= limit))
  tail = max(1, len(ret) // 10)
  return (float(steps[hit[0]]) if hit.size else np.nan, violation,
          float(np.nanmean(ret[-tail:])), float(np.nanmean(cost[-tail:])))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--env", default="function")
  parser.add_argument("--algos", default="cppo,dyna-cppo,ppo-lag,pid-lag")
  parser.add_argument("--total-steps", type=int, default=240_000)
  parser.add_argument("--seeds", type=int, default=3)
  parser.add_argument("--target", type=float, required=True, help="feasible return target")
  parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="override for every algorithm (repeatable)")
  args = parser.parse_args()
  from jaxsafe import envs

  task = envs.make(args.env)
  limit, horizon = task.cost_limit, task.episode_length
  overrides = dict(item.split("=", 1) for item in args.set)
  print(f"{args.env}: b = {limit:g}, T = {horizon}, {args.total_steps:,} env steps per run, "
        f"{args.seeds} seeds, target return {args.target:g}, overrides {overrides}", flush=True)
  rows = []
  for algo, cols, wall in train_each(args.algos.split(","), args.env, args.seeds,
                                     args.total_steps, overrides):
    per_seed = np.array([curve_metrics(cols, s, limit, horizon, args.target)
                         for s in range(args.seeds)])
    hit = per_seed[:, 0][np.isfinite(per_seed[:, 0])]
    hit_text = f"{hit.mean():,.0f} ({hit.size}/{args.seeds})" if hit.size else f"never (0/{args.seeds})"
    rows.append(f"| {algo} | {hit_text} | {per_seed[:, 1].mean():,.1f} | "
                f"{per_seed[:, 2].mean():.2f} +- {per_seed[:, 2].std():.2f} | "
                f"{per_seed[:, 3].mean():.2f} +- {per_seed[:, 3].std():.2f} | {wall:.0f} |")
    print(f"{algo}: {wall:.0f} s; per seed (steps to target, violation, return, cost): "
          f"{np.round(per_seed, 2).tolist()}", flush=True)
  print_table(["algorithm", "env steps to target (seeds)", "cumulative violation",
               "last-10% return", "last-10% J_C", "wall (s)"], rows)

if __name__ == "__main__":
  main()
