"""Navigation throughput: jaxsafe's JAX `point-goal` against Safety-Gymnasium's PointGoal1.

In one process on the current JAX backend, env steps per second of

(a) jaxsafe ``point-goal`` (and, with ``--all``, every navigation id) as agents train on it:
    ``envs.make(id, num_envs=N, auto_reset=True)`` (N = 4096 by default) stepped with uniform
    random actions in a jitted ``lax.scan`` of L = 50 steps, called back to back on its own
    output; best of R timed calls after a warm-up call, with ``block_until_ready``;
(b) ``sg/SafetyPointGoal1-v0`` through the bridge (envs/safety_gymnasium.py), 1 env and a
    vector of 8, stepped the same way (a jitted scan whose steps are host callbacks);
(c) raw Safety-Gymnasium for reference: ``SafetySyncVectorEnv`` of 1 and 8 envs stepped in a
    Python loop with random actions (what (b) costs without JAX around it).

Prints the machine and versions, a markdown table and the ratio (a) / (b) for 1 and 8 envs
(the acceptance target of issue 5 is >= 500x). (b) and (c) need the extra
``jaxsafe[safety-gymnasium]`` (``make install`` has it); without it they are skipped with a note.

    .venv/bin/python benchmarks/navigation_throughput.py            # about 1-2 minutes
    .venv/bin/python benchmarks/navigation_throughput.py --all      # every navigation id
    .venv/bin/python benchmarks/navigation_throughput.py --quick    # tiny budgets
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

import jax
import numpy as np

warnings.filterwarnings("ignore")

SG_ID = "SafetyPointGoal1-v0"


def jax_steps_per_second(env_id: str, num_envs: int, length: int, reps: int) -> tuple[float, float]:
  """(env steps/s, compile + first call seconds) of a jitted scan of random-action steps."""
  from jaxsafe import envs

  env = envs.make(env_id, num_envs=num_envs, auto_reset=True)

  def chunk(carry):
    def body(c, _):
      state, key = c
      key, sub = jax.random.split(key)
      action = jax.random.uniform(sub, (num_envs, env.action_size), minval=-1.0, maxval=1.0)
      return (env.step(state, action), key), None
    return jax.lax.scan(body, carry, None, length=length)[0]

  run = jax.jit(chunk)
  carry = (env.reset(jax.random.PRNGKey(0)), jax.random.PRNGKey(1))
  start = time.perf_counter()
  carry = jax.block_until_ready(run(carry))
  compile_s = time.perf_counter() - start
  times = []
  for _ in range(reps):
    start = time.perf_counter()
    carry = jax.block_until_ready(run(carry))
    times.append(time.perf_counter() - start)
  if hasattr(env, "close"):
    env.close()
  return num_envs * length / min(times), compile_s


def raw_sg_steps_per_second(num_envs: int, steps: int) -> float:
  """Env steps/s of Safety-Gymnasium's own vector env in a Python loop (random actions)."""
  from jaxsafe.envs.safety_gymnasium import import_safety_gymnasium
  from safety_gymnasium.vector import SafetySyncVectorEnv

  sg = import_safety_gymnasium()
  vec = SafetySyncVectorEnv([lambda: sg.make(SG_ID)] * num_envs)
  vec.reset(seed=0)
  vec.action_space.seed(0)
  for _ in range(20):
    vec.step(vec.action_space.sample())
  start = time.perf_counter()
  for _ in range(steps):
    vec.step(vec.action_space.sample())
  elapsed = time.perf_counter() - start
  vec.close()
  return num_envs * steps / elapsed


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--num-envs", type=int, default=4096)
  parser.add_argument("--all", action="store_true", help="every navigation id, not only point-goal")
  parser.add_argument("--quick", action="store_true", help="tiny budgets: checks that it runs")
  args = parser.parse_args()
  from jaxsafe.envs.registry import NAVIGATION_IDS
  from jaxsafe.envs.safety_gymnasium import is_available

  length, reps, sg_steps = (10, 1, 20) if args.quick else (50, 5, 500)
  num_envs = 64 if args.quick else args.num_envs
  print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, JAX {jax.__version__} on "
        f"{jax.default_backend()}; jaxsafe: scan of {length} steps x {num_envs} envs, best of "
        f"{reps}; bridge: scan of {length} steps; raw Safety-Gymnasium: {sg_steps} steps")
  rows = []
  for env_id in NAVIGATION_IDS if args.all else ["point-goal"]:
    sps, compile_s = jax_steps_per_second(env_id, num_envs, length, reps)
    rows.append((f"`{env_id}` (jaxsafe, JAX)", num_envs, sps, compile_s))
    print(f"  {env_id}: {sps:,.0f} env steps/s", flush=True)
  jax_sps = rows[0][2]
  bridge = {}
  if is_available():
    for n in (1, 8):
      sps, compile_s = jax_steps_per_second(f"sg/{SG_ID}", n, length, reps)
      bridge[n] = sps
      rows.append((f"`sg/{SG_ID}` (bridge)", n, sps, compile_s))
      raw = raw_sg_steps_per_second(n, sg_steps // n * 2 if n > 1 else sg_steps)
      rows.append((f"{SG_ID} (raw Safety-Gymnasium loop)", n, raw, float("nan")))
      print(f"  sg x{n}: bridge {sps:,.0f}, raw {raw:,.0f} env steps/s", flush=True)
  else:
    print("  Safety-Gymnasium is not installed (make install / pip install "
          "jaxsafe[safety-gymnasium]): bridge rows skipped")
  print("\n| env | envs | env steps/s | compile + first call (s) |\n|---|---|---|---|")
  for name, n, sps, compile_s in rows:
    shown = "" if np.isnan(compile_s) else f"{compile_s:.1f}"
    print(f"| {name} | {n} | {sps:,.0f} | {shown} |")
  for n, sps in bridge.items():
    print(f"\nratio point-goal x{num_envs} / sg/{SG_ID} x{n}: {jax_sps / sps:,.0f}x")


if __name__ == "__main__":
  main()
