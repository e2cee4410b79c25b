"""Collection: ``lax.scan`` rollouts of the vmapped, auto-resetting training envs."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxsafe.core.experience import ActFn, Transition
from jaxsafe.envs.core import Env, State


def rollout(env: Env, env_state: State, act: ActFn, key: jax.Array,
            length: int) -> tuple[State, Transition]:
  """Runs ``length`` steps of a vmapped, auto-resetting env; returns the final state and data.

  ``env`` must be built with ``auto_reset=True`` (it reads ``info["final_obs"]`` and episode stats).
  """

  def one_step(state: State, step_key: jax.Array):
    sample = act(state.obs, step_key)
    next_state = env.step(state, sample.action)
    info = next_state.info
    transition = Transition(
        obs=state.obs, action=sample.action, raw_action=sample.raw_action,
        log_prob=sample.log_prob, reward=next_state.reward, cost=next_state.cost,
        next_obs=info["final_obs"], terminal=next_state.done * (1.0 - info["truncation"]),
        done=next_state.done, alive=jnp.ones_like(next_state.reward),
        episode_finished=info["episode_finished"], episode_return=info["episode_return"],
        episode_cost=info["episode_cost"])
    return next_state, transition

  return jax.lax.scan(one_step, env_state, jax.random.split(key, length))
