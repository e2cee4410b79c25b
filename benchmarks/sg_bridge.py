"""Throughput of the Safety-Gymnasium bridge vs raw Safety-Gymnasium stepping (docs/envs.md).

For one Safety-Gymnasium id (default SafetyPointGoal1-v0) and each env count N (default 1 and
8), under uniform random actions in [-1, 1] and in one process:

(a) raw: ``safety_gymnasium.make(id)`` stepped in a Python loop, reset when an episode ends
    (N = 1 only: the plain single-env API);
(b) raw vector: the ``SafetySyncVectorEnv`` of N envs that the bridge holds, stepped in a Python
    loop (it auto-resets);
(c) bridge: ``envs.make("sg/<id>", num_envs=N)``, a jitted ``lax.scan`` of L steps called back to
    back on its own output, after a warm-up call that compiles it.

Every timed window starts right after an untimed reset and runs ``--steps-per-env`` steps per
env (default: the episode length T), so each env passes exactly one auto-reset at its end, the
share of resets that training sees (a navigation reset rebuilds the MuJoCo world and takes ~0.5 s,
as much as a few hundred steps). The three are interleaved repetition by repetition so that
background load hits them alike, and the median env steps/s is reported. Run:

    .venv/bin/python benchmarks/sg_bridge.py
    .venv/bin/python benchmarks/sg_bridge.py --env-id SafetyHalfCheetahVelocity-v1 --reps 3
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import jax
import numpy as np

from jaxsafe import envs
from jaxsafe.envs.safety_gymnasium import import_safety_gymnasium


def raw_single(sg, env_id: str, steps: int, rng: np.random.Generator) -> float:
  env = sg.make(env_id, disable_env_checker=True)
  env.reset(seed=int(rng.integers(1 << 30)))
  env.reset()  # the first reset also builds the env; time from an ordinary one on
  low, high = env.action_space.low, env.action_space.high
  start = time.perf_counter()
  for _ in range(steps):
    _, _, _, terminated, truncated, _ = env.step(rng.uniform(low, high))
    if terminated or truncated:
      env.reset()
  elapsed = time.perf_counter() - start
  env.close()
  return steps / elapsed


def raw_vector(bridge_env, steps: int, rng: np.random.Generator) -> float:
  vec, n = bridge_env._vec, bridge_env.num_envs  # the bridge's own host vector env
  vec.reset(seed=int(rng.integers(1 << 30)))
  space = vec.action_space
  start = time.perf_counter()
  for _ in range(steps):
    vec.step(rng.uniform(space.low, space.high))
  return steps * n / (time.perf_counter() - start)


def bridge_rollout(env, length: int):
  def body(state, key):
    action = jax.random.uniform(key, (env.num_envs, env.action_size), minval=-1.0, maxval=1.0)
    return env.step(state, action), None

  return jax.jit(lambda s, k: jax.lax.scan(body, s, jax.random.split(k, length))[0])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--env-id", default="SafetyPointGoal1-v0")
  parser.add_argument("--num-envs", default="1,8", help="comma-separated env counts")
  parser.add_argument("--steps-per-env", type=int, help="timed steps per env (default T)")
  parser.add_argument("--reps", type=int, default=3)
  parser.add_argument("--length", type=int, default=100, help="bridge scan length L")
  args = parser.parse_args()
  sg = import_safety_gymnasium()
  rng = np.random.default_rng(0)
  steps = args.steps_per_env or envs.make(f"sg/{args.env_id}").episode_length
  steps = max(args.length, steps // args.length * args.length)
  print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, JAX "
        f"{jax.__version__} ({jax.default_backend()}), {args.env_id}, {steps} steps per env x "
        f"{args.reps} repetitions, bridge scan length {args.length}")
  rows = []
  for n in (int(x) for x in args.num_envs.split(",")):
    env = envs.make(f"sg/{args.env_id}", num_envs=n, auto_reset=True)
    rollout = bridge_rollout(env, args.length)
    key = jax.random.PRNGKey(0)
    state = jax.block_until_ready(rollout(env.reset(key), key))  # compile and warm up
    results: dict[str, list[float]] = {"raw": [], "raw vector": [], "bridge": []}
    calls = steps // args.length
    for rep in range(args.reps):
      if n == 1:
        results["raw"].append(raw_single(sg, args.env_id, steps, rng))
      results["raw vector"].append(raw_vector(env, steps, rng))
      state = jax.block_until_ready(env.reset(jax.random.PRNGKey(rep + 1)))  # not timed
      start = time.perf_counter()
      for i in range(calls):
        state = rollout(state, jax.random.PRNGKey(100 * rep + i))
      jax.block_until_ready(state)
      results["bridge"].append(calls * args.length * n / (time.perf_counter() - start))
    env.close()
    rows.append((n, {k: float(np.median(v)) if v else None for k, v in results.items()}))
  print("\n| envs | raw single env | raw vector env | bridge | bridge / raw vector |")
  print("|---|---|---|---|---|")
  for n, r in rows:
    single = f"{r['raw']:,.0f}" if r["raw"] else "-"
    print(f"| {n} | {single} | {r['raw vector']:,.0f} | {r['bridge']:,.0f} | "
          f"{r['bridge'] / r['raw vector']:.2f} |")


if __name__ == "__main__":
  main()
