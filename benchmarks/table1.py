"""CGPO Table 1 on this machine: Conv. Steps and Vio. Ratio (App. F.2) of several algorithms.

Each algorithm trains ``--seeds`` seeds as one vmapped runner program on one task, with its own
default hyper-parameters (CGPO and the gradient baselines: the Table-4 values). Every run's curve
(episode return and episode cost J_C per update, from ``progress.csv``) is averaged into bins of
``--bin`` env steps, so that algorithms with different batch sizes are judged on the same grid;
then ``jaxsafe.train.paper_metrics`` computes, per seed:

- Conv. Steps: the first bin from which the return stays within ``threshold`` = 5% of the horizon
  T for the next ``--window`` bins while J_C <= b (F.2.1; the paper does not give its window or
  threshold);
- Vio. Ratio: among bins with J_C > b - 10% |b| (the safety-critical area), the share with
  J_C > b + 2% |b| (F.2.2; the paper does not give its radius or margin).

Conv. Steps is averaged over the seeds that converge (their count is printed); Vio. Ratio over
the seeds that enter the critical area. The paper's numbers are printed beside ours.

    .venv/bin/python benchmarks/table1.py --env cartpole-position --total-steps 2000000
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
from runs import print_table, train_each

warnings.filterwarnings("ignore")

# CGPO paper, Table 1: (Conv. Steps, Vio. Ratio %) per task.
PAPER = {
    "cartpole-position": {"pdo": (4.99e6, 12.01), "appo": (5.95e6, 6.59), "cpo": (6.72e6, 5.96),
                          "cup": (6.84e6, 19.21), "bptt-lag": (3.84e6, 23.99),
                          "shac-lag": (2.32e6, 46.31), "cgpo": (1.77e6, 3.96)},
    "reacher-position": {"pdo": (3.99e6, 64.42), "appo": (4.22e6, 46.04), "cpo": (1.98e6, 30.68),
                         "cup": (7.76e6, 56.12), "bptt-lag": (2.73e6, 67.88),
                         "shac-lag": (2.96e6, 50.59), "cgpo": (1.15e6, 14.29)},
    "halfcheetah-velocity": {"pdo": (3.43e6, 74.58), "appo": (3.58e6, 18.33),
                             "cpo": (5.81e6, None), "cup": (5.12e6, 57.40),
                             "bptt-lag": (2.32e6, 61.56), "shac-lag": (3.15e6, 65.90),
                             "cgpo": (2.02e6, 7.31)},
    "ant-velocity": {"pdo": (1.70e7, 51.84), "appo": (1.08e7, 9.54), "cpo": (1.69e7, 24.56),
                     "cup": (9.29e6, 29.79), "bptt-lag": (2.13e7, None),
                     "shac-lag": (1.67e7, 57.53), "cgpo": (8.52e6, 6.44)},
}


def binned(env_steps, values, width):
  """Means of ``values`` over consecutive bins of ``width`` env steps (NaN-aware)."""
  bins = (np.asarray(env_steps) - 1) // width
  out = []
  for b in range(int(bins.max()) + 1):
    sel = values[bins == b]
    sel = sel[np.isfinite(sel)]
    out.append(sel.mean() if sel.size else np.nan)
  out = np.array(out)
  # A bin with no finished episode (possible for small PPO batches) repeats the previous value.
  for i in range(1, len(out)):
    if not np.isfinite(out[i]):
      out[i] = out[i - 1]
  return (np.arange(len(out)) + 1) * width, out


def table_row(algo, cols, seeds, limit, horizon, width, window, threshold=None):
  """(Conv. Steps, Vio. Ratio, last-10% return, last-10% J_C) of one algorithm's seeds; the
  Conv. Steps threshold on the return's variation is ``threshold``, by default 5% of T."""
  from jaxsafe.train.paper_metrics import convergence_step, violation_ratio

  conv, vio, final_ret, final_cost = [], [], [], []
  for seed in seeds:
    sel = cols["seed"] == seed
    steps, ret = binned(cols["env_steps"][sel], cols["episode_return"][sel], width)
    _, cost = binned(cols["env_steps"][sel], cols["episode_cost"][sel], width)
    conv.append(convergence_step(steps, ret, cost, limit, window=window,
                                 threshold=0.05 * horizon if threshold is None else threshold))
    vio.append(violation_ratio(cost, limit, critical_radius=0.1 * abs(limit),
                               soft_margin=0.02 * abs(limit)))
    tail = max(1, len(ret) // 10)
    final_ret.append(ret[-tail:].mean())
    final_cost.append(cost[-tail:].mean())
  conv, vio = np.array(conv), np.array(vio)
  conv_text = (f"{conv[conv >= 0].mean():.2e} ({(conv >= 0).sum()}/{len(conv)})"
               if (conv >= 0).any() else f"never (0/{len(conv)})")
  vio_text = (f"{100 * vio[vio >= 0].mean():.1f} ({(vio >= 0).sum()}/{len(vio)})"
              if (vio >= 0).any() else "- (0)")
  return conv_text, vio_text, np.mean(final_ret), np.mean(final_cost)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--env", default="cartpole-position")
  parser.add_argument("--algos", default="cgpo,ppo-lag,pid-lag,bptt-lag,shac-lag")
  parser.add_argument("--total-steps", type=int, default=2_000_000)
  parser.add_argument("--seeds", type=int, default=3)
  parser.add_argument("--bin", type=int, default=38_400, help="env steps per curve point "
                      "(default: one CGPO iteration, 128 envs x 300 steps)")
  parser.add_argument("--window", type=int, default=10, help="Conv. Steps window, in bins")
  args = parser.parse_args()
  from jaxsafe import envs

  task = envs.make(args.env)
  limit, horizon = task.cost_limit, task.episode_length
  print(f"{args.env}: b = {limit:g}, T = {horizon}, {args.total_steps:.2e} env steps per run, "
        f"{args.seeds} seeds, bins of {args.bin} steps, window {args.window}", flush=True)
  rows = []
  for algo, cols, wall in train_each(args.algos.split(","), args.env, args.seeds, args.total_steps):
    conv, vio, ret, cost = table_row(algo, cols, range(args.seeds), limit, horizon, args.bin,
                                     args.window)
    paper = PAPER.get(args.env, {}).get(algo)
    paper_text = (f"{paper[0]:.2e} | {paper[1] if paper[1] is not None else '-'}"
                  if paper else "- | -")
    rows.append(f"| {algo} | {conv} | {vio} | {ret:.1f} | {cost:.1f} | {paper_text} |")
    print(f"{algo}: {wall:.0f} s", flush=True)
  print_table(["algorithm", "Conv. Steps (seeds)", "Vio. Ratio % (seeds)", "last-10% return",
               "last-10% J_C", "paper Conv. Steps", "paper Vio. Ratio %"], rows)

if __name__ == "__main__":
  main()
