"""The learning claims of jaxsafe's agents, shared by tests/test_learning.py and
tests/learning_seeds.py (which measures each claim on many seeds for docs/benchmarks.md).

A claim is an algorithm, a task, the config it runs at (the agent's defaults except the batch
size, ``ON_POLICY_BATCH`` / ``GRADIENT_BATCH``, for CI time), a training budget, and a property
of the end of training that a broken gradient, sign or multiplier would fail. A learning run
is chaotic (another CPU's rounding moves it as another seed would), so every threshold below was
met with room by every one of at least 10 measured seeds (docs/benchmarks.md, "Learning claims");
the tests run 3 of those seeds, shifted by ``JAXSAFE_SEED_OFFSET``.

Each run trains its seeds as one vmapped program (jitted once; every call runs a ``lax.scan`` over
``CHUNK`` updates).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from conftest import learning_seeds

from jaxsafe import agents
from jaxsafe.envs.cruise import efficiency

CHUNK = 10  # updates per jitted call
SEEDS = learning_seeds(0, 1, 2)  # the tests' seeds (JAXSAFE_SEED_OFFSET shifts them)


@dataclasses.dataclass(frozen=True)
class Claim:
  algo: str
  env: str
  iterations: int
  check: Callable[[dict[str, np.ndarray], float], list[str]]  # (run, cost limit) -> failures
  overrides: dict = dataclasses.field(default_factory=dict)
  extra: tuple[str, ...] = ()  # per-iteration metrics (f"{algo}/{name}") to keep


def train(algo: str, env: str, seeds, iterations: int, overrides: dict | None = None,
          extra: tuple[str, ...] = ()) -> tuple[dict[str, np.ndarray], float]:
  """Trains ``seeds`` of ``algo`` on ``env``; returns per-iteration metrics [seed, iteration]
  (``episode_cost``, ``episode_return`` and ``extra``) and the cost limit."""
  agent = agents.make(algo, env, **(overrides or {}))
  keys = jnp.stack([jax.random.PRNGKey(seed) for seed in seeds])
  state = jax.jit(jax.vmap(agent.init))(keys)
  wanted = ("episode_cost", "episode_return", *(f"{algo}/{k}" for k in extra))

  def chunk(state):
    state, metrics = jax.lax.scan(lambda s, _: agent.update(s), state, None, length=CHUNK)
    return state, {k: metrics[k] for k in wanted}

  if iterations % CHUNK:
    raise ValueError(f"iterations must be a multiple of {CHUNK}, got {iterations}")
  run, history = jax.jit(jax.vmap(chunk)), []
  for _ in range(iterations // CHUNK):
    state, metrics = run(state)
    history.append(jax.device_get(metrics))
  run = {k: np.concatenate([h[k] for h in history], axis=1) for k in wanted}
  return run, float(agent.config.cost_limit if agent.config.cost_limit is not None
                    else agent.env.unwrapped.cost_limit)


def assert_claim(claim_id: str, claims=None, seeds=SEEDS) -> dict[str, np.ndarray]:
  """Trains claim ``claim_id`` (of ``claims``, default ``CLAIMS``) on ``seeds`` and asserts its
  property; returns the run."""
  claim = (CLAIMS if claims is None else claims)[claim_id]
  run, limit = train(claim.algo, claim.env, seeds, claim.iterations, claim.overrides, claim.extra)
  failures = claim.check(run, limit)
  assert not failures, f"{claim_id} (seeds {seeds}): " + "; ".join(failures)
  return run


def last_fraction_mean(values: np.ndarray, fraction: float = 0.1) -> np.ndarray:
  """Mean over the last ``fraction`` of iterations, per seed (NaN-free rows assumed)."""
  n = max(1, round(values.shape[1] * fraction))
  return values[:, -n:].mean(axis=1)


def summary(run: dict[str, np.ndarray], episode_length: int = 100) -> dict[str, np.ndarray]:
  """Per seed: last-10% cost, return, and cruise's efficiency J_R / sqrt(T J_C)."""
  cost = last_fraction_mean(run["episode_cost"])
  ret = last_fraction_mean(run["episode_return"])
  eff = np.asarray(efficiency(ret, cost, episode_length))
  return {"cost": cost, "return": ret, "efficiency": eff}


