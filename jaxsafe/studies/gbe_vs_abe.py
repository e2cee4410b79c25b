"""GBE vs ABE: predicting the change of the episode cost J_C after a small policy step.

Reproduces the experiment of CGPO (Dai et al. 2024) App. C, Fig. 1 and Fig. 5 (Sec. 6.3) on
jaxsafe's ``function`` task (s' = s + 0.2 a, reward = cost = f(x) of Eq. 70, T = 100, b = 8).
For a policy theta and a step delta of fixed length |delta| = 0.01 (App. C.2), each estimator
predicts the change J_C(theta + delta) - J_C(theta) from the same N episodes of pi_theta:

    GBE (Eq. 73):  delta . q,     q = grad J_C(theta) by BPTT through the env
                   (``short_horizon.gradients`` with one window of T steps, no critics);
    ABE (Eq. 72):  1/(1-gamma) E_{s~d^pi, a~pi}[ pi_{theta+delta}(a|s) / pi_theta(a|s) A_C(s, a) ]
                 = sum_t gamma^t E[ratio_t A_t]    (d^pi the discounted state distribution),
                   estimated by sum_t gamma^t 1/N sum_i ratio_ti A_ti, gamma = 0.99; A_C is
                   GAE(gamma, lambda = 0.95) of the cost with a value least-squares fitted to the
                   discounted cost-to-go of the same episodes (``cost_advantages``): either V(s),
                   the kind of critic the paper's baselines learn, or V(s, t), which also knows the
                   time left in the episode. "Eq. 72" is the literal ratio * A; "centred" uses
                   (ratio - 1) * A, the same in expectation since E_pi[A] = 0.

and the prediction is scored against the measured change by the relative error of Eq. 74,

    |J_C(theta + delta) - J^_C(theta + delta)| / |J_C(theta + delta) - J_C(theta)|
        = |measured - predicted| / |measured|,

where both estimates J^_C(theta + delta) = J_C(theta) + predicted use the same J_C(theta), so it
cancels. The measured change is taken on M further episodes (not the estimators' N), with common
random numbers: the same initial states and the same policy noise for theta and theta + delta
(the tanh-Gaussian policy is reparameterised, so a key gives comparable actions), which makes
its standard error small against the change itself (reported as ``se/|change|``).

The step direction is the one CGPO takes: delta = -0.01 q / |q|, the cost-decreasing recovery
step of Corollary 5.2 (``--direction ascent`` flips it). On ``function`` reward = cost, so
g = q and every CGPO step lies along +-q. Policies: the ``cgpo`` agent with its defaults (N = 128
episodes per iteration, h = 10) after ``--stages`` training iterations (seed ``--seed``), and a
hand-set linear feedback policy (``feedback_policy``, the setting of tests/test_gbe_vs_abe.py).
Float32 throughout; ``float64_check`` recomputes one measured change per policy in float64 with
the same initial states and noise and reports the relative difference.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxsafe import agents, envs
from jaxsafe.core import distributions, normalize, returns, short_horizon
from jaxsafe.core.experience import Transition
from jaxsafe.core.networks import GaussianActor
from jaxsafe.solvers import trust_region

ENV_ID = "function"


@dataclasses.dataclass(frozen=True)
class Settings:
  stages: tuple[int, ...] = (0, 10, 30, 60)  # cgpo training iterations before the measurement
  repetitions: int = 100  # R
  num_episodes: int = 128  # N: the estimators' episodes per repetition
  truth_episodes: int = 4096  # M: episodes of the measured change per repetition
  step_length: float = 0.01  # |delta|
  direction: str = "descent"  # delta = -|delta| q/|q| ("ascent": +)
  gamma: float = 0.99
  gae_lambda: float = 0.95
  seed: int = 0
  feedback: bool = True  # also measure ``feedback_policy()``


QUICK = Settings(stages=(0, 10), repetitions=8, num_episodes=64, truth_episodes=512)


class Policy(NamedTuple):
  """A frozen tanh-Gaussian policy: the actor network, its params and observation statistics."""

  actor: GaussianActor
  params: dict
  stats: normalize.RunningStats


def distribution(policy: Policy, params, obs):
  """pi_params(.|obs), with the policy's (fixed) observation normalisation, as in ``cgpo``."""
  mean, log_std = policy.actor.apply(params, normalize.normalize(policy.stats, obs))
  return distributions.make_distribution("tanh_normal", mean, log_std)


