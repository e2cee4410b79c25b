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

**The suite** (issue 39): every algorithm of ``ALGOS`` on the ten tasks of ``SUITE`` at its
defaults, 3 seeds, each task at its own budget: twice the env steps the family's reference needs
there to settle at a feasible return (``settling_step``), PPO-Lag's for the on-policy algorithms
and the gradient family, SAC-Lag's for the off-policy ones (``OFF_POLICY``), rounded up
(``budget_from``) and kept in results/generalisation_budgets.json. The navigation task's
on-policy batch is the on-policy table's (one whole episode per env per update). ``report
--suite`` reads each run up to its budget (so a longer reference run serves as its own row) and
ends with the share of feasible (task, seed) cells per algorithm:

    cd benchmarks && ../.venv/bin/python generalisation.py run --out /tmp/suite --algos ppo-lag,sac-lag \
        --steps 1500000          # the references (point-goal: 4M; sac-lag: 150k)
    cd benchmarks && ../.venv/bin/python generalisation.py budgets --out /tmp/suite --task ...
    cd benchmarks && ../.venv/bin/python generalisation.py run --suite --out /tmp/suite --task ...
    cd benchmarks && ../.venv/bin/python generalisation.py report --suite --out /tmp/suite --task ... \
        --save results/generalisation_suite.json

``table`` renders the summary and the per-task tables of docs/generalisation.md from the results
file alone (``--results``, default results/generalisation_suite.json):

    cd benchmarks && ../.venv/bin/python generalisation.py table

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
from runs import train_once

warnings.filterwarnings("ignore")

TASKS = ("reach-around", "swing-up", "push-wall", "balance")
ALGOS = ("shac-lag", "bptt-lag", "cgpo", "mb-cgpo", "ppo-lag", "pid-lag", "trpo-lag", "cpo",
         "pdo", "appo", "cup", "cppo", "dyna-cppo", "cvpo", "sac-lag", "td3-lag", "ddpg-lag")
#: a task's J_C may end this far above b and still count as feasible (Lagrangian oscillation).
FEASIBLE_SLACK = 1.05

#: The suite of issue 39: every constrained algorithm on these tasks, 3 seeds, at its defaults,
#: each task at its own budget (``budgets``).
SUITE = ("reach-around", "swing-up", "push-wall", "balance", "function", "cruise",
         "cartpole-position", "reacher-position", "held_out_tasks:Glide", "point-goal")
#: Trained for the off-policy budget, the steps SAC-Lag needs; the others get PPO-Lag's.
OFF_POLICY = ("sac-lag", "td3-lag", "ddpg-lag", "cvpo")
#: Each family's reference algorithm, whose settling step sets the family's budget.
REFERENCE = {"on_policy": "ppo-lag", "off_policy": "sac-lag"}
BUDGETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                       "generalisation_budgets.json")


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


