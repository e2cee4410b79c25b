"""TRPO, TRPO-Lag and CPO: natural-gradient steps in a KL trust region, three ways to treat cost.

- ``trpo`` (Schulman et al. 2015, Eq. 14 and App. C): maximise the surrogate
  L(theta) = E[pi_theta / pi_old A^R] subject to KL(pi_old || pi_theta) <= delta, by the step
  sqrt(2 delta / x^T F x) x with x = F^-1 g from conjugate gradient, then a backtracking line
  search. The unconstrained reference; the cost critic is still trained so costs are logged.
- ``trpo-lag``: the same step on the Lagrangian advantage (A^R - lambda A^C) / (1 + lambda), lambda
  by projected gradient ascent on the measured episode cost (Ray et al. 2019; as ``ppo-lag``)
  plus a proportional term on J_C - b (ours, issue 39: ``cost_rules.proportional_integral_step``).
- ``cpo`` (Achiam et al. 2017, Sec. 6.1): the step of the linearised problem

      max_x g.x   s.t.   c + b.x <= 0,   1/2 x^T F x <= delta,

  g and b the gradients of the reward and cost surrogates, c the constraint value. Its dual
  (Sec. 6.1, in the scalars q = g^T F^-1 g, r = g^T F^-1 b, s = b^T F^-1 b) is solved in closed
  form by ``solvers.trust_region.solve_in_metric``, the solver CGPO uses, in the Fisher metric; when
  no point of the trust region is feasible (c > 0 and c^2 / s > 2 delta) it takes the recovery
  step -sqrt(2 delta / s) F^-1 b (Sec. 6.2). The line search then asks the cost surrogate not to
  rise by more than max(-c, 0), the reward surrogate not to fall (asked only where the step starts
  feasible, c <= 0) and the KL to stay within 1.5 delta (OmniSafe's CPO).

Details follow OmniSafe's TRPO/CPO (its defaults are named in the configs): reward advantages
standardised, cost advantages centred only (their scale must match c's), c = (J_C - b) / T (the
episode cost's excess as a per-step rate, the scale of the surrogate's gradient), KL tolerance 1.5
delta in the line search, critics trained by Adam epochs after the policy step.

One ``update`` is the algorithm box (``make_trpo``): collect, GAE for reward and cost, the cost
rule (``cost_rules``: trpo-lag's multiplier step and Lagrangian advantage), the natural-gradient
policy step (``policy_step``, a pure function tested on its own; CPO's with the violation rule of
``cpo.py``), the critic epochs, bookkeeping.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxsafe.agents.base import Agent, config, hparam, hparams_of, static
from jaxsafe.agents.on_policy.base import (
  ActorCritic,
  OnPolicyConfig,
  OnPolicyState,
  step_metrics,
)
from jaxsafe.agents.on_policy.cost_rules import (
  REWARD_ONLY,
  CostRule,
  ProportionalTermConfig,
  lagrangian,
  proportional_integral_step,
)
from jaxsafe.core import distributions
from jaxsafe.core.experience import flatten_steps
from jaxsafe.core.metrics import prefixed
from jaxsafe.envs.core import Env
from jaxsafe.solvers import trust_region
from jaxsafe.solvers.natural_gradient import (
  backtracking_line_search,
  conjugate_gradient,
  fisher_vector_product,
)


@config
class TRPOConfig(OnPolicyConfig):
  """Hyper-parameters of ``trpo``: ``OnPolicyConfig`` plus the trust region, from OmniSafe's
  ``TRPO.yaml``/``CPO.yaml``: target KL 0.01, 15 CG iterations with damping 0.1, a line search of
  15 steps shrinking by 0.8 that accepts a KL up to 1.5 delta, critic learning rate 1e-3 (the
  critics are the only thing Adam trains here)."""

  learning_rate: float = hparam(1e-3, 0.0, 1.0, doc="Adam step size of the critics")
  target_kl: float = hparam(0.01, 1e-8, None, doc="delta: KL(pi_old || pi_new) trust region")
  cg_iterations: int = static(15, 1, doc="conjugate-gradient iterations per solve")
  cg_damping: float = hparam(0.1, 0.0, None, doc="damping added to the Fisher matrix")
  line_search_steps: int = static(15, 1, doc="backtracking steps before the step is dropped")
  line_search_decay: float = hparam(0.8, 0.01, 0.99, doc="step shrink per backtracking step")
  kl_tolerance: float = hparam(1.5, 1.0, None, doc="line search accepts KL <= this x delta")


@config
class TRPOLagConfig(TRPOConfig, ProportionalTermConfig):
  """Hyper-parameters of ``trpo-lag``: ``TRPOConfig`` plus the multiplier: the ascent of
  ``ppo-lag`` (step size 0.035, OmniSafe's TRPOLag) and a proportional term (ours, issue 39:
  Kp 0.1 on an EMA of weight 0.5 of J_C - b; ``multiplier_kp=0`` gives OmniSafe's rule)."""

  multiplier_learning_rate: float = hparam(0.035, 0.0, None, doc="multiplier step size (integral)")
  multiplier_init: float = hparam(0.0, 0.0, None, doc="multiplier before the first measured cost")


class PolicyStep(NamedTuple):
  actor: dict  # the new actor parameters (the old ones if the line search found nothing)
  proposal: dict  # the sub-problem's full step x*, before the line search
  case: jax.Array  # trust_region.RECOVERY, FEASIBLE or PARTIAL
  metrics: dict


def policy_step(ac: ActorCritic, actor, stats, batch: dict, violation: jax.Array | None,
                hp) -> PolicyStep:
  """One natural-gradient step of the actor on a flat batch (``obs``, ``raw_action``,
  ``log_prob``, ``adv_r``, ``adv_c``); ``violation`` c = (J_C - b) / T makes it CPO's step,
  None TRPO's. Returns the accepted parameters (the old ones if the line search fails)."""
  obs = ac.norm(stats, batch["obs"])

  def dist(params):
    return distributions.make_distribution(ac.config.distribution, *ac.actor.apply(params, obs))

  def surrogate(params, advantage):  # E[pi_theta / pi_old A]
    log_ratio = distributions.log_prob(dist(params), batch["raw_action"]) - batch["log_prob"]
    return (jnp.exp(log_ratio) * advantage).mean()

  old = jax.tree.map(jax.lax.stop_gradient, dist(actor))
  kl = lambda params: distributions.kl_divergence(old, dist(params)).mean()
  fvp = fisher_vector_product(kl, actor, hp.cg_damping)
  reward_before, g = jax.value_and_grad(surrogate)(actor, batch["adv_r"])
  x = conjugate_gradient(fvp, g, ac.config.cg_iterations)  # F^-1 g
  ghg = optax.tree.vdot(g, x)
  constrained = violation is not None
  if constrained:
    cost_before, b = jax.value_and_grad(surrogate)(actor, batch["adv_c"])
    p = conjugate_gradient(fvp, b, ac.config.cg_iterations)  # F^-1 b
    ghb, bhb, c = optax.tree.vdot(g, p), optax.tree.vdot(b, p), violation
  else:  # no constraint: the whole ball is feasible, and solve_in_metric gives TRPO's step
    p, ghb, bhb, c = x, jnp.zeros_like(ghg), jnp.zeros_like(ghg), -jnp.ones_like(ghg)
  solution, alpha, beta = trust_region.solve_in_metric(ghg, ghb, bhb, c, 2.0 * hp.target_kl)
  step = optax.tree.add_scale(optax.tree.scale(alpha, x), beta, p)

  def accept(candidate):
    ok = kl(candidate) <= hp.kl_tolerance * hp.target_kl
    # The reward surrogate must not fall, unless the step starts infeasible (OmniSafe's CPO: a
    # cost cut comes first there, and where reward and cost agree it costs reward).
    ok &= (surrogate(candidate, batch["adv_r"]) >= reward_before) | (constrained & (c > 0))
    if constrained:
      ok &= surrogate(candidate, batch["adv_c"]) - cost_before <= jnp.maximum(-c, 0.0)
    return ok & solution.ok

  new_actor, fraction = backtracking_line_search(actor, step, accept, ac.config.line_search_steps,
                                                 hp.line_search_decay)
  metrics = {"kl": kl(new_actor), "step_fraction": fraction, "xHx": ghg,
             "surrogate_gain": surrogate(new_actor, batch["adv_r"]) - reward_before}
  if constrained:
    metrics |= {"case": solution.case, "nu": solution.nu, "lambda": solution.lam,
                "violation_rate": c, "predicted_cost_change": solution.predicted_constraint - c}
  return PolicyStep(new_actor, step, solution.case, metrics)


#: (state, (J_R, J_C, count), hp) -> c: the constraint value of CPO's linearised sub-problem.
Violation = Callable[[OnPolicyState, tuple, object], jax.Array]


def make_trpo(env: Env, config: TRPOConfig, name: str = "trpo", cost: CostRule = REWARD_ONLY,
              violation: Violation | None = None) -> Agent:
  """Builds the TRPO box: ``cost`` gives the reward surrogate's advantage (and its own state,
  e.g. a multiplier); with ``violation`` the step is CPO's, constrained by the linearised cost
  (``cpo.py``)."""
  ac = ActorCritic(env, config)

  def init(key: jax.Array, hparams=None) -> OnPolicyState:
    hp = hparams_of(config) if hparams is None else hparams
    return cost.init(ac.init(key, hp), hp)

  def update(state: OnPolicyState):
    hp = state.hparams
    rng, k_collect, k_sgd = jax.random.split(state.rng, 3)

    # --- 1. Collect num_envs x rollout_length steps with the current policy. ---------------
    env_state, data, episode = ac.collect(state, k_collect)

    # --- 2. Estimate the reward and cost advantages (GAE). ---------------------------------
    adv = ac.advantages(state, data)

    # --- 3. The cost rule: its step (trpo-lag's multiplier) and the reward objective. ------
    objective, state, extra = cost.target(state, adv, episode, hp)

    # --- 4. Natural-gradient policy step in the KL trust region (CPO's with a violation). --
    c = None if violation is None else violation(state, episode, hp)
    batch = flatten_steps({"obs": data.obs, "raw_action": data.raw_action,
                           "log_prob": data.log_prob, "adv_r": objective,
                           "adv_c": adv.cost - adv.cost.mean()})
    actor, _, _, policy_metrics = policy_step(ac, state.params["actor"], state.obs_stats, batch,
                                              c, hp)

    # --- 5. Critic epochs (Adam on the value losses alone). --------------------------------
    state_new_actor = state.replace(params={**state.params, "actor": actor})
    params, opt_state, sgd_metrics = ac.sgd(state_new_actor, data, None, adv, None, k_sgd)

    # --- 6. Bookkeeping. -------------------------------------------------------------------
    state, metrics = ac.finish(state, data, episode, params=params, opt_state=opt_state,
                               env_state=env_state, rng=rng)
    return state, {**metrics, **prefixed(name, {**extra, **step_metrics(data, adv),
                                                **policy_metrics, **sgd_metrics})}

  return Agent(name=name, config=config, env=env, init=init, update=update, policy=ac.policy,
               steps_per_update=ac.steps_per_update)


def make_trpo_lag(env: Env, config: TRPOLagConfig, name: str = "trpo-lag") -> Agent:
  return make_trpo(env, config, name, lagrangian(proportional_integral_step))
