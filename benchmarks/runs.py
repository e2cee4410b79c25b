"""What the multi-algorithm benchmarks share: train each algorithm's seeds as one runner program
and read its curves back; train one run resumably; print a markdown table; step a batched env
under random actions."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator


def train_each(algos: list[str], env: str, seeds: int, total_steps: int,
               overrides: dict | None = None) -> Iterator[tuple[str, dict, float]]:
  """Yields (algo, progress columns, wall seconds) per algorithm, ``seeds`` seeds each."""
  from jaxsafe import train
  from jaxsafe.train.logger import read_progress

  with tempfile.TemporaryDirectory() as tmp:
    for algo in algos:
      run_dir = os.path.join(tmp, algo)
      t0 = time.perf_counter()
      spec = train.RunSpec(algo, env, seeds=seeds, total_steps=total_steps,
                           overrides=dict(overrides or {}))
      train.run(spec, run_dir, progress=False)
      yield algo, read_progress(run_dir), time.perf_counter() - t0


def train_once(spec, run_dir: str, total_steps: int | None = None) -> dict:
  """Trains (or finishes) one run in ``run_dir`` and writes its ``summary.json``; an unfinished
  run resumes (to ``total_steps`` if given)."""
  import json

  from jaxsafe import train

  summary_path = os.path.join(run_dir, "summary.json")
  if os.path.exists(summary_path):
    with open(summary_path) as f:
      return json.load(f)
  if os.path.exists(run_dir):
    summary = train.resume(run_dir, total_steps, progress=False)
  else:
    summary = train.run(spec, run_dir, progress=False)
  with open(summary_path, "w") as f:
    json.dump(summary, f, indent=1)
  return summary


def whole_episode_overrides(horizon: int) -> dict:
  """The on-policy agents' batch on the navigation tasks: one whole episode per env per update
  (16 envs x ``horizon`` steps, 4 epochs), as in "PPO-Lag on point-goal" (docs/benchmarks.md)."""
  return {"num_envs": 16, "rollout_length": horizon, "update_epochs": 4}


def print_table(header: list[str], rows: list[str]) -> None:
  print("\n| " + " | ".join(header) + " |")
  print("|---|" + "---:|" * (len(header) - 1))
  print("\n".join(rows))


def random_action_chunk(env, num_envs: int, steps: int):
  """``(state, key) -> ((state, key), (reward sum, number of episode ends))``: ``steps`` steps of
  the batched ``env`` under uniform random actions in [-1, 1], as one ``lax.scan`` to jit."""
  import jax

  def chunk(carry):
    state, key = carry

    def body(state, k):
      action = jax.random.uniform(k, (num_envs, env.action_size), minval=-1.0, maxval=1.0)
      state = env.step(state, action)
      return state, (state.reward.sum(), state.done.sum())

    key, sub = jax.random.split(key)
    state, (reward, ends) = jax.lax.scan(body, state, jax.random.split(sub, steps))
    return (state, key), (reward.sum(), ends.sum())

  return chunk
