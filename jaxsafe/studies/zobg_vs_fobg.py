"""ZoBG vs FoBG: predicting J_C(theta + delta) from an estimated gradient, per trajectory length.

Reproduces CGPO (Dai et al. 2024) App. B, Tables 2 and 3, on jaxsafe's ``function`` task
(s' = s + 0.2 a, cost f(x) of Eq. 70) with the horizon T overridden to each trajectory length L
(``envs.make("function", num_envs=N, episode_length=L)``). For a fixed policy theta, each
estimator gives q^ ~ grad J_C(theta) from the same N episodes of pi_theta:

    ZoBG (Eq. 69):  q^ = 1/N sum_i sum_t grad log pi(a_t^i | s_t^i) C(tau_i),
                    C(tau_i) = sum_t c_t^i the episode cost (the likelihood-ratio / REINFORCE
                    estimator; "ZoBG-b" also reported: C(tau_i) minus the leave-one-out mean of
                    the other N - 1 episode costs, a constant baseline that keeps it unbiased);
    FoBG:           q^ = grad of 1/N sum_i C(tau_i) by BPTT through the env
                    (``short_horizon.gradients`` with window = L and no critics).

The step is the one CGPO takes to lower the cost: delta = -|delta| q^ / |q^|, for the estimator's
own q^, and the prediction J^_C(theta + delta) = J_C(theta) + delta . q^ (Eq. 73) is scored by the
relative error of Eq. 74,

    |J_C(theta + delta) - J^_C(theta + delta)| / |J_C(theta + delta) - J_C(theta)|
        = |measured - delta . q^| / |measured|,

with the measured change J_C(theta + delta) - J_C(theta) taken on M further episodes with common
random numbers (the same initial states and policy noise for theta and theta + delta). The paper's
table rows are all labelled "delta^ = 0.0001" (a typo); here the rows are the squared radius
delta^ = |delta|^2 in {1e-4, 1e-3, 1e-2}, i.e. |delta| in {0.01, 0.032, 0.1}.

jaxsafe charges the cost of step t at the position *before* the move (x_0 .. x_{L-1}, as Eq. 71),
so at L = 1 the cost f(x_0) does not depend on theta: the measured change is exactly 0 and Eq. 74
is undefined ("undef."). L = 2 (one policy-dependent cost) is added as the nearest analogue of the
paper's length 1.

Reuses ``jaxsafe.studies.gbe_vs_abe``: ``feedback_policy`` (the default policy), ``train_stages``
(for ``--policy cgpo0``, the untrained cgpo actor), ``make_act``, ``distribution``,
``presquash_samples`` (the exact pre-squash Gaussian samples for the log-probabilities),
``relative_error`` and ``machine``.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxsafe import envs
from jaxsafe.core import short_horizon
from jaxsafe.core.experience import Transition
from jaxsafe.solvers import trust_region
from jaxsafe.studies import gbe_vs_abe
from jaxsafe.studies.gbe_vs_abe import Policy, relative_error

ENV_ID = gbe_vs_abe.ENV_ID
ESTIMATORS = ("zobg", "zobg_b", "fobg")
LABELS = {"zobg": "ZoBG (Eq. 69, no baseline)", "zobg_b": "ZoBG-b (leave-one-out mean baseline)",
          "fobg": "FoBG (BPTT)"}


@dataclasses.dataclass(frozen=True)
class Settings:
  lengths: tuple[int, ...] = (1, 2, 5, 10, 50, 100, 200)  # L, the episode length T
  radii_sq: tuple[float, ...] = (1e-4, 1e-3, 1e-2)  # delta^ = |delta|^2
  repetitions: int = 30  # R: fresh initial states and noise each
  num_episodes: int = 128  # N: episodes of each gradient estimate
  truth_episodes: int = 2048  # M: CRN episodes of each measured change
  policy: str = "feedback"  # or "cgpo0": the untrained cgpo actor (seed ``seed``)
  seed: int = 0


QUICK = Settings(lengths=(1, 2, 10, 100), radii_sq=(1e-4, 1e-2), repetitions=4, num_episodes=64,
                 truth_episodes=512)


def make_policy(s: Settings) -> Policy:
  if s.policy == "feedback":
    return gbe_vs_abe.feedback_policy()
  if s.policy == "cgpo0":
    return gbe_vs_abe.train_stages((0,), s.seed)[0][1]
  raise ValueError(f"unknown policy {s.policy!r}")


def zobg_gradients(policy: Policy, episodes: Transition, raw):
  """(plain, baselined) ZoBG estimates of grad J_C as flat vectors (Eq. 69).

  The log-probabilities are those of the recorded pre-squash samples ``raw`` [T, N, 1] at the
  recorded observations, so the only dependence on theta is through pi's density.
  """
  costs = episodes.cost.sum(0)  # [N]
  n = costs.shape[0]
  loo_mean = (costs.sum() - costs) / (n - 1)

  def surrogate(params, weight):
    lp = gbe_vs_abe.log_probs(policy, params, episodes.obs, raw)  # [T, N]
    return ((lp * episodes.alive).sum(0) * weight).mean()

  flat = lambda tree: trust_region.flatten(tree)[0]
  return (flat(jax.grad(surrogate)(policy.params, costs)),
          flat(jax.grad(surrogate)(policy.params, costs - loo_mean)))


def one_repetition(policy: Policy, key: jax.Array, s: Settings, length: int) -> dict:
  """One set of N estimator episodes and M truth episodes at episode length ``length``.

  Returns, per estimator, [len(radii)] arrays of the measured and predicted changes.
  """
  env_n = envs.make(ENV_ID, num_envs=s.num_episodes, episode_length=length)
  env_m = envs.make(ENV_ID, num_envs=s.truth_episodes, episode_length=length)
  act = gbe_vs_abe.make_act(policy)
  k_start, k_noise, k_truth_start, k_truth_noise = jax.random.split(key, 4)

  start = env_n.reset(k_start)
  _, q, episodes = short_horizon.gradients(policy.params, env_n, act, None, start, k_noise,
                                           length, length)
  raw = gbe_vs_abe.presquash_samples(policy, policy.params, episodes.obs, k_noise, length)
  grads = dict(zip(("zobg", "zobg_b"), zobg_gradients(policy, episodes, raw)))
  grads["fobg"] = trust_region.flatten(q)[0]

  theta, unravel = trust_region.flatten(policy.params)
  truth_start = env_m.reset(k_truth_start)

  def episode_costs(params):
    return short_horizon.rollout_losses(params, env_m, act, None, truth_start, k_truth_noise,
                                        length, length)[1].cost.sum(0)

  old = episode_costs(policy.params)
  out = {"cost": old.mean(),
         "raw_mismatch": jnp.max(jnp.abs(jnp.tanh(raw) - episodes.action))}
  radii = jnp.sqrt(jnp.asarray(s.radii_sq, theta.dtype))
  for name, g in grads.items():
    unit = g / jnp.maximum(jnp.linalg.norm(g), 1e-30)
    measured, se = [], []
    for r in radii:
      diff = episode_costs(unravel(theta - r * unit)) - old
      measured.append(diff.mean())
      se.append(diff.std() / jnp.sqrt(diff.shape[0]))
    out[f"{name}_measured"] = jnp.stack(measured)
    out[f"{name}_se"] = jnp.stack(se)
    out[f"{name}_predicted"] = -radii * jnp.linalg.norm(g)  # delta . q^ = -|delta| |q^|
    out[f"{name}_norm"] = jnp.linalg.norm(g)
  return out


def evaluate(policy: Policy, key: jax.Array, s: Settings, length: int) -> dict[str, np.ndarray]:
  """``one_repetition`` for R independent keys (one compiled program per length)."""
  run = jax.jit(lambda keys: jax.lax.map(lambda k: one_repetition(policy, k, s, length), keys))
  out = jax.device_get(run(jax.random.split(key, s.repetitions)))
  return {k: np.asarray(v, np.float64) for k, v in out.items()}


def errors(out: dict[str, np.ndarray], name: str) -> np.ndarray:
  """Eq. 74 per repetition and radius, [R, len(radii)]; NaN where the measured change is 0."""
  measured = out[f"{name}_measured"]
  with np.errstate(divide="ignore", invalid="ignore"):
    err = relative_error(measured, out[f"{name}_predicted"])
  return np.where(measured == 0.0, np.nan, err)


def run(s: Settings, log=print) -> dict[int, dict[str, np.ndarray]]:
  policy = make_policy(s)
  results = {}
  for length in s.lengths:
    t0 = time.perf_counter()
    key = jax.random.fold_in(jax.random.PRNGKey(s.seed + 1), length)
    results[length] = evaluate(policy, key, s, length)
    log(f"L = {length}: {time.perf_counter() - t0:.1f} s")
  return results


def fmt(x: float) -> str:
  return f"{x:.2g}" if abs(x) < 1e-3 else f"{x:.4f}" if abs(x) < 1 else f"{x:.4g}"


def table(results: dict[int, dict[str, np.ndarray]], s: Settings, name: str) -> str:
  """Rows = squared radius, columns = length; cells = mean +- std over R of Eq. 74."""
  lengths = list(results)
  lines = ["| delta^ = abs(delta)^2 | " + " | ".join(f"L = {n}" for n in lengths) + " |",
           "|---|" + "---:|" * len(lengths)]
  for j, r2 in enumerate(s.radii_sq):
    cells = []
    for n in lengths:
      err = errors(results[n], name)[:, j]
      cells.append("undef." if np.all(np.isnan(err)) else
                   f"{fmt(np.nanmean(err))} +- {fmt(np.nanstd(err))}")
    lines.append(f"| {r2:g} (abs(delta) = {np.sqrt(r2):.3g}) | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def diagnostics(results: dict[int, dict[str, np.ndarray]], s: Settings) -> str:
  """Per length: J_C(theta), gradient norms, and how well M resolves the measured changes."""
  lines = [("| L | J_C(theta) | mean abs(q^) ZoBG / ZoBG-b / FoBG "
            "| median se/abs(change), smallest radius: ZoBG / ZoBG-b / FoBG |"),
           "|---:|---:|---:|---:|"]
  for n, out in results.items():
    norms = " / ".join(fmt(out[f"{e}_norm"].mean()) for e in ESTIMATORS)
    with np.errstate(divide="ignore", invalid="ignore"):
      ses = " / ".join(
          fmt(float(np.median(out[f"{e}_se"][:, 0] / np.abs(out[f"{e}_measured"][:, 0]))))
          for e in ESTIMATORS)
    lines.append(f"| {n} | {out['cost'].mean():.3f} | {norms} | {ses} |")
  return "\n".join(lines)
