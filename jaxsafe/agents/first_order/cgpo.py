"""CGPO: constrained gradient-based policy optimisation through a differentiable simulator.

Dai et al. (2024), Algorithm 1. One ``update``:

1. N whole episodes of the current policy from fresh initial states; J_R(theta_k), J_C(theta_k).
2. g_k = grad J_R and q_k = grad J_C through the env in windows of h steps, bootstrapped by the
   time-conditioned critics (Eq. 19-20; ``agents.first_order.base``).
3. The policy step (``trust_region_step``): the radius adapted by Eq. 18 from the reduction ratio
   rho_k (measured over predicted change of J_R) and the toleration ratio
   zeta_k = |b - J_C(theta_{k+1})| / |J_C(theta_{k+1}) - J_C(theta_k)|, both evaluated when
   theta_{k+1}'s episodes are measured, i.e. at the start of iteration k+1; then the sub-problem
   of Eq. 10 with c_k = J_C - b in closed form (``solvers.trust_region``: Theorem 5.1,
   Corollary 5.2, Algorithm 2). Where no point of the ball is feasible, ``recovery="elastic"``
   (default; ours) takes the exact-penalty step d ~ u - mu v (u, v the unit g and q) with an
   adaptive weight mu (``recovery_weight_update``), which tends to Eq. 33 as mu -> inf;
   ``recovery="paper"`` steps along -q (Eq. 33), which never leaves the infeasible start of
   `cartpole-position` (docs/algorithms.md, "Infeasible starts").
4. The critics on TD(lambda) targets (Eq. 66-68), the observation statistics. By default
   (``fresh_critics``) the critic regression runs before step 2 instead, on the same episodes,
   so that the gradient bootstraps from this policy's values (docs/algorithms.md,
   "Short-horizon gradients").

Defaults: Table 4 of the paper (CartPole column: radius 1e-3, ceiling 1e-2, beta 0.8 / 1.25), but
with the floor 1e-5 instead of 1e-4 (docs/algorithms.md, "Radius floor");
the thresholds eta_1 = 0.25, eta_2 = 0.75 (the paper gives none) from the classic trust-region
method (Nocedal and Wright, Algorithm 4.1). MB-CGPO (``agents/first_order/mb_cgpo.py``) takes the same step
with gradients through a learned world model.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from jaxsafe.agents.base import Agent, config, extend, hparam, static
from jaxsafe.agents.first_order.base import (
  CriticFields,
  CriticState,
  FirstOrder,
  FirstOrderConfig,
  PreviousStep,
  RecoveryWeightFields,
  recovery_weight_update,
)
from jaxsafe.core.experience import Transition
from jaxsafe.core.metrics import prefixed
from jaxsafe.envs.core import Env
from jaxsafe.solvers import trust_region

_TINY = 1e-12
#: the infeasible-case steps: Eq. 33 as published, or the elastic (exact-penalty) step.
RECOVERY_RULES = ("paper", "elastic")


@config
class TrustRegionFields(RecoveryWeightFields):
  """The adaptive trust region of Eq. 18 (squared radius delta hat)."""

  delta_init: float = hparam(1e-3, 0.0, None, doc="initial squared radius")
  # Table 4 gives 1e-4; at that floor a steep J_C (|q| ~ 100-230 on `function`) swings around b
  # by ~1 per step, while Eq. 18 by itself settles at 3-4e-5 (docs/algorithms.md, "Radius floor").
  delta_lower: float = hparam(1e-5, 0.0, None, doc="smallest squared radius")
  delta_upper: float = hparam(1e-2, 0.0, None, doc="largest squared radius")
  beta_1: float = hparam(0.8, 0.0, 1.0, doc="radius shrink factor (Eq. 18)")
  beta_2: float = hparam(1.25, 1.0, None, doc="radius growth factor (Eq. 18)")
  eta_1: float = hparam(0.25, 0.0, 1.0, doc="shrink when rho or zeta is below this")
  eta_2: float = hparam(0.75, 0.0, None, doc="grow when rho and zeta reach this")
  rho_noise: float = hparam(0.0, 0.0, None, doc="k: rho := 1 when the predicted and the "
                            "measured change of J_R are both within k standard errors of the "
                            "measured change (no evidence against the model); 0: Eq. 18 as "
                            "published")
  recovery: str = static("elastic", choices=RECOVERY_RULES,
                         doc="step when no point of the ball is feasible: 'paper' (Eq. 33, "
                             "-q) or 'elastic' (exact penalty, docs/algorithms.md)")


@config
class CGPOConfig(TrustRegionFields, CriticFields, FirstOrderConfig):
  """Hyper-parameters of ``cgpo``: the shared first-order fields, the critics and the trust
  region."""


@struct.dataclass
class CGPOState(CriticState):
  """CGPO's state: the family's with critics, the trust region's squared radius delta hat, and
  the elastic recovery's weight mu (``recovery="elastic"``; under the paper's Eq. 33 it is not
  read and stays at ``recovery_weight_init``)."""

  radius: jax.Array
  recovery_weight: jax.Array


def radius_update(radius, hp, rho, zeta):
  """Eq. 18: shrink by beta_1 if rho or zeta < eta_1, grow by beta_2 if both >= eta_2."""
  shrink = (rho < hp.eta_1) | (zeta < hp.eta_1)
  grow = (rho >= hp.eta_2) & (zeta >= hp.eta_2)
  return jnp.where(shrink, jnp.maximum(hp.beta_1 * radius, hp.delta_lower),
                   jnp.where(grow, jnp.minimum(hp.beta_2 * radius, hp.delta_upper), radius))


def trust_region_step(g: jax.Array, q: jax.Array, episode_return: jax.Array,
                      episode_cost: jax.Array, radius: jax.Array, previous: PreviousStep, hp,
                      recovery_weight: jax.Array | None = None,
                      return_change_noise: jax.Array | float = 0.0):
  """Eq. 18 from what the last step predicted and what was measured since, then Eq. 10.

  ``g``, ``q`` are flat; ``recovery_weight`` (None: Eq. 33) is the elastic recovery's mu before
  this iteration's measurement; ``return_change_noise`` the standard error of the measured change
  of J_R (``hp.rho_noise`` standard errors of it make a change indistinguishable from 0).
  Returns (``trust_region.Solution``, the new radius, the new recovery weight or None, metrics).
  """
  measured_return_change = episode_return - previous.episode_return
  measured_cost_change = episode_cost - previous.episode_cost
  predicted = previous.predicted_return_change
  significant = jnp.abs(predicted) > _TINY
  rho = jnp.where(significant, measured_return_change / jnp.where(significant, predicted, 1.0),
                  1.0)
  # Both changes within the noise (e.g. at a saturated return): the model is not contradicted.
  noise = hp.rho_noise * return_change_noise
  rho = jnp.where((jnp.abs(predicted) <= noise) & (jnp.abs(measured_return_change) <= noise),
                  1.0, rho)
  zeta = jnp.where(jnp.abs(measured_cost_change) > _TINY,
                   jnp.abs(hp.cost_limit - episode_cost)
                   / jnp.maximum(jnp.abs(measured_cost_change), _TINY), jnp.inf)
  has_previous = ~jnp.isnan(previous.episode_return)
  radius = jnp.where(has_previous, radius_update(radius, hp, rho, zeta), radius)
  weight_metrics = {}
  if recovery_weight is not None:
    recovery_weight = recovery_weight_update(recovery_weight, hp, previous, episode_return,
                                             episode_cost)
    weight_metrics = {"recovery_weight": recovery_weight}
  solution = trust_region.solve(g, q, episode_cost - hp.cost_limit, radius,
                                jnp.inf if recovery_weight is None else recovery_weight)
  metrics = {"radius": radius, **weight_metrics, "case": solution.case.astype(jnp.float32),
             "rho": jnp.where(has_previous, rho, jnp.nan),
             "zeta": jnp.where(has_previous, jnp.minimum(zeta, 1e6), jnp.nan),
             "trust_lambda": solution.lam, "trust_nu": solution.nu,
             # 0 when g, q, c or the radius were not finite (zero step): the runner stops on it.
             "trust_region_inputs_finite": solution.ok.astype(jnp.float32)}
  return solution, radius, recovery_weight, metrics


def trust_region_flags(name: str) -> dict[str, str]:
  """The flag on which the runner stops CGPO and MB-CGPO: the sub-problem's inputs were finite."""
  return {f"{name}/trust_region_inputs_finite": trust_region.NOT_FINITE}