def make_act(policy: Policy) -> short_horizon.PolicyFn:
  """The reparameterised policy of ``short_horizon``: params -> ((obs, key) -> ActionSample)."""
  return lambda params: lambda obs, key: distributions.sample(distribution(policy, params, obs), key)


def train_stages(stages, seed: int = 0) -> list[tuple[int, Policy, float]]:
  """Trains ``cgpo`` (defaults) on ``function``; (iteration, policy, episode cost) per stage."""
  agent = agents.make("cgpo", ENV_ID)
  cfg = agent.config
  actor = GaussianActor(agent.env.action_size, cfg.hidden_sizes, cfg.activation)
  update = jax.jit(agent.update)
  state = agent.init(jax.random.PRNGKey(seed))
  out, cost = [], float("nan")
  for it in range(max(stages) + 1):
    if it in stages:
      out.append((it, Policy(actor, state.params["actor"], state.obs_stats), cost))
    if it < max(stages):
      state, metrics = update(state)
      cost = float(metrics["episode_cost"])  # J_C of the policy before this update
  return out


def feedback_policy(gain: float = -1.0, target: float = -1.1, log_std: float = -1.0) -> Policy:
  """A linear tanh-Gaussian policy, pre-squash mean = gain (x - target), no hidden layer.

  With the defaults it holds the point near x = -1.1, where f(x) ~ 0.08 and so J_C ~ b = 8: the
  kind of policy ``cgpo`` converges to (its 60-iteration policy crosses zero near x = -1.1).
  Observations are not normalised (mean 0, variance 1 statistics).
  """
  actor = GaussianActor(1, hidden_sizes=())  # params: the tree ``actor.init`` builds
  params = {"params": {"MLP_0": {"Dense_0": {"kernel": jnp.full((1, 1), gain),
                                             "bias": jnp.full((1,), -gain * target)}},
                       "log_std": jnp.full((1,), log_std)}}
  return Policy(actor, params, normalize.init(1))


def presquash_samples(policy: Policy, params, obs, key, horizon: int):
  """The pre-squash samples raw_t (a_t = tanh(raw_t)) that ``rollout_losses`` drew, [T, N, 1].

  ``rollout_losses`` splits ``key`` into one key per step and samples the whole batch with it;
  repeating that draw on the recorded observations gives back the exact Gaussian samples, so the
  likelihood ratio needs no atanh of actions that float32 may have rounded to +-1.
  """
  keys = jax.random.split(key, horizon)
  draw = lambda o, k: distribution(policy, params, o).distribution.sample(seed=k)
  return jax.vmap(draw)(obs, keys)


def value_features(x, t, horizon: int, time_aware: bool = True):
  """Features of a fitted value: Legendre polynomials of the scaled position x in [-1, 1]
  (degree <= 5) times those of the time t / T (degree <= 5) when ``time_aware``, V(s, t);
  otherwise of the position alone (degree <= 7), V(s)."""
  def legendre(z, degree):
    polys = [jnp.ones_like(z), z]
    for n in range(1, degree):
      polys.append(((2 * n + 1) * z * polys[n] - n * polys[n - 1]) / (n + 1))
    return jnp.stack(polys, -1)

  if not time_aware:
    return legendre(x, 7)
  tau = 2.0 * t / horizon - 1.0
  return (legendre(x, 5)[..., :, None] * legendre(tau, 5)[..., None, :]).reshape(x.shape + (36,))


