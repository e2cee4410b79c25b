"""The estimator check of tests/test_estimator_check.py over many seeds (issue 17): per task and
seed, the cosine of the short-horizon gradient with BPTT's, for grad J_R (g) and grad J_C (q),
each policy pretrained and its critics fitted from its own seed; one compile per task.

``balance-nofall`` is ``balance`` without its fall, as the test checks it.

    .venv/bin/python benchmarks/estimator_seeds.py --batches 8 --task push-wall swing-up   # 15 min
"""

from __future__ import annotations

import argparse
import warnings

warnings.filterwarnings("ignore")

SEEDS = "0,1,2,3,4,5,6,7,8,9,100,200"


def make_env(task: str, num_envs: int):
  from jaxsafe import envs
  from jaxsafe.envs.control import NoFallBalanceEnv
  from jaxsafe.envs.wrappers import TimeLimit, training_stack

  if task == "balance-nofall":
    return training_stack(TimeLimit(NoFallBalanceEnv(), None), num_envs, False)
  return envs.make(task, num_envs=num_envs)


def task_cosines(task: str, seeds: list[int], args) -> list[tuple[float, float]]:
  """(cos g, cos q) per seed on ``task``."""
  import jax

  from jaxsafe.agents.base import with_task_cost_limit
  from jaxsafe.agents.first_order.base import FirstOrder
  from jaxsafe.agents.first_order.shac_lag import SHACLagConfig
  from jaxsafe.studies import estimator_check as ec

  env = make_env(task, args.envs)
  fo = FirstOrder(env, with_task_cost_limit(SHACLagConfig(num_envs=args.envs), env), "check")
  pretrain = jax.jit(lambda s, k: ec.pretrain_actor(fo, s, k, args.pretrain))
  fit = jax.jit(lambda s, k: ec.fit_critics(fo, s, k, args.fits))
  agree = jax.jit(lambda s, k: ec.agreement(fo, s, k, batches=args.batches))
  cosines = []
  for seed in seeds:
    k_init, k_pre, k_fit, k_check = jax.random.split(jax.random.PRNGKey(seed), 4)
    state, _ = pretrain(fo.init(k_init), k_pre)
    state, _ = fit(state, k_fit)
    out = agree(state, k_check)
    cosines.append((float(out["return_cosine"]), float(out["cost_cosine"])))
  return cosines


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--task", nargs="+",
                      default=["reach-around", "swing-up", "push-wall", "balance-nofall"])
  parser.add_argument("--seeds", default=SEEDS)
  parser.add_argument("--envs", type=int, default=256)
  parser.add_argument("--pretrain", type=int, default=30)
  parser.add_argument("--fits", type=int, default=300)
  parser.add_argument("--batches", type=int, default=8)
  args = parser.parse_args()

  import numpy as np

  seeds = [int(s) for s in args.seeds.split(",")]
  print(f"{args.envs} envs, {args.fits} critic iterations, {args.batches} batch(es)")
  print("| task | " + " | ".join(str(s) for s in seeds) + " | min |")
  print("|---|" + "---:|" * (len(seeds) + 1))
  for task in args.task:
    cosines = task_cosines(task, seeds, args)
    for i, name in enumerate(("g", "q")):
      values = np.array([c[i] for c in cosines])
      print(f"| {task} {name} | " + " | ".join(f"{v:.3f}" for v in values) +
            f" | {values.min():.3f} |", flush=True)


if __name__ == "__main__":
  main()
