"""Same numbers before and after a refactor: every agent's metrics on a short, seeded run.

Each agent trains a few updates from seed 0 on a small batch (the runs below: every algorithm of
``jaxsafe list``, a few on two tasks); the script saves
every metric of every update and the trained policy's deterministic actions on fixed
observations, or compares them with a saved file (rtol 1e-5 by default):

    .venv/bin/python benchmarks/same_numbers.py --save /tmp/before.npz
    .venv/bin/python benchmarks/same_numbers.py --compare /tmp/before.npz [--rename old=new ...]

A metric that exists on one side only is listed, not failed; ``--rename`` maps an old metric
name to a new one. Prints one markdown row per agent: the largest relative difference over its
metrics and actions.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

#: (agent, env, overrides, updates): small batches so that the whole table takes a few minutes.
RUNS = (
    ("ppo", "cruise", {"num_envs": 8, "rollout_length": 50}, 6),
    ("ppo-lag", "cruise", {"num_envs": 8, "rollout_length": 50}, 6),
    ("pid-lag", "cruise", {"num_envs": 8, "rollout_length": 50}, 6),
    ("ppo-lag", "cartpole-position", {"num_envs": 8, "rollout_length": 50}, 4),
    ("cppo", "function", {"num_envs": 8, "rollout_length": 50}, 6),
    ("dyna-cppo", "cruise", {"num_envs": 8, "rollout_length": 50, "model_updates": 5,
                             "imagined_starts": 40}, 4),
    ("cgpo", "cruise", {"num_envs": 16}, 5),
    ("cgpo", "function", {"num_envs": 16}, 5),
    ("mb-cgpo", "cruise", {"num_envs": 16, "model_updates": 10}, 4),
    ("shac-lag", "cruise", {"num_envs": 16}, 5),
    ("bptt-lag", "cruise", {"num_envs": 16}, 5),
    ("pdo", "cruise", {"num_envs": 8, "rollout_length": 50}, 4),
    ("appo", "cruise", {"num_envs": 8, "rollout_length": 50}, 4),
    ("cup", "cruise", {"num_envs": 8, "rollout_length": 50}, 4),
    ("trpo", "cruise", {"num_envs": 8, "rollout_length": 50}, 4),
    ("trpo-lag", "cruise", {"num_envs": 8, "rollout_length": 50}, 4),
    ("cpo", "cruise", {"num_envs": 8, "rollout_length": 50}, 4),
    # Off-policy: past the warm-up within the run, small networks and batches.
    ("cvpo", "cruise", {"num_envs": 8, "warmup_steps": 80, "batch_size": 32,
                        "hidden_sizes": (32, 32)}, 4),
    ("sac-lag", "cruise", {"num_envs": 8, "warmup_steps": 80, "batch_size": 32,
                           "hidden_sizes": (32, 32)}, 4),
    ("td3-lag", "cruise", {"num_envs": 8, "warmup_steps": 80, "batch_size": 32,
                           "hidden_sizes": (32, 32)}, 4),
    ("ddpg-lag", "cruise", {"num_envs": 8, "warmup_steps": 80, "batch_size": 32,
                            "hidden_sizes": (32, 32)}, 4),
)


def measure(name: str, env_id: str, overrides: dict, updates: int) -> dict[str, np.ndarray]:
  from jaxsafe import agents
  agent = agents.make(name, env_id, **overrides)
  state = agent.init(jax.random.PRNGKey(0))
  state, metrics = jax.jit(lambda s: jax.lax.scan(lambda c, _: agent.update(c), s, None,
                                                  length=updates))(state)
  obs = jax.random.normal(jax.random.PRNGKey(1), (32, agent.env.observation_size))
  actions = jax.vmap(lambda o: agent.policy(state, o, None, True))(obs)
  out = {f"metric:{k}": np.asarray(v) for k, v in metrics.items()}
  out["actions"] = np.asarray(actions)
  return out


def key_of(run) -> str:
  name, env_id, _, _ = run
  return f"{name}@{env_id}"


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  group = parser.add_mutually_exclusive_group(required=True)
  group.add_argument("--save")
  group.add_argument("--compare")
  parser.add_argument("--rtol", type=float, default=1e-5)
  parser.add_argument("--rename", nargs="*", default=[], help="old=new metric names")
  parser.add_argument("--only", nargs="*", default=None, help="agent@env keys")
  args = parser.parse_args()
  rename = dict(item.split("=", 1) for item in args.rename)

  saved = dict(np.load(args.compare)) if args.compare else {}
  results = {}
  print("| agent@env | updates | metrics compared | max relative difference | only before | only after |")
  print("|---|---:|---:|---:|---|---|")
  worst_all = 0.0
  for run in RUNS:
    key = key_of(run)
    if args.only and key not in args.only:
      continue
    t0 = time.perf_counter()
    out = measure(*run)
    for k, v in out.items():
      results[f"{key}|{k}"] = v
    if not args.compare:
      print(f"| {key} | {run[3]} | {len(out)} | (saved, {time.perf_counter() - t0:.0f}s) | | |", flush=True)
      continue
    before = {k.split("|", 1)[1]: v for k, v in saved.items() if k.startswith(key + "|")}
    before = {(f"metric:{rename[k[7:]]}" if k.startswith("metric:") and k[7:] in rename else k): v
              for k, v in before.items()}
    common = sorted(set(before) & set(out))
    worst, worst_name = 0.0, ""
    for k in common:
      a, b = before[k].astype(np.float64), out[k].astype(np.float64)
      both_nan = np.isnan(a) & np.isnan(b)
      diff = np.where(both_nan, 0.0, np.abs(a - b) / np.maximum(np.abs(a), 1e-6))
      diff = np.where(np.isnan(diff), np.inf, diff)
      if float(diff.max(initial=0.0)) > worst:
        worst, worst_name = float(diff.max(initial=0.0)), k.removeprefix("metric:")
    worst_all = max(worst_all, worst)
    only_before = sorted(k[7:] for k in set(before) - set(out))
    only_after = sorted(k[7:] for k in set(out) - set(before))
    print(f"| {key} | {run[3]} | {len(common)} | {worst:.1e}{f' FAIL ({worst_name})' if worst > args.rtol else ''} "
          f"| {', '.join(only_before)} | {', '.join(only_after)} |", flush=True)
  if args.save:
    np.savez(args.save, **results)
  else:
    print(f"largest relative difference {worst_all:.1e} (rtol {args.rtol})")


if __name__ == "__main__":
  main()
