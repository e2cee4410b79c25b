"""Which Brax pipeline per task: CPU speed and gradient correctness (docs/envs.md).

For each task and pipeline this measures, on the current JAX backend:

* compile: seconds to lower and compile a ``lax.scan`` of ``--steps`` vmapped steps of
  ``--num-envs`` envs under random actions in [-1, 1];
* steps/s: env steps per second of that compiled scan after a warm-up run (best of 3, with
  ``block_until_ready``);
* gradients: for one env and a ``--grad-steps``-step rollout from a random reset, the
  reverse-mode gradient (``jax.jacrev``) of the return sum_t r_t and of the episode cost sum_t c_t
  w.r.t. the action sequence. In float64 it is projected on a random unit direction u and
  compared with the central difference (f(a + eps u) - f(a - eps u)) / (2 eps), eps = 1e-5
  (float32 differences are useless with contacts: the return has kinks at ~1e-3). Reported:
  whether every gradient entry is finite, the relative error |AD - FD| / max(|FD|, 1e-6) of
  return and cost, and the relative difference |g32 - g64| / |g64| of the float32 and float64
  gradients from the same initial state (the precision agents train in).

Run (one process, about ten minutes on 2 CPU cores without ant; ant alone takes minutes more):

    .venv/bin/python benchmarks/brax_pipelines.py
    .venv/bin/python benchmarks/brax_pipelines.py --tasks ant-velocity

Prints a markdown table.
"""

from __future__ import annotations

import argparse
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from jaxsafe.envs import brax_tasks

warnings.filterwarnings("ignore")

#: pipelines worth measuring per task ('mjx' is skipped: no gradients through its contacts,
#: and slow on CPU). Brax's swimmer supports only 'generalized'.
BACKENDS = {
    "cartpole-position": ("generalized", "positional", "spring"),
    "reacher-position": ("generalized", "positional", "spring"),
    "halfcheetah-velocity": ("generalized", "positional", "spring"),
    "ant-velocity": ("generalized", "positional", "spring"),
    "swimmer-velocity": ("generalized",),
}

_CLASSES = {
    "cartpole-position": brax_tasks.CartpolePosition,
    "reacher-position": brax_tasks.ReacherPosition,
    "halfcheetah-velocity": brax_tasks.HalfcheetahVelocity,
    "ant-velocity": brax_tasks.AntVelocity,
    "swimmer-velocity": brax_tasks.SwimmerVelocity,  # unwrapped: measure its physics' gradients
}


def measure_speed(task_cls, backend: str, num_envs: int, steps: int) -> dict:
  """Compile time and steady-state env steps/s of a scan of vmapped steps."""
  env = task_cls(backend=backend)
  reset = jax.jit(jax.vmap(env.reset))
  state = reset(jax.random.split(jax.random.PRNGKey(0), num_envs))

  def rollout(state, key):
    def body(state, key):
      action = jax.random.uniform(key, (num_envs, env.action_size), minval=-1.0, maxval=1.0)
      state = jax.vmap(env.step)(state, action)
      return state, state.cost
    return jax.lax.scan(body, state, jax.random.split(key, steps))

  start = time.perf_counter()
  compiled = jax.jit(rollout).lower(state, jax.random.PRNGKey(1)).compile()
  compile_s = time.perf_counter() - start
  jax.block_until_ready(compiled(state, jax.random.PRNGKey(1)))  # warm-up
  times = []
  for i in range(3):
    start = time.perf_counter()
    out = compiled(state, jax.random.PRNGKey(2 + i))
    jax.block_until_ready(out)
    times.append(time.perf_counter() - start)
  finite = bool(np.isfinite(np.asarray(out[1])).all())
  return {"compile_s": compile_s, "sps": num_envs * steps / min(times), "dt": float(env.brax_env.dt),
          "finite_rollout": finite}


