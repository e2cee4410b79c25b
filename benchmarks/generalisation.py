"""Every constrained algorithm at its defaults on tasks nobody tuned it on (issue 17): the small
tasks of envs/control.py and the paper tasks, 3+ seeds, final return and cost against the limit
and against the zero-action policy.

``run`` trains, per task, each algorithm's seeds as one vmapped runner program and keeps the run
directories under ``--out`` (a finished run is skipped, an interrupted one resumes). ``report``
prints one markdown table per task: per seed the mean return and J_C over the last 10% of the
updates; "feasible" counts seeds with J_C <= 1.05 b, "> zero" seeds whose return beats the
zero-action policy's (measured here on 256 episodes; n/a where that policy is itself infeasible).
With ``--evaluate N``, ``report`` also evaluates each seed's mode (deterministic) policy on N fresh
episodes: the training return includes the policy noise's cost, which the zero-action policy does
not pay (on reacher-position, with its control cost |a|^2, that is most of the gap).

    .venv/bin/python benchmarks/generalisation.py run --out /tmp/gen --steps 1500000
    .venv/bin/python benchmarks/generalisation.py report --out /tmp/gen
    .venv/bin/python benchmarks/generalisation.py report --out /tmp/gen --save benchmarks/results/generalisation.json
    .venv/bin/python benchmarks/generalisation.py report --out /tmp/gen --task reacher-position --evaluate 64
    .venv/bin/python benchmarks/generalisation.py cycles --out /tmp/gen --algos shac-lag,bptt-lag
    .venv/bin/python benchmarks/generalisation.py run --out /tmp/gen_sig --algos sac-lag \
        --set multiplier_signal=episode_cost --steps 50000     # a non-default rule, where it applies

``cycles`` shows how a Lagrangian agent's cost moves around b in the second half of each run: per
seed, the range of J_C / b, the share of iterations above 1.05 b and the multiplier's range.
"""

from __future__ import annotations

import argparse
import json
import os
import warnings

import numpy as np
import on_policy_table
from on_policy_table import final_values

warnings.filterwarnings("ignore")

TASKS = ("reach-around", "swing-up", "push-wall", "balance")
ALGOS = ("shac-lag", "bptt-lag", "cgpo", "mb-cgpo", "ppo-lag", "pid-lag", "trpo-lag", "cpo",
         "pdo", "appo", "cup", "cppo", "dyna-cppo", "cvpo", "sac-lag", "td3-lag", "ddpg-lag")
#: a task's J_C may end this far above b and still count as feasible (Lagrangian oscillation).
FEASIBLE_SLACK = 1.05


def feasible_below(limit: float) -> float:
  """The largest J_C counted as feasible: b plus 5% of |b| (b < 0 on cartpole-position)."""
  return limit + (FEASIBLE_SLACK - 1.0) * abs(limit)


def zero_action_episode(task: str, episodes: int = 256, seed: int = 0) -> tuple[float, float]:
  """Mean undiscounted return and cost of the policy that always acts 0."""
  import jax
  import jax.numpy as jnp

  from jaxsafe import envs

  env = envs.make(task, num_envs=episodes)

  def step(carry, _):
    state, alive = carry
    state = env.step(state, jnp.zeros((episodes, env.action_size)))
    terminal = state.done * (1.0 - state.info.get("truncation", 0.0))
    return (state, alive * (1.0 - terminal)), (alive * state.reward, alive * state.cost)

  start = (env.reset(jax.random.PRNGKey(seed)), jnp.ones(episodes))
  _, (reward, cost) = jax.jit(lambda s: jax.lax.scan(step, s, None, env.episode_length))(start)
  return float(reward.sum(0).mean()), float(cost.sum(0).mean())


def beats(returns: np.ndarray, zero_return: float, zero_feasible: bool) -> str:
  """How many seeds' returns beat the zero-action policy's ("n/a" where it is infeasible)."""
  return f"{int(np.sum(returns > zero_return))}/{len(returns)}" if zero_feasible else "n/a"


def run(args) -> None:
  """Every algorithm at its defaults, or with ``--set`` where the algorithm has that field."""
  import dataclasses

  from jaxsafe import agents

  sets = dict(item.split("=", 1) for item in getattr(args, "set", []))

  def overrides(algo, task, horizon):
    fields = {f.name for f in dataclasses.fields(agents.spec(algo).config_cls)}
    return {k: v for k, v in sets.items() if k in fields}

  on_policy_table.run(args, overrides=overrides)


