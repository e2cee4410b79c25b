"""Throughput at scale: env steps/s against the number of envs, and seeds trained in parallel.

What a GPU shows and a 2-core CPU cannot: how raw stepping and whole PPO-Lag iterations scale to
thousands of envs, and what training 16 seeds as one vmapped program costs against one seed.
Every number is env steps per second summed over all envs and seeds, measured after compile
(the compile time is reported beside it), median of ``--repeats`` timed calls.

    python benchmarks/scaling.py                 # the GPU settings (docs/benchmarks.md)
    python benchmarks/scaling.py --quick         # tiny sizes, to check the script on a CPU
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import jax

from jaxsafe import envs
from jaxsafe.train import runner


def _median_time(fn, arg, repeats: int) -> float:
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(arg))
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def raw_stepping(env_id: str, num_envs: int, steps: int, repeats: int) -> tuple[float, float]:
  """(env steps/s, compile s) of random-action stepping of ``num_envs`` auto-resetting envs."""
  env = envs.make(env_id, num_envs=num_envs, auto_reset=True)

  def run(carry):
    state, key = carry

    def body(c, _):
      s, k = c
      k, sub = jax.random.split(k)
      a = jax.random.uniform(sub, (num_envs, env.action_size), minval=-1.0, maxval=1.0)
      return (env.step(s, a), k), None

    return jax.lax.scan(body, (state, key), None, length=steps)[0]

  t0 = time.perf_counter()
  fn = jax.jit(run).lower((env.reset(jax.random.PRNGKey(0)), jax.random.PRNGKey(1))).compile()
  compile_s = time.perf_counter() - t0
  carry = (jax.jit(env.reset)(jax.random.PRNGKey(0)), jax.random.PRNGKey(1))
  jax.block_until_ready(fn(carry))
  return num_envs * steps / _median_time(fn, carry, repeats), compile_s


def training(algo: str, env_id: str, num_envs: int, seeds: int, rollout_length: int,
             chunk: int, repeats: int) -> tuple[float, float]:
  """(env steps/s over all seeds, compile s) of ``chunk`` vmapped training iterations."""
  spec = runner.RunSpec(algo, env_id, seeds=seeds, total_steps=1, chunk_iters=chunk,
                        overrides={"num_envs": num_envs, "rollout_length": rollout_length,
                                   "num_minibatches": 4, "update_epochs": 4})
  p = runner.plan(spec)
  states = runner.init_states(p)
  t0 = time.perf_counter()
  fn = runner.compile_chunk(p.agent, states, chunk)
  compile_s = time.perf_counter() - t0
  times = []
  for _ in range(repeats + 1):  # the first call is a warm-up
    t0 = time.perf_counter()
    states, metrics = fn(states)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - t0)
  steps = chunk * num_envs * rollout_length * seeds
  return steps / statistics.median(times[1:]), compile_s


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="tiny sizes (script check on CPU)")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--tasks", default="function,cartpole-position,halfcheetah-velocity")
  args = parser.parse_args()
  tasks = args.tasks.split(",")
  env_counts = [16, 64] if args.quick else [256, 1024, 4096, 16384]
  train_envs = [16] if args.quick else [1024, 4096]
  seed_counts = [1, 2] if args.quick else [1, 16]
  steps = 20 if args.quick else 100
  print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), "
        f"host {platform.machine()}; jax {jax.__version__}")

  print("\n### Raw stepping, random actions (env steps/s; compile s)\n")
  print("| task | " + " | ".join(f"{n} envs" for n in env_counts) + " |")
  print("|---|" + "---|" * len(env_counts))
  for task in tasks:
    cells = []
    for n in env_counts:
      sps, comp = raw_stepping(task, n, steps, args.repeats)
      cells.append(f"{sps:,.0f} ({comp:.1f} s)")
    print(f"| {task} | " + " | ".join(cells) + " |", flush=True)

  print("\n### ppo-lag training, seeds vmapped in one program "
        "(env steps/s over all seeds; compile s)\n")
  cols = [(n, s) for n in train_envs for s in seed_counts]
  print("| task | " + " | ".join(f"{n} envs x {s} seeds" for n, s in cols) + " |")
  print("|---|" + "---|" * len(cols))
  for task in tasks:
    cells = []
    for n, s in cols:
      sps, comp = training("ppo-lag", task, n, s, 20 if args.quick else 50,
                           2 if args.quick else 5, args.repeats)
      cells.append(f"{sps:,.0f} ({comp:.1f} s)")
    print(f"| {task} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
  main()
