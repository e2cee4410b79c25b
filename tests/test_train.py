"""The runner: logs, checkpoints, resume equality, sweeps, divergence, multi-device sharding."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from conftest import TINY
from jaxsafe import train
from jaxsafe.train import runner
from jaxsafe.train.logger import read_progress

def _spec(**kw):
  base = dict(algo="ppo-lag", env="function", seeds=4, total_steps=8 * 800,
              overrides=dict(TINY), chunk_iters=2)
  base.update(kw)
  return train.RunSpec(**base)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
  """8 updates of 4 seeds without interruption."""
  run_dir = str(tmp_path_factory.mktemp("straight"))
  summary = train.run(_spec(), run_dir, progress=False)
  return run_dir, summary


def test_run_directory_contents(straight):
  run_dir, summary = straight
  for name in ("config.json", "progress.csv", "summary.json", "checkpoints", "tb"):
    assert os.path.exists(os.path.join(run_dir, name)), name
  cols = read_progress(run_dir)
  for name in ("seed", "env_steps", "episode_return", "episode_cost", "cost_limit"):
    assert name in cols
  assert sorted(set(cols["seed"])) == [0.0, 1.0, 2.0, 3.0]
  assert len(cols["seed"]) == 4 * 8
  np.testing.assert_array_equal(np.unique(cols["env_steps"]), 800 * np.arange(1, 9))
  assert np.all(cols["cost_limit"] == 8.0)
  assert summary["iterations"] == 8 and summary["env_steps_per_run"] == 6400
  assert len(os.listdir(os.path.join(run_dir, "tb"))) == 4  # one event dir per run
  assert runner.Checkpointer(run_dir).latest_step() == 8
  with open(os.path.join(run_dir, "config.json")) as f:
    assert json.load(f)["spec"]["algo"] == "ppo-lag"


def test_resume_equals_uninterrupted(straight, tmp_path):
  """Training 2N updates equals N, stop, resume for N more (every logged metric)."""
  run_dir = str(tmp_path / "resumed")
  train.run(_spec(total_steps=4 * 800), run_dir, progress=False)
  train.resume(run_dir, total_steps=8 * 800, progress=False)
  a, b = read_progress(straight[0]), read_progress(run_dir)
  assert sorted(a) == sorted(b)
  for name in a:
    np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_new_run_refuses_used_directory(straight):
  with pytest.raises(runner.RunDirError, match="already holds a run"):
    train.run(_spec(), straight[0], progress=False)


def test_resume_errors(tmp_path):
  with pytest.raises(runner.RunDirError, match="does not exist"):
    train.resume(str(tmp_path / "missing"))
  with pytest.raises(runner.RunDirError, match="not a jaxsafe run"):
    train.resume(str(tmp_path))


def test_sweep_trains_settings_as_one_program_and_matches_separate_runs(tmp_path):
  sweep_dir = str(tmp_path / "sweep")
  spec = _spec(seeds=2, sweep={"multiplier_learning_rate": ["0.01", "0.5"]}, total_steps=4 * 800,
               chunk_iters=4)
  summary = train.run(spec, sweep_dir, progress=False)
  cols = read_progress(sweep_dir)
  assert len(summary["runs"]) == 4
  assert set(zip(cols["setting"], cols["seed"], cols["multiplier_learning_rate"])) == {
      (0, 0, 0.01), (0, 1, 0.01), (1, 0, 0.5), (1, 1, 0.5)}
  mult = cols["ppo-lag/multiplier"]
  last = cols["iteration"] == 4
  by = {(s, k): mult[last & (cols["setting"] == s) & (cols["seed"] == k)][0]
        for s in (0, 1) for k in (0, 1)}
  assert by[(1, 0)] != by[(0, 0)]  # settings differ

  # Setting 1 of the sweep equals a separate run with that value.
  single_dir = str(tmp_path / "single")
  overrides = dict(TINY, multiplier_learning_rate="0.5")
  train.run(_spec(seeds=2, overrides=overrides, total_steps=4 * 800, chunk_iters=4), single_dir,
            progress=False)
  single = read_progress(single_dir)
  sel = cols["setting"] == 1
  for name in ("episode_return", "episode_cost", "ppo-lag/multiplier"):
    np.testing.assert_allclose(cols[name][sel], single[name], rtol=1e-5, err_msg=name)


def test_divergence_stops_with_message_and_keeps_checkpoint(straight, tmp_path):
  """Poisoned parameters stop training at the next iteration; the checkpoint stays intact."""
  import jax
  import jax.numpy as jnp

  run_dir = str(tmp_path / "diverge")
  train.run(_spec(total_steps=2 * 800), run_dir, progress=False)
  p, states, step = runner.load_states(run_dir)
  before = jax.device_get(states.params)
  poisoned = states.replace(params=jax.tree_util.tree_map(lambda x: x * jnp.nan, states.params))
  p = runner.plan(_spec(total_steps=6 * 800))
  with pytest.raises(runner.TrainingDiverged, match=r"diverged at iteration 3 .*metric '"):
    runner._train(p, poisoned, step, run_dir, progress=False)
  _, restored, step_after = runner.load_states(run_dir)
  assert step_after == step == 2
  jax.tree_util.tree_map(np.testing.assert_array_equal, before, jax.device_get(restored.params))


_SHARDED = textwrap.dedent("""
    import dataclasses, json, os, sys
    import jax
    jax.config.update("jax_compilation_cache_dir", os.environ["JAXSAFE_TEST_XLA_CACHE"])
    from jaxsafe import train
    train.run(train.RunSpec(**json.loads(sys.argv[1])), sys.argv[2], progress=False)
    print(jax.device_count())
""")


def test_four_cpu_devices_give_the_same_results(straight, tmp_path):
  """The 4 seeds shard over 4 forced host devices and match the single-device run."""
  import dataclasses

  run_dir = str(tmp_path / "four_devices")
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-c", _SHARDED, json.dumps(dataclasses.asdict(_spec())),
                        run_dir], env=env, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.strip().splitlines()[-1] == "4"
  with open(os.path.join(run_dir, "config.json")) as f:
    assert len(json.load(f)["devices"]) == 4
  one, four = read_progress(straight[0]), read_progress(run_dir)
  for name in ("episode_return", "episode_cost", "ppo-lag/value_loss", "ppo-lag/multiplier"):
    np.testing.assert_allclose(four[name], one[name], rtol=1e-5, err_msg=name)


def test_shared_critic_option_trains_one_two_headed_critic():
  """``shared_critic=True``: one critic torso with reward and cost heads (a speed option, see
  docs/benchmarks.md); both value losses are trained and finite."""
  from jaxsafe import agents
  agent = agents.make("ppo-lag", "function", **{**TINY, "hidden_sizes": (16, 16)}, shared_critic=True)
  initial = jax.jit(agent.init)(jax.random.PRNGKey(0))
  assert set(initial.params) == {"actor", "critic"}
  state, metrics = jax.jit(agent.update)(initial)
  for name in ("ppo-lag/value_loss", "ppo-lag/cost_value_loss"):
    assert np.isfinite(metrics[name])
  # Both heads (the two columns of the output layer) were trained.
  head = lambda s: next(v["kernel"] for k, v in sorted(s.params["critic"]["params"]["MLP_0"].items())
                        if k == "Dense_2")
  moved = np.abs(np.asarray(head(state)) - np.asarray(head(initial))).max(axis=0)
  assert moved.shape == (2,) and np.all(moved > 0)