# --- properties --------------------------------------------------------------------------------


def at_limit(tolerance: float, min_efficiency: float | None = None, level: float = 1.0):
  """Mean cost over the last 10% of training within ``tolerance`` (relative) of ``level`` x the
  limit; on cruise also the return at least ``min_efficiency`` of the frontier sqrt(T J_C)
  (envs/cruise.py, Eq. 3)."""
  window = 0.1

  def check(run, limit):
    bad = []
    cost = last_fraction_mean(run["episode_cost"], window)
    ret = last_fraction_mean(run["episode_return"], window)
    eff = np.asarray(efficiency(ret, cost, 100))
    limit = level * limit
    low, high = limit - tolerance * abs(limit), limit + tolerance * abs(limit)
    for i, (c, e) in enumerate(zip(cost, eff)):
      if not (np.isfinite(c) and low <= c <= high):
        bad.append(f"seed #{i}: last-{window:.0%} cost {c:.3f} not in [{low:.2f}, {high:.2f}]")
      if min_efficiency is not None and not e >= min_efficiency:
        bad.append(f"seed #{i}: efficiency {e:.3f} < {min_efficiency}")
    return bad

  return check


def unconstrained(min_cost_ratio: float, min_return: float):
  """Unconstrained PPO: ends far above the limit (cost > ratio x b) with a high return."""

  def check(run, limit):
    s, bad = summary(run), []
    for i, (c, r) in enumerate(zip(s["cost"], s["return"])):
      if not c > min_cost_ratio * limit:
        bad.append(f"seed #{i}: last-10% cost {c:.2f} <= {min_cost_ratio} x limit {limit}")
      if not r > min_return:
        bad.append(f"seed #{i}: last-10% return {r:.2f} <= {min_return}")
    return bad

  return check


def feasible_on_average(max_cost_ratio: float, min_return: float, fraction: float = 0.5):
  """The Lagrangian agents with Adam oscillate around the limit (the multiplier integrates the
  violation, the policy overshoots; docs/algorithms.md): over the last ``fraction`` of training
  the mean cost is at most ``max_cost_ratio`` x b and the mean return above ``min_return``."""

  def check(run, limit):
    bad = []
    cost = last_fraction_mean(run["episode_cost"], fraction)
    ret = last_fraction_mean(run["episode_return"], fraction)
    for i, (c, r) in enumerate(zip(cost, ret)):
      if not c <= max_cost_ratio * limit:
        bad.append(f"seed #{i}: last-{fraction:.0%} mean cost {c:.2f} > {max_cost_ratio} x {limit}")
      if not r > min_return:
        bad.append(f"seed #{i}: last-{fraction:.0%} mean return {r:.2f} <= {min_return}")
    return bad

  return check


def recovers(within: int, final=None):
  """From an infeasible start (J_C > b at the first update, a recovery update), feasible within
  ``within`` updates; then ``final`` (another property) on the end of training, if given."""

  def check(run, limit):
    costs, bad = run["episode_cost"], []
    first = np.where((costs <= limit).any(axis=1), np.argmax(costs <= limit, axis=1), -1)
    for i in range(costs.shape[0]):
      if not costs[i, 0] > limit:
        bad.append(f"seed #{i}: the first policy is feasible ({costs[i, 0]:.2f}): "
                   "nothing to recover")
      if not 0 <= first[i] < within:
        bad.append(f"seed #{i}: first feasible update {first[i]} (must be < {within})")
    return bad + (final(run, limit) if final is not None else [])

  return check


def stays_feasible(max_cost_ratio: float):
  """Last-10% cost at most ``max_cost_ratio`` x b (below it is allowed)."""

  def check(run, limit):
    cost = summary(run)["cost"]
    return [f"seed #{i}: last-10% cost {c:.2f} > {max_cost_ratio} x {limit}"
            for i, c in enumerate(cost) if not c <= max_cost_ratio * limit]

  return check


