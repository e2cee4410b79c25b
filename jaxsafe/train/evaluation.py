"""Evaluation of a trained run: deterministic policy, fresh episodes, mean and std per run."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxsafe import envs
from jaxsafe.envs.registry import NAVIGATION_IDS, SAFETY_GYMNASIUM_PREFIX
from jaxsafe.train.runner import load_states


def evaluate(run_dir: str, episodes: int = 10, seed: int = 0, env_id: str | None = None,
             env_options: dict | None = None, per_episode: bool = False) -> list[dict]:
  """Runs ``episodes`` full episodes per run with the deterministic (mode) policy.

  Args:
    env_id, env_options: evaluate on another task than the run's (its options replace the
      run's), one whose observations and actions have the same sizes and meaning: e.g. a policy
      trained on ``point-goal`` with ``dynamics="safety-gymnasium"``, evaluated on the real task
      ``sg/SafetyPointGoal1-v0`` (the bridge: runs are then evaluated one after another).
    per_episode: also return each episode's return and cost (lists under "returns", "costs").
  Returns:
    one dict per run (setting, seed) with mean and std of the undiscounted episode return and
    cost over the episodes, and the cost limit.
  """
  if episodes < 1:
    raise ValueError(f"--episodes must be >= 1, got {episodes}")
  p, states, _ = load_states(run_dir)
  trained_on = envs.make(p.spec.env, **p.spec.env_options)
  if env_id is None:
    env_id, env_options = p.spec.env, p.spec.env_options
  env = envs.make(env_id, **envs.registry.make_arguments(env_options, num_envs=episodes))
  for what in ("observation_size", "action_size"):
    if getattr(env, what) != getattr(trained_on, what):
      raise ValueError(f"cannot evaluate a policy of '{p.spec.env}' on '{env_id}': its "
                       f"{what.replace('_', ' ')} is {getattr(trained_on, what)}, the task's "
                       f"{getattr(env, what)}")
  agent = p.agent

  def run_episodes(state, key):
    def body(carry, _):
      env_state, ret, cost, alive = carry
      action = agent.policy(state, env_state.obs, None, deterministic=True)
      env_state = env.step(env_state, action)
      ret = ret + alive * env_state.reward
      cost = cost + alive * env_state.cost
      return (env_state, ret, cost, alive * (1.0 - env_state.done)), None

    zeros = jnp.zeros((episodes,))
    carry = (env.reset(key), zeros, zeros, jnp.ones((episodes,)))
    (_, ret, cost, _), _ = jax.lax.scan(body, carry, None, length=env.episode_length)
    return ret, cost

  keys = jax.random.split(jax.random.PRNGKey(seed), len(p.labels))
  if env_id.startswith(SAFETY_GYMNASIUM_PREFIX):  # one host env: one run at a time
    single = jax.jit(run_episodes)
    per_run = [single(jax.tree_util.tree_map(lambda x, r=r: x[r], states), keys[r])
               for r in range(len(p.labels))]
    returns, costs = (np.stack(x) for x in zip(*jax.device_get(per_run), strict=True))
    env.unwrapped.close()  # the host's MuJoCo worlds (~0.1 GB each) go now, not at exit
  else:
    returns, costs = jax.device_get(jax.jit(jax.vmap(run_episodes))(states, keys))
  limit = np.asarray(p.hparams.cost_limit)
  results = [{**label, "episodes": episodes,
              "return_mean": float(np.mean(returns[r])), "return_std": float(np.std(returns[r])),
              "cost_mean": float(np.mean(costs[r])), "cost_std": float(np.std(costs[r])),
              "cost_limit": float(limit[r])}
             for r, label in enumerate(p.labels)]
  if per_episode:
    for r, result in enumerate(results):
      result.update(returns=returns[r].tolist(), costs=costs[r].tolist())
  return results


def record_episode(run_dir: str, path: str, run: int = 0, seed: int = 0, every: int = 4) -> dict:
  """Renders one episode of run ``run``'s deterministic policy to the GIF ``path``.

  Only navigation tasks can be drawn (their state is positions on a plane). Returns the
  episode's return and cost and the number of frames.
  """
  from jaxsafe.envs.navigation import NavigationEnv
  from jaxsafe.envs.navigation.render import save_gif

  p, states, _ = load_states(run_dir)
  env = envs.make(p.spec.env, **p.spec.env_options)
  task = env.unwrapped
  if not isinstance(task, NavigationEnv):  # a bad --video request: ValueError exits with 2
    raise ValueError(f"--video draws navigation tasks only ({', '.join(NAVIGATION_IDS)}); "  # noqa: TRY004
                     f"'{p.spec.env}' is not one")
  if not 0 <= run < len(p.labels):
    raise ValueError(f"--video-run must be in [0, {len(p.labels)}), got {run}")
  state = jax.tree_util.tree_map(lambda x: x[run], states)
  agent = p.agent

  def episode(key):
    def body(env_state, _):
      action = agent.policy(state, env_state.obs[None], None, deterministic=True)[0]
      env_state = env.step(env_state, action)
      return env_state, (env_state.sim_state, env_state.reward, env_state.cost)
    return jax.lax.scan(body, env.reset(key), None, length=env.episode_length)[1]

  navs, rewards, costs = jax.device_get(jax.jit(episode)(jax.random.PRNGKey(seed)))
  frames = save_gif(task, navs, rewards, costs, path, every=every)
  return {**p.labels[run], "return": float(rewards.sum()), "cost": float(costs.sum()),
          "frames": frames, "path": path}
