"""Throughput: jaxsafe PPO-Lag vs raw env stepping vs Brax's own PPO (docs/benchmarks.md).

For each Brax task, in one process on the current JAX backend, with ``--num-envs`` envs (default
256), rollout length L, E SGD epochs and M minibatches per update (default L=20, E=4, M=4):

(a) raw: env steps/s of the jaxsafe task as agents train on it
    (``envs.make(id, num_envs=N, auto_reset=True)``) under uniform random actions in [-1, 1]: a
    jitted ``lax.scan`` of L steps, called back to back on its own output, timed after a warm-up
    call with ``block_until_ready``; median over repetitions of C calls. C is chosen per task so
    that C calls take about ``--chunk-seconds`` (2 <= C <= 20) unless ``--chunk`` is given, and
    is reused as the number of updates per timed chunk in (b) and (c).
(b) jaxsafe: training env steps/s of ``ppo-lag`` (one seed, (64, 64) networks), compiled by the
    runner's ``compile_chunk`` (jit(vmap(scan(update)))) over C updates; each timed chunk is
    C * N * L env steps; median over chunks after a warm-up chunk, compile excluded.
    (b') the same with ``shared_critic=True`` (one critic torso, reward and cost heads).
(c) brax: training env steps/s of ``brax.training.agents.ppo.train.train`` on the task's own
    ``.brax_env`` (same Brax env and pipeline, Brax's EpisodeWrapper/AutoResetWrapper via
    ``wrap_env=True``, episode_length = the task's T) with the same batch: num_envs=N,
    unroll_length=L, batch_size=N/M, num_minibatches=M (N*L env steps per update),
    num_updates_per_batch=E, (64, 64) tanh policy and value networks, normalize_observations=True,
    run_evals=False. Brax reports ``training/sps`` once per training epoch (a pmapped scan of C
    updates, timed by Brax around the call with ``block_until_ready``). Its first TWO epochs
    include XLA compiles (with JAX 0.9.2 the pmapped epoch is compiled on the first call and
    again, with an identical signature, on the second; see JAX_LOG_COMPILES=1), so they are
    dropped and the median of the following epochs is reported.

Timing is interleaved so that a change in background load hits all three alike: (a) and (b) are
compiled and warmed up first, then after each timed Brax epoch (from Brax's ``progress_fn``,
outside Brax's own timer) one chunk of (a) and one of (b) are timed. (b) differs from (c) by
design in what it learns: jaxsafe trains a cost critic beside the reward critic and updates the
Lagrange multiplier; both use a tanh-squashed Gaussian policy and running observation
normalisation.

Run (about 6-8 minutes on 2 CPU cores; ``--ant`` adds ant-velocity, which compiles slowly):

    .venv/bin/python benchmarks/throughput.py
    .venv/bin/python benchmarks/throughput.py --quick          # tiny budgets, checks it works

Prints the machine, versions and settings, then one markdown table with a row per task.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import os
import platform
import statistics
import time
import warnings

import jax
from runs import random_action_chunk

warnings.filterwarnings("ignore")

TASKS = ("cartpole-position", "reacher-position", "halfcheetah-velocity")
#: Brax epochs dropped before timing: both the first and the second call of Brax's pmapped
#: training epoch compile it (JAX 0.9.2, identical signatures; see JAX_LOG_COMPILES=1).
BRAX_WARMUP = 2


def _task(env_id: str):
  """The unwrapped jaxsafe task (holds ``.brax_env``, ``.backend`` and ``episode_length``)."""
  from jaxsafe import envs
  return envs.make(env_id).unwrapped


class Timer:
  """A compiled chunk of work and its state: ``rep()`` runs it once and returns the seconds."""

  def __init__(self, compiled, carry, steps_per_call: int, calls: int = 1):
    self.compiled, self.carry, self.steps_per_call, self.calls = compiled, carry, steps_per_call, calls
    self.times: list[float] = []

  def _run(self, calls: int) -> float:
    t0 = time.perf_counter()
    out = None
    for _ in range(calls):
      self.carry, out = self.compiled(self.carry)  # donated: always continue from the output
    jax.block_until_ready(out)
    return time.perf_counter() - t0

  def warm_up(self) -> float:
    return self._run(1)

  def rep(self) -> float:
    self.times.append(self._run(self.calls))
    return self.times[-1]

  @property
  def sps(self) -> float:
    return self.calls * self.steps_per_call / statistics.median(self.times)


def raw_timer(env_id: str, num_envs: int, steps: int) -> tuple[Timer, float]:
  """(a) The auto-resetting, vmapped jaxsafe task, stepped ``steps`` times with random actions."""
  from jaxsafe import envs
  env = envs.make(env_id, num_envs=num_envs, auto_reset=True)
  state = jax.jit(env.reset)(jax.random.PRNGKey(0))

  run = random_action_chunk(env, num_envs, steps)

  carry = (state, jax.random.PRNGKey(1))
  t0 = time.perf_counter()
  compiled = jax.jit(run, donate_argnums=0).lower(carry).compile()
  return Timer(compiled, carry, num_envs * steps), time.perf_counter() - t0


def jaxsafe_timer(env_id: str, num_envs: int, length: int, epochs: int, minibatches: int,
                  chunk: int, **extra_overrides) -> tuple[Timer, float]:
  """(b) ``chunk`` updates of jaxsafe ppo-lag (one seed) through the runner's compiled chunk."""
  from jaxsafe.train import runner
  spec = runner.RunSpec(
      algo="ppo-lag", env=env_id, seeds=1, total_steps=chunk * num_envs * length,
      overrides={"num_envs": num_envs, "rollout_length": length, "update_epochs": epochs,
                 "num_minibatches": minibatches, "hidden_sizes": (64, 64), **extra_overrides},
      chunk_iters=chunk)
  p = runner.plan(spec)
  assert p.agent.steps_per_update == num_envs * length
  states = runner.init_states(p)
  t0 = time.perf_counter()
  compiled = runner.compile_chunk(p.agent, states, chunk)
  return Timer(compiled, states, chunk * num_envs * length), time.perf_counter() - t0


