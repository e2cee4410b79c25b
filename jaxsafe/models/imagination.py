"""Dyna-CPPO's data path (``shared/papers/000``, Algorithm 1): a replay buffer of real
trajectory pieces, K-step segments sampled from it for Eq. 5, and imagined rollouts of a learned
model for the agent to train on. All pure functions, jittable.

The buffer holds one item per env and rollout: that env's ``rollout_length`` consecutive real
steps. A segment is a random window of K steps inside one item; its mask stops at the first
episode end inside the window (the step that ends an episode is kept: its ``next_obs`` is the
real final observation, before any auto-reset).

Imagined rollouts start from observations of the current real batch (line 7), sample actions from
the current policy and step the model for H steps (lines 8-11). The model has no termination
head, so an imagined episode only ends by truncation at H, where the critics bootstrap.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxsafe.core import replay
from jaxsafe.core.rollout import ActFn, Transition
from jaxsafe.models.world_model import Segments, WorldModel


def trajectory_items(data: Transition) -> dict:
  """A rollout [T, num_envs, ...] as num_envs buffer items of T steps each."""
  items = {"obs": data.obs, "action": data.raw_action, "next_obs": data.next_obs,
           "reward": data.reward, "cost": data.cost, "done": data.done}
  return jax.tree_util.tree_map(lambda x: jnp.swapaxes(x, 0, 1), items)


def empty_item(obs_size: int, action_size: int, length: int) -> dict:
  """One zero buffer item shaped like those of ``trajectory_items`` (for ``replay.init``)."""
  obs = jnp.zeros((length, obs_size))
  return {"obs": obs, "action": jnp.zeros((length, action_size)), "next_obs": obs,
          "reward": jnp.zeros((length,)), "cost": jnp.zeros((length,)), "done": jnp.zeros((length,))}


def sample_segments(buffer: replay.Buffer, key: jax.Array, batch_size: int, horizon: int) -> Segments:
  """``batch_size`` K-step segments (K = ``horizon``) from random items and start steps."""
  k_item, k_start = jax.random.split(key)
  items = replay.sample(buffer, k_item, batch_size)
  length = items["reward"].shape[1]
  if horizon > length:
    raise ValueError(f"segment horizon {horizon} is longer than the stored pieces ({length} steps)")
  start = jax.random.randint(k_start, (batch_size,), 0, length - horizon + 1)
  window = lambda x, s: jax.lax.dynamic_slice_in_dim(x, s, horizon, axis=0)
  seg = jax.vmap(lambda item, s: jax.tree_util.tree_map(lambda x: window(x, s), item))(items, start)
  # Valid at k while no episode ended at an earlier step of the window.
  ended_before = jnp.cumsum(seg["done"], axis=1) - seg["done"]
  mask = (ended_before == 0).astype(seg["reward"].dtype)
  return Segments(obs=seg["obs"][:, 0], action=seg["action"], next_obs=seg["next_obs"],
                  reward=seg["reward"], cost=seg["cost"], mask=mask)


def imagine(model: WorldModel, params, stats, act: ActFn, start_obs: jax.Array, key: jax.Array,
            horizon: int) -> Transition:
  """H steps of the model from ``start_obs`` [M, obs] under ``act``; data shaped [H, M, ...]."""

  def one_step(obs, step_key):
    _, raw, log_prob = act(obs, step_key)
    next_obs, reward, cost = model.predict(params, stats, obs, raw)
    return next_obs, (obs, raw, log_prob, next_obs, reward, cost)

  _, (obs, raw, log_prob, next_obs, reward, cost) = jax.lax.scan(
      one_step, start_obs, jax.random.split(key, horizon))
  last = (jnp.arange(horizon) == horizon - 1).astype(reward.dtype)[:, None] * jnp.ones_like(reward)
  zeros = jnp.zeros_like(reward)
  return Transition(obs=obs, raw_action=raw, log_prob=log_prob, reward=reward, cost=cost,
                    done=last, truncation=last, next_obs=next_obs, episode_finished=zeros,
                    episode_return=zeros, episode_cost=zeros)
