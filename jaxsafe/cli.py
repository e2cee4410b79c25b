"""The ``jaxsafe`` command: list, train, eval, plot.

Bad input (unknown id, bad hyper-parameter, missing run directory, ...) prints one line on stderr
and exits with code 2, before anything is written. A run that diverges (NaN/inf) exits with 1.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys


class _Parser(argparse.ArgumentParser):
  def error(self, message):  # one line, exit 2 (argparse would print the whole usage)
    self.exit(2, f"jaxsafe: error: {message}\n")


def _key_values(items: list[str], flag: str) -> dict[str, str]:
  out = {}
  for item in items or []:
    key, sep, value = item.partition("=")
    if not sep or not key:
      raise ValueError(f"{flag} {item}: expected key=value")
    out[key.strip()] = value.strip()
  return out


def _literal(text: str):
  """An --env-set value: true/false as bools, then int, then float, else the string."""
  if text.lower() in ("true", "false"):
    return text.lower() == "true"
  for kind in (int, float):
    try:
      return kind(text)
    except ValueError:
      pass
  return text


def _cmd_list(args) -> int:
  from jaxsafe import agents, envs
  print("Algorithms:")
  for name, desc in agents.list_agents().items():
    print(f"  {name:<22} {desc}")
  print("Environments:")
  for name, desc in envs.list_envs().items():
    print(f"  {name:<22} {desc}")
  print(f"  {'sg/<id>':<22} any Safety-Gymnasium task through the host bridge, e.g. "
        f"sg/SafetyPointGoal1-v0 (needs jaxsafe[safety-gymnasium])")
  print(f"  {'module:Class':<22} your own task by import path, e.g. mytasks:Reach (README, "
        f"'Your own task')")
  return 0


def _cmd_train(args) -> int:
  from jaxsafe import train
  if args.resume:
    if (args.set or args.sweep or args.seeds is not None or args.env_set
        or args.checkpoint_every is not None):
      raise ValueError("--resume continues a run as configured; --set, --env-set, --sweep, "
                       "--seeds and --checkpoint-every cannot be combined with it")
    summary = train.resume(args.resume, total_steps=args.total_steps, progress=not args.quiet)
    run_dir = args.resume
  else:
    if not args.algo or not args.env:
      raise ValueError("train needs ALGO and ENV (or --resume RUN_DIR); see 'jaxsafe list'")
    sweep = {k: [v for v in vals.split(",") if v] for k, vals in
             _key_values(args.sweep, "--sweep").items()}
    spec = train.RunSpec(algo=args.algo, env=args.env,
                         seeds=1 if args.seeds is None else args.seeds,
                         total_steps=100_000 if args.total_steps is None else args.total_steps,
                         overrides=_key_values(args.set, "--set"), sweep=sweep,
                         seed_offset=args.seed_offset, chunk_iters=args.chunk_iters,
                         checkpoint_every=(1 if args.checkpoint_every is None
                                           else args.checkpoint_every),
                         env_options={k: _literal(v) for k, v in
                                      _key_values(args.env_set, "--env-set").items()})
    run_dir = args.run_dir or train.runner._default_run_dir(spec)
    summary = train.run(spec, run_dir, progress=not args.quiet)
  print(f"run directory: {run_dir}")
  print(f"{summary['env_steps_per_run']:,} env steps per run; "
        f"{summary['steps_per_second'] or 0:,.0f} env steps/s over {len(summary['runs'])} runs "
        f"(compile {summary['compile_s']:.1f} s)")
  for r in summary["runs"]:
    head = f"  setting {r['setting']} seed {r['seed']}:"
    if math.isnan(r["last10pct_episode_cost"]):
      print(f"{head} no episode finished in the last 10% of updates (each env ran "
            f"{summary['env_steps_per_run'] // summary['num_envs']:,} steps; episodes are up to "
            f"{summary['episode_length']:,}): train longer or with fewer envs")
      continue
    print(f"{head} return {r['last10pct_episode_return']:.4g}, "
          f"cost {r['last10pct_episode_cost']:.4g} (limit {r['cost_limit']:g}; mean of last 10%)")
  return 0


def _cmd_eval(args) -> int:
  from jaxsafe.train.evaluation import evaluate, record_episode
  if args.video:
    shot = record_episode(args.run_dir, args.video, run=args.video_run)
    print(f"video of setting {shot['setting']} seed {shot['seed']} ({shot['frames']} frames; "
          f"episode return {shot['return']:.4g}, cost {shot['cost']:.4g}) written to {shot['path']}")
  if args.env_set and not args.env:
    raise ValueError("eval --env-set needs --env (the run's own task keeps its options)")
  options = {k: _literal(v) for k, v in _key_values(args.env_set, "--env-set").items()}
  results = evaluate(args.run_dir, episodes=args.episodes, env_id=args.env, env_options=options)
  if args.env:
    print(f"evaluated on {args.env}" + (f" {options}" if options else ""))
  for r in results:
    print(f"setting {r['setting']} seed {r['seed']}: return {r['return_mean']:.4g} +- "
          f"{r['return_std']:.3g}, cost {r['cost_mean']:.4g} +- {r['cost_std']:.3g} "
          f"(limit {r['cost_limit']:g}, {r['episodes']} episodes, deterministic)")
  if args.json:
    print(json.dumps(results))
  return 0


def _cmd_plot(args) -> int:
  from jaxsafe.train.plotting import plot_runs
  for d in args.run_dirs:
    if not os.path.exists(os.path.join(d, "progress.csv")):
      raise ValueError(f"'{d}' is not a jaxsafe run directory (no progress.csv)")
  out = args.out or os.path.join(args.run_dirs[0], "curves.png")
  print(f"plot written to {plot_runs(args.run_dirs, out)}")
  return 0


def _parser() -> argparse.ArgumentParser:
  parser = _Parser(prog="jaxsafe", description="Safe RL in JAX: train, evaluate and plot.")
  sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
  sub.add_parser("list", help="algorithms and environments").set_defaults(fn=_cmd_list)

  t = sub.add_parser("train", help="train ALGO on ENV")
  t.add_argument("algo", nargs="?", help="algorithm id (jaxsafe list)")
  t.add_argument("env", nargs="?", help="environment id (jaxsafe list)")
  t.add_argument("--seeds", type=int, help="seeds per setting, trained in parallel (default 1)")
  t.add_argument("--seed-offset", type=int, default=0, help="first seed (default 0)")
  t.add_argument("--total-steps", type=int, help="env steps per run (default 100000)")
  t.add_argument("--set", action="append", metavar="KEY=VALUE", help="hyper-parameter override")
  t.add_argument("--env-set", action="append", metavar="KEY=VALUE",
                 help="task option, e.g. smooth_cost=true, fixed_layout=true, level=2 "
                      "(navigation; see docs/navigation.md)")
  t.add_argument("--sweep", action="append", metavar="KEY=V1,V2",
                 help="numeric hyper-parameter values trained at once (vmapped)")
  t.add_argument("--run-dir", help="where to write the run (default runs/ALGO_ENV_TIME)")
  t.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR")
  t.add_argument("--chunk-iters", type=int, help="updates per compiled chunk")
  t.add_argument("--checkpoint-every", type=int, metavar="K",
                 help="save a checkpoint after every K-th chunk and the last (default 1); a crash "
                      "loses at most K chunks")
  t.add_argument("--quiet", action="store_true", help="no progress bar")
  t.set_defaults(fn=_cmd_train)

  e = sub.add_parser("eval", help="evaluate a run's deterministic policy")
  e.add_argument("run_dir")
  e.add_argument("--episodes", type=int, default=10)
  e.add_argument("--json", action="store_true", help="also print the results as JSON")
  e.add_argument("--video", metavar="OUT.gif",
                 help="also draw one episode as a top-down GIF (navigation tasks)")
  e.add_argument("--video-run", type=int, default=0,
                 help="which run (setting x seed, in config order) --video draws (default 0)")
  e.add_argument("--env", metavar="ENV",
                 help="evaluate on this task instead of the run's (same observation and action "
                      "sizes), e.g. sg/SafetyPointGoal1-v0 for a policy trained on point-goal "
                      "with --env-set dynamics=safety-gymnasium")
  e.add_argument("--env-set", action="append", metavar="KEY=VALUE",
                 help="option of the --env task (replaces the run's options)")
  e.set_defaults(fn=_cmd_eval)

  p = sub.add_parser("plot", help="plot return and cost curves of runs")
  p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
  p.add_argument("--out", help="output PNG (default RUN_DIR/curves.png)")
  p.set_defaults(fn=_cmd_plot)
  return parser


def main(argv: list[str] | None = None) -> int:
  args = _parser().parse_args(argv)
  from jaxsafe.train.runner import TrainingDiverged
  try:
    return args.fn(args)
  except TrainingDiverged as err:
    print(f"jaxsafe: {err}", file=sys.stderr)
    return 1
  except (ValueError, FileNotFoundError) as err:  # bad input: one line, exit 2
    print(f"jaxsafe: error: {err}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
