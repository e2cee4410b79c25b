"""Where the short-horizon gradient and BPTT disagree, which one is right? (issue 17;
docs/benchmarks.md, "Short-horizon gradient against BPTT").

Per seed: the estimator check's fixed policy (30 BPTT steps) and critics (``--fits``
iterations), both gradients of J_R and J_C averaged over 8 batches of 256 episodes, then the
measured directional derivative of J_R and J_C along each estimate's unit cost gradient u
(``--direction return``: unit return gradient): central differences
(J(theta + eps u) - J(theta - eps u)) / (2 eps) over 16 x 256 episodes with common random numbers,
against what each estimate predicts (grad . u).

    .venv/bin/python benchmarks/termination_gradient.py --seeds 9 3 0     # ~6 min
    .venv/bin/python benchmarks/termination_gradient.py --task swing-up --seeds 5 --fits 300 \
        --direction return
    .venv/bin/python benchmarks/termination_gradient.py --task reacher-position --seeds 0 \
        --fits 100 --direction return     # a Brax task, T = 300
    .venv/bin/python benchmarks/termination_gradient.py --task reacher-position --seeds 0 1 \
        --growth 10,30,60,100,200,300      # how BPTT's gradient grows with the horizon
"""

from __future__ import annotations

import argparse
import warnings

warnings.filterwarnings("ignore")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--task", default="balance")
  parser.add_argument("--seeds", type=int, nargs="+", default=[9, 3, 0])
  parser.add_argument("--envs", type=int, default=256)
  parser.add_argument("--eps", type=float, nargs="+", default=[0.01, 0.03])
  parser.add_argument("--fits", type=int, default=120)
  parser.add_argument("--direction", choices=("cost", "return"), default="cost")
  parser.add_argument("--growth", default=None,
                      help="comma-separated k: print the norm of BPTT's gradient of the first k "
                           "steps' return and cost at the pretrained policy instead")
  args = parser.parse_args()

  import jax
  import jax.numpy as jnp

  from jaxsafe import envs
  from jaxsafe.agents.base import with_task_cost_limit
  from jaxsafe.agents.first_order.base import FirstOrder
  from jaxsafe.agents.first_order.shac_lag import SHACLagConfig
  from jaxsafe.solvers import trust_region
  from jaxsafe.studies import estimator_check as ec

  env = envs.make(args.task, num_envs=args.envs)
  fo = FirstOrder(env, with_task_cost_limit(SHACLagConfig(num_envs=args.envs), env), "check")
  pretrain = jax.jit(lambda s, k: ec.pretrain_actor(fo, s, k, 30))
  fit = jax.jit(lambda s, k: ec.fit_critics(fo, s, k, args.fits))

  gradients = jax.jit(lambda s, k: ec.both_gradients(fo, s, k))

  if args.growth:
    from jaxsafe.core import short_horizon
    bptt = jax.jit(lambda s, k, n: short_horizon.gradients(
        s.params["actor"], fo.env, fo.policy_fn(s.obs_stats), None,
        fo.env.reset(jax.random.fold_in(k, 0)), jax.random.fold_in(k, 1), n, n)[:2],
        static_argnums=2)
    print(f"{args.task}: BPTT over the first k steps at the pretrained policy, {args.envs} episodes")
    print("| seed | k | norm g | norm q |\n|---:|---:|---:|---:|")
    for seed in args.seeds:
      k_init, k_pre, _, k_check = jax.random.split(jax.random.PRNGKey(seed), 4)
      state, _ = pretrain(fo.init(k_init), k_pre)
      for k in (int(x) for x in args.growth.split(",")):
        g, q = (trust_region.flatten(x)[0] for x in bptt(state, k_check, k))
        print(f"| {seed} | {k} | {float(jnp.linalg.norm(g)):.3g} | "
              f"{float(jnp.linalg.norm(q)):.3g} |", flush=True)
    return

  @jax.jit
  def measured(state, flat, keys):
    """Mean return and cost of the actor ``flat`` over len(keys) batches of episodes."""
    unravel = trust_region.flatten(state.params["actor"])[1]
    state = state.replace(params={**state.params, "actor": unravel(flat)})

    def batch(key):
      k_reset, k_policy = jax.random.split(key)
      episodes = fo.real_episodes(state, fo.env.reset(k_reset), k_policy)
      return episodes.reward.sum(0).mean(), episodes.cost.sum(0).mean(), episodes.terminal.max(0).mean()

    return [x.mean() for x in jax.lax.map(batch, keys)]

  print(f"{args.task}, {args.fits} critic iterations")
  norms = []
  print("| seed | episodes ending early | cos g | cos q | direction u | eps | measured dJ_C/du | "
        "short predicts | BPTT predicts | measured dJ_R/du | short predicts | BPTT predicts |")
  print("|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")
  for seed in args.seeds:
    k_init, k_pre, k_fit, k_check = jax.random.split(jax.random.PRNGKey(seed), 4)
    state, _ = pretrain(fo.init(k_init), k_pre)
    state, _ = fit(state, k_fit)
    batches = [gradients(state, k) for k in jax.random.split(k_check, 8)]
    g_short, q_short, g_bptt, q_bptt = [sum(b[i] for b in batches) / 8 for i in range(4)]
    norms.append(f"| {seed} | " + " | ".join(
        f"{float(jnp.linalg.norm(x)):.3g}" for x in (g_short, g_bptt, q_short, q_bptt)) + " |")
    theta = trust_region.flatten(state.params["actor"])[0]
    keys = jax.random.split(jax.random.PRNGKey(1234), 16)
    ended = float(measured(state, theta, keys)[2])
    directions = ((("q short", q_short), ("q BPTT", q_bptt)) if args.direction == "cost" else
                  (("g short", g_short), ("g BPTT", g_bptt)))
    for name, d in directions:
      u = d / jnp.linalg.norm(d)
      for eps in args.eps:
        r_plus, c_plus, _ = measured(state, theta + eps * u, keys)
        r_minus, c_minus, _ = measured(state, theta - eps * u, keys)
        print(f"| {seed} | {ended:.0%} | {float(ec.cosine(g_short, g_bptt)):.2f} | "
              f"{float(ec.cosine(q_short, q_bptt)):.2f} | {name} | {eps} | "
              f"{float((c_plus - c_minus) / (2 * eps)):.1f} | {float(q_short @ u):.1f} | "
              f"{float(q_bptt @ u):.1f} | {float((r_plus - r_minus) / (2 * eps)):.1f} | "
              f"{float(g_short @ u):.1f} | {float(g_bptt @ u):.1f} |", flush=True)
  print("\n| seed | norm g short | norm g BPTT | norm q short | norm q BPTT |\n|---:|---:|---:|---:|---:|")
  print("\n".join(norms))


if __name__ == "__main__":
  main()
