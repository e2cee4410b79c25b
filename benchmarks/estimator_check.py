"""The short-horizon gradient against BPTT's, swept over critic training, window and critic size
(issue 17; ``jaxsafe/studies/estimator_check.py``, docs/benchmarks.md).

Per task: a fixed policy (``--pretrain`` iterations of unconstrained BPTT from the initial one),
then the critics of shac-lag fitted on ``--fits`` iterations of its episodes, with the cosine and
relative norm error of the SHAC estimate of grad J_R and grad J_C against BPTT's on the same
``--envs`` episodes, for h = 10 after each fitting stage and for every ``--windows`` at the end.

    .venv/bin/python benchmarks/estimator_check.py --task reach-around swing-up push-wall balance
"""

from __future__ import annotations

import argparse
import time
import warnings

warnings.filterwarnings("ignore")


def measure(task: str, hidden: str, normalize: str, args) -> None:
  """Prints the table's rows of one task and critic setting."""
  import jax

  from jaxsafe import envs
  from jaxsafe.agents.base import with_task_cost_limit
  from jaxsafe.agents.first_order.base import FirstOrder
  from jaxsafe.agents.first_order.shac_lag import SHACLagConfig
  from jaxsafe.studies import estimator_check as ec

  fits = [int(f) for f in args.fits.split(",")]
  windows = [int(w) for w in args.windows.split(",")]
  config = SHACLagConfig(num_envs=args.envs, normalize_values=normalize == "True",
                         hidden_sizes=tuple(int(h) for h in hidden.split(",")))
  env = envs.make(task, num_envs=args.envs)
  fo = FirstOrder(env, with_task_cost_limit(config, env), "check")
  k_init, k_pre, k_fit, k_check = jax.random.split(jax.random.PRNGKey(args.seed), 4)
  t0 = time.perf_counter()
  state, _ = jax.jit(lambda s, k: ec.pretrain_actor(fo, s, k, args.pretrain))(fo.init(k_init),
                                                                              k_pre)
  agree = jax.jit(lambda s, k, h: ec.agreement(fo, s, k, h), static_argnums=2)
  fit = jax.jit(lambda s, k, n: ec.fit_critics(fo, s, k, n), static_argnums=2)
  done = 0
  for target in fits:
    state, _ = fit(state, jax.random.fold_in(k_fit, target), target - done)
    done = target
    for h in windows if target == fits[-1] else [10]:
      out = agree(state, k_check, h)
      print(f"| {task} | {hidden} | {normalize} | {done} | {h} | "
            f"{float(out['return_cosine']):.3f} | {float(out['return_relative_error']):.3f} | "
            f"{float(out['cost_cosine']):.3f} | {float(out['cost_relative_error']):.3f} |",
            flush=True)
  print(f"<!-- {task} {hidden} {normalize}: {time.perf_counter() - t0:.0f} s -->", flush=True)


def main() -> None:
  from jaxsafe.envs.control import TASKS

  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--task", nargs="+", default=sorted(TASKS))
  parser.add_argument("--envs", type=int, default=256)
  parser.add_argument("--pretrain", type=int, default=30)
  parser.add_argument("--fits", default="10,30,100", help="cumulative critic iterations")
  parser.add_argument("--windows", default="5,10,20,100")
  parser.add_argument("--hidden", default="64,64;128,128", help="critic sizes, ';'-separated")
  parser.add_argument("--normalize", default="True,False", help="normalize_values settings")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  print("| task | critic | normalised | fits | h | cos g | rel. err. g | cos q | rel. err. q |")
  print("|---|---|---|---:|---:|---:|---:|---:|---:|")
  for task in args.task:
    for hidden in args.hidden.split(";"):
      for normalize in args.normalize.split(","):
        measure(task, hidden, normalize, args)


if __name__ == "__main__":
  main()
