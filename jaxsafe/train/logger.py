"""Run-directory logging: progress.csv (one row per iteration and run) and TensorBoard events."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence

import numpy as np

#: columns written first, in this order; the rest follow alphabetically.
LEADING_COLUMNS = ("setting", "seed", "iteration", "env_steps", "episode_return", "episode_cost",
                   "cost_limit")


class RunLogger:
  """Appends rows to ``progress.csv`` and scalars to one TensorBoard writer per run.

  Args:
    run_dir: the run directory.
    labels: one dict per run with its identifying columns (setting, seed, swept values).
  """

  def __init__(self, run_dir: str, labels: Sequence[dict]):
    self.path = os.path.join(run_dir, "progress.csv")
    self.labels = list(labels)
    self._columns: list[str] | None = None
    if os.path.exists(self.path):
      with open(self.path, newline="") as f:
        self._columns = next(csv.reader(f), None)
    from tensorboardX import SummaryWriter
    self._writers = [SummaryWriter(os.path.join(run_dir, "tb", self._tb_name(label)))
                     for label in self.labels]

  @staticmethod
  def _tb_name(label: dict) -> str:
    return "_".join(f"{k}{v}" for k, v in label.items())

  def write(self, metrics: dict[str, np.ndarray], extra: dict[str, float] | None = None) -> None:
    """Writes ``metrics`` of shape [runs, iterations] (and per-chunk ``extra`` scalars)."""
    extra = extra or {}
    names = sorted(metrics)
    runs, iters = next(iter(metrics.values())).shape
    if self._columns is None:
      label_cols = list(self.labels[0])
      rest = [n for n in names if n not in LEADING_COLUMNS] + sorted(extra)
      lead = [c for c in LEADING_COLUMNS if c in metrics or c in label_cols]
      self._columns = lead + [c for c in label_cols if c not in lead] + rest
      with open(self.path, "w", newline="") as f:
        csv.writer(f).writerow(self._columns)
    with open(self.path, "a", newline="") as f:
      writer = csv.writer(f)
      for i in range(iters):
        for r in range(runs):
          row = {**self.labels[r], **extra, **{n: metrics[n][r, i] for n in names}}
          writer.writerow([_fmt(row.get(c, "")) for c in self._columns])
    for r, tb in enumerate(self._writers):
      for i in range(iters):
        step = int(metrics["env_steps"][r, i])
        for n in names:
          value = float(metrics[n][r, i])
          if np.isfinite(value):  # NaN = no episode finished in this update: no point, no warning
            tb.add_scalar(n, value, step)
      tb.flush()

  def truncate(self, last_iteration: int) -> None:
    """Drops rows after ``last_iteration`` (rows logged after the checkpoint a resume starts from)."""
    if not os.path.exists(self.path):
      return
    with open(self.path, newline="") as f:
      rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    col = header.index("iteration")
    kept = [row for row in body if int(float(row[col])) <= last_iteration]
    with open(self.path, "w", newline="") as f:
      csv.writer(f).writerows([header] + kept)

  def close(self) -> None:
    for tb in self._writers:
      tb.close()


def _fmt(value) -> str:
  if isinstance(value, (np.floating, float)):
    return repr(float(value))
  if isinstance(value, (np.integer, np.bool_)):
    return str(int(value))
  return str(value)


def read_progress(run_dir: str) -> dict[str, np.ndarray]:
  """Reads ``progress.csv`` into columns (numbers as floats, labels as strings)."""
  path = os.path.join(run_dir, "progress.csv")
  with open(path, newline="") as f:
    rows = list(csv.DictReader(f))
  columns = {}
  for name in (rows[0] if rows else {}):
    values = [row[name] for row in rows]
    try:
      columns[name] = np.array([float(v) if v != "" else np.nan for v in values])
    except ValueError:
      columns[name] = np.array(values)
  return columns