def trust_region_fields(hp) -> dict:
  """The trust region's own state fields at the start: delta hat and mu."""
  return {"radius": jnp.asarray(hp.delta_init, jnp.float32),
          "recovery_weight": jnp.asarray(hp.recovery_weight_init, jnp.float32)}


def trust_region_update(fo: FirstOrder, state: CGPOState, g, q, episodes: Transition,
                        k_critic: jax.Array, critic_losses: dict | None = None, **changes):
  """Steps 3-4 of CGPO and MB-CGPO from the gradients (pytrees) and the measured episodes
  (``critic_losses``: from ``FirstOrder.fresh_critic_fit``, None to fit the critics after)."""
  g_flat, q_flat = trust_region.flatten(g)[0], trust_region.flatten(q)[0]
  elastic = fo.config.recovery == "elastic"
  returns = episodes.reward.sum(0)  # one episode per env
  # The change of a mean over N episodes between two batches: sqrt(2) x its standard error.
  return_change_noise = jnp.sqrt(2.0 / returns.size) * returns.std()
  solution, radius, weight, step_metrics = trust_region_step(
      g_flat, q_flat, returns.mean(), episodes.cost.sum(0).mean(), state.radius,
      state.previous, state.hparams, state.recovery_weight if elastic else None,
      return_change_noise)
  actor = trust_region.apply_step(state.params["actor"], solution.step)
  predicted = (solution.predicted_objective, q_flat @ solution.step)
  state, metrics = fo.finish(state, episodes, k_critic, g_flat, q_flat, solution.step, predicted,
                             critic_losses, actor, radius=radius,
                             recovery_weight=weight if elastic else state.recovery_weight,
                             **changes)
  return state, {**metrics, **prefixed(fo.name, step_metrics)}