def report(args) -> None:
  from jaxsafe import envs
  from jaxsafe.train.evaluation import evaluate
  from jaxsafe.train.logger import read_progress

  saved = {}
  for task in args.task:
    limit = envs.make(task).cost_limit
    zero_return, zero_cost = zero_action_episode(task)
    # Beating an infeasible zero-action policy's return says nothing (on ``function``, where
    # reward = cost, no feasible policy can): the column is then n/a.
    zero_feasible = zero_cost <= limit
    print(f"\n### {task} (b = {limit:g}; zero-action policy: return {zero_return:.1f}, "
          f"cost {zero_cost:.2f})\n")
    header = "| algorithm | env steps | return per seed | J_C per seed | feasible | > zero |"
    rule = "|---|---:|---|---|---:|---:|"
    if args.evaluate:
      header += " deterministic return per seed | deterministic J_C per seed | > zero |"
      rule += "---|---|---:|"
    print(header + "\n" + rule)
    for algo in args.algos.split(","):
      run_dir = os.path.join(args.out, task, algo)
      if not os.path.exists(os.path.join(run_dir, "summary.json")):
        continue
      cols = read_progress(run_dir)
      ret, cost = final_values(cols)
      feasible = int(np.sum(cost <= feasible_below(limit)))
      row = (f"| {algo} | {cols['env_steps'][-1]:,.0f} | {' '.join(f'{r:.1f}' for r in ret)} | "
             f"{' '.join(f'{c:.2f}' for c in cost)} | {feasible}/{len(cost)} | "
             f"{beats(ret, zero_return, zero_feasible)} |")
      if args.evaluate:
        # The training return above includes the policy noise's cost; the zero-action policy has
        # none. The mode policy on fresh episodes is the like-for-like comparison.
        results = evaluate(run_dir, episodes=args.evaluate)
        det_ret = np.array([r["return_mean"] for r in results])
        det_cost = np.array([r["cost_mean"] for r in results])
        row += (f" {' '.join(f'{r:.1f}' for r in det_ret)} | "
                f"{' '.join(f'{c:.2f}' for c in det_cost)} | "
                f"{beats(det_ret, zero_return, zero_feasible)} |")
      print(row, flush=True)
      with open(os.path.join(run_dir, "config.json")) as f:
        overrides = json.load(f)["spec"]["overrides"]
      saved[f"{task}/{algo}"] = {
          "cost_limit": float(limit), "env_steps": int(cols["env_steps"][-1]),
          "last10_return": ret.round(4).tolist(), "last10_cost": cost.round(4).tolist(),
          "feasible": feasible, "zero_action": [round(zero_return, 4), round(zero_cost, 4)],
          "overrides": overrides}
  if getattr(args, "save", None):
    write_results(args.save, saved)


def write_results(path: str, rows: dict) -> None:
  """Merges ``rows`` (keyed "task/algo") into the JSON file at ``path``, written atomically: the
  committed result files behind docs' tables (benchmarks/results/)."""
  merged = {}
  if os.path.exists(path):
    with open(path) as f:
      merged = json.load(f)
  merged.update(rows)
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(merged, f, indent=1, sort_keys=True)
    f.write("\n")
  os.replace(tmp, path)


def cycles(args) -> None:
  from jaxsafe import envs
  from jaxsafe.train.logger import read_progress

  print("| task | algorithm | seed | J_C / b, second half | iterations > 1.05 b | multiplier |")
  print("|---|---|---:|---|---:|---|")
  for task in args.task:
    limit = envs.make(task).cost_limit
    for algo in args.algos.split(","):
      run_dir = os.path.join(args.out, task, algo)
      if not os.path.exists(os.path.join(run_dir, "summary.json")):
        continue
      cols = read_progress(run_dir)
      for seed in np.unique(cols["seed"]):
        sel = cols["seed"] == seed
        cost, multiplier = cols["episode_cost"][sel], cols[f"{algo}/multiplier"][sel]
        half = slice(len(cost) // 2, None)
        ratio, lam = cost[half] / limit, multiplier[half]
        print(f"| {task} | {algo} | {int(seed)} | {ratio.min():.2f}-{ratio.max():.2f} | "
              f"{np.mean(cost[half] > feasible_below(limit)):.0%} | {lam.min():.2f}-{lam.max():.2f} |")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("command", choices=("run", "report", "cycles"))
  parser.add_argument("--out", required=True)
  parser.add_argument("--task", nargs="+", default=list(TASKS))
  parser.add_argument("--algos", default=",".join(ALGOS))
  parser.add_argument("--seeds", type=int, default=3)
  parser.add_argument("--seed-offset", type=int, default=0)
  parser.add_argument("--steps", type=int, default=1_500_000)
  parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="a hyper-parameter for every algorithm that has it (others: defaults)")
  parser.add_argument("--evaluate", type=int, default=0, metavar="EPISODES",
                      help="report: also evaluate each seed's mode policy on this many episodes")
  parser.add_argument("--save", metavar="FILE.json",
                      help="report: also merge the per-seed values into this JSON file")
  args = parser.parse_args()
  {"run": run, "report": report, "cycles": cycles}[args.command](args)


if __name__ == "__main__":
  main()