def cost_advantages(episodes: Transition, gamma: float, lam: float,
                    time_aware: bool = True, ridge: float = 1e-4):
  """A_C(s_t, a_t) [T, N]: GAE(gamma, lam) of the cost with a fitted value.

  The value, linear in ``value_features``, is least-squares fitted to the discounted cost-to-go
  G_t = sum_{k >= t} gamma^(k - t) c_k of the same episodes, with V(s_T) = 0 at the end of the
  episode. ``time_aware``: V(s, t), which the finite horizon needs; otherwise V(s), the kind of
  critic the paper's baselines learn. ``lam = 1`` gives G_t - V.
  """
  horizon, n = episodes.cost.shape
  cost_to_go = jax.lax.scan(lambda acc, c: (c + gamma * acc, c + gamma * acc),
                            jnp.zeros((n,), episodes.cost.dtype), episodes.cost, reverse=True)[1]
  t = jnp.broadcast_to(jnp.arange(horizon, dtype=episodes.cost.dtype)[:, None], (horizon, n))
  center, scale = episodes.obs[..., 0].mean(), 3.0 * episodes.obs[..., 0].std() + 1e-6

  def features(obs, time):
    x = jnp.clip((obs[..., 0] - center) / scale, -1.0, 1.0)
    return value_features(x, time, horizon, time_aware)

  phi = features(episodes.obs, t)
  flat_phi = phi.reshape(-1, phi.shape[-1])
  gram = flat_phi.T @ flat_phi / flat_phi.shape[0]
  weights = jnp.linalg.solve(gram + ridge * jnp.eye(gram.shape[0], dtype=gram.dtype),
                             flat_phi.T @ cost_to_go.reshape(-1) / flat_phi.shape[0])
  values = phi @ weights
  next_values = jnp.where(t + 1 >= horizon, 0.0, features(episodes.next_obs, t + 1) @ weights)
  zero = jnp.zeros_like(values)
  adv, _ = returns.gae(episodes.cost, values, next_values, zero, zero, gamma, lam)
  return adv


def log_probs(policy: Policy, params, obs, raw):
  """log pi_params(a | s) of the recorded pre-squash samples ``raw`` at ``obs``, [T, N]."""
  return jax.vmap(lambda o, r: distributions.log_prob(distribution(policy, params, o), r))(obs, raw)


def abe_change(policy: Policy, new_params, episodes: Transition, raw, advantages,
               gamma: float):
  """(Eq. 72, centred Eq. 72): sum_t gamma^t 1/N sum_i (ratio_ti [- 1]) A_ti."""
  ratio = jnp.exp(log_probs(policy, new_params, episodes.obs, raw)
                  - log_probs(policy, policy.params, episodes.obs, raw))  # [T, N]
  discount = gamma ** jnp.arange(ratio.shape[0], dtype=ratio.dtype)
  literal = discount @ (ratio * advantages).mean(1)
  centred = discount @ ((ratio - 1.0) * advantages).mean(1)
  return literal, centred


