"""Measures the learning claims of tests/learning.py on many seeds (docs/benchmarks.md); a command
beside the claims it measures, not a test (pytest collects test_*.py only).

    python tests/learning_seeds.py ppo-lag/cruise cgpo/function --seeds 0-9,100-102,200-202
    python tests/learning_seeds.py cgpo/function --set recovery=elastic

prints, per claim and seed, the last-10% episode cost, return and (on cruise) efficiency, whether
the claim's property holds, and the extremes over the seeds: the tests' thresholds must hold for
all of them with room. All seeds of a claim train as one vmapped program.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import learning  # tests/learning.py: python puts this script's folder on sys.path
import numpy as np


def _seeds(text: str) -> list[int]:
  seeds = []
  for part in text.split(","):
    low, _, high = part.partition("-")
    seeds += list(range(int(low), int(high or low) + 1))
  return seeds


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("claims", nargs="*", default=list(learning.CLAIMS),
                      help=f"claim ids (default: all): {', '.join(learning.CLAIMS)}")
  parser.add_argument("--seeds", default="0-9,100-102,200-202")
  parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="hyper-parameter added to every claim's overrides (e.g. to measure a "
                           "candidate default before changing it)")
  args = parser.parse_args()
  extra_overrides = dict(item.split("=", 1) for item in args.set)
  seeds = _seeds(args.seeds)
  for claim_id in args.claims:
    claim = learning.CLAIMS[claim_id]
    claim = dataclasses.replace(claim, overrides={**claim.overrides, **extra_overrides})
    start = time.time()
    run, limit = learning.train(claim.algo, claim.env, seeds, claim.iterations, claim.overrides,
                                claim.extra)
    _report(f"{claim_id} (limit {limit}, {claim.iterations} updates, overrides {claim.overrides}, "
            f"{len(seeds)} seeds, {time.time() - start:.0f} s)", claim, run, limit, seeds)
    # The quick claims of `make test` are the first updates of the same runs (with --set applied
    # to them too, so a candidate default is measured on both tiers).
    for quick_id, quick in learning.QUICK_CLAIMS.items():
      quick_overrides = {**quick.overrides, **extra_overrides}
      if (quick.algo, quick.env, quick_overrides) == (claim.algo, claim.env, claim.overrides):
        _report(f"{quick_id} (first {quick.iterations} updates of the run above)", quick,
                {k: v[:, :quick.iterations] for k, v in run.items()}, limit, seeds)


def _report(title, claim, run, limit, seeds) -> None:
  """The per-seed table of one claim, and the extremes over the seeds."""
  s = learning.summary(run)
  first = np.argmax(run["episode_cost"] <= limit, axis=1)
  print(f"\n## {title}")
  cost50 = learning.last_fraction_mean(run["episode_cost"], 0.5)
  ret50 = learning.last_fraction_mean(run["episode_return"], 0.5)
  print("| seed | last-10% cost | return | efficiency | last-50% cost | return | first feasible "
        "| holds |")
  print("|---|---|---|---|---|---|---|---|")
  for i, seed in enumerate(seeds):
    failures = claim.check({k: v[i:i + 1] for k, v in run.items()}, limit)
    print(f"| {seed} | {s['cost'][i]:.2f} | {s['return'][i]:.2f} | {s['efficiency'][i]:.3f} | "
          f"{cost50[i]:.2f} | {ret50[i]:.2f} | {first[i]} | "
          f"{'yes' if not failures else 'NO: ' + '; '.join(failures)} |")
  print(f"cost {s['cost'].min():.2f} .. {s['cost'].max():.2f}; return {s['return'].min():.2f} .. "
        f"{s['return'].max():.2f}; efficiency {np.nanmin(s['efficiency']):.3f} .. "
        f"{np.nanmax(s['efficiency']):.3f}; first feasible max {first.max()}", flush=True)
  for name, values in run.items():
    if name.endswith("/case"):  # the trust region's cases: recovery seen, partial at the end
      tail = values[:, -max(1, values.shape[1] // 10):]
      print(f"{name}: recovery seen on {int((values == 0).any(axis=1).sum())}/{len(seeds)} seeds; "
            f"last-10% partial fraction per seed {np.round((tail == 2).mean(axis=1), 2).tolist()}")


if __name__ == "__main__":
  main()
