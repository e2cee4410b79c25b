"""Does the short-horizon gradient point where BPTT does? A check for a fixed policy (issue 17).

On a task where full-horizon BPTT is exact, the SHAC estimate of grad J_R and grad J_C (windows
of h steps bootstrapped by the critics V(s, t), CGPO Eq. 19-20) should agree with BPTT's
(Eq. 79-80) once the critics have converged for the policy at hand. ``fit_critics`` trains the
critics of a ``FirstOrder`` state on fresh episodes of its (fixed) policy; ``agreement`` then
takes both estimates from the *same* episodes (same initial states, same policy noise: the
forward passes are identical, only the backward passes differ) and compares them.

With h = T the two are the same computation (no window ends, no bootstrap) and agree to rounding;
with h < T they differ by how well grad_s V(s, t) at the window ends stands for the pathwise
gradient of the return-to-go. ``benchmarks/estimator_check.py`` sweeps h, critic training and
critic size; ``tests/test_estimator_check.py`` holds the acceptance thresholds.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jaxsafe.agents.first_order.base import FirstOrder, FirstOrderState, adam
from jaxsafe.core import short_horizon
from jaxsafe.solvers import trust_region


def pretrain_actor(fo: FirstOrder, state: FirstOrderState, key: jax.Array, iterations: int,
                   learning_rate: float = 2e-3):
  """``iterations`` Adam steps of unconstrained BPTT ascent on J_R (``bptt-lag``'s step with
  the multiplier at 0), with the observation statistics kept up: a policy away from the random
  initial one to run the check at (where it still acts at random, costs can be zero, and a
  terminating task ends every episode early)."""
  tx = adam(learning_rate, 1.0)

  def one(carry, key):
    state, opt_state = carry
    k_reset, k_policy = jax.random.split(key)
    g, _, episodes = short_horizon.gradients(
        state.params["actor"], fo.env, fo.policy_fn(state.obs_stats), None,
        fo.env.reset(k_reset), k_policy, fo.horizon, fo.horizon)
    updates, opt_state = tx.update(jax.tree_util.tree_map(jnp.negative, g), opt_state,
                                   state.params["actor"])
    actor = optax.apply_updates(state.params["actor"], updates)
    return (state.replace(params={**state.params, "actor": actor},
                          obs_stats=fo.observed(state.obs_stats, episodes)),
            opt_state), episodes.reward.sum(0).mean()

  (state, _), returns = jax.lax.scan(one, (state, tx.init(state.params["actor"])),
                                     jax.random.split(key, iterations))
  return state, returns


def fit_critics(fo: FirstOrder, state: FirstOrderState, key: jax.Array, iterations: int):
  """``iterations`` rounds of (fresh episodes of the fixed policy, critic regression, observation
  statistics), as the agents do after each policy step but with the actor held. Returns the state
  and the critics' last losses."""

  def one(state, key):
    k_reset, k_policy, k_fit = jax.random.split(key, 3)
    episodes = fo.real_episodes(state, fo.env.reset(k_reset), k_policy)
    state, losses = fo.fit_critics(state, episodes, k_fit)
    return state.replace(obs_stats=fo.observed(state.obs_stats, episodes)), losses

  state, losses = jax.lax.scan(one, state, jax.random.split(key, iterations))
  return state, jax.tree_util.tree_map(lambda x: x[-1], losses)


def cosine(a: jax.Array, b: jax.Array) -> jax.Array:
  return a @ b / jnp.maximum(jnp.linalg.norm(a) * jnp.linalg.norm(b), 1e-30)


def relative_error(estimate: jax.Array, reference: jax.Array) -> jax.Array:
  return jnp.linalg.norm(estimate - reference) / jnp.maximum(jnp.linalg.norm(reference), 1e-30)


def both_gradients(fo: FirstOrder, state: FirstOrderState, key: jax.Array,
                   window: int | None = None) -> list[jax.Array]:
  """Flat (g short, q short, g BPTT, q BPTT) of ``state``'s policy on one batch of episodes of
  ``fo.env`` drawn with ``key``: the short-horizon estimate (window ``window``, default the
  agent's h) and BPTT's from the same forward pass."""
  window = fo.window if window is None else window
  k_reset, k_policy = jax.random.split(key)
  start, policy, actor = fo.env.reset(k_reset), fo.policy_fn(state.obs_stats), state.params["actor"]
  short = short_horizon.gradients(actor, fo.env, policy, fo.value_fn(state), start, k_policy,
                                  fo.horizon, window)
  full = short_horizon.gradients(actor, fo.env, policy, None, start, k_policy, fo.horizon,
                                 fo.horizon)
  return [trust_region.flatten(x)[0] for x in (short[0], short[1], full[0], full[1])]


def agreement(fo: FirstOrder, state: FirstOrderState, key: jax.Array, window: int | None = None,
              batches: int = 1):
  """``both_gradients`` averaged over ``batches`` batches of episodes; returns a dict of cosine
  similarities and relative norm errors (BPTT the reference) and both gradients' norms."""
  keys = key[None] if batches == 1 else jax.random.split(key, batches)
  g_short, q_short, g_full, q_full = [
      x.mean(0) for x in jax.lax.map(lambda k: both_gradients(fo, state, k, window), keys)]
  out = {}
  for name, est, ref in (("return", g_short, g_full), ("cost", q_short, q_full)):
    out.update({f"{name}_cosine": cosine(est, ref), f"{name}_relative_error":
                relative_error(est, ref), f"{name}_bptt_norm": jnp.linalg.norm(ref),
                f"{name}_short_norm": jnp.linalg.norm(est)})
  return out
