"""CGPO from scratch on cartpole-position (issue 13): per-seed results of a training run.

Train, then summarise (about 20 min on 2 CPU cores for 5 seeds at the defaults):

    .venv/bin/jaxsafe train cgpo cartpole-position --seeds 5 --total-steps 2000000 \
        --set recovery=elastic --run-dir RUN
    .venv/bin/python benchmarks/cgpo_cartpole.py RUN

Per seed, from ``RUN/progress.csv`` (one row per iteration of N x T env steps): the last-10% mean
episode cost J_C and return, the first iteration with J_C <= b, the Conv. Steps of App. F.2.1
(``train.paper_metrics.convergence_step``: the first feasible iteration after which the return
stays within 5% of T for 10 iterations; the paper gives neither number), the Vio. Ratio of
F.2.2 (critical radius 10% |b|, margin 2% |b|) and the range of the elastic recovery's weight mu.
The acceptance of issue 13: on at least 4 of 5 seeds J_C <= b + 5% |b| and return >= 250 over
the last 10%, and median Conv. Steps <= 1.77e6 (the paper's).
"""

from __future__ import annotations

import argparse

import numpy as np

PAPER_CONV_STEPS = 1.77e6


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("run_dir")
  parser.add_argument("--setting", type=int, default=0,
                      help="the sweep setting to read (a run with --sweep has several)")
  args = parser.parse_args()
  from jaxsafe.train.logger import read_progress
  from jaxsafe.train.paper_metrics import convergence_step, violation_ratio

  cols = read_progress(args.run_dir)
  limit = float(cols["cost_limit"][0])
  horizon = 300
  print(f"b = {limit:g}; acceptance: J_C <= {limit + 0.05 * abs(limit):g} and return >= 250 over "
        "the last 10%")
  print("| seed | last-10% J_C | last-10% return | first J_C <= b (iteration) | Conv. Steps | "
        "Vio. Ratio % | mu min .. max | holds |")
  print("|---|---|---|---|---|---|---|---|")
  holds, convs = [], []
  for seed in np.unique(cols["seed"]):
    sel = (cols["seed"] == seed) & (cols.get("setting", np.zeros_like(cols["seed"])) == args.setting)
    steps, ret, cost = cols["env_steps"][sel], cols["episode_return"][sel], cols["episode_cost"][sel]
    tail = max(1, len(ret) // 10)
    last_cost, last_ret = cost[-tail:].mean(), ret[-tail:].mean()
    feasible = np.flatnonzero(cost <= limit)
    first = int(cols["iteration"][sel][feasible[0]]) if feasible.size else -1
    conv = convergence_step(steps, ret, cost, limit, window=10, threshold=0.05 * horizon)
    vio = violation_ratio(cost, limit, critical_radius=0.1 * abs(limit),
                          soft_margin=0.02 * abs(limit))
    mu = cols.get("cgpo/recovery_weight", np.full(len(ret), np.nan))[sel]
    ok = bool(last_cost <= limit + 0.05 * abs(limit) and last_ret >= 250)
    holds.append(ok)
    convs.append(conv if conv >= 0 else np.inf)
    print(f"| {int(seed)} | {last_cost:.1f} | {last_ret:.1f} | {first} | "
          f"{conv:.3g} | {100 * vio:.1f} | {np.nanmin(mu):.3g} .. {np.nanmax(mu):.3g} | "
          f"{'yes' if ok else 'no'} |")
  median = float(np.median(convs))
  print(f"holds on {sum(holds)}/{len(holds)} seeds; median Conv. Steps {median:.3g} "
        f"(paper {PAPER_CONV_STEPS:.3g}); acceptance "
        f"{'met' if sum(holds) >= 4 and median <= PAPER_CONV_STEPS else 'NOT met'}")


if __name__ == "__main__":
  main()
