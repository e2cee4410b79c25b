"""Wall time of one CGPO iteration against one PPO-Lag iteration on the same batch.

Both agents are compiled by the runner (``compile_chunk``: jit(vmap(scan(update))), one seed)
with C iterations per call, on the same task and the same batch of N envs x T steps (CGPO:
N whole episodes; PPO-Lag: ``rollout_length = T``, its default 10 epochs x 8 minibatches). Each
agent is warmed up once, then timed over ``--reps`` calls interleaved with the other's; the
median per iteration is reported, compile excluded (and printed separately).

    .venv/bin/python benchmarks/cgpo_iteration.py                      # cartpole, 128 x 300
    .venv/bin/python benchmarks/cgpo_iteration.py --env function --num-envs 32
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import statistics
import time
import warnings

import jax

warnings.filterwarnings("ignore")


def compiled(algo: str, env_id: str, overrides: dict, chunk: int):
  from jaxsafe.train import runner
  spec = runner.RunSpec(algo=algo, env=env_id, seeds=1, total_steps=1, overrides=overrides,
                        chunk_iters=chunk)
  p = runner.plan(spec)
  states = runner.init_states(p)
  t0 = time.perf_counter()
  fn = runner.compile_chunk(p.agent, states, chunk)
  return fn, states, time.perf_counter() - t0, p.agent.steps_per_update


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--env", default="cartpole-position")
  parser.add_argument("--num-envs", type=int, default=128)
  parser.add_argument("--chunk", type=int, default=2, help="iterations per timed call")
  parser.add_argument("--reps", type=int, default=3)
  args = parser.parse_args()
  with contextlib.redirect_stdout(io.StringIO()):  # mujoco.mjx's "Failed to import warp"
    from jaxsafe import envs
  horizon = envs.make(args.env).episode_length
  print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {jax.devices()}; "
        f"load average {os.getloadavg()[0]:.2f}")
  print(f"{args.env}: N = {args.num_envs} envs x T = {horizon} steps per iteration; "
        f"{args.chunk} iterations per timed call, median of {args.reps}")
  runs = {
      "cgpo": compiled("cgpo", args.env, {"num_envs": args.num_envs}, args.chunk),
      "ppo-lag": compiled("ppo-lag", args.env, {"num_envs": args.num_envs,
                                                "rollout_length": horizon}, args.chunk),
  }
  for name, (_, _, compile_s, steps) in runs.items():
    print(f"  {name}: compile {compile_s:.1f} s, {steps} env steps per iteration")
  states = {name: r[1] for name, r in runs.items()}
  times = {name: [] for name in runs}
  for name, (fn, _, _, _) in runs.items():  # warm-up
    states[name], metrics = fn(states[name])
    jax.block_until_ready(metrics)
  for _ in range(args.reps):
    for name, (fn, _, _, _) in runs.items():
      t0 = time.perf_counter()
      states[name], metrics = fn(states[name])
      jax.block_until_ready(metrics)
      times[name].append((time.perf_counter() - t0) / args.chunk)
  per_iter = {name: statistics.median(t) for name, t in times.items()}
  print("\n| agent | s / iteration | env steps / s | compile (s) |")
  print("|---|---:|---:|---:|")
  for name, (_, _, compile_s, steps) in runs.items():
    print(f"| {name} | {per_iter[name]:.2f} | {steps / per_iter[name]:,.0f} | {compile_s:.0f} |")
  print(f"\nCGPO / PPO-Lag time per iteration: {per_iter['cgpo'] / per_iter['ppo-lag']:.2f}")


if __name__ == "__main__":
  main()
