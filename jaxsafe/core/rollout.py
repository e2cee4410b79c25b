"""``lax.scan`` rollouts and the Transition pytree every on-policy agent trains on."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from flax import struct

from jaxsafe.envs.core import Env, State


@struct.dataclass
class Transition:
  """One step of experience, batched as [T, num_envs, ...] after a rollout.

  ``next_obs`` is the observation the step ended in (the final one of a finished episode, before
  any auto-reset), so value targets can bootstrap on truncation.
  """

  obs: jax.Array
  raw_action: jax.Array
  log_prob: jax.Array
  reward: jax.Array
  cost: jax.Array
  done: jax.Array
  truncation: jax.Array
  next_obs: jax.Array
  episode_finished: jax.Array
  episode_return: jax.Array
  episode_cost: jax.Array


#: (obs, key) -> (env action, raw action, log prob)
ActFn = Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array, jax.Array]]


def rollout(env: Env, env_state: State, act: ActFn, key: jax.Array,
            length: int) -> tuple[State, Transition]:
  """Runs ``length`` steps of a vmapped, auto-resetting env; returns the final state and data.

  ``env`` must be built with ``auto_reset=True`` (it reads ``info["final_obs"]`` and episode stats).
  """

  def one_step(state: State, step_key: jax.Array):
    action, raw, log_prob = act(state.obs, step_key)
    next_state = env.step(state, action)
    info = next_state.info
    transition = Transition(
        obs=state.obs, raw_action=raw, log_prob=log_prob, reward=next_state.reward,
        cost=next_state.cost, done=next_state.done, truncation=info["truncation"],
        next_obs=info["final_obs"], episode_finished=info["episode_finished"],
        episode_return=info["episode_return"], episode_cost=info["episode_cost"])
    return next_state, transition

  return jax.lax.scan(one_step, env_state, jax.random.split(key, length))


def finished_episode_means(data: Transition) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Mean undiscounted return and cost of the episodes that finished in ``data``, and their count.

  The means are NaN when no episode finished (the caller decides what to keep instead).
  """
  weight = data.episode_finished
  count = weight.sum()
  safe = jnp.maximum(count, 1.0)
  mean_return = jnp.where(count > 0, (weight * data.episode_return).sum() / safe, jnp.nan)
  mean_cost = jnp.where(count > 0, (weight * data.episode_cost).sum() / safe, jnp.nan)
  return mean_return, mean_cost, count
