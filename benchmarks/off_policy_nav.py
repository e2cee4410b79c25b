"""CVPO against the off-policy Lagrangian baselines and PPO-Lag on the navigation tasks (issue 14,
acceptance 5; the CVPO paper's Fig. 2-5 and its cumulative-violation claim).

``run`` trains, per task, every algorithm's seeds as one vmapped runner program and keeps the run
directories under ``--out`` (an existing run is skipped, so an interrupted experiment continues
where it stopped). ``report`` reads them back and writes, per task:

- learning curves (return and cost against env steps; mean and spread over seeds; Fig. 2/3);
- task return against cumulative cost on a log axis (Fig. 4);
- a box plot of the episode cost of every training episode in the last 20% of training (Fig. 5);
- one markdown table: last-20% return and cost, the cumulative cost and the cumulative violation
  (sum over training episodes of max(0, J_C - b)), and two readings of the paper's ratio: the
  cumulative cost PPO-Lag has paid by the time its return (a moving mean over ~5% of its updates,
  seed-averaged) first reaches the algorithm's last-20% return, over the algorithm's whole
  cumulative cost; and, as Fig. 4 is read, at the highest return both reach, what each had paid
  when it first got there.

Cumulative cost is read from the per-update curve by ``jaxsafe.train.paper_metrics.
cumulative_cost``: each update's env steps are charged at the cost of the episodes they belong to.

    .venv/bin/python benchmarks/off_policy_nav.py run --out /tmp/offnav --task car-circle
    .venv/bin/python benchmarks/off_policy_nav.py run --out /tmp/offnav --task car-circle \\
        --algos cvpo --label=-no-kl --set kl_mean_bound=1000 --set kl_cov_bound=1000  # Fig. 6
    .venv/bin/python benchmarks/off_policy_nav.py report --out /tmp/offnav --img docs/img
    .venv/bin/python benchmarks/off_policy_nav.py ablation --out /tmp/offnav --task car-circle \\
        --label=-no-kl --img docs/img
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
import warnings

import numpy as np
from runs import train_once, whole_episode_overrides

warnings.filterwarnings("ignore")

TASKS = ("car-circle", "point-goal", "point-button", "car-goal")
OFF_POLICY = ("cvpo", "sac-lag", "td3-lag", "ddpg-lag")
ON_POLICY = "ppo-lag"  # the reference of the ratio columns
#: The on-policy methods of the paper's Fig. 3 that jaxsafe has: trained for ``--ppo-steps``.
ON_POLICY_ALGOS = ("ppo-lag", "cpo", "trpo-lag")


def overrides_for(algo: str, horizon: int, hidden: tuple[int, ...]) -> dict:
  """The settings every run of ``algo`` uses here (the defaults otherwise)."""
  if algo in ON_POLICY_ALGOS:
    return whole_episode_overrides(horizon)
  return {"hidden_sizes": hidden}


def run(args) -> None:
  from jaxsafe import envs, train

  extra = dict(item.split("=", 1) for item in args.set)
  for task in args.task:
    horizon = envs.make(task).episode_length
    for algo in args.algos.split(","):
      run_dir = os.path.join(args.out, task, algo + args.label)
      if os.path.exists(os.path.join(run_dir, "summary.json")):
        print(f"{task}/{algo}: done before, skipped", flush=True)
        continue
      steps = args.ppo_steps if algo in ON_POLICY_ALGOS else args.steps
      spec = train.RunSpec(algo, task, seeds=args.seeds, total_steps=steps,
                           overrides=overrides_for(algo, horizon, tuple(args.hidden)) | extra,
                           seed_offset=args.seed_offset)
      t0 = time.perf_counter()
      if task.startswith("sg/"):  # the bridge steps one host-side env: one seed per run
        runs = [train_once(dataclasses.replace(spec, seeds=1, seed_offset=args.seed_offset + k),
                           os.path.join(run_dir, f"seed{k}")) for k in range(args.seeds)]
        summary = {"steps_per_second": np.mean([r["steps_per_second"] for r in runs]),
                   "compile_s": sum(r["compile_s"] for r in runs), "runs": runs}
        with open(os.path.join(run_dir, "summary.json"), "w") as f:
          json.dump(summary, f, indent=1)
      else:
        summary = train_once(spec, run_dir)
      print(f"{task}/{algo}{args.label}: {steps:,} env steps x {args.seeds} seeds in "
            f"{time.perf_counter() - t0:.0f} s ({summary['steps_per_second']:,.0f} env steps/s, "
            f"compile {summary['compile_s']:.0f} s)", flush=True)


def moving_mean(x: np.ndarray, width: int) -> np.ndarray:
  """Moving mean along the last axis over finite values (NaN-aware, trailing window)."""
  finite = np.isfinite(x)
  csum = np.cumsum(np.where(finite, x, 0.0), -1)
  ccount = np.cumsum(finite, -1)
  pad = lambda a: np.concatenate([np.zeros(a.shape[:-1] + (1,)), a], -1)
  csum, ccount = pad(csum), pad(ccount)
  lo = np.maximum(np.arange(1, x.shape[-1] + 1) - width, 0)
  hi = np.arange(1, x.shape[-1] + 1)
  with np.errstate(all="ignore"):
    return (csum[..., hi] - csum[..., lo]) / (ccount[..., hi] - ccount[..., lo])


def load(run_dir: str, horizon: int):
  """(env steps [updates], return [seeds, updates], cost [seeds, updates], cumulative cost,
  cumulative violation [seeds, updates], limit) of one run directory."""
  from jaxsafe.train.paper_metrics import cumulative_cost
  from jaxsafe.train.plotting import _curves

  seed_dirs = sorted(d for d in os.listdir(run_dir) if d.startswith("seed"))
  curves = [next(_curves(os.path.join(run_dir, d))) for d in seed_dirs] or list(_curves(run_dir))
  steps, limit = curves[0][1], curves[0][4]
  ret = np.concatenate([c[2] for c in curves])
  cost = np.concatenate([c[3] for c in curves])
  return (steps, ret, cost, *cumulative_cost(steps, cost, horizon, limit), limit)


def smoothed_return(run) -> np.ndarray:
  """The seed-mean return curve, a trailing moving mean over ~5% of the updates (as plotted)."""
  ret = run[1]
  return moving_mean(np.nanmean(ret, 0)[None], max(2, ret.shape[1] // 20))[0]


def cost_at_return(run, target: float) -> float:
  """A run's cumulative cost (mean over seeds) when its smoothed return first reaches
  ``target``; NaN if it never does."""
  hit = np.flatnonzero(smoothed_return(run) >= target)
  return float(run[3][:, hit[0]].mean()) if hit.size else np.nan


def report(args) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  from jaxsafe import envs

  os.makedirs(args.img, exist_ok=True)
  for task in args.task:
    task_dir = os.path.join(args.out, task)
    if not os.path.isdir(task_dir):
      continue
    horizon = envs.make(task).episode_length
    done = sorted(d for d in os.listdir(task_dir)
                  if os.path.exists(os.path.join(task_dir, d, "summary.json")))
    # The paper's algorithms in its order, then variants (runs made with --label).
    algos = [a for a in (*OFF_POLICY, *ON_POLICY_ALGOS) if a in done] + [
        d for d in done if d not in (*OFF_POLICY, *ON_POLICY_ALGOS)]
    data = {a: load(os.path.join(task_dir, a), horizon) for a in algos}
    fig, axes = plt.subplots(1, 4, figsize=(20, 4))
    rows, box = [], {}
    for algo in algos:
      steps, ret, cost, cum_cost, cum_violation, limit = data[algo]
      width = max(2, ret.shape[1] // 20)
      for ax, values in ((axes[0], ret), (axes[1], cost)):
        mean = moving_mean(np.nanmean(values, 0)[None], width)[0]
        spread = np.nanstd(moving_mean(values, width), 0)
        line, = ax.plot(steps, mean, label=f"{algo} [{ret.shape[0]} seeds]")
        ax.fill_between(steps, mean - spread, mean + spread, color=line.get_color(), alpha=0.15)
      axes[2].plot(cum_cost.mean(0), moving_mean(np.nanmean(ret, 0)[None], width)[0], label=algo)
      tail = slice(int(0.8 * ret.shape[1]), None)
      last_costs = cost[:, tail][np.isfinite(cost[:, tail])]
      box[algo] = last_costs
      final_return = float(np.nanmean(ret[:, tail]))
      per_seed_ret = np.nanmean(ret[:, tail], 1)
      per_seed_cost = np.nanmean(cost[:, tail], 1)
      ratio = same = ""
      if algo not in ON_POLICY_ALGOS and ON_POLICY in data:
        ppo = data[ON_POLICY]
        ppo_cost = cost_at_return(ppo, final_return)
        ratio = ("PPO-Lag never reaches it" if np.isnan(ppo_cost)
                 else f"{ppo_cost / cum_cost[:, -1].mean():.2f}")
        # Fig. 4's reading: the highest return both reach, and what each paid to first reach it.
        level = min(np.nanmax(smoothed_return(data[algo])), np.nanmax(smoothed_return(ppo)))
        same = (f"{level:.1f}: {cost_at_return(ppo, level):,.0f} / "
                f"{cost_at_return(data[algo], level):,.0f} = "
                f"{cost_at_return(ppo, level) / cost_at_return(data[algo], level):.2f}")
      rows.append(
          f"| {algo} | {steps[-1]:,.0f} | {final_return:.2f} ({per_seed_ret.min():.2f} .. "
          f"{per_seed_ret.max():.2f}) | {np.nanmean(per_seed_cost):.1f} ({per_seed_cost.min():.1f}"
          f" .. {per_seed_cost.max():.1f}) | {int(np.sum(per_seed_cost <= limit))}/{len(per_seed_cost)}"
          f" | {cum_cost[:, -1].mean():,.0f} | {cum_violation[:, -1].mean():,.0f} | {ratio} |"
          f" {same} |")
    axes[1].axhline(limit, color="k", linestyle="--", linewidth=1, label=f"b = {limit:g}")
    axes[2].set_xscale("symlog", linthresh=1.0)  # log above 1; an all-zero run still draws
    axes[3].boxplot(list(box.values()), tick_labels=list(box), showfliers=True)
    axes[3].axhline(limit, color="k", linestyle="--", linewidth=1)
    for ax in axes[:2]:
      ax.set_xscale("log")
    axes[0].set(xlabel="env steps", ylabel="episode return", title=f"{task}: return")
    axes[1].set(xlabel="env steps", ylabel="episode cost", title=f"{task}: cost")
    axes[2].set(xlabel="cumulative cost (log)", ylabel="episode return",
                title="return vs cumulative cost")
    axes[3].set(ylabel="episode cost", title="last 20% of training")
    axes[0].legend(fontsize=8)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    path = os.path.join(args.img, f"off_policy_{task.replace('/', '_')}.png")
    fig.savefig(path, dpi=80)
    plt.close(fig)
    print(f"\n### {task} (b = {limit:g}, T = {horizon}; figure {path})\n")
    print("| algorithm | env steps per seed | last-20% return (seeds min .. max) | last-20% cost "
          "(min .. max) | seeds with cost <= b | cumulative cost | cumulative violation | "
          "PPO-Lag's cumulative cost at this return / this one's | the highest return both "
          "reach: PPO-Lag's / this one's cumulative cost on first reaching it |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---|")
    print("\n".join(rows))


def ablation(args) -> None:
  """CVPO Fig. 6: ``cvpo`` against ``cvpo<label>`` (``--label``, e.g. -no-kl) on the seeds and env
  steps both have (the longer run cut to the shorter; the first seeds of the larger set)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  from jaxsafe import envs

  for task in args.task:
    horizon = envs.make(task).episode_length
    runs = {name: load(os.path.join(args.out, task, name), horizon)
            for name in ("cvpo", "cvpo" + args.label)}
    updates = min(r[0].shape[0] for r in runs.values())
    seeds = min(r[1].shape[0] for r in runs.values())
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    print(f"\n### {task}: M-step KL ablation ({seeds} seeds, {runs['cvpo'][0][updates - 1]:,.0f} "
          "env steps each)\n")
    print("| run | last-20% return | last-20% cost | cumulative cost |")
    print("|---|---:|---:|---:|")
    for name, (steps, ret, cost, cum_cost, _, limit) in runs.items():
      steps, ret, cost = steps[:updates], ret[:seeds, :updates], cost[:seeds, :updates]
      width = max(2, updates // 20)
      for ax, values in zip(axes, (ret, cost)):
        ax.plot(steps, moving_mean(np.nanmean(values, 0)[None], width)[0], label=name)
      tail = slice(int(0.8 * updates), None)
      print(f"| {name} | {np.nanmean(ret[:, tail]):.2f} | {np.nanmean(cost[:, tail]):.1f} | "
            f"{cum_cost[:seeds, updates - 1].mean():,.0f} |")
    axes[1].axhline(limit, color="k", linestyle="--", linewidth=1, label=f"b = {limit:g}")
    axes[0].set(xlabel="env steps", ylabel="episode return", title=f"{task}: return")
    axes[1].set(xlabel="env steps", ylabel="episode cost", title=f"{task}: cost")
    for ax in axes:
      ax.legend(fontsize=8)
    fig.tight_layout()
    path = os.path.join(args.img, f"off_policy_{task.replace('/', '_')}_ablation{args.label}.png")
    fig.savefig(path, dpi=80)
    plt.close(fig)
    print(f"\nfigure: {path}")


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("mode", choices=("run", "report", "ablation"))
  p.add_argument("--out", required=True, help="directory of the runs")
  p.add_argument("--task", action="append", help=f"repeatable; default: all of {TASKS}")
  p.add_argument("--algos", default=",".join((*OFF_POLICY, *ON_POLICY_ALGOS)))
  p.add_argument("--seeds", type=int, default=5)
  p.add_argument("--seed-offset", type=int, default=0)
  p.add_argument("--steps", type=int, default=100_000, help="env steps per off-policy run")
  p.add_argument("--ppo-steps", type=int, default=1_000_000, help="env steps per PPO-Lag run")
  p.add_argument("--hidden", type=int, nargs="+", default=[64, 64],
                 help="off-policy hidden sizes (the defaults are 256 256)")
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                 help="run: an extra override for every algorithm (repeatable)")
  p.add_argument("--label", default="", help="run: suffix of the run directories, e.g. -no-kl")
  p.add_argument("--img", default="docs/img")
  args = p.parse_args()
  args.task = args.task or list(TASKS)
  {"run": run, "report": report, "ablation": ablation}[args.mode](args)


if __name__ == "__main__":
  main()
