"""The Safety-Gymnasium bridge (envs/safety_gymnasium.py): ``envs.make("sg/<id>")``.

Every test but the one about the missing extra needs ``jaxsafe[safety-gymnasium]`` and is skipped
without it. Envs are built once per module; rollouts are short (the simulations run on the host at
a few hundred steps per second).
"""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsafe import envs
from jaxsafe.cli import main
from jaxsafe.envs import safety_gymnasium as bridge
from jaxsafe.envs import safety_gymnasium_compat as compat
from jaxsafe.envs.wrappers import VmapAutoReset

requires_extra = pytest.mark.skipif(not bridge.is_available(), reason=bridge.INSTALL_HINT)

TASKS = ["SafetyPointGoal1-v0", "SafetyCarGoal1-v0", "SafetyPointButton1-v0",
         "SafetyCarButton1-v0", "SafetyCarCircle1-v0", "SafetyHalfCheetahVelocity-v1"]
NUM_ENVS = 2
#: the task of the tests of the bridge's mechanics: it resets in milliseconds (a navigation task
#: rebuilds its MuJoCo world on every reset, ~0.5 s).
SHORT = "SafetyHalfCheetahVelocity-v1"


def random_rollout(env, state, key, length):
  """``length`` steps with uniform random actions in [-1, 1], jitted as one scan."""

  def body(state, k):
    action = jax.random.uniform(k, (env.num_envs, env.action_size), minval=-1.0, maxval=1.0)
    state = env.step(state, action)
    return state, (state.obs, state.reward, state.cost, state.done, state.info["truncation"])

  return jax.jit(lambda s, k: jax.lax.scan(body, s, jax.random.split(k, length)))(state, key)


@pytest.fixture(scope="module")
def task_envs():
  built = {}
  yield built
  for env in built.values():
    env.close()


def _env(task_envs, env_id, num_envs=NUM_ENVS, **kw):
  key = (env_id, num_envs, tuple(sorted(kw.items())))
  if key not in task_envs:
    task_envs[key] = envs.make(f"sg/{env_id}", num_envs=num_envs, auto_reset=True, **kw)
  return task_envs[key]


@requires_extra
@pytest.mark.parametrize("env_id", TASKS)
def test_random_rollout_shapes_and_finite_values(task_envs, env_id):
  env = _env(task_envs, env_id, num_envs=1)  # one env: every Safety-Gymnasium reset takes ~0.5 s
  assert (env.differentiable, env.cost_limit) == (False, 25.0)
  assert env.episode_length == (500 if "Circle" in env_id else 1000)
  state = env.reset(jax.random.PRNGKey(0))
  assert state.obs.shape == (1, env.observation_size) and state.obs.dtype == jnp.float32
  state, (obs, reward, cost, done, trunc) = random_rollout(env, state, jax.random.PRNGKey(1), 100)
  assert obs.shape == (100, 1, env.observation_size) and obs.dtype == jnp.float32
  for x in (reward, cost, done, trunc):
    assert x.shape == (100, 1) and x.dtype == jnp.float32
  assert np.isfinite(obs).all() and np.isfinite(reward).all() and np.isfinite(cost).all()
  assert (np.asarray(cost) >= 0).all()
  assert not np.asarray(done).any()  # the horizon is 500 or 1000 steps
  np.testing.assert_allclose(state.info["running_length"], 100.0)


@requires_extra
def test_info_mirrors_the_jaxsafe_wrapper_stack(task_envs):
  """Same info keys, dtypes and leading shapes as envs.make(id, num_envs=N, auto_reset=True)
  (less VmapAutoReset's reset pool, which the bridge's own auto-reset does not need)."""
  env = _env(task_envs, SHORT, episode_length=10)
  ours = jax.eval_shape(env.reset, jax.random.PRNGKey(0))
  ref = jax.eval_shape(envs.make("function", num_envs=NUM_ENVS, auto_reset=True).reset,
                       jax.random.PRNGKey(0))
  public = set(ref.info) - set(VmapAutoReset.POOL_INFO_KEYS)
  assert set(ours.info) == public == set(bridge.INFO_KEYS)
  for name in public:
    assert ours.info[name].dtype == ref.info[name].dtype, name
    assert ours.info[name].shape[0] == NUM_ENVS, name
  for field in ("reward", "cost", "done"):
    assert getattr(ours, field).shape == getattr(ref, field).shape == (NUM_ENVS,)