def brax_train(env_id: str, num_envs: int, length: int, epochs: int, minibatches: int,
               chunk: int, reps: int, between_epochs=lambda: None) -> dict:
  """(c) Brax's PPO on the task's Brax env: ``reps`` timed epochs after ``BRAX_WARMUP``.

  ``between_epochs()`` is called after every timed epoch (from Brax's progress_fn, outside
  Brax's own timing), so that the other measurements can be interleaved with Brax's.
  """
  from brax.training.agents.ppo import networks as ppo_networks
  from brax.training.agents.ppo import train as ppo_train
  from flax import linen

  task = _task(env_id)
  if num_envs % minibatches:
    raise ValueError(f"--num-envs {num_envs} is not divisible by M = {minibatches}")
  batch_size = num_envs // minibatches  # batch_size * num_minibatches * L = N * L per update
  network_factory = functools.partial(
      ppo_networks.make_ppo_networks, policy_hidden_layer_sizes=(64, 64),
      value_hidden_layer_sizes=(64, 64), activation=linen.tanh)
  sps: list[float] = []

  def progress(step, metrics):
    if "training/sps" in metrics:
      sps.append(float(metrics["training/sps"]))
      if len(sps) > BRAX_WARMUP:
        between_epochs()

  # num_evals - 1 training epochs of `chunk` updates each; no initial eval (run_evals=False).
  ppo_train.train(
      environment=task.brax_env, num_timesteps=(reps + BRAX_WARMUP) * chunk * num_envs * length,
      episode_length=task.episode_length, wrap_env=True, action_repeat=1,
      num_envs=num_envs, unroll_length=length, batch_size=batch_size,
      num_minibatches=minibatches, num_updates_per_batch=epochs,
      network_factory=network_factory, normalize_observations=True,
      learning_rate=3e-4, entropy_cost=0.0, discounting=0.99, gae_lambda=0.95,
      max_grad_norm=0.5, num_evals=reps + BRAX_WARMUP + 1, run_evals=False, seed=0,
      progress_fn=progress)
  if len(sps) != reps + BRAX_WARMUP:
    raise RuntimeError(f"expected {reps + BRAX_WARMUP} Brax training epochs, got {len(sps)}")
  steady = statistics.median(sps[BRAX_WARMUP:])
  per_epoch = chunk * num_envs * length
  compile_s = sum(per_epoch / x for x in sps[:BRAX_WARMUP]) - BRAX_WARMUP * per_epoch / steady
  return {"sps": steady, "compile_s": compile_s, "epoch_sps": sps}


def measure_task(env_id: str, n: int, length: int, epochs: int, mb: int, chunk: int | None,
                 reps: int, chunk_seconds: float) -> dict:
  """Compiles (a) and (b), sizes C, then times (a), (b) and (c) interleaved: a, b after each
  timed Brax epoch, so that a change in background load affects all three alike."""
  a, a_compile = raw_timer(env_id, n, length)
  a.warm_up()
  if chunk is None:  # C: as many L-step raw scans as take about chunk_seconds
    per_call = min(a.warm_up() for _ in range(2))
    chunk = int(min(20, max(2, round(chunk_seconds / per_call))))
  a.calls = chunk
  b, b_compile = jaxsafe_timer(env_id, n, length, epochs, mb, chunk)
  b.warm_up()
  b2, b2_compile = jaxsafe_timer(env_id, n, length, epochs, mb, chunk, shared_critic=True)
  b2.warm_up()

  def between_epochs():
    a.rep()
    b.rep()
    b2.rep()

  c = brax_train(env_id, n, length, epochs, mb, chunk, reps, between_epochs)
  return {"C": chunk, "a": {"sps": a.sps, "compile_s": a_compile},
          "b": {"sps": b.sps, "compile_s": b_compile},
          "b2": {"sps": b2.sps, "compile_s": b2_compile}, "c": c}