# --- the claims --------------------------------------------------------------------------------

#: On-policy agents run 16 envs instead of their default 64 (CI time); nothing else changes.
ON_POLICY_BATCH = {"num_envs": 16}
GRADIENT_AGENTS = ("cgpo", "mb-cgpo", "shac-lag", "bptt-lag")
#: The gradient agents run 32 envs instead of their default 128 (CI time).
GRADIENT_BATCH = {"num_envs": 32}

OFF_POLICY_AGENTS = ("cvpo", "sac-lag", "td3-lag", "ddpg-lag")
#: The off-policy agents run (64, 64) networks instead of their default (256, 256), and start
#: learning after 1,600 env steps instead of 4,000 (CI time); nothing else changes.
OFF_POLICY_BATCH = {"hidden_sizes": (64, 64), "warmup_steps": 1600}
#: Where CVPO's Q_c threshold holds a stationary policy on cruise, as a fraction of b:
#: (1 - gamma^T) with gamma 0.99 and T 100 (docs/algorithms.md, "SAC-Lag, TD3-Lag, DDPG-Lag").
OFF_POLICY_COST_LEVEL = 1.0 - 0.99 ** 100

CLAIMS: dict[str, Claim] = {
    "ppo/cruise": Claim("ppo", "cruise", 80, unconstrained(2.0, 80.0), ON_POLICY_BATCH),
    "ppo-lag/cruise": Claim("ppo-lag", "cruise", 80, at_limit(0.05, 0.98), ON_POLICY_BATCH),
    "pid-lag/cruise": Claim("pid-lag", "cruise", 80, at_limit(0.05, 0.98), ON_POLICY_BATCH),
    "cppo/cruise": Claim("cppo", "cruise", 80, at_limit(0.05, 0.98), ON_POLICY_BATCH),
    "pdo/cruise": Claim("pdo", "cruise", 80, at_limit(0.05, 0.98), ON_POLICY_BATCH),
    "appo/cruise": Claim("appo", "cruise", 80, at_limit(0.05, 0.98), ON_POLICY_BATCH),
    # Since issue 39 (an infeasible batch skips the improvement): 16 seeds 24.80-25.22, 0.984+.
    "cup/cruise": Claim("cup", "cruise", 80, at_limit(0.05, 0.98), ON_POLICY_BATCH),
    "trpo/cruise": Claim("trpo", "cruise", 80, unconstrained(2.0, 80.0), ON_POLICY_BATCH),
    # With the multiplier's P term (issue 39), 16 seeds: last-10% cost 24.78-25.22, efficiency
    # 0.997-0.998 (ascent alone: a limit cycle, last-10% costs 20.7-30.0).
    "trpo-lag/cruise": Claim("trpo-lag", "cruise", 80, at_limit(0.05, 0.98), ON_POLICY_BATCH),
    # With the violation's integral (issue 39), 16 seeds: last-10% cost 24.98-25.00, efficiency
    # 0.997-0.998 (the paper's c: 24.98-25.03).
    "cpo/cruise": Claim("cpo", "cruise", 80, at_limit(0.05, 0.98), ON_POLICY_BATCH),
    # On function (reward = cost) CPPO at its defaults ends 1-37% *below* the limit: with two
    # critics, A and A_c differ only by fitting noise (docs/algorithms.md, "Precision on
    # function"); its precision at the limit is claimed on cruise.
    "cppo/function": Claim("cppo", "function", 150, recovers(25, stays_feasible(1.05)),
                           ON_POLICY_BATCH),
    "dyna-cppo/cruise": Claim("dyna-cppo", "cruise", 30, at_limit(0.05, 0.98), ON_POLICY_BATCH),
    "cgpo/cruise": Claim("cgpo", "cruise", 40, at_limit(0.05, 0.97), GRADIENT_BATCH),
    # The elastic recovery (the default since issue 39), 16 seeds: first feasible by update 15,
    # last-10% cost 7.99-8.85 (Eq. 33 held 10% on every seed; docs/algorithms.md).
    "cgpo/function": Claim("cgpo", "function", 80, recovers(25, at_limit(0.15)), GRADIENT_BATCH,
                           extra=("case",)),
    "mb-cgpo/cruise": Claim("mb-cgpo", "cruise", 40, at_limit(0.05, 0.95), GRADIENT_BATCH),
    # The predictive multiplier (issue 39) holds the cost at b; 16 seeds (0-9, 100-102,
    # 200-202): last-10% cost 24.88-25.04, efficiency 0.994 for both (docs/benchmarks.md).
    "shac-lag/cruise": Claim("shac-lag", "cruise", 100, at_limit(0.02, 0.98), GRADIENT_BATCH),
    "bptt-lag/cruise": Claim("bptt-lag", "cruise", 100, at_limit(0.02, 0.98), GRADIENT_BATCH),
    # Issue 17: the gradient family on a task nobody tuned it on (envs/control.py), against the
    # zero-action policy's return of -200 at the limit b = 2. SHAC-Lag at its default 128 envs;
    # 16 seeds at the predictive multiplier: last-10% cost 1.46-2.00, return -65.7 .. -30.0.
    "shac-lag/reach-around": Claim("shac-lag", "reach-around", 120,
                                   feasible_on_average(1.05, -100.0, 0.1), {}),
    # Elastic recovery, 16 seeds: last-50% cost 1.97-2.12, return -63.3 .. -35.8.
    "cgpo/reach-around": Claim("cgpo", "reach-around", 150, feasible_on_average(1.1, -75.0),
                               GRADIENT_BATCH),
    # The off-policy Lagrangians' multiplier follows the measured episode cost (issue 39), so
    # they settle at b itself; 16 seeds (0-9, 100-102, 200-202): SAC-Lag's last-10% cost
    # 24.61-25.74, efficiency 0.972-0.992 (docs/benchmarks.md).
    "sac-lag/cruise": Claim("sac-lag", "cruise", 1000, at_limit(0.05, 0.95), OFF_POLICY_BATCH),
    # The deterministic actors swing around it on some seeds (last-10% efficiency down to 0.77);
    # over the last half their mean cost is within 1.4% of b (max 25.33) and their return at
    # least 42.8 on the 16 seeds.
    "td3-lag/cruise": Claim("td3-lag", "cruise", 1000, feasible_on_average(1.1, 35.0, 0.5),
                            OFF_POLICY_BATCH),
    "ddpg-lag/cruise": Claim("ddpg-lag", "cruise", 1000, feasible_on_average(1.1, 35.0, 0.5),
                             OFF_POLICY_BATCH),
    # CVPO's E-step holds E_q[Q_c] to the same threshold: it ends feasible, at that level.
    "cvpo/cruise": Claim("cvpo", "cruise", 500, at_limit(0.15, 0.95, level=OFF_POLICY_COST_LEVEL),
                         OFF_POLICY_BATCH),
}

#: One short run per family of agents, for ``make test``: the first updates of a claim above, with
#: looser thresholds (measured on the same seeds, docs/benchmarks.md).
QUICK_CLAIMS: dict[str, Claim] = {
    "ppo-lag/cruise@40": Claim("ppo-lag", "cruise", 40, at_limit(0.1, 0.95), ON_POLICY_BATCH),
    "cppo/function@30": Claim("cppo", "function", 30, recovers(25), ON_POLICY_BATCH),
    "cgpo/cruise@20": Claim("cgpo", "cruise", 20, at_limit(0.2, 0.9), GRADIENT_BATCH),
    # 16 seeds: cost 24.83-25.27, efficiency 0.990-0.993 over updates 451-500.
    "sac-lag/cruise@500": Claim("sac-lag", "cruise", 500, at_limit(0.1, 0.9), OFF_POLICY_BATCH),
}
