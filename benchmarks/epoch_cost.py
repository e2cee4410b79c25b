"""What one SGD epoch of PPO-Lag costs, network by network (docs/benchmarks.md, "Throughput").

PPO-Lag's epoch trains three networks (actor, reward critic, cost critic); Brax's PPO trains two.
This times ``ActorCritic.sgd`` (one epoch, M = 4 minibatches of a 256 x 20 batch, (64, 64) tanh
networks) on one fixed batch of the task with the loss cut down to parts of it, each variant a
jitted ``lax.scan`` of 10 epochs, all variants interleaved in one process, median of 9:

- ``full``: the PPO-Lag loss (clipped surrogate + both critics' losses + entropy, with metrics);
- ``actor + one critic``: the clipped surrogate and the reward critic's loss (what Brax's PPO
  trains);
- ``actor``: the clipped surrogate alone; ``actor network``: the actor MLP under a squared error
  (no distribution, ratio or clipping);
- ``two critics`` / ``one critic``: the critics' losses alone;
- ``no network``: a loss with no network in it (shuffling, Adam, the scan).

Run (about 2 minutes on 2 CPU cores):

    .venv/bin/python benchmarks/epoch_cost.py --task reacher-position
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp

from jaxsafe import envs
from jaxsafe.agents.base import with_task_cost_limit
from jaxsafe.agents.on_policy import base as on_policy
from jaxsafe.agents.on_policy import ppo
from jaxsafe.core import distributions
from jaxsafe.core.rollout import rollout

NUM_ENVS, LENGTH, MINIBATCHES, EPOCHS_PER_CALL, REPEATS = 256, 20, 4, 10, 9


def _policy_part(ac, params, hp, obs, batch, policy_loss):
  dist = distributions.make_distribution(ac.config.distribution, *ac.actor.apply(params["actor"], obs))
  log_ratio = distributions.log_prob(dist, batch["raw_action"]) - batch["log_prob"]
  return policy_loss(jnp.exp(log_ratio), log_ratio, batch["target"], hp)[0]


def _critic_part(ac, params, obs, batch, both: bool):
  value_r, value_c = ac.values(params, obs)
  loss = 0.5 * ((value_r - batch["reward_target"]) ** 2).mean()
  return loss + (0.5 * ((value_c - batch["cost_target"]) ** 2).mean() if both else 0.0)


def _actor_network(ac, params, obs, batch):
  mean, log_std = ac.actor.apply(params["actor"], obs)
  return ((mean - batch["raw_action"]) ** 2).mean() + log_std.mean()


#: variant -> loss(ac, params, hp, normalised obs, minibatch, policy_loss); None: the real loss.
VARIANTS = {
    "full": None,
    "actor + one critic": lambda ac, p, hp, obs, b, pl: (
        _policy_part(ac, p, hp, obs, b, pl) + 0.5 * _critic_part(ac, p, obs, b, both=False)),
    "actor": _policy_part,
    "actor network": lambda ac, p, hp, obs, b, pl: _actor_network(ac, p, obs, b),
    "two critics": lambda ac, p, hp, obs, b, pl: _critic_part(ac, p, obs, b, both=True),
    "one critic": lambda ac, p, hp, obs, b, pl: _critic_part(ac, p, obs, b, both=False),
    "no network": lambda ac, p, hp, obs, b, pl: 0.0 * sum(
        x.sum() for x in jax.tree_util.tree_leaves(p)) + 0.0 * b["target"].mean(),
}


class _PartialLoss(on_policy.ActorCritic):
  """``ActorCritic`` whose SGD minimises one variant's loss instead of the full one."""

  def __init__(self, env, config, part):
    super().__init__(env, config)
    self.part = part

  def loss(self, params, hp, stats, batch, policy_loss):
    obs = self.norm(stats, batch["obs"])
    return self.part(self, params, hp, obs, batch, policy_loss), {}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--task", default="reacher-position")
  args = parser.parse_args()

  env = envs.make(args.task, num_envs=NUM_ENVS, auto_reset=True)
  config = with_task_cost_limit(
      ppo.PPOLagConfig(num_envs=NUM_ENVS, rollout_length=LENGTH, update_epochs=1,
                       num_minibatches=MINIBATCHES), env)
  base = on_policy.ActorCritic(env, config)
  state = base.init(jax.random.PRNGKey(0), None, 0.0)
  _, data = jax.jit(lambda s: rollout(env, s.env_state, base.act(s), jax.random.PRNGKey(1),
                                      LENGTH))(state)
  adv = jax.jit(base.advantages)(state, data)
  target = on_policy.standardize(adv.reward)

  def compiled(ac):
    def epochs(st):
      def one(carry, key):
        params, opt_state, _ = ac.sgd(st.replace(params=carry[0], opt_state=carry[1]), data,
                                      target, adv, ppo.clipped_surrogate_loss, key)
        return (params, opt_state), None
      keys = jax.random.split(jax.random.PRNGKey(2), EPOCHS_PER_CALL)
      return jax.lax.scan(one, (st.params, st.opt_state), keys)[0]
    fn = jax.jit(epochs).lower(state).compile()
    jax.block_until_ready(fn(state))
    return fn

  fns = {name: compiled(base if part is None else _PartialLoss(env, config, part))
         for name, part in VARIANTS.items()}
  times = {name: [] for name in fns}
  for _ in range(REPEATS):
    for name, fn in fns.items():
      t0 = time.perf_counter()
      jax.block_until_ready(fn(state))
      times[name].append(time.perf_counter() - t0)
  steps = EPOCHS_PER_CALL * NUM_ENVS * LENGTH
  print(f"{args.task}: one SGD epoch ({NUM_ENVS} x {LENGTH} batch, M = {MINIBATCHES}), "
        f"us per env step, median (min) of {REPEATS}; {jax.devices()}")
  for name, ts in times.items():
    print(f"  {name:18s} {1e6 * statistics.median(ts) / steps:.2f} ({1e6 * min(ts) / steps:.2f})")


if __name__ == "__main__":
  main()
