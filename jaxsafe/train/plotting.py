"""Learning curves: episode return and cost against env steps, mean and spread over seeds."""

from __future__ import annotations

import json
import os

import numpy as np

from jaxsafe.train.logger import read_progress


def _curves(run_dir: str):
  """Yields (label, env_steps, returns [seeds, iters], costs [seeds, iters], cost_limit)."""
  cols = read_progress(run_dir)
  name = os.path.basename(os.path.normpath(run_dir))
  settings = np.unique(cols["setting"])
  with open(os.path.join(run_dir, "config.json")) as f:
    swept = list(json.load(f)["spec"]["sweep"])
  for s in settings:
    rows = cols["setting"] == s
    seeds = np.unique(cols["seed"][rows])
    iters = np.unique(cols["iteration"][rows])
    ret = np.full((len(seeds), len(iters)), np.nan)
    cost = np.full_like(ret, np.nan)
    steps = np.zeros(len(iters))
    for i, seed in enumerate(seeds):
      sel = rows & (cols["seed"] == seed)
      idx = np.searchsorted(iters, cols["iteration"][sel])
      ret[i, idx] = cols["episode_return"][sel]
      cost[i, idx] = cols["episode_cost"][sel]
      steps[idx] = cols["env_steps"][sel]
    extra = ", ".join(f"{c}={cols[c][rows][0]:g}" for c in swept)
    label = f"{name} ({extra})" if extra else name
    yield label, steps, ret, cost, float(cols["cost_limit"][rows][-1])


def plot_runs(run_dirs: list[str], out: str) -> str:
  """Draws return and cost curves of ``run_dirs`` (mean +- std over seeds) into ``out``."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, (ax_r, ax_c) = plt.subplots(1, 2, figsize=(11, 4))
  limits = set()
  for run_dir in run_dirs:
    for label, steps, ret, cost, limit in _curves(run_dir):
      for ax, values in ((ax_r, ret), (ax_c, cost)):
        with np.errstate(all="ignore"):
          mean, std = np.nanmean(values, 0), np.nanstd(values, 0)
        line, = ax.plot(steps, mean, label=f"{label} [{values.shape[0]} seeds]")
        ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.2)
      limits.add(limit)
  for limit in sorted(limits):
    ax_c.axhline(limit, color="k", linestyle="--", linewidth=1, label=f"cost limit b = {limit:g}")
  ax_r.set(xlabel="env steps", ylabel="episode return", title="Return")
  ax_c.set(xlabel="env steps", ylabel="episode cost", title="Cost")
  from matplotlib.ticker import EngFormatter
  for ax in (ax_r, ax_c):
    ax.xaxis.set_major_formatter(EngFormatter())  # 400k, 1.2M: readable step counts
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  fig.savefig(out, dpi=120)
  plt.close(fig)
  return out
