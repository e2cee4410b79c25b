"""ZoBG vs FoBG: predicting J_C(theta + delta) from an estimated gradient, per trajectory length.

The command line of ``jaxsafe.studies.zobg_vs_fobg`` (what it measures and how: that module's
docstring); docs/benchmarks.md holds the results.

    python benchmarks/zobg_vs_fobg.py           # R = 30, N = 128, M = 2048 (~2-3 min, 2 cores)
    python benchmarks/zobg_vs_fobg.py --quick   # tiny sizes, to check the script
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from jaxsafe.studies import gbe_vs_abe
from jaxsafe.studies.zobg_vs_fobg import (
  ESTIMATORS,
  LABELS,
  QUICK,
  Settings,
  diagnostics,
  run,
  table,
)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="tiny sizes (script check)")
  parser.add_argument("--lengths", type=str, default=None, help="comma-separated L")
  parser.add_argument("--radii-sq", type=str, default=None,
                      help="comma-separated delta^ = abs(delta)^2")
  parser.add_argument("--repetitions", type=int, default=None, help="R")
  parser.add_argument("--episodes", type=int, default=None, help="N, each estimate's episodes")
  parser.add_argument("--truth-episodes", type=int, default=None, help="M, the measured change's")
  parser.add_argument("--policy", choices=("feedback", "cgpo0"), default=None)
  parser.add_argument("--seed", type=int, default=None)
  args = parser.parse_args()
  s = QUICK if args.quick else Settings()
  split = lambda text, kind: None if text is None else tuple(kind(v) for v in text.split(","))
  overrides = {"lengths": split(args.lengths, int), "radii_sq": split(args.radii_sq, float),
               "repetitions": args.repetitions, "num_episodes": args.episodes,
               "truth_episodes": args.truth_episodes, "policy": args.policy, "seed": args.seed}
  s = dataclasses.replace(s, **{k: v for k, v in overrides.items() if v is not None})

  print(f"machine: {gbe_vs_abe.machine()}")
  print(f"settings: {s}")
  t0 = time.perf_counter()
  results = run(s)
  for name in ESTIMATORS:
    print(f"\n{LABELS[name]}: Eq. 74 relative error, mean +- std over R = {s.repetitions}\n")
    print(table(results, s, name))
  print("\n" + diagnostics(results, s))
  print("\nmax abs(tanh(raw) - action) (pre-squash recovery check): "
        f"{max(out['raw_mismatch'].max() for out in results.values()):.1e}")
  print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
  main()
