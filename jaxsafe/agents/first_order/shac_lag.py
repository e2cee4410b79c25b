"""SHAC-Lag and BPTT-Lag: first-order gradients with a Lagrange multiplier (CGPO App. F.1).

One ``update``: N whole episodes and the gradients g = grad L_R, q = grad L_C through the env
(``shac-lag``: windows of h steps bootstrapped by critics, Eq. 19-20, as SHAC of Xu et al. 2022;
``bptt-lag``: one window of T steps and no critics, Eq. 79-80), then the dual step
lambda <- max(0, lambda + lr (J_C - b)) and the primal step, Adam descent on -(L_R - lambda L_C)
(Eq. 77-78). ``shac-lag``'s critics are fitted to the current policy's episodes before the
gradient (``fresh_critics``; SHAC fits them after the step: docs/algorithms.md, "Short-horizon
gradients"). Adam settings from SHAC (actor learning rate 2e-3,
gradient-norm clip 1.0); the multiplier step 0.035 from OmniSafe.
"""

from __future__ import annotations

import jax
import optax
from flax import struct

from jaxsafe.agents.base import Agent, config, extend, hparam
from jaxsafe.agents.first_order.base import (
  CriticFields,
  CriticState,
  FirstOrder,
  FirstOrderConfig,
  FirstOrderState,
  adam,
)
from jaxsafe.core import lagrange
from jaxsafe.core.metrics import prefixed
from jaxsafe.envs.core import Env
from jaxsafe.solvers import trust_region


@config
class BPTTLagConfig(FirstOrderConfig):
  """Hyper-parameters of ``bptt-lag``: the shared first-order fields, Adam on the Lagrangian and
  the multiplier."""

  actor_learning_rate: float = hparam(2e-3, 0.0, 1.0, doc="Adam step size of the actor")
  max_grad_norm: float = hparam(1.0, 1e-8, None, doc="gradient-norm clip of the actor's step")
  multiplier_learning_rate: float = hparam(0.035, 0.0, None, doc="multiplier step size")
  multiplier_init: float = hparam(0.0, 0.0, None, doc="initial multiplier")


@config
class SHACLagConfig(CriticFields, BPTTLagConfig):
  """Hyper-parameters of ``shac-lag``: ``BPTTLagConfig`` plus the critics and the short horizon."""


@struct.dataclass
class BPTTLagState(FirstOrderState):
  """BPTT-Lag's state: the family's (no critics), the actor's Adam state and the multiplier."""

  actor_opt_state: optax.OptState
  lagrange: lagrange.LagrangeState


@struct.dataclass
class SHACLagState(CriticState):
  """SHAC-Lag's state: the family's with critics, the actor's Adam state and the multiplier."""

  actor_opt_state: optax.OptState
  lagrange: lagrange.LagrangeState


def lagrangian_gradient_step(actor, g, q, opt_state, lag: lagrange.LagrangeState,
                             episode_cost, hp):
  """The dual step on the measured J_C, then one Adam step descending -(g - lambda q) (Eq. 77
  with this iteration's multiplier). Returns (actor, opt_state, multiplier state)."""
  lag = lagrange.gradient_ascent_update(lag, episode_cost, hp.cost_limit,
                                        hp.multiplier_learning_rate)
  direction = jax.tree_util.tree_map(lambda gr, qr: -(gr - lag.multiplier * qr), g, q)
  tx = adam(hp.actor_learning_rate, hp.max_grad_norm)
  updates, opt_state = tx.update(direction, opt_state, actor)
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
                  lagrange=lagrange.init(hp.multiplier_init))

  def update(state: BPTTLagState | SHACLagState):
    rng, k_reset, k_policy, _, _, k_critic = jax.random.split(state.rng, 6)
    # --- 1-2. Episodes of the current policy, J_R and J_C, and the gradients g and q. ------
    start = env.reset(k_reset)
    state, critic_losses = fo.fresh_critic_fit(state, start, k_policy, k_critic)
    g, q, episodes = fo.gradients(state, env, start, k_policy)
    # --- 3. Dual and primal steps. ---------------------------------------------------------
    actor, opt_state, lag = lagrangian_gradient_step(
        state.params["actor"], g, q, state.actor_opt_state, state.lagrange,
        episodes.cost.sum(0).mean(), state.hparams)
    # --- 4. Critics and bookkeeping. -------------------------------------------------------
    g_flat, q_flat = trust_region.flatten(g)[0], trust_region.flatten(q)[0]
    step = trust_region.flatten(actor)[0] - trust_region.flatten(state.params["actor"])[0]
    state, metrics = fo.finish(state, episodes, k_critic, g_flat, q_flat, step,
                               (g_flat @ step, q_flat @ step), critic_losses, actor,
                               actor_opt_state=opt_state, lagrange=lag, rng=rng)
    return state, {**metrics, **prefixed(name, {"multiplier": lag.multiplier})}

  return Agent(name=name, config=fo.config, env=env, init=init, update=update, policy=fo.policy,
               steps_per_update=fo.steps_per_update, nan_metrics=fo.nan_metrics)


def make_bptt_lag(env: Env, config: BPTTLagConfig, name: str = "bptt-lag") -> Agent:
  return make_shac_lag(env, config, name, critics=False)
