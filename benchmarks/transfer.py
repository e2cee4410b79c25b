"""Transfer (issue 16): PPO-Lag trained on the faithful JAX task, evaluated on the real one.

``run`` trains ``ppo-lag`` on ``point-goal`` (or ``--task point-circle|car-goal|car-circle``)
with ``dynamics="safety-gymnasium"``: 3 seeds in one program, 4M env steps each (2M on Circle),
the settings of "PPO-Lag on point-goal" in docs/benchmarks.md (16 envs x one whole episode per
update, 4 epochs). ``report`` evaluates each seed's deterministic policy on N fresh episodes (per
batch; ``--batches`` K draws K batches) in JAX and on the real task (``sg/SafetyPointGoal1-v0``,
``sg/SafetyCarGoal1-v0``, ...) through the bridge (MuJoCo on the host), and prints per seed and
pooled return and cost with standard errors, and the relative gap of Safety-Gymnasium's against
JAX's (issue 16 asks for 20% at most).

    .venv/bin/python benchmarks/transfer.py run --out /tmp/transfer            # ~8 min
    .venv/bin/python benchmarks/transfer.py report --out /tmp/transfer --episodes 20  # ~2 min
    .venv/bin/python benchmarks/transfer.py run --out /tmp/transfer --task point-circle
    .venv/bin/python benchmarks/transfer.py run --out /tmp/transfer --task car-goal    # ~10 min
    .venv/bin/python benchmarks/transfer.py report --out /tmp/transfer --task car-goal \
        --episodes 50 --batches 3                                                    # ~15 min

Both evaluations draw their own layouts (the JAX task's and Safety-Gymnasium's random streams
differ), so the comparison is between two samples of episodes, not episode by episode.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import runs

warnings.filterwarnings("ignore")

OPTIONS = {"dynamics": "safety-gymnasium"}
#: task -> (the real task, its horizon, env steps per seed)
TASKS = {"point-goal": ("sg/SafetyPointGoal1-v0", 1000, 4_000_000),
         "point-circle": ("sg/SafetyPointCircle1-v0", 500, 2_000_000),
         "car-goal": ("sg/SafetyCarGoal1-v0", 1000, 4_000_000),
         "car-circle": ("sg/SafetyCarCircle1-v0", 500, 2_000_000)}


def run_dir_of(out: str, task: str) -> str:
  return os.path.join(out, "ppo-lag" if task == "point-goal" else f"ppo-lag_{task}")


def run(out: str, task: str, seeds: int, steps: int | None) -> None:
  from jaxsafe import train

  _, horizon, default_steps = TASKS[task]
  spec = train.RunSpec("ppo-lag", task, seeds=seeds, total_steps=steps or default_steps,
                       env_options=OPTIONS, overrides=runs.whole_episode_overrides(horizon))
  summary = runs.train_once(spec, run_dir_of(out, task))
  print(f"trained: {summary}")


def per_episode(run_dir: str, episodes: int, env_id: str | None,
                batches: int = 1) -> tuple[np.ndarray, np.ndarray]:
  """(returns, costs) of shape (seeds, batches * episodes): every episode, not only the means.

  Each batch is ``episodes`` episodes at once from evaluation seed 0, 1, ...: on the real task
  that many MuJoCo worlds live on the host together (a Car world takes ~0.13 GB).
  """
  from jaxsafe.train import evaluation

  returns, costs = [], []
  for batch in range(batches):
    results = evaluation.evaluate(run_dir, episodes=episodes, seed=batch, env_id=env_id,
                                  env_options=None if env_id is None else {}, per_episode=True)
    returns.append([r["returns"] for r in results])
    costs.append([r["costs"] for r in results])
  return np.concatenate(returns, axis=1), np.concatenate(costs, axis=1)


def report(out: str, task: str, episodes: int, batches: int = 1) -> None:
  run_dir, real = run_dir_of(out, task), TASKS[task][0]
  sides = {"JAX": per_episode(run_dir, episodes, None, batches),
           "Safety-Gymnasium": per_episode(run_dir, episodes, real, batches)}

  def cell(x):
    return f"{x.mean():.2f} +- {x.std(ddof=1) / np.sqrt(x.size):.2f}"

  rows = []
  seeds = sides["JAX"][0].shape[0]
  for s in [*range(seeds), None]:
    pick = (lambda x, s=s: x[s]) if s is not None else (lambda x: x.ravel())
    (jr, jc), (sr, sc) = ((pick(r), pick(c)) for r, c in sides.values())
    gap = lambda ours, real: f"{(real.mean() - ours.mean()) / abs(ours.mean()):+.0%}"
    rows.append(f"| {s if s is not None else 'all'} | {cell(jr)} | {cell(sr)} | {gap(jr, sr)} | "
                f"{cell(jc)} | {cell(sc)} | {gap(jc, sc)} |")
  print(f"\nppo-lag trained on {task} {OPTIONS}, {episodes * batches} deterministic episodes "
        f"per seed (mean +- standard error)")
  runs.print_table(["seed", "return, JAX", f"return, {real}", "gap", "cost, JAX",
                    f"cost, {real}", "gap"], rows)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("mode", choices=["run", "report"])
  parser.add_argument("--out", required=True)
  parser.add_argument("--seeds", type=int, default=3)
  parser.add_argument("--task", choices=sorted(TASKS), default="point-goal")
  parser.add_argument("--steps", type=int, help="env steps per seed (default: 4M, Circle 2M)")
  parser.add_argument("--episodes", type=int, default=20, help="episodes per batch")
  parser.add_argument("--batches", type=int, default=1,
                      help="batches of episodes, from evaluation seeds 0, 1, ... (default 1)")
  args = parser.parse_args()
  if args.mode == "run":
    run(args.out, args.task, args.seeds, args.steps)
  else:
    report(args.out, args.task, args.episodes, args.batches)


if __name__ == "__main__":
  main()