def seed_mean_curves(cols) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Env steps per update, and the seed-mean return and J_C per update, each a trailing mean
  over 10% of the updates (the window of the final values)."""
  seeds = np.unique(cols["seed"])
  steps = cols["env_steps"][cols["seed"] == seeds[0]]
  window = max(1, len(steps) // 10)

  def smoothed(name):
    mean = np.nanmean([cols[name][cols["seed"] == seed] for seed in seeds], axis=0)
    return np.array([np.nanmean(mean[max(0, i - window + 1):i + 1]) for i in range(len(mean))])

  return steps, smoothed("episode_return"), smoothed("episode_cost")


def settling_step(cols, limit: float) -> int | None:
  """The env step at which the run has settled at a feasible point (``paper_metrics.
  settling_step`` on the seed-mean curves): from there to the end J_C <= b + 5%|b| and the
  return within 10% of its range of its final value. None where the run ends infeasible."""
  from jaxsafe.train.paper_metrics import settling_step as settled

  steps, ret, cost = seed_mean_curves(cols)
  step = settled(steps, ret, cost, limit, soft_margin=feasible_below(limit) - limit)
  return None if step < 0 else int(step)


def budget_from(settle: int | None, reference_steps: int, family: str) -> int:
  """Twice the reference's settling step, rounded up (on-policy: to 100k steps, at least 200k;
  off-policy: to 10k, at least 20k); the reference's own length where it never settles."""
  quantum, floor = (100_000, 200_000) if family == "on_policy" else (10_000, 20_000)
  if settle is None:
    return reference_steps
  return max(floor, -(-2 * settle // quantum) * quantum)


def load_budgets() -> dict:
  with open(BUDGETS) as f:
    return json.load(f)


def family_of(algo: str) -> str:
  return "off_policy" if algo in OFF_POLICY else "on_policy"


def budgets(args) -> None:
  """Each suite task's budgets from the reference runs under ``--out`` (ppo-lag, sac-lag), saved
  to results/generalisation_budgets.json (merged: a family without a reference run keeps its
  saved value)."""
  from jaxsafe import envs
  from jaxsafe.train.logger import read_progress

  saved = load_budgets() if os.path.exists(BUDGETS) else {}
  print("| task | family | reference | reference run, env steps | settles at | budget |")
  print("|---|---|---|---:|---:|---:|")
  for task in args.task:
    limit = envs.make(task).cost_limit
    for family, algo in REFERENCE.items():
      run_dir = os.path.join(args.out, task, algo)
      if not os.path.exists(os.path.join(run_dir, "summary.json")):
        continue
      cols = read_progress(run_dir)
      # A reference trained on past its budget (``extend``) is read at its saved length, so
      # that the budget does not move with it.
      length = saved.get(task, {}).get(family, {}).get("reference_steps", cols["env_steps"][-1])
      cols = up_to(cols, length)
      length = int(cols["env_steps"][-1])
      settle = settling_step(cols, limit)
      budget = budget_from(settle, length, family)
      saved.setdefault(task, {})[family] = {"reference": algo, "reference_steps": length,
                                            "settles_at": settle, "budget": budget}
      print(f"| {task} | {family} | {algo} | {length:,} | "
            f"{'not settled' if settle is None else f'{settle:,}'} | {budget:,} |", flush=True)
  write_results(BUDGETS, saved)


def run(args) -> None:
  """Every algorithm at its defaults, or with ``--set`` where the algorithm has that field."""
  import dataclasses

  from jaxsafe import agents
  from jaxsafe.agents.on_policy.base import OnPolicyConfig

  sets = dict(item.split("=", 1) for item in getattr(args, "set", []))

  def overrides(algo, task, horizon):
    # The on-policy algorithms' whole-episode batch on the navigation tasks (the on-policy
    # table's), then ``--set`` where the algorithm has that field.
    config_cls = agents.spec(algo).config_cls
    fields = {f.name for f in dataclasses.fields(config_cls)}
    on_policy = issubclass(config_cls, OnPolicyConfig)
    wanted = {**(on_policy_table.overrides_for(algo, task, horizon) if on_policy else {}), **sets}
    return {k: v for k, v in wanted.items() if k in fields}

  if not args.suite:
    on_policy_table.run(args, overrides=overrides)
    return
  plan = load_budgets()
  for task in args.task:
    for algo in args.algos.split(","):
      budget = plan[task][family_of(algo)]["budget"]
      extend(os.path.join(args.out, task, algo), budget)
      one = argparse.Namespace(**{**vars(args), "task": [task], "algos": algo, "steps": budget})
      on_policy_table.run(one, overrides=overrides)


def extend(run_dir: str, steps: int) -> None:
  """Trains a finished run that is shorter than ``steps`` on to ``steps`` (a reference run that
  settled late). Training does not depend on the budget, so the result is the longer run's."""
  from jaxsafe.train.logger import read_progress

  summary = os.path.join(run_dir, "summary.json")
  if not os.path.exists(summary) or read_progress(run_dir)["env_steps"][-1] >= steps:
    return
  print(f"{run_dir}: trained on to {steps:,} env steps", flush=True)
  os.remove(summary)
  train_once(None, run_dir, total_steps=steps)


def up_to(cols: dict, steps: int) -> dict:
  """The updates of a run up to the first one at or past ``steps`` env steps: a longer run read
  at a shorter budget (the reference runs)."""
  last = np.flatnonzero(cols["env_steps"] >= steps)
  end = last[0] if len(last) else len(cols["env_steps"]) - 1
  keep = cols["env_steps"] <= cols["env_steps"][end]
  return {name: values[keep] for name, values in cols.items()}


def report(args) -> None:
  from jaxsafe import envs
  from jaxsafe.train.evaluation import evaluate
  from jaxsafe.train.logger import read_progress

  saved = {}
  plan = load_budgets() if args.suite else {}
  for task in args.task:
    limit = envs.make(task).cost_limit
    zero_return, zero_cost = zero_action_episode(task)
    print_task_header(task, limit, (zero_return, zero_cost), args.evaluate)
    for algo in args.algos.split(","):
      run_dir = os.path.join(args.out, task, algo)
      if not os.path.exists(os.path.join(run_dir, "summary.json")):
        continue
      budget = plan.get(task, {}).get(family_of(algo), {}).get("budget")
      if args.suite and budget is None:
        continue  # a reference run whose family has no budget yet
      cols = read_progress(run_dir)
      if args.suite and cols["env_steps"][-1] < budget:
        continue  # a reference run not yet trained on to the budget
      if args.suite:
        cols = up_to(cols, budget)
      ret, cost = final_values(cols)
      with open(os.path.join(run_dir, "config.json")) as f:
        overrides = json.load(f)["spec"]["overrides"]
      row = saved[f"{task}/{algo}"] = {
          "cost_limit": float(limit), "env_steps": int(cols["env_steps"][-1]),
          "last10_return": ret.round(4).tolist(), "last10_cost": cost.round(4).tolist(),
          "feasible": int(np.sum(cost <= feasible_below(limit))),
          "zero_action": [round(zero_return, 4), round(zero_cost, 4)], "overrides": overrides}
      line = task_row(algo, row)
      if args.evaluate:
        # The training return above includes the policy noise's cost; the zero-action policy has
        # none. The mode policy on fresh episodes is the like-for-like comparison.
        results = evaluate(run_dir, episodes=args.evaluate)
        det_ret = np.array([r["return_mean"] for r in results])
        det_cost = np.array([r["cost_mean"] for r in results])
        line += (f" {' '.join(f'{r:.1f}' for r in det_ret)} | "
                 f"{' '.join(f'{c:.2f}' for c in det_cost)} | "
                 f"{beats(det_ret, zero_return, zero_cost <= limit)} |")
      print(line, flush=True)
  if args.suite:
    print_suite_summary(saved, args.algos.split(","), args.task)
  if getattr(args, "save", None):
    write_results(args.save, saved)


def print_task_header(task: str, limit: float, zero_action, evaluate: int = 0) -> None:
  print(f"\n#### {task} (b = {limit:g}; zero-action policy: return {zero_action[0]:.1f}, "
        f"cost {zero_action[1]:.2f})\n")
  header = "| algorithm | env steps | return per seed | J_C per seed | feasible | > zero |"
  rule = "|---|---:|---|---|---:|---:|"
  if evaluate:
    header += " deterministic return per seed | deterministic J_C per seed | > zero |"
    rule += "---|---|---:|"
  print(header + "\n" + rule)


def task_row(algo: str, row: dict) -> str:
  """One algorithm's line of a task table, from its result row. Beating an infeasible
  zero-action policy's return says nothing (on ``function``, where reward = cost, no feasible
  policy can): that column is then n/a."""
  ret, cost = np.array(row["last10_return"]), np.array(row["last10_cost"])
  zero_feasible = row["zero_action"][1] <= row["cost_limit"]
  return (f"| {algo} | {row['env_steps']:,} | {' '.join(f'{r:.1f}' for r in ret)} | "
          f"{' '.join(f'{c:.2f}' for c in cost)} | {row['feasible']}/{len(cost)} | "
          f"{beats(ret, row['zero_action'][0], zero_feasible)} |")


def table(args) -> None:
  """The suite's summary and per-task tables from a results file alone (``--save`` of
  ``report --suite``): what docs/generalisation.md shows."""
  with open(args.results) as f:
    rows = json.load(f)
  algos = args.algos.split(",")
  print_suite_summary(rows, algos, args.task)
  for task in args.task:
    present = [algo for algo in algos if f"{task}/{algo}" in rows]
    if not present:
      continue
    first = rows[f"{task}/{present[0]}"]
    print_task_header(task, first["cost_limit"], first["zero_action"])
    for algo in present:
      print(task_row(algo, rows[f"{task}/{algo}"]))


def print_suite_summary(rows: dict, algos: list[str], tasks: list[str]) -> None:
  """Per algorithm, over the suite's (task, seed) cells: how many end feasible, how many beat
  the zero-action policy where it is feasible, and which tasks have not been run."""
  print("\n### Every algorithm over the suite\n")
  print("| algorithm | feasible cells | share | > zero (where it applies) | misses | not run |")
  print("|---|---:|---:|---:|---|---|")
  for algo in algos:
    cells = feasible = beat = applicable = 0
    misses, missing = [], []
    for task in tasks:
      row = rows.get(f"{task}/{algo}")
      if row is None:
        missing.append(task)
        continue
      costs, seeds = np.array(row["last10_cost"]), len(row["last10_cost"])
      cells += seeds
      feasible += row["feasible"]
      if row["feasible"] < seeds:
        misses.append(f"{task} {row['feasible']}/{seeds} (worst J_C {costs.max():.2f}, "
                      f"b {row['cost_limit']:g})")
      zero_return, zero_cost = row["zero_action"]
      if zero_cost <= feasible_below(row["cost_limit"]):
        applicable += seeds
        beat += int(np.sum(np.array(row["last10_return"]) > zero_return))
    share = f"{feasible / cells:.0%}" if cells else "-"
    print(f"| {algo} | {feasible}/{cells} | {share} | {beat}/{applicable} | "
          f"{', '.join(misses) or '-'} | {', '.join(missing) or '-'} |")


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
  parser.add_argument("command", choices=("run", "report", "cycles", "budgets", "table"))
  parser.add_argument("--out", help="the run directories (every command but table)")
  parser.add_argument("--task", nargs="+",
                      help=f"default: {' '.join(TASKS)}; with --suite and for budgets: SUITE")
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
  parser.add_argument("--results", default=os.path.join(os.path.dirname(BUDGETS),
                                                       "generalisation_suite.json"),
                      help="table: the results file to render")
  parser.add_argument("--suite", action="store_true",
                      help="run/report: each task at its budget (results/"
                           "generalisation_budgets.json); report: and the summary over tasks")
  args = parser.parse_args()
  if args.out is None and args.command != "table":
    parser.error(f"{args.command} needs --out")
  suite_wide = args.suite or args.command in ("budgets", "table")
  args.task = args.task or list(SUITE if suite_wide else TASKS)
  {"run": run, "report": report, "cycles": cycles, "budgets": budgets,
   "table": table}[args.command](args)


if __name__ == "__main__":
  main()
