"""The OmniSafe half of ``benchmarks/omnisafe_comparison.py``: run in OmniSafe's own environment
(torch, numpy<2, mujoco 2.3.3, no JAX), it trains OmniSafe's CPO or TRPOLag on a Safety-Gymnasium
task for a number of env steps and prints the learning curve and the training throughput.

Safety-Gymnasium 1.0.0 is imported through jaxsafe's compatibility layer
(``envs/safety_gymnasium_compat.py``, loaded by file path: it imports no JAX), as OmniSafe would
otherwise fail on Python 3.11. OmniSafe's defaults (its ``configs/on-policy/<ALGO>.yaml``) are kept
except what the comparison fixes on both sides: env steps, steps per epoch, number of envs, seed
and torch threads; logging goes to a temporary directory without TensorBoard or W&B.

    python benchmarks/omnisafe_side.py --algo CPO --env SafetyPointGoal1-v0 --env-steps 40000 \\
        --steps-per-epoch 20000 --seed 0 --threads 2

Prints one JSON line: {"algo", "env", "seed", "env_steps", "seconds", "steps_per_second",
"env_steps_curve", "return_curve", "cost_curve", "versions"}. The curves are OmniSafe's per-epoch
``Metrics/EpRet`` and ``Metrics/EpCost`` (its moving mean over the last 50 episodes).
"""

from __future__ import annotations

import argparse
import csv
import glob
import importlib.util
import json
import os
import sys
import tempfile
import time
import warnings

warnings.filterwarnings("ignore")
HERE = os.path.dirname(os.path.abspath(__file__))
COMPAT = os.path.join(HERE, os.pardir, "envs", "safety_gymnasium_compat.py")


def import_safety_gymnasium():
  spec = importlib.util.spec_from_file_location("safety_gymnasium_compat", COMPAT)
  compat = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(compat)
  return compat.import_safety_gymnasium()


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--algo", required=True, choices=("CPO", "TRPOLag"))
  p.add_argument("--env", default="SafetyPointGoal1-v0")
  p.add_argument("--env-steps", type=int, required=True)
  p.add_argument("--steps-per-epoch", type=int, default=20_000)
  p.add_argument("--num-envs", type=int, default=1)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--threads", type=int, default=os.cpu_count())
  args = p.parse_args()
  if args.env_steps % args.steps_per_epoch:
    p.error("--env-steps must be a multiple of --steps-per-epoch")

  sg = import_safety_gymnasium()
  import omnisafe
  import torch

  with tempfile.TemporaryDirectory() as log_dir:
    cfgs = {"seed": args.seed,
            "train_cfgs": {"total_steps": args.env_steps, "vector_env_nums": args.num_envs,
                           "torch_threads": args.threads, "device": "cpu"},
            "algo_cfgs": {"steps_per_epoch": args.steps_per_epoch},
            "logger_cfgs": {"use_wandb": False, "use_tensorboard": False, "log_dir": log_dir,
                            "save_model_freq": 10**9}}
    agent = omnisafe.Agent(args.algo, args.env, custom_cfgs=cfgs)
    start = time.perf_counter()
    agent.learn()
    seconds = time.perf_counter() - start
    (progress,) = glob.glob(os.path.join(log_dir, "**", "progress.csv"), recursive=True)
    with open(progress, newline="") as f:
      rows = list(csv.DictReader(f))
  print(json.dumps({
      "algo": args.algo, "env": args.env, "seed": args.seed, "env_steps": args.env_steps,
      "seconds": seconds, "steps_per_second": args.env_steps / seconds,
      "env_steps_curve": [float(r["TotalEnvSteps"]) for r in rows],
      "return_curve": [float(r["Metrics/EpRet"]) for r in rows],
      "cost_curve": [float(r["Metrics/EpCost"]) for r in rows],
      "versions": {"python": sys.version.split()[0], "omnisafe": omnisafe.__version__,
                   "torch": torch.__version__, "safety_gymnasium": sg.__version__}}))


if __name__ == "__main__":
  main()