def check_gradients(task_cls, backend: str, steps: int, eps: float = 1e-5, seed: int = 0) -> dict:
  """Reverse-mode gradients of return and cost vs central differences (float64), and float32
  gradients vs float64 ones from the same initial state."""
  env32 = task_cls(backend=backend)
  key_reset, key_a, key_u = jax.random.split(jax.random.PRNGKey(seed), 3)
  state0 = jax.device_get(jax.jit(env32.reset)(key_reset))  # float32 s_0, shared by both checks
  actions = np.asarray(jax.random.uniform(key_a, (steps, env32.action_size), minval=-0.5,
                                          maxval=0.5), np.float64)
  direction = np.asarray(jax.random.normal(key_u, actions.shape), np.float64)
  direction /= np.linalg.norm(direction)

  def totals_fn(env, state0):
    def totals(actions):
      def body(state, action):
        state = env.step(state, action)
        return state, (state.reward, state.cost)
      _, (rewards, costs) = jax.lax.scan(body, state0, actions)
      return jnp.stack([rewards.sum(), costs.sum()])
    return totals

  with jax.enable_x64(True):
    env = task_cls(backend=backend)  # built under x64: float64 system constants
    state64 = jax.tree_util.tree_map(
        lambda x: jnp.asarray(x, jnp.float64) if x.dtype == np.float32 else jnp.asarray(x), state0)

    @jax.jit
    def compare(actions, direction):
      totals = totals_fn(env, state64)
      jac = jax.jacrev(totals)(actions)  # (2, steps, action_size)
      ad = jnp.tensordot(jac, direction, axes=2)
      shifted = jnp.stack([actions + eps * direction, actions - eps * direction])
      plus, minus = jax.vmap(totals)(shifted)
      return jac, ad, (plus - minus) / (2 * eps)

    jac64, ad, fd = jax.device_get(compare(actions, direction))
  jac32 = np.asarray(jax.jit(jax.jacrev(totals_fn(env32, state0)))(actions.astype(np.float32)))
  rel = np.abs(ad - fd) / np.maximum(np.abs(fd), 1e-6)
  # Relative difference of the float32 and float64 gradients, worst of return and cost.
  f32_err = max(np.linalg.norm(jac32[i] - jac64[i]) / max(np.linalg.norm(jac64[i]), 1e-12)
                for i in range(2) if np.linalg.norm(jac64[i]) > 0)
  return {"finite_grad": bool(np.isfinite(jac64).all() and np.isfinite(jac32).all()),
          "rel_err_return": float(rel[0]), "rel_err_cost": float(rel[1]),
          "f32_vs_f64": float(f32_err), "ad": ad, "fd": fd}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--tasks", nargs="+", default=[t for t in BACKENDS if t != "ant-velocity"])
  parser.add_argument("--backends", nargs="+", default=None,
                      help="restrict to these pipelines (default: all that the task supports)")
  parser.add_argument("--num-envs", type=int, default=256)
  parser.add_argument("--steps", type=int, default=50)
  parser.add_argument("--grad-steps", type=int, default=10)
  args = parser.parse_args()

  print(f"JAX {jax.__version__}, device: {jax.devices()[0].device_kind}, "
        f"{args.num_envs} envs x {args.steps} steps, gradients over {args.grad_steps} steps")
  rows = []
  for task in args.tasks:
    for backend in BACKENDS[task]:
      if args.backends and backend not in args.backends:
        continue
      speed = measure_speed(_CLASSES[task], backend, args.num_envs, args.steps)
      start = time.perf_counter()
      grad = check_gradients(_CLASSES[task], backend, args.grad_steps)
      grad["grad_s"] = time.perf_counter() - start
      row = {"task": task, "backend": backend, **speed, **grad}
      rows.append(row)
      print(f"  {task} {backend}: {speed['compile_s']:.1f}s compile, {speed['sps']:,.0f} steps/s, "
            f"AD {grad['ad']} FD {grad['fd']} f32 vs f64 {grad['f32_vs_f64']:.1e}", flush=True)

  print()
  print("| task | pipeline | dt (s) | compile (s) | env steps/s | grad finite "
        "| AD vs FD, return | AD vs FD, cost | f32 vs f64 grad | grad checks (s) |")
  print("|---|---|---|---|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['task']} | {r['backend']} | {r['dt']:.3g} | {r['compile_s']:.1f} "
          f"| {r['sps']:,.0f} | {'yes' if r['finite_grad'] else 'NO'} "
          f"| {r['rel_err_return']:.1e} | {r['rel_err_cost']:.1e} | {r['f32_vs_f64']:.1e} "
          f"| {r['grad_s']:.0f} |")


if __name__ == "__main__":
  main()