def one_repetition(policy: Policy, key: jax.Array, s: Settings) -> dict:
  """Fresh initial states and noise: one step delta, its measured and predicted cost changes."""
  env_n = envs.make(ENV_ID, num_envs=s.num_episodes)
  env_m = envs.make(ENV_ID, num_envs=s.truth_episodes)
  horizon = env_n.episode_length
  act = make_act(policy)
  k_start, k_noise, k_truth_start, k_truth_noise = jax.random.split(key, 4)

  # The estimators' N episodes and the BPTT gradient q = grad J_C (window = T: exact).
  start = env_n.reset(k_start)
  _, q, episodes = short_horizon.gradients(policy.params, env_n, act, None, start, k_noise,
                                           horizon, horizon)
  q_flat, _ = trust_region.flatten(q)
  theta, unravel = trust_region.flatten(policy.params)
  sign = -1.0 if s.direction == "descent" else 1.0
  delta = sign * s.step_length * q_flat / jnp.linalg.norm(q_flat)
  new_params = unravel(theta + delta)

  gbe = delta @ q_flat  # Eq. 73 minus J_C(theta)
  raw = presquash_samples(policy, policy.params, episodes.obs, k_noise, horizon)
  abe = {}
  for name, time_aware in (("abe_t", True), ("abe_s", False)):
    advantages = cost_advantages(episodes, s.gamma, s.gae_lambda, time_aware)
    abe[name], abe[f"{name}_centred"] = abe_change(policy, new_params, episodes, raw, advantages,
                                                   s.gamma)
  # The change on the estimators' own episodes (same states and noise): GBE's linearisation error.
  (_, cost_new_in), _ = short_horizon.rollout_losses(new_params, env_n, act, None, start, k_noise,
                                                     horizon, horizon)

  # The measured change: M other episodes, the same initial states and noise for both policies.
  truth_start = env_m.reset(k_truth_start)
  _, old = short_horizon.rollout_losses(policy.params, env_m, act, None, truth_start,
                                        k_truth_noise, horizon, horizon)
  _, new = short_horizon.rollout_losses(new_params, env_m, act, None, truth_start, k_truth_noise,
                                        horizon, horizon)
  diff = new.cost.sum(0) - old.cost.sum(0)
  return {"cost": old.cost.sum(0).mean(), "measured": diff.mean(),
          "measured_se": diff.std() / jnp.sqrt(diff.shape[0]),
          "in_sample": cost_new_in - episodes.cost.sum(0).mean(),
          "gbe": gbe, **abe,
          "q_norm": jnp.linalg.norm(q_flat),
          "raw_mismatch": jnp.max(jnp.abs(jnp.tanh(raw) - episodes.action))}


def evaluate(policy: Policy, key: jax.Array, s: Settings) -> dict[str, np.ndarray]:
  """``one_repetition`` for R independent keys (one compiled program, repetitions in sequence)."""
  run = jax.jit(lambda keys: jax.lax.map(lambda k: one_repetition(policy, k, s), keys))
  out = jax.device_get(run(jax.random.split(key, s.repetitions)))
  return {k: np.asarray(v, np.float64) for k, v in out.items()}


def float64_check(policy: Policy, key: jax.Array, s: Settings) -> float:
  """|change_f32 - change_f64| / |change_f64| for one step delta on M episodes.

  The same initial states, the same Gaussian draws (taken in float32, as ``make_act`` takes them:
  distrax draws mean + std * normal) and the same delta, once in float32 and once in float64:
  the rounding error of the measured change against its size.
  """
  env = envs.make(ENV_ID, num_envs=s.truth_episodes)
  horizon = env.episode_length
  k_start, k_noise = jax.random.split(key)

  @short_horizon.action_policy
  def act(params, obs, k):
    mean, log_std = policy.actor.apply(params, normalize.normalize(policy.stats, obs))
    noise = jax.random.normal(k, mean.shape, jnp.float32).astype(mean.dtype)
    return jnp.tanh(mean + jnp.exp(log_std) * noise)

  def cost(params, start):
    return short_horizon.rollout_losses(params, env, act, None, start, k_noise, horizon,
                                        horizon)[0][1]

  def change(params, start):
    q = short_horizon.gradients(params, env, act, None, start, k_noise, horizon, horizon)[1]
    q_flat = trust_region.flatten(q)[0]
    theta, unravel = trust_region.flatten(params)
    new_params = unravel(theta - s.step_length * q_flat / jnp.linalg.norm(q_flat))
    return cost(new_params, start) - cost(params, start), new_params

  start = jax.jit(env.reset)(k_start)
  change32, new_params = jax.jit(change)(policy.params, start)
  with jax.enable_x64(True):
    to64 = lambda tree: jax.tree_util.tree_map(
        lambda x: x.astype(jnp.float64) if x.dtype == jnp.float32 else x, tree)
    policy = policy._replace(stats=to64(policy.stats))  # ``act`` reads it at trace time
    start = to64(start)
    cost64 = jax.jit(cost)
    change64 = float(cost64(to64(new_params), start) - cost64(to64(policy.params), start))
  return abs(float(change32) - change64) / abs(change64)


