"""What auto-reset costs: env steps/s of a Brax task's batch with and without resets.

For a task (default cartpole-position, 256 envs, random actions in [-1, 1]), in one process,
interleaved, median of ``--reps`` chunks of 20 calls of a jitted 20-step ``lax.scan``:

- jaxsafe: ``envs.make(id, num_envs=N, auto_reset=True)`` (every episode from a fresh
  s_0 ~ rho_0, from ``VmapAutoReset``'s pool);
- brax: Brax's training wrap of the same Brax env (``AutoResetWrapper`` copies each env's first
  state back in, so every episode of an env starts from the same s_0);
- no reset: ``envs.make(id, num_envs=N)`` (episodes end and stay ended; a lower bound).

Prints us per env step and the fraction of steps on which an episode ended. Run:

    .venv/bin/python benchmarks/reset_cost.py [--env reacher-position] [--num-envs 256]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import jax
from runs import random_action_chunk

warnings.filterwarnings("ignore")

LENGTH, CALLS = 20, 20


def build(kind: str, env_id: str, num_envs: int):
  """A jitted chunk ``carry -> (carry, (cost or reward sum, number of ends))`` and its carry."""
  from brax.envs.wrappers import training as brax_training

  from jaxsafe import envs
  if kind == "brax":
    task = envs.make(env_id).unwrapped
    env = brax_training.wrap(task.brax_env, episode_length=task.episode_length)
    state = jax.jit(env.reset)(jax.random.split(jax.random.PRNGKey(0), num_envs))
  else:
    env = envs.make(env_id, num_envs=num_envs, auto_reset=kind == "jaxsafe")
    state = jax.jit(env.reset)(jax.random.PRNGKey(0))

  chunk = random_action_chunk(env, num_envs, LENGTH)
  compiled = jax.jit(chunk, donate_argnums=0)
  carry, out = compiled((state, jax.random.PRNGKey(1)))
  jax.block_until_ready(out)
  return compiled, carry


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--env", default="cartpole-position")
  parser.add_argument("--num-envs", type=int, default=256)
  parser.add_argument("--reps", type=int, default=7)
  args = parser.parse_args()
  kinds = ("jaxsafe", "brax", "no reset")
  runs = {k: list(build(k, args.env, args.num_envs)) for k in kinds}
  times = {k: [] for k in kinds}
  ends = {k: 0.0 for k in kinds}
  for _ in range(args.reps):
    for kind in kinds:
      compiled, carry = runs[kind]
      t0, total = time.perf_counter(), 0.0
      for _ in range(CALLS):
        carry, out = compiled(carry)
        total += float(out[1])
      times[kind].append(time.perf_counter() - t0)
      runs[kind][1] = carry
      ends[kind] = total / (CALLS * LENGTH * args.num_envs)
  steps = CALLS * LENGTH * args.num_envs
  print(f"{args.env}, {args.num_envs} envs, median of {args.reps} x {CALLS} calls of {LENGTH} steps")
  for kind in kinds:
    share = "" if kind == "no reset" else f"   (an episode ends on {100 * ends[kind]:.1f}% of env steps)"
    print(f"  {kind:9s} {1e6 * statistics.median(times[kind]) / steps:6.2f} us/env step{share}")


if __name__ == "__main__":
  main()