@requires_extra
def test_time_limit_truncates_resets_and_records_episode_stats(task_envs):
  env = _env(task_envs, SHORT, episode_length=10)
  state = env.reset(jax.random.PRNGKey(2))
  step = jax.jit(env.step)
  rewards, costs = [], []
  for t in range(1, 11):
    state = step(state, jnp.full((NUM_ENVS, env.action_size), 0.5))
    rewards.append(np.asarray(state.reward))
    costs.append(np.asarray(state.cost))
    if t < 10:
      assert not np.asarray(state.done).any()
      np.testing.assert_array_equal(state.info["final_obs"], state.obs)
  np.testing.assert_array_equal(state.done, 1.0)
  np.testing.assert_array_equal(state.info["truncation"], 1.0)
  np.testing.assert_array_equal(state.info["episode_finished"], 1.0)
  np.testing.assert_array_equal(state.info["steps"], 0)
  np.testing.assert_allclose(state.info["episode_length"], 10.0)
  np.testing.assert_allclose(state.info["episode_return"], np.sum(rewards, 0), rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_allclose(state.info["episode_cost"], np.sum(costs, 0), atol=1e-6)
  np.testing.assert_array_equal(state.info["running_return"], 0.0)
  # obs is the new episode's first observation; final_obs is where the old one ended.
  assert not np.allclose(state.obs, state.info["final_obs"])
  state = step(state, jnp.zeros((NUM_ENVS, env.action_size)))
  np.testing.assert_array_equal(state.done, 0.0)
  np.testing.assert_array_equal(state.info["steps"], 1)


@requires_extra
def test_matches_raw_safety_gymnasium_stepping():
  """Same seed and actions: the bridge's numbers are Safety-Gymnasium's, in float32."""
  env_id = "SafetyHalfCheetahVelocity-v1"  # resets fast (the navigation tasks rebuild a world)
  env = envs.make(f"sg/{env_id}")  # num_envs=None: unbatched, one env
  key = jax.random.PRNGKey(5)
  state = env.reset(key)
  seed = int(jax.random.randint(key, (), 0, np.iinfo(np.int32).max, dtype=jnp.int32))
  raw = bridge.import_safety_gymnasium().make(env_id)
  obs, _ = raw.reset(seed=seed)
  np.testing.assert_allclose(state.obs, obs.astype(np.float32))
  actions = np.random.default_rng(0).uniform(-1, 1, (20, env.action_size)).astype(np.float32)
  step = jax.jit(env.step)
  for action in actions:
    state = step(state, action)
    obs, reward, cost, _, _, _ = raw.step(action)
    np.testing.assert_allclose(state.obs, obs.astype(np.float32), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(state.reward, reward, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(state.cost, cost)
  env.close()
  raw.close()


@requires_extra
def test_refuses_what_cannot_work(task_envs):
  env = _env(task_envs, SHORT, episode_length=10)
  keys = jax.random.split(jax.random.PRNGKey(0), 2)
  with pytest.raises(bridge.BridgeError, match="cannot be vmapped over 2 copies"):
    jax.eval_shape(jax.vmap(env.reset), keys)
  # A vmap over one copy (the runner's, for one seed) is fine.
  assert jax.eval_shape(jax.vmap(env.reset), keys[:1]).obs.shape == (1, NUM_ENVS, 17)
  state = env.reset(keys[0])
  with pytest.raises(bridge.NotDifferentiableError, match="differentiable = False"):
    jax.eval_shape(jax.grad(lambda a: env.step(state, a).reward.sum()),
                   jnp.zeros((NUM_ENVS, env.action_size)))
  step = jax.jit(env.step)
  step(state, jnp.zeros((NUM_ENVS, env.action_size)))
  with pytest.raises(Exception, match="cannot be stepped twice"):  # impure: a state steps once
    jax.block_until_ready(step(state, jnp.zeros((NUM_ENVS, env.action_size))))
  with pytest.raises(envs.UnknownEnvError, match="did you mean: SafetyPointGoal"):
    envs.make("sg/SafetyPointGoal9-v0")


@requires_extra
def test_a_state_of_another_bridge_is_adopted_with_fresh_running_stats(task_envs):
  """What a resumed run does: the checkpoint's state goes on in the new bridge's host envs."""
  first = _env(task_envs, "SafetyHalfCheetahVelocity-v1", num_envs=1)
  second = _env(task_envs, "SafetyHalfCheetahVelocity-v1", num_envs=1, episode_length=1000)
  action = jnp.zeros((1, first.action_size))
  state = first.reset(jax.random.PRNGKey(0))
  for _ in range(3):
    state = first.step(state, action)
  np.testing.assert_array_equal(state.info["running_length"], 3.0)
  second.reset(jax.random.PRNGKey(1))
  with pytest.warns(UserWarning, match="adopting a state of another bridge"):
    adopted = second.step(state, action)
  np.testing.assert_array_equal(adopted.info["running_length"], 1.0)
  np.testing.assert_array_equal(adopted.info["steps"], 1)
  second.step(adopted, action)  # from now on it is the second bridge's own state


def test_missing_extra_names_the_install_command(monkeypatch):
  monkeypatch.setattr(compat, "_MODULE", None)
  monkeypatch.setitem(sys.modules, "safety_gymnasium", None)  # import fails as if absent
  with pytest.raises(ImportError, match=r"pip install jaxsafe\[safety-gymnasium\]"):
    bridge.import_safety_gymnasium()
  with pytest.raises(bridge.MissingExtraError):
    envs.make("sg/SafetyPointGoal1-v0")


@requires_extra
def test_compatibility_layer_loads_by_path_without_jax():
  """benchmarks/omnisafe_side.py loads the patches by file path in an environment without JAX."""
  script = ("import importlib.util, sys; "
            f"spec = importlib.util.spec_from_file_location('c', {compat.__file__!r}); "
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
            "sg = m.import_safety_gymnasium(); sg.make('SafetyPointGoal1-v0'); "
            "print(sorted(k for k in sys.modules if k.split('.')[0] in ('jax', 'jaxsafe')))")
  out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == "[]"


@requires_extra
def test_cli_trains_ppo_lag_on_safety_gymnasium(tmp_path, capsys):
  run_dir = str(tmp_path / "run")
  code = main(["train", "ppo-lag", "sg/SafetyPointGoal1-v0", "--total-steps", "100",
               "--set", "num_envs=2", "--set", "rollout_length=50", "--set", "update_epochs=1",
               "--set", "num_minibatches=2", "--set", "hidden_sizes=8",
               "--set", "shared_critic=true", "--run-dir", run_dir, "--quiet"])
  out = capsys.readouterr().out
  assert code == 0 and "100 env steps per run" in out
  for name in ("config.json", "progress.csv", "summary.json", "checkpoints"):
    assert os.path.exists(os.path.join(run_dir, name)), name


@requires_extra
def test_cli_refuses_several_seeds_in_one_line(tmp_path, capsys):
  code = main(["train", "ppo-lag", "sg/SafetyPointGoal1-v0", "--seeds", "2", "--set", "num_envs=2",
               "--run-dir", str(tmp_path / "run"), "--quiet"])
  err = capsys.readouterr().err
  assert code == 2 and err.count("\n") == 1 and "cannot be vmapped over 2 copies" in err
