"""Four small differentiable CMDPs of jaxsafe's own, of different kinds (issue 17).

They exist to test gradient-based agents (``shac-lag``, ``cgpo``, ``bptt-lag``) where nobody tuned
them: each is cheap (T = 100, a few flops a step), smooth enough that full-horizon BPTT through it
is exact, and built so that reward and cost differ and conflict.

- ``reach-around`` (``ReachAroundEnv``): a 2-D point mass goes from (-1, 0) to a goal at (1, 0);
  a smooth hazard sits on the straight line between them.
- ``swing-up`` (``SwingUpEnv``): a torque-limited pendulum must be swung up and held; the cost is
  the energy spent (squared torque).
- ``push-wall`` (``PushWallEnv``, contact): a block is pushed towards a target that lies *inside*
  a stiff wall; the cost is the wall's contact force.
- ``balance`` (``BalanceEnv``, termination): a cart-pole is kept upright; the episode ends when the
  pole falls or the cart leaves the track; the cost is the squared force.

Dynamics use semi-implicit Euler. Actions are clipped to [-1, 1] (the agents' tanh policies stay
inside). Every ``step`` is differentiable in state and action; the terminal flags of ``balance``
are not (they are thresholds), as in every simulator with terminations.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxsafe.envs.core import Env, State


def _state(obs_of, sim_state, done=0.0) -> State:
  zero = jnp.zeros(())
  return State(sim_state=sim_state, obs=obs_of(sim_state), reward=zero, cost=zero,
               done=jnp.asarray(done, jnp.float32), metrics={}, info={})


class _Small(Env):
  """Shared plumbing: ``sim_state`` is a flat vector, ``obs_of`` maps it to the observation."""

  episode_length = 100
  differentiable = True
  action_dim = 1

  @property
  def observation_size(self) -> int:
    return int(self.obs_of(self.initial(jax.random.PRNGKey(0))).shape[-1])

  @property
  def action_size(self) -> int:
    return self.action_dim

  def obs_of(self, s: jax.Array) -> jax.Array:
    return s

  def initial(self, key: jax.Array) -> jax.Array:
    raise NotImplementedError

  def reset(self, key: jax.Array) -> State:
    return _state(self.obs_of, self.initial(key))


class ReachAroundEnv(_Small):
  """A point mass reaches a goal around a hazard.

      v' = 0.9 v + 0.2 a,  p' = p + 0.1 v',    a in [-1, 1]^2
      r = -sqrt(|p' - g|^2 + 0.01),            c = exp(-|p' - h|^2 / (2 sigma^2))

  with p_0 = (-1, 0) + U(-0.1, 0.1)^2, v_0 = 0, g = (1, 0), h = (0, 0), sigma = 0.25, b = 2. The
  straight path crosses the hazard (about 5 units of cost); going around costs well under b.
  Doing nothing scores about -200.
  """

  cost_limit = 2.0
  action_dim = 2
  goal = (1.0, 0.0)
  hazard = (0.0, 0.0)
  hazard_width = 0.25

  def initial(self, key):
    start = jnp.array([-1.0, 0.0]) + jax.random.uniform(key, (2,), minval=-0.1, maxval=0.1)
    return jnp.concatenate([start, jnp.zeros(2)])

  def step(self, state: State, action: jax.Array) -> State:
    p, v = state.sim_state[:2], state.sim_state[2:]
    v = 0.9 * v + 0.2 * jnp.clip(action, -1.0, 1.0)
    p = p + 0.1 * v
    reward = -jnp.sqrt(jnp.sum((p - jnp.array(self.goal)) ** 2) + 0.01)
    cost = jnp.exp(-jnp.sum((p - jnp.array(self.hazard)) ** 2) / (2 * self.hazard_width ** 2))
    return state.replace(sim_state=jnp.concatenate([p, v]), obs=jnp.concatenate([p, v]),
                         reward=reward, cost=cost, done=jnp.zeros(()))


class SwingUpEnv(_Small):
  """A torque-limited pendulum swung up from hanging down, with an energy cost.

      w' = w + dt (-(g / l) sin(theta) + u_max a - 0.1 w),  theta' = theta + dt w'
      r = -(1 + cos(theta')) - 0.01 w'^2,      c = a^2

  theta = 0 hanging down, pi upright; dt = 0.05, g / l = 10, u_max = 4 (less than g / l, so the
  pendulum must be pumped). theta_0 ~ U(-0.1, 0.1), w_0 = 0; b = 25 (a quarter of the cost of
  full torque throughout). Observation (cos theta, sin theta, w). Doing nothing scores about -200.
  """

  cost_limit = 25.0
  dt, gravity, max_torque, damping = 0.05, 10.0, 4.0, 0.1

  def initial(self, key):
    return jnp.array([jax.random.uniform(key, (), minval=-0.1, maxval=0.1), 0.0])

  def obs_of(self, s):
    return jnp.array([jnp.cos(s[0]), jnp.sin(s[0]), s[1]])

  def step(self, state: State, action: jax.Array) -> State:
    theta, w = state.sim_state
    a = jnp.clip(action[0], -1.0, 1.0)
    w = w + self.dt * (-self.gravity * jnp.sin(theta) + self.max_torque * a - self.damping * w)
    theta = theta + self.dt * w
    s = jnp.array([theta, w])
    reward = -(1.0 + jnp.cos(theta)) - 0.01 * w ** 2
    return state.replace(sim_state=s, obs=self.obs_of(s), reward=reward, cost=a ** 2,
                         done=jnp.zeros(()))


class PushWallEnv(_Small):
  """A block pushed towards a target inside a stiff wall (contact).

      f = k max(0, x - 1)                      (the wall at x = 1, stiffness k = 200)
      v' = v + dt (2 a - 2 v - f),  x' = x + dt v'
      r = -|x' - 1.1|,                          c = f' = k max(0, x' - 1)

  dt = 0.05; x_0 ~ U(-0.1, 0.1), v_0 = 0; b = 100. The reward asks the block to press into the
  wall (x = 1.1 needs a force of 20, more than the push of 2 can hold); the cost of pressing is
  the contact force, so within b the block must lean on the wall lightly and for part of the
  episode. Doing nothing scores about -110.
  """

  cost_limit = 100.0
  dt, stiffness, target = 0.05, 200.0, 1.1

  def initial(self, key):
    return jnp.array([jax.random.uniform(key, (), minval=-0.1, maxval=0.1), 0.0])

  def step(self, state: State, action: jax.Array) -> State:
    x, v = state.sim_state
    force = self.stiffness * jnp.maximum(x - 1.0, 0.0)
    v = v + self.dt * (2.0 * jnp.clip(action[0], -1.0, 1.0) - 2.0 * v - force)
    x = x + self.dt * v
    s = jnp.array([x, v])
    return state.replace(sim_state=s, obs=s, reward=-jnp.abs(x - self.target),
                         cost=self.stiffness * jnp.maximum(x - 1.0, 0.0), done=jnp.zeros(()))


class BalanceEnv(_Small):
  """A cart-pole kept upright, with terminations (classic cart-pole dynamics, continuous force).

  Force F = 10 a; the episode ends when |theta| > 0.4 or |x| > 2.4.
      r = 1 - theta'^2 - 0.25 x'^2 (while alive),         c = a^2
  The cart starts off centre, x_0 ~ U(-1, 1); x_dot, theta, theta_dot ~ U(-0.05, 0.05); dt = 0.02;
  b = 5. Doing nothing falls within about 40 steps (return ~ 40); balancing for T = 100 steps
  scores up to ~ 100 and needs only small forces; bringing the cart back to the centre earns more
  and costs more force.
  """

  cost_limit = 5.0
  dt, gravity, cart_mass, pole_mass, half_length, force_scale = 0.02, 9.8, 1.0, 0.1, 0.5, 10.0
  theta_limit, x_limit = 0.4, 2.4

  def initial(self, key):
    return jax.random.uniform(key, (4,), minval=-0.05, maxval=0.05) * jnp.array([20.0, 1, 1, 1])

  def step(self, state: State, action: jax.Array) -> State:
    x, x_dot, theta, theta_dot = state.sim_state
    a = jnp.clip(action[0], -1.0, 1.0)
    total, ml = self.cart_mass + self.pole_mass, self.pole_mass * self.half_length
    cos, sin = jnp.cos(theta), jnp.sin(theta)
    temp = (self.force_scale * a + ml * theta_dot ** 2 * sin) / total
    theta_acc = (self.gravity * sin - cos * temp) / (
        self.half_length * (4.0 / 3.0 - self.pole_mass * cos ** 2 / total))
    x_acc = temp - ml * theta_acc * cos / total
    x_dot = x_dot + self.dt * x_acc
    x = x + self.dt * x_dot
    theta_dot = theta_dot + self.dt * theta_acc
    theta = theta + self.dt * theta_dot
    s = jnp.stack([x, x_dot, theta, theta_dot])
    fell = (jnp.abs(theta) > self.theta_limit) | (jnp.abs(x) > self.x_limit)
    return state.replace(sim_state=s, obs=s, reward=1.0 - theta ** 2 - 0.25 * x ** 2, cost=a ** 2,
                         done=fell.astype(jnp.float32))


class NoFallBalanceEnv(BalanceEnv):
  """``balance`` without its terminations (same dynamics, reward and cost; not registered): where
  BPTT differentiates the whole return, for the estimator check (tests/test_estimator_check.py)."""

  theta_limit = x_limit = float("inf")


TASKS = {"reach-around": ReachAroundEnv, "swing-up": SwingUpEnv, "push-wall": PushWallEnv,
         "balance": BalanceEnv}
