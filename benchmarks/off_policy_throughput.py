"""Off-policy training throughput: jaxsafe's ``cvpo`` and ``sac-lag`` on ``point-goal`` against
FSRL's CVPO and SAC-Lag (Liu et al.'s own library, PyTorch) in one run (issue 14, acceptance 6).

Both sides use the same networks ((256, 256)), batch (256), K = 32 sampled actions and M = 6
M-step iterations for CVPO, and the update-to-data ratio of the authors' code: 20 gradient steps
per 160 env steps (0.125). Each side is timed on its own, one after the other:

- jaxsafe: ``train.run`` on the JAX ``point-goal`` (16 envs x 10 steps per update), with 1 seed
  and with 4 seeds in one program; env steps/s over all seeds, compile time excluded (the
  runner's ``train_s``). ``warmup_steps=0`` so that every update takes its gradient steps.
- FSRL: ``benchmarks/fsrl_side.py`` in FSRL's own virtual environment (``--fsrl-python``) on a
  free stand-in for point-goal (same spaces and episode length, nothing simulated), one seed,
  torch with as many threads as JAX has cores. FSRL is thereby timed without any simulator, and
  jaxsafe with its JAX simulator: the comparison favours FSRL.

FSRL's environment (its pins need numpy<2, ours numpy 2):

    python3.11 -m venv V && V/bin/pip install torch fast-safe-rl "numpy<2" "setuptools<70"
    .venv/bin/python benchmarks/off_policy_throughput.py --fsrl-python V/bin/python

About 6 minutes on 2 CPU cores. Prints the machine, versions, then one markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = {"hidden_sizes": (256, 256), "batch_size": 256, "num_envs": 16, "rollout_length": 10,
          "gradient_steps": 20, "warmup_steps": 0}
ALGO_SETTINGS = {"cvpo": {"num_action_samples": 32, "m_step_iterations": 6}, "sac-lag": {}}


def jaxsafe_steps_per_second(algo: str, seeds: int, updates: int) -> tuple[float, float]:
  """(env steps/s over all seeds, compile seconds) of ``updates`` updates of ``algo``."""
  from jaxsafe import train

  spec = train.RunSpec(algo, "point-goal", seeds=seeds, total_steps=updates * 160,
                       overrides=SHARED | ALGO_SETTINGS[algo], chunk_iters=max(1, updates // 4))
  with tempfile.TemporaryDirectory() as tmp:
    summary = train.run(spec, os.path.join(tmp, "run"), progress=False)
  return summary["steps_per_second"], summary["compile_s"]


def fsrl_steps_per_second(python: str, algo: str, env_steps: int, threads: int) -> dict:
  out = subprocess.run([python, os.path.join(HERE, "fsrl_side.py"), "--algo", algo,
                        "--env-steps", str(env_steps), "--threads", str(threads)],
                       check=True, capture_output=True, text=True).stdout
  return json.loads(out.strip().splitlines()[-1])


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--fsrl-python", required=True, help="the python of FSRL's environment")
  p.add_argument("--updates", type=int, default=40, help="jaxsafe updates timed per run")
  p.add_argument("--fsrl-steps", type=int, default=4000, help="FSRL env steps timed per run")
  args = p.parse_args()

  import jax
  threads = os.cpu_count()
  print(f"machine: {platform.processor() or platform.machine()}, {threads} cores, "
        f"jax {jax.__version__} on {jax.default_backend()}, python {sys.version.split()[0]}")
  rows = []
  for algo in ("cvpo", "sac-lag"):
    fsrl = fsrl_steps_per_second(args.fsrl_python, algo, args.fsrl_steps, threads)
    print("fsrl:", json.dumps(fsrl), flush=True)
    one, compile_one = jaxsafe_steps_per_second(algo, 1, args.updates)
    four, compile_four = jaxsafe_steps_per_second(algo, 4, args.updates)
    print(f"jaxsafe {algo}: {one:,.0f} (1 seed, compile {compile_one:.0f} s), "
          f"{four:,.0f} (4 seeds, compile {compile_four:.0f} s) env steps/s", flush=True)
    rows.append(f"| {algo} | {fsrl['steps_per_second']:,.0f} | {one:,.0f} | {four:,.0f} | "
                f"{one / fsrl['steps_per_second']:.2f} | {four / fsrl['steps_per_second']:.2f} |")
  print("\n| algorithm | FSRL, 1 seed, stand-in env (env steps/s) | jaxsafe, 1 seed, point-goal "
        "| jaxsafe, 4 seeds in one program (all seeds) | ratio, 1 seed | ratio, 4 seeds |")
  print("|---|---:|---:|---:|---:|---:|")
  print("\n".join(rows))


if __name__ == "__main__":
  main()
