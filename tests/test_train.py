"""The runner: logs, checkpoints, resume equality, sweeps, divergence, multi-device sharding."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import textwrap

import chex
import jax
import numpy as np
import pytest
from conftest import TINY

from jaxsafe import train
from jaxsafe.train import runner
from jaxsafe.train.logger import read_progress


def _spec(**kw):
  base = {"algo": "ppo-lag", "env": "function", "seeds": 4, "total_steps": 8 * 800,
          "overrides": dict(TINY), "chunk_iters": 2}
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
  chex.assert_trees_all_equal(a, b)  # every column, bit for bit (NaN equals NaN)


def test_resume_of_a_run_stopped_before_its_first_checkpoint_starts_over(straight, tmp_path):
  """A run killed while compiling leaves its config.json and no checkpoint: resume trains it
  from its start, to the numbers of the uninterrupted run; eval refuses it in one line."""
  run_dir = tmp_path / "stopped"
  run_dir.mkdir()
  shutil.copy(os.path.join(straight[0], "config.json"), run_dir / "config.json")
  with pytest.raises(runner.RunDirError, match="no checkpoint yet"):
    runner.load_states(str(run_dir))
  train.resume(str(run_dir), progress=False)
  a, b = read_progress(straight[0]), read_progress(str(run_dir))
  chex.assert_trees_all_equal(a, b)


def test_a_checkpoint_that_does_not_fit_the_state_is_refused_in_one_line(straight, monkeypatch):
  """A checkpoint written by another version of the agent state (Orbax's multi-line error) is
  one RunDirError naming the iteration and the run."""
  built = runner.init_states

  def one_leaf_reshaped(p):  # as if a newer version had widened one array of the state
    leaves, treedef = jax.tree_util.tree_flatten(built(p))
    leaves[0] = np.zeros(leaves[0].shape + (2,), leaves[0].dtype)
    return jax.tree_util.tree_unflatten(treedef, leaves)

  monkeypatch.setattr(runner, "init_states", one_leaf_reshaped)
  with pytest.raises(runner.RunDirError, match="the checkpoint at iteration 8 of .* does not fit "
                     "the state that ppo-lag builds now") as err:
    runner.load_states(straight[0])
  assert "\n" not in str(err.value)


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
  names = ("episode_return", "episode_cost", "ppo-lag/multiplier")
  chex.assert_trees_all_close({n: cols[n][sel] for n in names}, {n: single[n] for n in names},
                              rtol=1e-5)


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


def _spy_saves(monkeypatch, before=None):
  """Records the iterations ``Checkpointer.save`` is called with (calling ``before(iteration)``
  first); max_to_keep=2 leaves only the last two on disk."""
  saved, save = [], runner.Checkpointer.save

  def spy(self, iteration, state):
    if before is not None:
      before(iteration)
    saved.append(iteration)
    save(self, iteration, state)

  monkeypatch.setattr(runner.Checkpointer, "save", spy)
  return saved


def test_checkpoint_every_saves_every_kth_and_the_last_chunk_and_resumes_exactly(
    straight, tmp_path, monkeypatch):
  """checkpoint_every=2 over 5 chunks saves after chunks 2, 4 and 5. A crash while saving chunk 4
  (the latest checkpoint is chunk 2's, the CSV has rows to chunk 4) loses 2 chunks; the resume
  re-trains them and ends equal to the uninterrupted run."""
  run_dir, crashed = str(tmp_path / "every2"), str(tmp_path / "crashed")

  def snapshot(iteration):  # the run directory as a crash while saving chunk 4 leaves it
    if iteration == 8 and not os.path.exists(crashed):  # (the resume saves chunk 4 again)
      shutil.copytree(run_dir, crashed)

  saved = _spy_saves(monkeypatch, snapshot)
  train.run(_spec(total_steps=10 * 800, checkpoint_every=2), run_dir, progress=False)
  assert saved == [4, 8, 10]
  assert runner.Checkpointer(run_dir)._manager.all_steps() == [8, 10]
  full = read_progress(run_dir)
  first8 = {k: v[full["iteration"] <= 8] for k, v in full.items()}
  for name, values in read_progress(straight[0]).items():  # saving less changes no number
    np.testing.assert_array_equal(first8[name], values, err_msg=name)

  assert runner.Checkpointer(crashed).latest_step() == 4
  saved.clear()
  train.resume(crashed, progress=False)
  assert saved == [8, 10]  # the saved spec's checkpoint_every=2, counted from the resume
  resumed = read_progress(crashed)
  assert sorted(resumed) == sorted(full)
  for name in full:
    np.testing.assert_array_equal(resumed[name], full[name], err_msg=name)


def test_old_config_without_checkpoint_every_loads(straight, tmp_path):
  """A config.json written before RunSpec.checkpoint_every existed still loads (default 1)."""
  import shutil

  old = str(tmp_path / "old")
  shutil.copytree(straight[0], old)
  path = os.path.join(old, "config.json")
  with open(path) as f:
    config = json.load(f)
  assert config["spec"].pop("checkpoint_every") == 1
  with open(path, "w") as f:
    json.dump(config, f)
  p, _, step = runner.load_states(old)
  assert p.spec.checkpoint_every == 1 and step == 8


def test_checkpoint_every_must_be_positive():
  with pytest.raises(runner.ConfigError, match="--checkpoint-every must be >= 1, got 0"):
    runner.plan(_spec(checkpoint_every=0))


def test_divergence_names_the_latest_checkpoint_written(straight, tmp_path, monkeypatch):
  """With checkpoint_every=2 the message names the checkpoint on disk (iteration 4), not the
  last chunk (6); before any checkpoint it says there is none."""
  calls = []

  def fail_at(n):
    def first_nonfinite(metrics, may_be_nan=frozenset(), flags=None):
      calls.append(None)
      return (0, 0, "params_finite", 0.0) if len(calls) == n else None
    return first_nonfinite

  run_dir = str(tmp_path / "diverge")
  monkeypatch.setattr(runner, "_first_nonfinite", fail_at(4))
  with pytest.raises(runner.TrainingDiverged,
                     match=r"iteration 7 .*the last good checkpoint \(iteration 4\)"):
    train.run(_spec(checkpoint_every=2), run_dir, progress=False)
  assert runner.Checkpointer(run_dir).latest_step() == 4
  calls.clear()
  monkeypatch.setattr(runner, "_first_nonfinite", fail_at(1))
  with pytest.raises(runner.TrainingDiverged,
                     match=r"iteration 1 \(.*no checkpoint was written yet"):
    train.run(_spec(checkpoint_every=2), str(tmp_path / "first"), progress=False)


def test_large_state_round_trips_exactly(tmp_path):
  """A state holding a 64 MB array (a replay buffer's size class), small leaves and a zero-size
  leaf restores bit for bit. No time bound: benchmarks/checkpoint_size.py measures the speed
  (~1 s for 280 MB on 2 cores), and a shared CI machine makes any bound either loose or flaky."""
  import jax.numpy as jnp

  state = {"buffer": {"obs": jax.random.normal(jax.random.PRNGKey(0), (1 << 22, 4)),
                      "done": jnp.arange(1 << 10) % 3 == 0},
           "step": jnp.int32(7), "key": jax.random.PRNGKey(1),
           "vases": jnp.zeros((0, 2), jnp.float32)}
  assert state["buffer"]["obs"].nbytes == 64 << 20
  ckpt = runner.Checkpointer(str(tmp_path))
  ckpt.save(3, state)
  restored = ckpt.restore(3, jax.tree_util.tree_map(jnp.zeros_like, state))
  ckpt.close()
  chex.assert_trees_all_equal(restored, state, strict=True)  # structure, dtypes, bits


_SHARDED = textwrap.dedent("""
    import dataclasses, json, os, sys
    import jax
    jax.config.update("jax_compilation_cache_dir", os.environ["JAXSAFE_TEST_XLA_CACHE"])
    from jaxsafe import train
    train.run(train.RunSpec(**json.loads(sys.argv[1])), sys.argv[2], progress=False)
    print(jax.device_count())
""")


@pytest.mark.slow  # 39 s in a subprocess; make test ran 6:54-7:49 of its 8 min on fresh clones
def test_four_cpu_devices_give_the_same_results(straight, tmp_path):
  """The 4 seeds shard over 4 forced host devices and match the single-device run."""
  import dataclasses

  run_dir = str(tmp_path / "four_devices")
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-c", _SHARDED, json.dumps(dataclasses.asdict(_spec())),
                        run_dir], env=env, capture_output=True, text=True, timeout=300,
                       check=False)
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


def test_tuple_overrides_survive_the_config_json_round_trip():
  """A run trained with ``hidden_sizes=(8,)`` in Python records a list in config.json; resume,
  eval and plot rebuild the spec from it, so the list must parse back to the tuple."""
  spec = train.RunSpec("ppo", "function", overrides={"hidden_sizes": (8, 4)})
  again = train.RunSpec(**json.loads(json.dumps(dataclasses.asdict(spec))))
  assert again.overrides["hidden_sizes"] == [8, 4]
  assert runner.plan(again).agent.config.hidden_sizes == (8, 4)
