"""CUP: constrained update projection (Yang et al. 2022), as OmniSafe's ``CUP`` runs it, except
that an infeasible batch skips the improvement phase (below).

Each update has two policy phases after the multiplier step lambda <- max(0, lambda + eta (J_C - b)):

1. **Improvement**: PPO's update on the reward alone (the clipped surrogate on the standardised
   A^R, and the critics), giving pi_{k+1/2}. By default (``improve_while_infeasible=False``,
   ours, issue 39) the actor keeps pi_k when the batch's measured J_C is above b (the critics
   still learn), so the projection alone moves it back; a batch in which no episode finished
   improves. ``True`` is OmniSafe's order, which improves from every batch.
2. **Projection**: epochs of minibatch Adam on the actor alone, minimising

       E[lambda (1 - gamma lambda_GAE) / (1 - gamma) rho A^C] + E[KL(pi_theta || pi_{k+1/2})],

   rho = pi_theta / pi_old on the batch's actions and A^C the centred cost advantage: the cost
   surrogate of the paper's projection step weighted by the multiplier, held near the improved
   policy by the KL term; the epochs stop early once KL(pi_{k+1/2} || pi_theta) > ``target_kl``.

The projection's Adam starts fresh every update (OmniSafe reuses the actor's optimiser); the
improvement phase is ``ActorCritic.sgd`` with PPO's loss, unchanged.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jaxsafe.agents.base import Agent, config, hparam, hparams_of, static
from jaxsafe.agents.on_policy.base import (
  ActorCritic,
  LagrangianState,
  standardize,
  step_metrics,
  with_multiplier,
)
from jaxsafe.agents.on_policy.cost_rules import ascent_step, step_unless_unmeasured
from jaxsafe.agents.on_policy.ppo import PPOConfig, clipped_surrogate_loss
from jaxsafe.core import distributions, minibatch
from jaxsafe.core.experience import flatten_steps
from jaxsafe.core.metrics import prefixed
from jaxsafe.envs.core import Env


@config
class CUPConfig(PPOConfig):
  """Hyper-parameters of ``cup``: ``PPOConfig`` plus OmniSafe's ``CUP.yaml``: projection epochs
  stopped at KL 0.02, multiplier step 0.035 from 0.001 (its ``lambda_lr``; applied here as a
  plain ascent step, as ``ppo-lag``)."""

  target_kl: float = hparam(0.02, 1e-8, None, doc="KL early stopping of the projection epochs")
  improve_while_infeasible: bool = static(False, doc="take the reward step also from a batch "
                                          "whose J_C > b (True: OmniSafe's CUP); False keeps "
                                          "the policy there, so that the projection alone "
                                          "moves it (issue 39: 21 of 21 suite cells against "
                                          "11 of 18; docs/algorithms.md)")
  multiplier_learning_rate: float = hparam(0.035, 0.0, None, doc="multiplier step size")
  multiplier_init: float = hparam(0.001, 0.0, None, doc="initial multiplier")


def projection_loss(ac: ActorCritic, actor, stats, batch: dict, multiplier: jax.Array, hp):
  """CUP's projection objective on a minibatch: lambda c rho A^C + KL(pi_theta || pi_{k+1/2}),
  c = (1 - gamma lambda_GAE) / (1 - gamma); ``batch`` holds the improved policy's Gaussian
  (``half_mean``, ``half_log_std``) at each observation."""
  dist = ac.dist(actor, stats, batch["obs"])
  ratio = jnp.exp(distributions.log_prob(dist, batch["raw_action"]) - batch["log_prob"])
  half = distributions.make_distribution(ac.config.distribution, batch["half_mean"],
                                         batch["half_log_std"])
  coef = (1.0 - hp.gamma * hp.gae_lambda) / (1.0 - hp.gamma)
  cost_term = (multiplier * coef * ratio * batch["adv_c"]).mean()
  kl = distributions.kl_divergence(dist, half).mean()
  return cost_term + kl, {"projection_cost_term": cost_term, "projection_kl": kl}


def make_cup(env: Env, config: CUPConfig, name: str = "cup") -> Agent:
  ac = ActorCritic(env, config)

  def init(key: jax.Array, hparams=None) -> LagrangianState:
    hp = hparams_of(config) if hparams is None else hparams
    return with_multiplier(ac.init(key, hp), hp.multiplier_init)

  def project(actor, stats, batch, multiplier, hp, key):
    """Phase 2: minibatch Adam epochs on ``projection_loss``, stopped early on the KL."""
    tx = optax.chain(optax.clip_by_global_norm(hp.max_grad_norm),
                     optax.adam(hp.learning_rate, eps=1e-5))
    obs = batch["obs"]
    half = ac.dist(actor, stats, obs)

    def step(carry, part):
      params, opt_state, stopped = carry
      grads, aux = jax.grad(projection_loss, argnums=1, has_aux=True)(ac, params, stats, part,
                                                                      multiplier, hp)
      updates, new_opt_state = tx.update(grads, opt_state, params)
      new_params = optax.apply_updates(params, updates)
      keep = lambda old, new: jnp.where(stopped, old, new)
      params, opt_state = jax.tree.map(keep, (params, opt_state), (new_params, new_opt_state))
      # OmniSafe's test, per minibatch here: KL(pi_{k+1/2} || pi_theta) on the whole batch.
      stopped = stopped | (distributions.kl_divergence(half, ac.dist(params, stats, obs)).mean()
                           > hp.target_kl)
      return (params, opt_state, stopped), {**aux, "projection_stopped": stopped.astype(float)}

    (actor, _, _), aux = minibatch.epochs(step, (actor, tx.init(actor), jnp.bool_(False)), batch,
                                          key, config.update_epochs, config.num_minibatches)
    return actor, {k: v.mean() for k, v in aux.items()}

  def update(state: LagrangianState):
    hp = state.hparams
    rng, k_collect, k_sgd, k_project = jax.random.split(state.rng, 4)

    # --- 1. Collect, 2. GAE, 3. multiplier step on the batch's J_C (as ppo-lag). ----------
    env_state, data, episode = ac.collect(state, k_collect)
    adv = ac.advantages(state, data)
    lag = step_unless_unmeasured(ascent_step, state.lagrange, episode[1], hp)

    # --- 4. Improvement: PPO on the reward (and the critics). ------------------------------
    params, opt_state, sgd_metrics = ac.sgd(state, data, standardize(adv.reward), adv,
                                            clipped_surrogate_loss, k_sgd)

    if not config.improve_while_infeasible:  # from an infeasible batch, project only
      infeasible = jnp.nan_to_num(episode[1] - hp.cost_limit) > 0
      params = {**params, "actor": jax.tree.map(lambda old, new: jnp.where(infeasible, old, new),
                                                state.params["actor"], params["actor"])}

    # --- 5. Projection towards the cost constraint, near pi_{k+1/2}. -----------------------
    half_mean, half_log_std = ac.actor.apply(params["actor"], ac.norm(state.obs_stats, data.obs))
    batch = flatten_steps({"obs": data.obs, "raw_action": data.raw_action,
                           "log_prob": data.log_prob, "adv_c": adv.cost - adv.cost.mean(),
                           "half_mean": half_mean, "half_log_std": half_log_std})
    actor, projection_metrics = project(params["actor"], state.obs_stats, batch, lag.multiplier,
                                        hp, k_project)
    params = {**params, "actor": actor}

    # --- 6. Bookkeeping. -------------------------------------------------------------------
    state, metrics = ac.finish(state, data, episode, params=params, opt_state=opt_state,
                               env_state=env_state, rng=rng, lagrange=lag)
    return state, {**metrics, **prefixed(name, {"multiplier": lag.multiplier,
                                                **step_metrics(data, adv), **sgd_metrics,
                                                **projection_metrics})}

  return Agent(name=name, config=config, env=env, init=init, update=update, policy=ac.policy,
               steps_per_update=ac.steps_per_update)
