"""First-order (analytic) gradients of J_R and J_C through a differentiable env (CGPO App. A.4).

N whole episodes of T steps are rolled out from fresh initial states with a reparameterised
policy. The horizon is cut into windows of h steps; at each window start the env state is
detached (``stop_gradient``), and the last state of a window is scored by the critics, so that

    L_R = 1/N sum_i [ sum_{w} ( sum_{t in w} r_t^i + V_R(s_{end(w)}^i, end(w)) ) ]     (Eq. 19)
    L_C = 1/N sum_i [ sum_{w} ( sum_{t in w} c_t^i + V_C(s_{end(w)}^i, end(w)) ) ]     (Eq. 20)

with V(s_T, T) = 0. Differentiating one window's loss gives the contribution of that window's
actions to the gradient of the return-to-go (Eq. 57-64), so the sum over windows estimates the
full gradient of the *episode* objective J = E[sum_{t<T} r_t]: the scale that the linear models
J(theta + d) ~ J(theta) + g.d of the trust region need. ``h = T`` with no critics is BPTT
(Eq. 79-80). Both losses come out of one forward pass; ``jax.vjp`` then gives g and q from one
set of saved residuals.

Episodes that terminate early (CartPole's pole falling) are masked from the step they end on:
``alive`` is 1 up to and including the terminal step, 0 afterwards.

The critics are trained on the same data with the finite-horizon TD(lambda) targets of
Eq. 66-68, truncated at the end of each window (``jaxsafe.core.returns.td_lambda_targets``).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxsafe.core.experience import ActFn, ActionSample, Transition
from jaxsafe.envs.core import Env, State

#: params -> ActFn: the reparameterised policy, differentiable in params and obs.
PolicyFn = Callable[[object], ActFn]
#: (obs, t) -> (V_R, V_C); t is the time index of obs (int array broadcastable to obs[..., 0]).
ValueFn = Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]


def _tree_where(cond, x, y):
  return jax.tree_util.tree_map(lambda a, b: jnp.where(cond, a, b), x, y)


def window_ends(horizon: int, window: int) -> jax.Array:
  """[T] bool: True at steps t whose next state s_{t+1} closes a window before T."""
  t_next = jnp.arange(1, horizon + 1)
  return (t_next % window == 0) & (t_next < horizon)


def rollout_losses(params, env: Env, policy: PolicyFn, values: ValueFn | None, state: State,
                   key: jax.Array, horizon: int, window: int):
  """Rolls out ``horizon`` steps of the vmapped ``env`` from ``state``; returns the losses.

  Args:
    params: policy parameters (what the losses are differentiated with respect to).
    env: a vmapped env *without* auto-reset (``envs.make(id, num_envs=N)``).
    policy: the reparameterised policy, ``policy(params)(obs, key).action``.
    values: the critics, or None for pure BPTT (no bootstrap; requires ``window == horizon``).
    state: the batch of initial states (from ``env.reset``).
    key: randomness of the policy.
    horizon: T, the number of steps.
    window: h, the short horizon; the state is detached at every multiple of h.

  Returns:
    ``((L_R, L_C), episodes)``: the scalar losses of Eq. 19-20 (differentiable in ``params``)
    and the episodes as a ``Transition`` [T, N, ...] (stop-gradiented; ``alive`` masks the steps
    after a termination, whose reward and cost are zero).
  """
  if values is None and window != horizon:
    raise ValueError("without critics the window must span the whole horizon (BPTT)")
  ends = window_ends(horizon, window)
  num_envs = state.obs.shape[0]
  act = policy(params)

  def one_step(carry, inputs):
    state, alive = carry
    t, step_key, end = inputs
    state = _tree_where(t % window == 0, jax.lax.stop_gradient(state), state)
    sample = act(state.obs, step_key)
    next_state = env.step(state, sample.action)
    terminal = next_state.done * (1.0 - next_state.info.get("truncation", 0.0))
    reward, cost = alive * next_state.reward, alive * next_state.cost
    alive_next = alive * (1.0 - terminal)
    boot_r = boot_c = jnp.zeros_like(reward)
    if values is not None:
      v_r, v_c = values(next_state.obs, jnp.full((num_envs,), t + 1))
      boot_r = jnp.where(end, alive_next * v_r, 0.0)
      boot_c = jnp.where(end, alive_next * v_c, 0.0)
    out = (reward + boot_r, cost + boot_c,
           Transition(obs=state.obs, action=sample.action, raw_action=sample.raw_action,
                      log_prob=sample.log_prob, reward=reward, cost=cost,
                      next_obs=next_state.obs, terminal=terminal * alive,
                      done=terminal * alive, alive=alive))
    return (next_state, alive_next), out

  steps = jnp.arange(horizon)
  _, (loss_r, loss_c, episodes) = jax.lax.scan(
      one_step, (state, jnp.ones((num_envs,))), (steps, jax.random.split(key, horizon), ends))
  return (loss_r.sum(0).mean(), loss_c.sum(0).mean()), jax.lax.stop_gradient(episodes)


def gradients(params, env: Env, policy: PolicyFn, values: ValueFn | None, state: State,
              key: jax.Array, horizon: int, window: int):
  """g = dL_R/dparams and q = dL_C/dparams from one forward pass (Eq. 63-64).

  Returns ``(g, q, episodes)`` with g and q pytrees shaped like ``params``.
  """
  (_, vjp_fn, episodes) = jax.vjp(
      lambda p: rollout_losses(p, env, policy, values, state, key, horizon, window), params,
      has_aux=True)
  one, zero = jnp.ones(()), jnp.zeros(())
  (g,), (q,) = vjp_fn((one, zero)), vjp_fn((zero, one))
  return g, q, episodes


def action_policy(action_fn: Callable[[object, jax.Array, jax.Array], jax.Array]) -> PolicyFn:
  """A ``PolicyFn`` from ``action_fn(params, obs, key) -> action``, for hand-written policies
  that have no raw sample or log-probability (they are recorded as the action and 0)."""

  def policy(params) -> ActFn:
    def act(obs, key):
      action = action_fn(params, obs, key)
      return ActionSample(action, action, jnp.zeros(action.shape[:-1]))
    return act

  return policy
