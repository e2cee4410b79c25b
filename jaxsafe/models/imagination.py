"""Dyna-CPPO's data path (the Dyna-CPPO specification, Algorithm 1): a replay buffer of real
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
from jaxsafe.core.experience import ActFn, Transition
from jaxsafe.models.world_model import WorldModel


def trajectory_items(data: Transition) -> Transition:
  """A rollout [T, num_envs, ...] as num_envs buffer items of T steps each (the fields the
  model needs: s, a, r, c, s', episode ends)."""
  items = Transition(obs=data.obs, action=data.action, raw_action=None, reward=data.reward,
                     cost=data.cost, next_obs=data.next_obs, terminal=data.terminal,
                     done=data.done, alive=data.alive)
  return jax.tree_util.tree_map(lambda x: jnp.swapaxes(x, 0, 1), items)


def empty_item(obs_size: int, action_size: int, length: int) -> Transition:
  """One zero buffer item shaped like those of ``trajectory_items`` (for ``replay.init``)."""
  obs, zeros = jnp.zeros((length, obs_size)), jnp.zeros((length,))
  return Transition(obs=obs, action=jnp.zeros((length, action_size)), raw_action=None,
                    reward=zeros, cost=zeros, next_obs=obs, terminal=zeros, done=zeros,
                    alive=zeros)


def sample_segments(buffer: replay.Buffer, key: jax.Array, batch_size: int,
                    horizon: int) -> Transition:
  """``batch_size`` K-step segments [B, K, ...] (K = ``horizon``) from random items and start
  steps; ``alive`` is 1 while the segment is in the episode it started in."""
  k_item, k_start = jax.random.split(key)
  items = replay.sample(buffer, k_item, batch_size)
  length = items.reward.shape[1]
  if horizon > length:
    raise ValueError(f"segment horizon {horizon} is longer than the stored pieces ({length} steps)")
  start = jax.random.randint(k_start, (batch_size,), 0, length - horizon + 1)
  window = lambda x, s: jax.lax.dynamic_slice_in_dim(x, s, horizon, axis=0)
  seg = jax.vmap(lambda item, s: jax.tree_util.tree_map(lambda x: window(x, s), item))(items, start)
  # Valid at k while no episode ended at an earlier step of the window.
  ended_before = jnp.cumsum(seg.done, axis=1) - seg.done
  return seg.replace(alive=(ended_before == 0).astype(seg.reward.dtype))


def imagine(model: WorldModel, params, stats, act: ActFn, start_obs: jax.Array, key: jax.Array,
            horizon: int) -> Transition:
  """H steps of the model from ``start_obs`` [M, obs] under ``act``; data shaped [H, M, ...]."""

  def one_step(obs, step_key):
    sample = act(obs, step_key)
    next_obs, reward, cost = model.predict(params, stats, obs, sample.action)
    return next_obs, (obs, sample, next_obs, reward, cost)

  _, (obs, sample, next_obs, reward, cost) = jax.lax.scan(
      one_step, start_obs, jax.random.split(key, horizon))
  last = (jnp.arange(horizon) == horizon - 1).astype(reward.dtype)[:, None] * jnp.ones_like(reward)
  zeros = jnp.zeros_like(reward)
  return Transition(obs=obs, action=sample.action, raw_action=sample.raw_action,
                    log_prob=sample.log_prob, reward=reward, cost=cost, next_obs=next_obs,
                    terminal=zeros, done=last, alive=jnp.ones_like(reward),
                    episode_finished=zeros, episode_return=zeros, episode_cost=zeros)
