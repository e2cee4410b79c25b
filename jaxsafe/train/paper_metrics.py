"""The evaluation metrics of the papers: Conv. Steps and Vio. Ratio of Dai et al., "Safe
Reinforcement Learning using Finite-Horizon Gradient-based Estimation" (ICML 2024; App. F.2,
Table 1), and the cumulative cost of training that Fig. 4 of Liu et al., "Constrained
Variational Policy Optimization for Safe Reinforcement Learning" (ICML 2022) plots the return
against.

Both read one run's learning curve: per logged iteration, the env steps so far, the episode
return and the episode cost J_C.

- ``convergence_step`` (F.2.1): the first logged point from which the return varies by no more
  than ``threshold`` over the next ``window`` points and the cost stays within the limit; -1 if
  there is none. The paper's listing returns after comparing only the next point (its ``else:
  return`` belongs to the ``if``); we check the whole window, which is what the text describes
  ("the range of variation within a given window is less than a set threshold").
- ``violation_ratio`` (F.2.2): among the points in the safety-critical area (cost above
  ``limit - critical_radius``), the fraction that violate the limit by more than ``soft_margin``;
  -1 if no point is in the area.
- ``settling_step`` (ours, issue 39): the first point from which, to the end of the run, the
  cost stays within the limit plus ``soft_margin`` and the return within ``return_tolerance`` of
  its range of its final value (the budgets of ``benchmarks/generalisation.py``); -1 if none.
"""

from __future__ import annotations

import numpy as np


def convergence_step(env_steps, returns, costs, cost_limit: float, window: int,
                     threshold: float) -> float:
  """F.2.1: env steps at the first feasible point after which the return settles; -1 if never."""
  env_steps, returns, costs = (np.asarray(x, dtype=float) for x in (env_steps, returns, costs))
  if not (env_steps.shape == returns.shape == costs.shape):
    raise ValueError("env_steps, returns and costs must have the same length")
  if window < 2:
    raise ValueError(f"window must be >= 2, got {window}")
  n = len(returns)
  for i in range(n - 1):
    end = min(i + window, n)
    settled = np.all(np.abs(returns[i + 1:end] - returns[i]) <= threshold)
    if settled and costs[i] <= cost_limit:
      return float(env_steps[i])
  return -1.0


def violation_ratio(costs, cost_limit: float, critical_radius: float, soft_margin: float) -> float:
  """F.2.2: share of points in the safety-critical area that exceed the limit plus the margin."""
  costs = np.asarray(costs, dtype=float)
  in_area = np.sum(costs > cost_limit - critical_radius)
  violations = np.sum(costs > cost_limit + soft_margin)
  return float(violations / in_area) if in_area > 0 else -1.0


def settling_step(env_steps, returns, costs, cost_limit: float, soft_margin: float,
                  return_tolerance: float = 0.1) -> float:
  """Env steps at the first point from which the cost stays <= ``cost_limit + soft_margin`` and
  the return within ``return_tolerance`` x (max - min of the returns) of the last return, to the
  end of the run; -1 where the last point itself is not such a point."""
  env_steps, returns, costs = (np.asarray(x, dtype=float) for x in (env_steps, returns, costs))
  if not (env_steps.shape == returns.shape == costs.shape) or env_steps.size == 0:
    raise ValueError("env_steps, returns and costs must have the same, non-zero length")
  spread = np.nanmax(returns) - np.nanmin(returns)
  good = (costs <= cost_limit + soft_margin) & (
      np.abs(returns - returns[-1]) <= return_tolerance * spread)
  if not good[-1]:
    return -1.0
  # The first point of the last unbroken stretch of good points.
  first = 0 if good.all() else len(good) - int(np.argmin(good[::-1]))
  return float(env_steps[first])


def cumulative_cost(env_steps, episode_costs, episode_length: int, cost_limit: float):
  """Liu et al. 2022, Fig. 4: the cost paid during training so far, and its violation part, per
  update.

  ``episode_costs`` is [runs, updates]: the mean cost of the episodes that finished in each update
  (NaN where none did, as off-policy updates of a few env steps usually are); ``env_steps`` the
  env steps per run after each update. An update of n env steps adds J_C n / T, where J_C is the
  mean cost of the next episodes to finish (the episodes it was part of; past the last finished
  episode, that one's). The violation adds max(0, J_C - b) n / T instead. Returns both as
  [runs, updates] running sums; a run with no finished episode counts zero.
  """
  costs = np.array(episode_costs, dtype=float, ndmin=2)
  env_steps = np.asarray(env_steps, dtype=float)
  if costs.shape[-1] != env_steps.shape[-1]:
    raise ValueError(f"episode_costs has {costs.shape[-1]} updates, env_steps {env_steps.shape[-1]}")
  rate = np.zeros_like(costs)
  for run, row in enumerate(costs):
    finished = np.flatnonzero(np.isfinite(row))
    if finished.size:
      next_finished = np.minimum(np.searchsorted(finished, np.arange(len(row))), finished.size - 1)
      rate[run] = row[finished[next_finished]]
  episodes = np.diff(env_steps, prepend=0.0) / episode_length
  return (np.cumsum(rate * episodes, -1),
          np.cumsum(np.maximum(rate - cost_limit, 0.0) * episodes, -1))
