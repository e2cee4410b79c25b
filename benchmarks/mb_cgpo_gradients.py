"""MB-CGPO on swimmer-velocity: the world model's gradient against the simulator's (issue 13).

    python benchmarks/mb_cgpo_gradients.py [--iterations 30] [--every 5] [--num-envs 32]
    python benchmarks/mb_cgpo_gradients.py --simulator-cgpo [--iterations 30] [--num-envs 32]

Trains ``mb-cgpo`` on ``swimmer-velocity`` (whose registered task blocks gradients) and, every
``--every`` iterations, takes g = grad J_R and q = grad J_C of the current policy twice from the
same initial states and keys (Eq. 19-20, windows of h steps with the agent's critics):

- through the world model, as MB-CGPO does (``models.world_model.ModelEnv``), and
- through Brax's swimmer itself (the same task without ``BlockGradient``: Brax's 'generalized'
  pipeline is differentiable, the paper's task just does not use it).

Per checkpoint it prints the episode return, the radius, the model's one-step error on the
policy's own states, |g| of both and cos(g_model, g_sim) (and the same for q). A cosine near 0
means the linear model of Eq. 10 built on g_model predicts a change of J_R that the real task
does not make, so rho = measured / predicted stays below eta_1 and Eq. 18 shrinks the radius.

``--simulator-cgpo`` trains ``cgpo`` itself on that differentiable swimmer with MB-CGPO's settings
(the same budget, critics, h and trust region), i.e. MB-CGPO with a perfect model, and prints
the return and radius of every iteration: the bound on what a better world model could give.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.flatten_util
import jax.numpy as jnp

from jaxsafe import agents
from jaxsafe.agents.first_order.base import FirstOrder
from jaxsafe.agents.first_order.mb_cgpo import model_transitions
from jaxsafe.envs.brax_tasks import SwimmerVelocity
from jaxsafe.envs.wrappers import TimeLimit, training_stack
from jaxsafe.models.world_model import ModelEnv, WorldModel


class _SwimmerWithGradients(SwimmerVelocity):
  """The same task; only the flag that makes FirstOrder refuse it differs."""

  differentiable = True


def _cos(a, b):
  return float(jnp.dot(a, b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b) + 1e-12))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--iterations", type=int, default=30)
  parser.add_argument("--every", type=int, default=5)
  parser.add_argument("--num-envs", type=int, default=32)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--simulator-cgpo", action="store_true",
                      help="train cgpo through the simulator instead (a perfect model)")
  args = parser.parse_args()

  agent = agents.make("mb-cgpo", "swimmer-velocity", num_envs=args.num_envs)
  config = agent.config
  if args.simulator_cgpo:
    _simulator_cgpo(args, config.episode_length)
    return
  sim = training_stack(TimeLimit(_SwimmerWithGradients(), config.episode_length), args.num_envs, False)
  fo = FirstOrder(sim, config, "mb-cgpo")  # the simulator's gradients, same critics and h
  model = WorldModel(sim.observation_size, sim.action_size, config.model_hidden_sizes)

  @jax.jit
  def compare(state, key):
    k_reset, k_grad, k_policy = jax.random.split(key, 3)
    start = sim.reset(k_reset)
    imagined = ModelEnv(model, state.model.params, state.obs_stats, fo.horizon,
                        config.cost_limit)
    g_model, q_model, _ = fo.gradients(state, imagined, ModelEnv.from_obs(start.obs), k_grad)
    g_sim, q_sim, _ = fo.gradients(state, sim, start, k_grad)
    episodes = fo.real_episodes(state, start, k_policy)
    error = model.loss(state.model.params, state.obs_stats, model_transitions(episodes))
    flat = lambda tree: jax.flatten_util.ravel_pytree(tree)[0]
    return flat(g_model), flat(q_model), flat(g_sim), flat(q_sim), error

  update = jax.jit(agent.update)
  state = agent.init(jax.random.PRNGKey(args.seed))
  print("| iteration | return | radius | model error on the policy's states | |g_model| | "
        "|g_sim| | cos(g_model, g_sim) | cos(q_model, q_sim) |")
  print("|---:|---:|---:|---:|---:|---:|---:|---:|")
  start_time = time.time()
  for it in range(1, args.iterations + 1):
    state, metrics = update(state)
    if it % args.every and it != 1:
      continue
    g_m, q_m, g_s, q_s, error = compare(state, jax.random.PRNGKey(1000 + it))
    print(f"| {it} | {float(metrics['episode_return']):.1f} | "
          f"{float(metrics['mb-cgpo/radius']):.1e} | {float(error):.3f} | "
          f"{float(jnp.linalg.norm(g_m)):.1f} | {float(jnp.linalg.norm(g_s)):.1f} | "
          f"{_cos(g_m, g_s):.2f} | {_cos(q_m, q_s):.2f} |", flush=True)
  print(f"({time.time() - start_time:.0f} s, {args.num_envs} envs, seed {args.seed})")


def _simulator_cgpo(args, episode_length: int) -> None:
  agent = agents.make("cgpo", TimeLimit(_SwimmerWithGradients(), episode_length),
                      num_envs=args.num_envs)
  update = jax.jit(agent.update)
  state = agent.init(jax.random.PRNGKey(args.seed))
  print("| iteration | return | cost | radius | rho |")
  print("|---:|---:|---:|---:|---:|")
  start_time = time.time()
  for it in range(1, args.iterations + 1):
    state, metrics = update(state)
    print(f"| {it} | {float(metrics['episode_return']):.1f} | {float(metrics['episode_cost']):.1f} | "
          f"{float(metrics['cgpo/radius']):.1e} | {float(metrics['cgpo/rho']):.2f} |", flush=True)
  print(f"({time.time() - start_time:.0f} s, {args.num_envs} envs, seed {args.seed})")


if __name__ == "__main__":
  main()
