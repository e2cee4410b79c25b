"""The one experience type every agent trains on, and the one acting signature.

``Transition`` is a step of experience. A rollout of the auto-resetting envs (``core.rollout``),
whole episodes through a differentiable env (``core.short_horizon``), imagined model rollouts
(``models.imagination``), replay-buffer items and the world model's training batches are all
``Transition`` pytrees, batched time-major as [T, N, ...] after a rollout or [B, ...] / [B, K, ...]
when sampled. Both the action the env received and the raw (pre-squash) sample of the policy are
kept: log-probabilities are evaluated at the raw sample (``core.distributions``), the dynamics and
the world model see the env action.

Fields a producer has no value for are ``None`` (an empty pytree node), e.g. ``log_prob`` of a
replay buffer that never needs it: nothing is stored for them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import struct


class ActionSample(NamedTuple):
  """What a policy returns for a batch of observations."""

  action: jax.Array  # a, as given to the env (tanh-squashed for a tanh-Gaussian)
  raw_action: jax.Array  # the Gaussian sample before squashing
  log_prob: jax.Array  # log pi(a | s), evaluated at raw_action


#: (obs, key) -> ActionSample: the acting signature of every agent. A policy differentiated
#: through (the first-order agents) is a function of its parameters returning an ``ActFn``.
ActFn = Callable[[jax.Array, jax.Array], ActionSample]


@struct.dataclass
class Transition:
  """One step (s, a, r, c, s') and what the learners need around it.

  ``next_obs`` is the observation the step ended in (the final one of a finished episode, before
  any auto-reset), so value targets bootstrap on truncation. ``terminal`` is 1 when the task
  ended the episode (no bootstrap), ``done`` when the episode ended for any reason (terminal or
  time limit: GAE's recursion is cut there). ``alive`` is 1 for a real step and 0 for the padding
  steps after an episode terminated inside a fixed-length rollout of whole episodes, or the steps
  of a K-step segment past the episode it started in: losses and statistics weight by it.
  ``episode_finished``, ``episode_return`` and ``episode_cost`` carry the totals of an episode
  on the step that finishes it (auto-resetting rollouts only).
  """

  obs: jax.Array
  action: jax.Array
  raw_action: jax.Array | None
  reward: jax.Array
  cost: jax.Array
  next_obs: jax.Array
  terminal: jax.Array
  done: jax.Array
  alive: jax.Array
  log_prob: jax.Array | None = None
  episode_finished: jax.Array | None = None
  episode_return: jax.Array | None = None
  episode_cost: jax.Array | None = None


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


def flatten_steps(data, num_axes: int = 2):
  """Merges the leading ``num_axes`` axes of every leaf (e.g. [T, N, ...] -> [T * N, ...])."""
  return jax.tree_util.tree_map(lambda x: x.reshape((-1,) + x.shape[num_axes:]), data)