def relative_error(measured, predicted):
  """Eq. 74 per repetition: |measured - predicted| / |measured|."""
  return np.abs(measured - predicted) / np.abs(measured)


ESTIMATORS = ("gbe", "abe_s", "abe_s_centred", "abe_t", "abe_t_centred")


def summarize(out: dict[str, np.ndarray]) -> dict[str, float]:
  """Mean and median over the repetitions of each estimator's Eq. 74 error, and the scale."""
  row = {"cost": out["cost"].mean(), "abs_change": np.abs(out["measured"]).mean(),
         "se_ratio": np.median(out["measured_se"] / np.abs(out["measured"])),
         "gbe_own_episodes": np.median(relative_error(out["in_sample"], out["gbe"])),
         "raw_mismatch": out["raw_mismatch"].max()}
  for name in ESTIMATORS:
    err = relative_error(out["measured"], out[name])
    row[f"{name}_mean"], row[f"{name}_median"] = err.mean(), np.median(err)
  row["ratio_literal"] = row["abe_s_mean"] / row["gbe_mean"]
  # The best ABE variant against GBE: the conservative ratio.
  row["ratio_best"] = min(row[f"{n}_mean"] for n in ESTIMATORS[1:]) / row["gbe_mean"]
  return row


def run(s: Settings, log=print) -> list[dict]:
  """Trains the cgpo stages and measures each policy; one summary row per policy."""
  policies = []
  if s.stages:
    t0 = time.perf_counter()
    policies = [(f"cgpo {it}", it, policy) for it, policy, _ in train_stages(s.stages, s.seed)]
    log(f"trained {max(s.stages)} cgpo iterations in {time.perf_counter() - t0:.1f} s")
  if s.feedback:
    policies.append(("feedback", 10_000, feedback_policy()))
  rows = []
  for label, salt, policy in policies:
    t0 = time.perf_counter()
    key = jax.random.fold_in(jax.random.PRNGKey(s.seed + 1), salt)
    row = {"policy": label, **summarize(evaluate(policy, key, s))}
    row["f64_diff"] = float64_check(policy, jax.random.fold_in(key, 1), s)
    row["seconds"] = time.perf_counter() - t0
    rows.append(row)
    log(f"{label}: {row['seconds']:.1f} s")
  return rows


def table(rows: list[dict], num_episodes: int) -> str:
  """Markdown: one row per policy; estimator cells are "mean / median" of the Eq. 74 error."""
  header = ("| policy | N | J_C(theta) | mean abs change | se / abs change | GBE (Eq. 73) "
            "| ABE V(s) Eq. 72 | ABE V(s) centred | ABE V(s,t) Eq. 72 | ABE V(s,t) centred "
            "| ABE V(s) Eq. 72 / GBE | best ABE / GBE | GBE vs own episodes |")
  lines = [header, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
  for r in rows:
    cells = [f"{r[n + '_mean']:.3g} / {r[n + '_median']:.3g}" for n in ESTIMATORS]
    lines.append(f"| {r['policy']} | {num_episodes} | {r['cost']:.2f} | {r['abs_change']:.3f} | "
                 f"{r['se_ratio']:.3f} | " + " | ".join(cells) + f" | {r['ratio_literal']:.0f} | "
                 f"{r['ratio_best']:.1f} | {r['gbe_own_episodes']:.3f} |")
  return "\n".join(lines)


def machine() -> str:
  model = ""
  try:
    with open("/proc/cpuinfo") as f:
      model = next((line.split(":", 1)[1].strip() for line in f
                    if line.startswith("model name")), "")
  except OSError:
    pass
  return (f"{platform.machine()} {model}, {os.cpu_count()} cores; jax {jax.__version__} on "
          f"{jax.devices()[0].platform}; Python {platform.python_version()}")
