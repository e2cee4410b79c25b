"""SHAC-Lag and BPTT-Lag: first-order gradients with a Lagrange multiplier (CGPO App. F.1).

One ``update``: N whole episodes and the gradients g = grad L_R, q = grad L_C through the env
(``shac-lag``: windows of h steps bootstrapped by critics, Eq. 19-20, as SHAC of Xu et al. 2022;
``bptt-lag``: one window of T steps and no critics, Eq. 79-80), then the multiplier and the
primal step, Adam descent on -(L_R - lambda L_C) (Eq. 77-78). App. F.1 does not say how lambda
moves. The default (``multiplier_rule="predictive"``, ours, issue 39) takes the smallest lambda
whose Adam step g and q predict to bring J_C to b (``core.lagrange.predictive_multiplier``);
``"ascent"`` is the dual step lambda <- max(0, lambda + lr (J_C - b)) in the task's cost units
(OmniSafe's step 0.035), which cycles around b (docs/algorithms.md). ``shac-lag``'s critics are
fitted to the current policy's episodes before the gradient (``fresh_critics``; SHAC fits them
after the step: docs/algorithms.md, "Short-horizon gradients"). Adam settings from SHAC (actor
learning rate 2e-3, gradient-norm clip 1.0).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxsafe.agents.base import Agent, config, extend, hparam, static
from jaxsafe.agents.first_order.base import (
  CriticFields,
  CriticState,
  FirstOrder,
  FirstOrderConfig,
  FirstOrderState,
  RecoveryWeightFields,
  adam,
  recovery_weight_update,
)
from jaxsafe.core import lagrange
from jaxsafe.core.metrics import prefixed
from jaxsafe.envs.core import Env
from jaxsafe.solvers import trust_region

#: how the multiplier moves (``BPTTLagConfig.multiplier_rule``).
MULTIPLIER_RULES = ("predictive", "ascent")
#: the predictive multiplier where no step is predicted to reach b (``BPTTLagConfig.recovery``).
RECOVERY_RULES = ("descend", "elastic")


@config
class BPTTLagConfig(RecoveryWeightFields, FirstOrderConfig):
  """Hyper-parameters of ``bptt-lag``: the shared first-order fields, Adam on the Lagrangian and
  the multiplier (its rule; the ascent step's size and start are read by ``ascent`` only)."""

  actor_learning_rate: float = hparam(2e-3, 0.0, 1.0, doc="Adam step size of the actor")
  max_grad_norm: float = hparam(1.0, 1e-8, None, doc="gradient-norm clip of the actor's step")
  multiplier_rule: str = static("predictive", choices=MULTIPLIER_RULES,
                                doc="'predictive': the smallest lambda whose step is predicted "
                                "to bring J_C to b (issue 39); 'ascent': lambda += lr (J_C - b)")
  cost_correction: float = hparam(1.0, 0.0, 1.0, doc="predictive: the share of J_C - b that one "
                                  "step aims to remove")
  recovery: str = static("elastic", choices=RECOVERY_RULES,
                         doc="predictive: lambda where no step is predicted to reach b: "
                         "'elastic' (mu |g| / |q|, mu CGPO's elastic weight, but never less "
                         "than the lambda predicted to hold J_C) or 'descend' (the grid's top, "
                         "the step that cuts J_C most; docs/algorithms.md)")
  multiplier_learning_rate: float = hparam(0.035, 0.0, None, doc="ascent: multiplier step size")
  multiplier_init: float = hparam(0.0, 0.0, None, doc="ascent: initial multiplier")


@config
class SHACLagConfig(CriticFields, BPTTLagConfig):
  """Hyper-parameters of ``shac-lag``: ``BPTTLagConfig`` plus the critics and the short horizon."""


@struct.dataclass
class BPTTLagState(FirstOrderState):
  """BPTT-Lag's state: the family's (no critics), the actor's Adam state, the multiplier and the
  elastic weight mu (read under ``recovery="elastic"`` only)."""

  actor_opt_state: optax.OptState
  lagrange: lagrange.LagrangeState
  recovery_weight: jax.Array


@struct.dataclass
class SHACLagState(CriticState):
  """SHAC-Lag's state: the family's with critics, the actor's Adam state, the multiplier and the
  elastic weight mu (read under ``recovery="elastic"`` only)."""

  actor_opt_state: optax.OptState
  lagrange: lagrange.LagrangeState
  recovery_weight: jax.Array


def lagrangian_gradient_step(actor, g, q, opt_state, lag: lagrange.LagrangeState,
                             episode_cost, hp, recovery_weight=1.0):
  """This iteration's multiplier (``hp.multiplier_rule``), then one Adam step descending
  -(g - lambda q) (Eq. 77). Where no step is predicted to reach b, the predictive rule's
  multiplier is the grid's top (``recovery="descend"``) or mu |g| / |q|, mu =
  ``recovery_weight`` (``"elastic"``: CGPO's weight, g - lambda q = |g| (u - mu v) is the elastic
  recovery's direction), floored at the lambda predicted to hold J_C. Returns (actor, opt_state,
  multiplier state)."""
  tx = adam(hp.actor_learning_rate, hp.max_grad_norm)

  def adam_step(multiplier):
    direction = jax.tree_util.tree_map(lambda gr, qr: -(gr - multiplier * qr), g, q)
    return tx.update(direction, opt_state, actor)

  if hp.multiplier_rule == "ascent":
    lag = lagrange.gradient_ascent_update(lag, episode_cost, hp.cost_limit,
                                          hp.multiplier_learning_rate)
  else:
    g_flat, q_flat = trust_region.flatten(g)[0], trust_region.flatten(q)[0]
    scale = jnp.linalg.norm(g_flat) / (jnp.linalg.norm(q_flat) + 1e-12)
    multiplier = lagrange.predictive_multiplier(
        lambda m: q_flat @ trust_region.flatten(adam_step(m)[0])[0], episode_cost,
        hp.cost_limit, scale, hp.cost_correction,
        unreachable=recovery_weight * scale if hp.recovery == "elastic" else None)
    lag = lag.replace(multiplier=multiplier)
  updates, opt_state = adam_step(lag.multiplier)
  return optax.apply_updates(actor, updates), opt_state, lag


def make_shac_lag(env: Env, config: SHACLagConfig, name: str = "shac-lag",
                  critics: bool = True) -> Agent:
  """Builds ``shac-lag`` on ``env``; without ``critics`` (and with a ``BPTTLagConfig``) the same
  box is ``bptt-lag`` (``make_bptt_lag``)."""
  fo = FirstOrder(env, config, name, critics)
  state_type = SHACLagState if critics else BPTTLagState

  def init(key: jax.Array, hparams=None) -> BPTTLagState | SHACLagState:
    state = fo.init(key, hparams)
    hp = state.hparams
    return extend(state, state_type,
                  actor_opt_state=adam(hp.actor_learning_rate, hp.max_grad_norm).init(
                      state.params["actor"]),
                  lagrange=lagrange.init(hp.multiplier_init),
                  recovery_weight=jnp.asarray(hp.recovery_weight_init, jnp.float32))

  def update(state: BPTTLagState | SHACLagState):
    rng, k_reset, k_policy, _, _, k_critic = jax.random.split(state.rng, 6)
    # --- 1-2. Episodes of the current policy, J_R and J_C, and the gradients g and q. ------
    start = env.reset(k_reset)
    state, critic_losses = fo.fresh_critic_fit(state, start, k_policy, k_critic)
    g, q, episodes = fo.gradients(state, env, start, k_policy)
    # --- 3. Dual and primal steps. ---------------------------------------------------------
    episode_cost = episodes.cost.sum(0).mean()
    elastic = fo.config.multiplier_rule == "predictive" and fo.config.recovery == "elastic"
    weight = (recovery_weight_update(state.recovery_weight, state.hparams, state.previous,
                                     episodes.reward.sum(0).mean(), episode_cost)
              if elastic else state.recovery_weight)
    actor, opt_state, lag = lagrangian_gradient_step(
        state.params["actor"], g, q, state.actor_opt_state, state.lagrange, episode_cost,
        state.hparams, weight)
    # --- 4. Critics and bookkeeping. -------------------------------------------------------
    g_flat, q_flat = trust_region.flatten(g)[0], trust_region.flatten(q)[0]
    step = trust_region.flatten(actor)[0] - trust_region.flatten(state.params["actor"])[0]
    state, metrics = fo.finish(state, episodes, k_critic, g_flat, q_flat, step,
                               (g_flat @ step, q_flat @ step), critic_losses, actor,
                               actor_opt_state=opt_state, lagrange=lag,
                               recovery_weight=weight, rng=rng)
    own = {"multiplier": lag.multiplier, **({"recovery_weight": weight} if elastic else {})}
    return state, {**metrics, **prefixed(name, own)}

  return Agent(name=name, config=fo.config, env=env, init=init, update=update, policy=fo.policy,
               steps_per_update=fo.steps_per_update, nan_metrics=fo.nan_metrics)


def make_bptt_lag(env: Env, config: BPTTLagConfig, name: str = "bptt-lag") -> Agent:
  return make_shac_lag(env, config, name, critics=False)
