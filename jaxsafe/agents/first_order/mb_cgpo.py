"""MB-CGPO: CGPO with gradients through a learned world model (Dai et al. 2024, App. F.4,
Algorithm 3), so the env itself need not be differentiable.

One ``update``: N real episodes of the current policy measure J_R and J_C and go into a replay
buffer; the world model F(s, a) -> (s', r, c) takes ``model_updates`` Adam steps on Eq. 85; g and
q are taken through imagined episodes of the model (``models.world_model.ModelEnv``) from the
same initial states, with the critics bootstrapping every h steps; then CGPO's trust-region step
and critic regression (``agents.first_order.cgpo.trust_region_update``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from jaxsafe.agents.base import Agent, config, extend, hparam, static
from jaxsafe.agents.first_order.base import FirstOrder, adam
from jaxsafe.agents.first_order.cgpo import (
  CGPOConfig,
  CGPOState,
  trust_region_fields,
  trust_region_flags,
  trust_region_update,
)
from jaxsafe.core import replay
from jaxsafe.core.experience import Transition, flatten_steps
from jaxsafe.core.metrics import prefixed
from jaxsafe.envs.core import Env
from jaxsafe.models.world_model import ModelEnv, ModelState, WorldModel


@config
class MBCGPOConfig(CGPOConfig):
  """Hyper-parameters of ``mb-cgpo``: ``CGPOConfig`` plus the world model's (our choices,
  docs/algorithms.md)."""

  model_hidden_sizes: tuple[int, ...] = static((128, 128), doc="world model layers")
  model_updates: int = static(200, 1, doc="world-model Adam steps per iteration")
  model_batch_size: int = static(512, 1, doc="transitions per world-model step")
  buffer_capacity: int = static(200_000, 1, doc="real transitions kept for the model (FIFO)")
  model_learning_rate: float = hparam(1e-3, 0.0, 1.0, doc="world-model Adam step size")


@struct.dataclass
class MBCGPOState(CGPOState):
  """MB-CGPO's state: CGPO's and the world model (its parameters, optimiser and replay
  buffer of real transitions)."""

  model: ModelState


def model_transitions(episodes: Transition) -> Transition:
  """Real episodes [T, N] as buffer items [T * N]: s, a (as the env saw it), r, c, s', and
  ``alive`` = 0 on the steps after a termination (no loss there)."""
  return flatten_steps(episodes.replace(raw_action=None, log_prob=None))


def make_mb_cgpo(env: Env, config: MBCGPOConfig, name: str = "mb-cgpo") -> Agent:
  """Builds MB-CGPO on ``env`` (any env: no gradient is taken through it)."""
  fo = FirstOrder(env, config, name, needs_gradients=False)
  config = fo.config
  model = WorldModel(env.observation_size, env.action_size, config.model_hidden_sizes)

  def init_model(hp, key) -> ModelState:
    model_params = model.init(key)
    obs, zero = jnp.zeros((env.observation_size,)), jnp.zeros(())
    example = Transition(obs=obs, action=jnp.zeros((env.action_size,)), raw_action=None,
                         reward=zero, cost=zero, next_obs=obs, terminal=zero, done=zero,
                         alive=zero)
    return ModelState(params=model_params,
                      opt_state=adam(hp.model_learning_rate).init(model_params),
                      buffer=replay.init(example, config.buffer_capacity))

  def init(key: jax.Array, hparams=None) -> MBCGPOState:
    state = fo.init(key, hparams)
    return extend(state, MBCGPOState, **trust_region_fields(state.hparams),
                  model=init_model(state.hparams, fo.own_key(key)))

  def update(state: MBCGPOState):
    hp, stats = state.hparams, state.obs_stats
    rng, k_reset, k_policy, k_model, k_imagine, k_critic = jax.random.split(state.rng, 6)

    # --- 1. Real episodes: J_R, J_C, and the model's data (no gradient through the env). ---
    start = env.reset(k_reset)
    episodes = fo.real_episodes(state, start, k_policy)

    # --- 2a. Store them and fit the world model on Eq. 85. ---------------------------------
    # Before the fit: the model's one-step error on the current policy's episodes, which it has
    # not trained on yet (the states the last policy step moved to).
    fresh = model_transitions(episodes)
    error_on_new = model.loss(state.model.params, stats, fresh)
    model_state = state.model.replace(buffer=replay.add(state.model.buffer, fresh))
    model_state, losses = model.train(
        model_state, stats, adam(hp.model_learning_rate), k_model, config.model_updates,
        lambda buffer, k: replay.sample(buffer, k, config.model_batch_size))

    # --- 2b. g and q through imagined episodes from the same initial states, bootstrapped by
    # critics fitted to the real ones (``fresh_critics``; else after the step). -------------
    state, critic_losses = fo.fresh_critic_fit(state, start, k_policy, k_critic, episodes)
    imagined = ModelEnv(model, model_state.params, stats, fo.horizon, hp.cost_limit)
    g, q, _ = fo.gradients(state, imagined, ModelEnv.from_obs(start.obs), k_imagine)

    # --- 3-4. CGPO's trust-region step, critics (on the real episodes) and bookkeeping. ----
    state, metrics = trust_region_update(fo, state, g, q, episodes, k_critic, critic_losses, rng=rng,
                                         model=model_state)
    return state, {**metrics, **prefixed(name, {"model_loss": losses[-1],
                                                "model_error_on_new": error_on_new})}

  return Agent(name=name, config=config, env=env, init=init, update=update, policy=fo.policy,
               steps_per_update=fo.steps_per_update,
               nan_metrics=fo.nan_metrics + (f"{name}/rho", f"{name}/zeta"),
               stop_flags=trust_region_flags(name))