def make_cgpo(env: Env, config: CGPOConfig, name: str = "cgpo") -> Agent:
  """Builds CGPO on ``env`` (vmapped over ``config.num_envs``, no auto-reset)."""
  fo = FirstOrder(env, config, name)

  def init(key: jax.Array, hparams=None) -> CGPOState:
    state = fo.init(key, hparams)
    return extend(state, CGPOState, **trust_region_fields(state.hparams))

  def update(state: CGPOState):
    rng, k_reset, k_policy, _, _, k_critic = jax.random.split(state.rng, 6)
    # --- 1-2. Episodes of the current policy, J_R and J_C, and the gradients g and q. ------
    start = env.reset(k_reset)
    state, critic_losses = fo.fresh_critic_fit(state, start, k_policy, k_critic)
    g, q, episodes = fo.gradients(state, env, start, k_policy)
    # --- 3-4. The trust-region step (Eq. 18, Eq. 10), critics and bookkeeping. -------------
    return trust_region_update(fo, state, g, q, episodes, k_critic, critic_losses, rng=rng)

  return Agent(name=name, config=fo.config, env=env, init=init, update=update, policy=fo.policy,
               steps_per_update=fo.steps_per_update,
               nan_metrics=fo.nan_metrics + (f"{name}/rho", f"{name}/zeta"),
               stop_flags=trust_region_flags(name))
