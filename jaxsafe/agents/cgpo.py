"""CGPO: constrained gradient-based policy optimisation through a differentiable simulator.

Dai et al. (2024), Algorithm 1. One ``update``:

1. N whole episodes of the current policy from fresh initial states; J_R(theta_k), J_C(theta_k).
2. g_k = grad J_R and q_k = grad J_C through the env in windows of h steps, bootstrapped by the
   time-conditioned critics (Eq. 19-20; ``agents.first_order``).
3. The policy step (``trust_region_step``): the radius adapted by Eq. 18 from the reduction ratio
   rho_k (measured over predicted change of J_R) and the toleration ratio
   zeta_k = |b - J_C(theta_{k+1})| / |J_C(theta_{k+1}) - J_C(theta_k)|, both evaluated when
   theta_{k+1}'s episodes are measured, i.e. at the start of iteration k+1; then the sub-problem
   of Eq. 10 with c_k = J_C - b in closed form (``core.trust_region``: Theorem 5.1,
   Corollary 5.2, Algorithm 2).
4. The critics on TD(lambda) targets (Eq. 66-68), the observation statistics.

Defaults: Table 4 of the paper (CartPole column: radius 1e-3 in [1e-4, 1e-2], beta 0.8 / 1.25);
the thresholds eta_1 = 0.25, eta_2 = 0.75 (the paper gives none) from the classic trust-region
method (Nocedal and Wright, Algorithm 4.1). MB-CGPO (``agents/mb_cgpo.py``) takes the same step
with gradients through a learned world model.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxsafe.agents.base import Agent, config, hparam
from jaxsafe.agents.first_order import (
  CriticFields,
  FirstOrder,
  FirstOrderConfig,
  FirstOrderState,
  PreviousStep,
)
from jaxsafe.core import trust_region
from jaxsafe.core.experience import Transition
from jaxsafe.core.metrics import prefixed
from jaxsafe.envs.core import Env

_TINY = 1e-12


@config
class TrustRegionFields:
  """The adaptive trust region of Eq. 18 (squared radius delta hat)."""

  delta_init: float = hparam(1e-3, 0.0, None, doc="initial squared radius")
  delta_lower: float = hparam(1e-4, 0.0, None, doc="smallest squared radius")
  delta_upper: float = hparam(1e-2, 0.0, None, doc="largest squared radius")
  beta_1: float = hparam(0.8, 0.0, 1.0, doc="radius shrink factor (Eq. 18)")
  beta_2: float = hparam(1.25, 1.0, None, doc="radius growth factor (Eq. 18)")
  eta_1: float = hparam(0.25, 0.0, 1.0, doc="shrink when rho or zeta is below this")
  eta_2: float = hparam(0.75, 0.0, None, doc="grow when rho and zeta reach this")


@config
class CGPOConfig(TrustRegionFields, CriticFields, FirstOrderConfig):
  """Hyper-parameters of ``cgpo``: the shared first-order fields, the critics and the trust
  region."""


def radius_update(radius, hp, rho, zeta):
  """Eq. 18: shrink by beta_1 if rho or zeta < eta_1, grow by beta_2 if both >= eta_2."""
  shrink = (rho < hp.eta_1) | (zeta < hp.eta_1)
  grow = (rho >= hp.eta_2) & (zeta >= hp.eta_2)
  return jnp.where(shrink, jnp.maximum(hp.beta_1 * radius, hp.delta_lower),
                   jnp.where(grow, jnp.minimum(hp.beta_2 * radius, hp.delta_upper), radius))


def trust_region_step(g: jax.Array, q: jax.Array, episode_return: jax.Array,
                      episode_cost: jax.Array, radius: jax.Array, previous: PreviousStep, hp):
  """Eq. 18 from what the last step predicted and what was measured since, then Eq. 10.

  ``g``, ``q`` are flat; returns (``trust_region.Solution``, the new radius, metrics).
  """
  measured_return_change = episode_return - previous.episode_return
  measured_cost_change = episode_cost - previous.episode_cost
  predicted = previous.predicted_return_change
  significant = jnp.abs(predicted) > _TINY
  rho = jnp.where(significant, measured_return_change / jnp.where(significant, predicted, 1.0),
                  1.0)
  zeta = jnp.where(jnp.abs(measured_cost_change) > _TINY,
                   jnp.abs(hp.cost_limit - episode_cost)
                   / jnp.maximum(jnp.abs(measured_cost_change), _TINY), jnp.inf)
  has_previous = ~jnp.isnan(previous.episode_return)
  radius = jnp.where(has_previous, radius_update(radius, hp, rho, zeta), radius)
  solution = trust_region.solve(g, q, episode_cost - hp.cost_limit, radius)
  metrics = {"radius": radius, "case": solution.case.astype(jnp.float32),
             "rho": jnp.where(has_previous, rho, jnp.nan),
             "zeta": jnp.where(has_previous, jnp.minimum(zeta, 1e6), jnp.nan),
             "trust_lambda": solution.lam, "trust_nu": solution.nu,
             # 0 when g, q, c or the radius were not finite (zero step): the runner stops on it.
             "trust_region_inputs_finite": solution.ok.astype(jnp.float32)}
  return solution, radius, metrics


def trust_region_update(fo: FirstOrder, state: FirstOrderState, g, q, episodes: Transition,
                        k_critic: jax.Array, **changes):
  """Steps 3-4 of CGPO and MB-CGPO from the gradients (pytrees) and the measured episodes."""
  g_flat, q_flat = trust_region.flatten(g)[0], trust_region.flatten(q)[0]
  solution, radius, step_metrics = trust_region_step(
      g_flat, q_flat, episodes.reward.sum(0).mean(), episodes.cost.sum(0).mean(), state.radius,
      state.previous, state.hparams)
  actor = trust_region.apply_step(state.params["actor"], solution.step)
  predicted = (solution.predicted_objective, q_flat @ solution.step)
  state, metrics, own = fo.finish(state, episodes, k_critic, g_flat, q_flat, solution.step,
                                  predicted, actor=actor, radius=radius, **changes)
  return state, {**metrics, **prefixed(fo.name, {**own, **step_metrics})}


def make_cgpo(env: Env, config: CGPOConfig, name: str = "cgpo") -> Agent:
  """Builds CGPO on ``env`` (vmapped over ``config.num_envs``, no auto-reset)."""
  fo = FirstOrder(env, config, name)

  def init(key: jax.Array, hparams=None) -> FirstOrderState:
    return fo.init(key, hparams, radius=lambda hp, *_: jnp.asarray(hp.delta_init, jnp.float32))

  def update(state: FirstOrderState):
    rng, k_reset, k_policy, _, _, k_critic = jax.random.split(state.rng, 6)
    # --- 1-2. Episodes of the current policy, J_R and J_C, and the gradients g and q. ------
    g, q, episodes = fo.gradients(state, env, env.reset(k_reset), k_policy)
    # --- 3-4. The trust-region step (Eq. 18, Eq. 10), critics and bookkeeping. -------------
    return trust_region_update(fo, state, g, q, episodes, k_critic, rng=rng)

  return Agent(name=name, config=fo.config, env=env, init=init, update=update, policy=fo.policy,
               steps_per_update=fo.steps_per_update,
               nan_metrics=fo.nan_metrics + (f"{name}/rho", f"{name}/zeta"))
