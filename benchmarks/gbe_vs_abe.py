"""GBE vs ABE: predicting the change of the episode cost J_C after a small policy step.

The command line of ``jaxsafe.studies.gbe_vs_abe`` (what it measures and how: that module's
docstring); docs/benchmarks.md holds the results.

    python benchmarks/gbe_vs_abe.py           # docs/benchmarks.md's settings (~4 min, 2 CPU cores)
    python benchmarks/gbe_vs_abe.py --quick   # tiny sizes, to check the script
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from jaxsafe.studies.gbe_vs_abe import QUICK, Settings, machine, run, table


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="tiny sizes (script check)")
  parser.add_argument("--stages", type=str, default=None,
                      help="comma-separated cgpo iterations ('' for none)")
  parser.add_argument("--repetitions", type=int, default=None, help="R")
  parser.add_argument("--episodes", type=int, default=None, help="N, the estimators' episodes")
  parser.add_argument("--truth-episodes", type=int, default=None, help="M, the measured change's")
  parser.add_argument("--step-length", type=float, default=None, help="|delta|")
  parser.add_argument("--direction", choices=("descent", "ascent"), default=None)
  parser.add_argument("--gamma", type=float, default=None, help="ABE's discount (paper: 0.99)")
  parser.add_argument("--gae-lambda", type=float, default=None)
  parser.add_argument("--seed", type=int, default=None)
  parser.add_argument("--no-feedback", action="store_true", help="skip the feedback policy")
  args = parser.parse_args()
  s = QUICK if args.quick else Settings()
  stages = (None if args.stages is None
            else tuple(int(v) for v in args.stages.split(",") if v.strip()))
  overrides = {"stages": stages, "repetitions": args.repetitions, "num_episodes": args.episodes,
               "truth_episodes": args.truth_episodes, "step_length": args.step_length,
               "direction": args.direction, "gamma": args.gamma, "gae_lambda": args.gae_lambda,
               "seed": args.seed,
               "feedback": False if args.no_feedback else None}
  s = dataclasses.replace(s, **{k: v for k, v in overrides.items() if v is not None})

  print(f"machine: {machine()}")
  print(f"settings: {s}")
  t0 = time.perf_counter()
  rows = run(s)
  print(table(rows, s.num_episodes))
  print("float32 vs float64 measured change (relative difference, one delta per policy): "
        + ", ".join(f"{r['policy']}: {r['f64_diff']:.1e}" for r in rows))
  print("max |tanh(raw) - action| (pre-squash recovery check): "
        + ", ".join(f"{r['policy']}: {r['raw_mismatch']:.1e}" for r in rows))
  print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
  main()