def machine_line() -> str:
  return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"jax.devices()={jax.devices()}")


def load_line() -> str:
  """1/5/15-minute load averages: a load near or above the core count means the numbers are
  shared with other work (the interleaved timing keeps the ratios fairer, not the absolutes)."""
  return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--tasks", nargs="+", default=None, help=f"default: {' '.join(TASKS)}")
  parser.add_argument("--ant", action="store_true", help="also ant-velocity (slow to compile)")
  parser.add_argument("--num-envs", type=int, default=256)
  parser.add_argument("--rollout-length", type=int, default=20, help="L")
  parser.add_argument("--epochs", type=int, default=4, help="E: SGD epochs per update")
  parser.add_argument("--minibatches", type=int, default=4, help="M: minibatches per epoch")
  parser.add_argument("--chunk", type=int, default=None,
                      help="C: updates per timed chunk (Brax: per epoch); default: per task, the number "
                           "of L-step raw scans that take about --chunk-seconds (2 to 20)")
  parser.add_argument("--chunk-seconds", type=float, default=2.5)
  parser.add_argument("--reps", type=int, default=5, help="timed chunks of each of (a), (b), (c)")
  parser.add_argument("--quick", action="store_true", help="tiny budgets: only checks that it runs")
  args = parser.parse_args()

  tasks = list(args.tasks or TASKS)
  if args.ant and "ant-velocity" not in tasks:
    tasks.append("ant-velocity")
  n, length, epochs, mb = args.num_envs, args.rollout_length, args.epochs, args.minibatches
  reps = args.reps
  if args.quick:
    n, length, reps = min(n, 16), min(length, 4), 1

  import brax
  with contextlib.redirect_stdout(io.StringIO()):  # mujoco.mjx's "Failed to import warp"
    from brax.training.agents.ppo import train  # noqa: F401

    from jaxsafe.envs import brax_tasks  # noqa: F401

  print(f"machine: {machine_line()}; {load_line()}")
  print(f"jax {jax.__version__}, brax {brax.__version__}, python {platform.python_version()}")
  print(f"settings: num_envs N={n}, rollout/unroll length L={length}, epochs E={epochs}, "
        f"minibatches M={mb} (Brax batch_size={n // mb}), (64, 64) tanh networks; timed chunks "
        f"of C updates (C*N*L env steps), median of {reps} after warm-up"
        f"{' [QUICK]' if args.quick else ''}", flush=True)

  rows = []
  for env_id in tasks:
    task = _task(env_id)
    t0 = time.perf_counter()
    r = measure_task(env_id, n, length, epochs, mb, 1 if args.quick else args.chunk, reps,
                     args.chunk_seconds)
    print(f"  {env_id} ({task.backend}, C={r['C']}): (a) raw {r['a']['sps']:,.0f}, (b) jaxsafe "
          f"ppo-lag {r['b']['sps']:,.0f}, (b') shared critic {r['b2']['sps']:,.0f}, (c) Brax PPO {r['c']['sps']:,.0f} env steps/s; "
          f"Brax epochs {', '.join(f'{x:,.0f}' for x in r['c']['epoch_sps'])}; "
          f"{time.perf_counter() - t0:.0f}s", flush=True)
    rows.append({"task": env_id, "backend": task.backend, **r})

  print(f"\nfinished; {load_line()}")
  print("| task | pipeline | C | (a) raw env steps/s | (b) jaxsafe ppo-lag steps/s "
        "| (b') shared critic | (c) Brax PPO steps/s | b/a | b/c | b'/c | compile a / b / c (s) |")
  print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
  for r in rows:
    a, b, b2, c = r["a"]["sps"], r["b"]["sps"], r["b2"]["sps"], r["c"]["sps"]
    print(f"| {r['task']} | {r['backend']} | {r['C']} | {a:,.0f} | {b:,.0f} | {b2:,.0f} "
          f"| {c:,.0f} | {b / a:.2f} | {b / c:.2f} | {b2 / c:.2f} "
          f"| {r['a']['compile_s']:.0f} / {r['b']['compile_s']:.0f} / {r['c']['compile_s']:.0f} |")
  print("\nPPO-Lag / Brax PPO training env steps/s (b/c, target >= 1.0): " + ", ".join(
      f"{r['task']} {r['b']['sps'] / r['c']['sps']:.2f}" for r in rows))


if __name__ == "__main__":
  main()
