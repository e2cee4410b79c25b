"""Navigation throughput: jaxsafe's JAX `point-goal` against Safety-Gymnasium's PointGoal1.

In one process on the current JAX backend, env steps per second of

(a) jaxsafe ``point-goal`` (and, with ``--all``, every navigation id) as agents train on it:
    ``envs.make(id, num_envs=N, auto_reset=True)`` (N = 4096 by default) stepped with uniform
    random actions in a jitted ``lax.scan`` of L = 50 steps, called back to back on its own
    output; best of R timed calls after a warm-up call, with ``block_until_ready``;
(b) ``sg/SafetyPointGoal1-v0`` through the bridge (envs/safety_gymnasium.py), 1 env and a
    vector of 8, stepped the same way (a jitted scan whose steps are host callbacks);
(c) raw Safety-Gymnasium for reference: ``SafetySyncVectorEnv`` of 1 and 8 envs stepped in a
    Python loop with random actions (what (b) costs without JAX around it);
(d) the faithful variants of ``point-goal``, ``point-circle``, ``car-goal`` and ``car-circle``
    (``dynamics="safety-gymnasium"``, issue 16) stepped as in (a), and the bridge's
    ``sg/SafetyCarGoal1-v0`` as in (b); with ``--training``, also ppo-lag's training env steps/s
    on ``point-goal``, the faithful ``point-goal`` and ``car-goal`` and the bridge's two (1 seed,
    16 envs x 1000 steps per update).

Prints the machine and versions, a markdown table and the ratio (a) / (b) for 1 and 8 envs
(the acceptance target of issue 5 is >= 500x). (b) and (c) need the extra
``jaxsafe[safety-gymnasium]`` (``make install`` has it); without it they are skipped with a note.

    .venv/bin/python benchmarks/navigation_throughput.py            # about 1-2 minutes
    .venv/bin/python benchmarks/navigation_throughput.py --all      # every navigation id
    .venv/bin/python benchmarks/navigation_throughput.py --quick    # tiny budgets
    .venv/bin/python benchmarks/navigation_throughput.py --num-envs 1024 --bridge-envs 1,8,64 \
        --training                                                   # issue 16's numbers
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
warnings.filterwarnings("ignore")

SG_ID = "SafetyPointGoal1-v0"
#: the faithful variants (issue 16) and the real task each is compared with
FAITHFUL_IDS = {"point-goal": SG_ID, "point-circle": "SafetyPointCircle1-v0",
                "car-goal": "SafetyCarGoal1-v0", "car-circle": "SafetyCarCircle1-v0"}


def jax_steps_per_second(env_id: str, num_envs: int, length: int, reps: int,
                         **options) -> tuple[float, float]:
  """(env steps/s, compile + first call seconds) of a jitted scan of random-action steps."""
  from jaxsafe import envs

  env = envs.make(env_id, num_envs=num_envs, auto_reset=True, **options)

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
  from safety_gymnasium.vector import SafetySyncVectorEnv

  from jaxsafe.envs.safety_gymnasium import import_safety_gymnasium

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


def training_steps_per_second(env_id: str, updates: int, **options) -> tuple[float, float]:
  """(env steps/s, compile s) of ``ppo-lag`` training, 1 seed, 16 envs x 1000 steps per update
  (the navigation settings of docs/benchmarks.md), over ``updates`` updates after compiling."""
  import tempfile

  import runs

  from jaxsafe import train

  overrides = runs.whole_episode_overrides(1000)
  spec = train.RunSpec("ppo-lag", env_id, seeds=1, env_options=options, overrides=overrides,
                       total_steps=updates * overrides["num_envs"] * 1000)
  with tempfile.TemporaryDirectory() as tmp:
    summary = train.run(spec, os.path.join(tmp, "run"), progress=False)
  return summary["steps_per_second"], summary["compile_s"]


FAITHFUL = {"dynamics": "safety-gymnasium"}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--num-envs", type=int, default=4096)
  parser.add_argument("--all", action="store_true", help="every navigation id, not only point-goal")
  parser.add_argument("--quick", action="store_true", help="tiny budgets: checks that it runs")
  parser.add_argument("--bridge-envs", default="1,8", help="bridge vector sizes (default 1,8)")
  parser.add_argument("--training", action="store_true",
                      help="also time ppo-lag training on point-goal, its faithful variant "
                           "(dynamics=safety-gymnasium) and the bridge")
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
  for env_id in FAITHFUL_IDS:
    sps, compile_s = jax_steps_per_second(env_id, num_envs, length, reps, **FAITHFUL)
    rows.append((f"`{env_id}`, dynamics=safety-gymnasium (jaxsafe, JAX)", num_envs, sps,
                 compile_s))
    print(f"  {env_id} faithful: {sps:,.0f} env steps/s", flush=True)
  jax_sps = rows[0][2]
  faithful = {env_id: next(r[2] for r in rows if f"`{env_id}`, dynamics" in r[0])
              for env_id in FAITHFUL_IDS}
  bridge, car_bridge = {}, {}
  if is_available():
    for n in (int(x) for x in args.bridge_envs.split(",")):
      sps, compile_s = jax_steps_per_second(f"sg/{SG_ID}", n, length, reps)
      bridge[n] = sps
      rows.append((f"`sg/{SG_ID}` (bridge)", n, sps, compile_s))
      print(f"  sg x{n}: bridge {sps:,.0f} env steps/s", flush=True)
      if n <= 8:  # a second set of 64 MuJoCo worlds besides the bridge's ran out of 24 GiB
        car_id = FAITHFUL_IDS["car-goal"]
        car_bridge[n], compile_s = jax_steps_per_second(f"sg/{car_id}", n, length, reps)
        rows.append((f"`sg/{car_id}` (bridge)", n, car_bridge[n], compile_s))
        print(f"  sg car x{n}: bridge {car_bridge[n]:,.0f} env steps/s", flush=True)
        raw = raw_sg_steps_per_second(n, sg_steps // n * 2 if n > 1 else sg_steps)
        rows.append((f"{SG_ID} (raw Safety-Gymnasium loop)", n, raw, float("nan")))
        print(f"  sg x{n}: raw {raw:,.0f} env steps/s", flush=True)
  else:
    print("  Safety-Gymnasium is not installed (make install / pip install "
          "jaxsafe[safety-gymnasium]): bridge rows skipped")
  print("\n| env | envs | env steps/s | compile + first call (s) |\n|---|---|---|---|")
  for name, n, sps, compile_s in rows:
    shown = "" if np.isnan(compile_s) else f"{compile_s:.1f}"
    print(f"| {name} | {n} | {sps:,.0f} | {shown} |")
  for n, sps in bridge.items():
    print(f"\nratio point-goal x{num_envs} / sg/{SG_ID} x{n}: {jax_sps / sps:,.0f}x; "
          f"faithful point-goal: {faithful['point-goal'] / sps:,.0f}x")
  for n, sps in car_bridge.items():
    print(f"ratio faithful car-goal x{num_envs} / sg/{FAITHFUL_IDS['car-goal']} x{n}: "
          f"{faithful['car-goal'] / sps:,.0f}x")
  if args.training:
    updates = (1, 1) if args.quick else (5, 2)
    print("\nppo-lag training, 1 seed, 16 envs x 1000 steps per update:\n"
          "| env | env steps/s | compile (s) |\n|---|---|---|")
    for name, env_id, options, n in (
        ("`point-goal`", "point-goal", {}, updates[0]),
        ("`point-goal`, dynamics=safety-gymnasium", "point-goal", FAITHFUL, updates[0]),
        (f"`sg/{SG_ID}` (bridge)", f"sg/{SG_ID}", {}, updates[1]),
        ("`car-goal`, dynamics=safety-gymnasium", "car-goal", FAITHFUL, updates[0]),
        ("`sg/SafetyCarGoal1-v0` (bridge)", "sg/SafetyCarGoal1-v0", {}, updates[1])):
      if env_id.startswith("sg/") and not is_available():
        continue
      sps, compile_s = training_steps_per_second(env_id, n, **options)
      print(f"| {name} | {sps:,.0f} | {compile_s:.1f} |", flush=True)


if __name__ == "__main__":
  main()
