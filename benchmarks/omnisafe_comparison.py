"""jaxsafe's ``cpo`` and ``trpo-lag`` against OmniSafe's CPO and TRPOLag on one Safety-Gymnasium
task, same env steps, in one run (issue 15, acceptance 5).

jaxsafe trains through the ``sg/`` bridge (``envs/safety_gymnasium.py``); OmniSafe 0.5.0 runs in
its own virtual environment (``--omnisafe-python``) through ``benchmarks/omnisafe_side.py``. Both
sides keep their own defaults except the batch, which is the same: ``--steps-per-epoch`` env steps
(OmniSafe's default 20,000) per update, i.e. 20 whole episodes of T = 1000. OmniSafe steps one env
for them (its default); jaxsafe 20 host envs for 1000 steps each. Both have (64, 64) tanh networks,
observation normalisation, target KL 0.01, CG with 15 iterations and damping 0.1, b = 25.

Per algorithm and seed, jaxsafe runs first, then OmniSafe, one after the other on the same
machine. Reported: the return and cost of the last update (jaxsafe: the mean of the episodes that
finished in it; OmniSafe: its ``Metrics/EpRet``/``EpCost``, the mean of the last 50 episodes) and
training env steps/s (jaxsafe: the runner's ``steps_per_second``, compile excluded; OmniSafe: env
steps over the wall time of ``agent.learn()``, env construction excluded).

OmniSafe's environment (Python 3.11; torch from a local wheel or PyPI):

    python3.11 -m venv V && V/bin/pip install torch
    echo "pygame>=2.6" > over.txt   # safety-gymnasium pins pygame 2.1.0, which has no cp311 wheel
    uv pip install --python V/bin/python --override over.txt omnisafe==0.5.0 \\
        safety-gymnasium==1.0.0 mujoco==2.3.3 gymnasium==0.28.1
    .venv/bin/python benchmarks/omnisafe_comparison.py --omnisafe-python V/bin/python

Prints the machine and versions, one JSON line per run, then one markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import warnings

from runs import print_table

warnings.filterwarnings("ignore")
HERE = os.path.dirname(os.path.abspath(__file__))
OMNISAFE_NAME = {"cpo": "CPO", "trpo-lag": "TRPOLag"}


def jaxsafe_run(algo: str, env: str, env_steps: int, steps_per_epoch: int, seed: int) -> dict:
  from jaxsafe import envs, train
  from jaxsafe.train.logger import read_progress

  horizon = envs.make(env).episode_length
  spec = train.RunSpec(algo, env, seeds=1, total_steps=env_steps, seed_offset=seed,
                       overrides={"num_envs": steps_per_epoch // horizon,
                                  "rollout_length": horizon})
  with tempfile.TemporaryDirectory() as tmp:
    summary = train.run(spec, os.path.join(tmp, "run"), progress=False)
    cols = read_progress(os.path.join(tmp, "run"))
  return {"library": "jaxsafe", "algo": algo, "seed": seed, "env_steps": int(cols["env_steps"][-1]),
          "steps_per_second": summary["steps_per_second"], "compile_s": summary["compile_s"],
          "return_curve": cols["episode_return"].tolist(),
          "cost_curve": cols["episode_cost"].tolist()}


def omnisafe_run(python: str, algo: str, env: str, env_steps: int, steps_per_epoch: int,
                 seed: int) -> dict:
  out = subprocess.run([python, os.path.join(HERE, "omnisafe_side.py"), "--algo",
                        OMNISAFE_NAME[algo], "--env", env.removeprefix("sg/"), "--env-steps",
                        str(env_steps), "--steps-per-epoch", str(steps_per_epoch), "--seed",
                        str(seed), "--threads", str(os.cpu_count())],
                       check=True, capture_output=True, text=True).stdout
  result = json.loads(out.strip().splitlines()[-1])
  return result | {"library": "omnisafe", "algo": algo}


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--omnisafe-python", required=True, help="the python of OmniSafe's environment")
  p.add_argument("--env", default="sg/SafetyHalfCheetahVelocity-v1")
  p.add_argument("--algos", default="cpo,trpo-lag")
  p.add_argument("--env-steps", type=int, default=100_000, help="env steps per run")
  p.add_argument("--steps-per-epoch", type=int, default=20_000)
  p.add_argument("--seeds", type=int, nargs="+", default=[0])
  args = p.parse_args()
  if not args.env.startswith("sg/"):
    p.error("--env must be a Safety-Gymnasium id through the bridge, e.g. sg/SafetyPointGoal1-v0")

  import jax
  print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"jax {jax.__version__} on {jax.default_backend()}, python {sys.version.split()[0]}; "
        f"{args.env}, {args.env_steps:,} env steps per run, {args.steps_per_epoch:,} per update",
        flush=True)
  rows = []
  for algo in args.algos.split(","):
    for seed in args.seeds:
      runs = [jaxsafe_run(algo, args.env, args.env_steps, args.steps_per_epoch, seed),
              omnisafe_run(args.omnisafe_python, algo, args.env, args.env_steps,
                           args.steps_per_epoch, seed)]
      for run in runs:
        print(json.dumps(run), flush=True)
      ours, theirs = runs
      rows.append(
          f"| {algo} | {seed} | {ours['env_steps']:,} | {ours['return_curve'][-1]:.1f} | "
          f"{theirs['return_curve'][-1]:.1f} | {ours['cost_curve'][-1]:.1f} | "
          f"{theirs['cost_curve'][-1]:.1f} | {ours['steps_per_second']:,.0f} | "
          f"{theirs['steps_per_second']:,.0f} | "
          f"{ours['steps_per_second'] / theirs['steps_per_second']:.1f} |")
  print_table(["algorithm", "seed", "env steps", "return, jaxsafe", "return, OmniSafe",
               "cost, jaxsafe", "cost, OmniSafe", "env steps/s, jaxsafe",
               "env steps/s, OmniSafe", "ratio"], rows)


if __name__ == "__main__":
  main()
