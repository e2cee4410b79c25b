"""A user's own CMDP, end to end (issue 18): named by import path or registered, checked against
the ``Env`` contract with errors that name the task and the field, found again by runs in a new
process, and with the run's cost limit fixed by its config.json.

The tasks live in a module written to a temporary folder, outside the package, as a user's
would. The command line in fresh processes is in the slow tier (three compiles).
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from jaxsafe import envs, train
from jaxsafe.envs import registry
from jaxsafe.envs.contract import TaskContractError

MODULE = "jaxsafe_user_tasks_example"
SOURCE = textwrap.dedent('''
    """A user's own tasks (written by tests/test_user_tasks.py)."""
    import jax
    import jax.numpy as jnp

    from jaxsafe import envs


    class Reach(envs.Env):
      """1-D point mass reaches x = target; cost = 10 v^2."""

      episode_length = 20
      cost_limit = 2.0
      differentiable = True
      observation_size = 2
      action_size = 1

      def __init__(self, target: float = 1.0):
        self.target = target

      def reset(self, key):
        s = jax.random.uniform(key, (2,), minval=-0.1, maxval=0.1)
        zero = jnp.zeros(())
        return envs.State(sim_state=s, obs=s, reward=zero, cost=zero, done=zero)

      def step(self, state, action):
        x, v = state.sim_state
        v = v + 0.1 * jnp.clip(action[0], -1.0, 1.0)
        s = jnp.stack([x + 0.1 * v, v])
        return state.replace(sim_state=s, obs=s, reward=-(s[0] - self.target) ** 2,
                             cost=10.0 * v ** 2, done=jnp.zeros(()))


    def make_reach(target: float = 0.5):
      """Reach, built by a factory function."""
      return Reach(target)


    class RewardOfShapeOne(Reach):
      def step(self, state, action):
        out = super().step(state, action)
        return out.replace(reward=out.reward[None])


    class BoolDone(Reach):
      def step(self, state, action):
        out = super().step(state, action)
        return out.replace(done=out.done > 0)


    class WrongObservationSize(Reach):
      observation_size = 3


    class MetricOnlyInStep(Reach):
      def step(self, state, action):
        out = super().step(state, action)
        return out.replace(metrics={"distance": jnp.abs(out.obs[0])})


    class NoCostLimit(envs.Env):
      episode_length = 20
      differentiable = True
      observation_size = 2
      action_size = 1

      def reset(self, key):
        raise NotImplementedError

      def step(self, state, action):
        raise NotImplementedError


    class NoStep(envs.Env):
      episode_length = 20
      cost_limit = 1.0
      differentiable = True
      observation_size = 2
      action_size = 1

      def reset(self, key):
        raise NotImplementedError


    class ConstructorBug(Reach):
      def __init__(self):
        super().__init__(targett=1.0)  # the user's own TypeError


    def not_a_task():
      return 42
''')


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory):
  folder = tmp_path_factory.mktemp("user_tasks")
  (folder / f"{MODULE}.py").write_text(SOURCE)
  sys.path.insert(0, str(folder))
  yield folder
  sys.path.remove(str(folder))
  sys.modules.pop(MODULE, None)


@pytest.fixture
def fresh_registry(monkeypatch):
  """Registrations and imports made by a test vanish after it."""
  monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
  monkeypatch.setattr(registry, "_IMPORTED", {})
  monkeypatch.setattr(registry, "_CHECKED", set())


def test_an_import_path_names_a_class_or_a_factory(user_folder, fresh_registry):
  env = envs.make(f"{MODULE}:Reach", num_envs=3)
  assert (env.observation_size, env.action_size, env.episode_length) == (2, 1, 20)
  assert envs.make(f"{MODULE}:make_reach").unwrapped.target == 0.5
  assert envs.make(f"{MODULE}:Reach", target=3.0).unwrapped.target == 3.0
  with pytest.raises(envs.UnknownEnvError, match="has no attribute 'Rech'"):
    envs.make(f"{MODULE}:Rech")
  with pytest.raises(envs.UnknownEnvError, match="cannot import module 'no_such_module_xyz'"):
    envs.make("no_such_module_xyz:Task")
  with pytest.raises(envs.UnknownEnvError, match="module.path:Class"):
    envs.make("reach_that_is_nowhere")


def test_register_twice_needs_replace_except_from_the_same_definition(user_folder,
                                                                     fresh_registry):
  import importlib
  module = importlib.import_module(MODULE)
  envs.register("user-reach", module.Reach)
  assert envs.list_envs()["user-reach"] == "1-D point mass reaches x = target; cost = 10 v^2."
  with pytest.warns(UserWarning, match=f"replaced its registration from {MODULE}:Reach"):
    envs.register("user-reach", module.Reach)  # a notebook cell run again
  with pytest.raises(ValueError, match=f"already registered \\({MODULE}:Reach\\); pass "
                     "replace=True"):
    envs.register("user-reach", module.make_reach)
  envs.register("user-reach", module.make_reach, "reach, half way", replace=True)
  assert envs.make("user-reach").unwrapped.target == 0.5
  with pytest.raises(ValueError, match="'function' is already registered \\(a built-in task\\)"):
    envs.register("function", module.Reach)
  for bad_id in ("my:task", "sg/mine", " padded", ""):
    with pytest.raises(ValueError, match="env id"):
      envs.register(bad_id, module.Reach)


def test_a_missing_constant_or_method_is_refused_at_registration(user_folder, fresh_registry):
  import importlib
  module = importlib.import_module(MODULE)
  with pytest.raises(TaskContractError, match="task 'no-limit': NoCostLimit does not declare "
                     "cost_limit; expected cost_limit: a finite number"):
    envs.register("no-limit", module.NoCostLimit)
  with pytest.raises(TaskContractError, match="task 'no-step': NoStep does not implement step"):
    envs.register("no-step", module.NoStep)
  with pytest.raises(TaskContractError, match="is not a subclass of jaxsafe.envs.Env"):
    envs.register("not-env", dict)
  with pytest.raises(TaskContractError, match="is not callable"):
    envs.register("not-callable", 3)
  assert "no-limit" not in envs.list_envs()


def test_a_constructor_type_error_is_reported_as_the_tasks_own(user_folder, fresh_registry):
  with pytest.raises(TaskContractError, match=f"task '{MODULE}:ConstructorBug': building it "
                     "raised TypeError: .*unexpected keyword argument 'targett'"):
    envs.make(f"{MODULE}:ConstructorBug")
  # An option the task does not take stays a bad option, with the task's options listed.
  with pytest.raises(ValueError, match=r"bad env option\(s\) \['targt'\] .*the task's options: "
                     "target"):
    envs.make(f"{MODULE}:Reach", targt=2.0)
  with pytest.raises(TaskContractError, match="the factory returned int; expected a "
                     "jaxsafe.envs.Env"):
    envs.make(f"{MODULE}:not_a_task")


@pytest.mark.parametrize("name, message", [
    ("RewardOfShapeOne", (r"step\(state, action\) returned reward of shape \(1,\) and dtype "
                          r"float32; expected a scalar float, shape \(\)")),
    ("BoolDone", (r"step\(state, action\) returned done of shape \(\) and dtype bool; expected "
                  r"a scalar float")),
    ("WrongObservationSize", (r"reset\(key\) returned obs of shape \(2,\) .* expected a float "
                              r"array of shape \(3,\) \(observation_size\)")),
    ("MetricOnlyInStep", (r"step\(state, action\) returned a State whose .* differ from "
                          r"reset's .* metrics: keys \[\] after reset, \['distance'\] after step")),
])
def test_shape_and_type_slips_name_the_task_and_the_field(user_folder, fresh_registry, name,
                                                           message):
  with pytest.raises(TaskContractError, match=f"task '{MODULE}:{name}': {message}"):
    envs.make(f"{MODULE}:{name}")


def test_an_entry_point_adds_a_listed_task(user_folder, fresh_registry, tmp_path, monkeypatch):
  dist = tmp_path / "user_tasks_pkg-0.1.dist-info"
  dist.mkdir()
  (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: user-tasks-pkg\nVersion: 0.1\n")
  (dist / "entry_points.txt").write_text(f"[jaxsafe.envs]\nep-reach = {MODULE}:make_reach\n")
  monkeypatch.syspath_prepend(str(tmp_path))
  assert "ep-reach" in envs.list_envs()
  assert "entry point of user-tasks-pkg" in envs.list_envs()["ep-reach"]
  assert envs.make("ep-reach").unwrapped.target == 0.5


@pytest.fixture
def user_run_config(user_folder, fresh_registry, tmp_path):
  """The config.json a ppo-lag run of the user's task (registered under an id) writes, and the
  task's module; nothing is trained (the CLI test in the slow tier trains, evaluates, resumes)."""
  import importlib
  module = importlib.import_module(MODULE)
  envs.register("user-reach-run", module.Reach)
  p = train.runner.plan(train.RunSpec("ppo-lag", "user-reach-run", total_steps=2000))
  config = json.loads(json.dumps(train.runner.config_record(p), default=str))
  return config, module, str(tmp_path)


def _replan(config, run_dir):
  return train.runner._replan(train.RunSpec(**config["spec"]), config, run_dir)


def test_a_run_records_its_task_and_keeps_its_cost_limit(user_run_config, monkeypatch):
  config, module, run_dir = user_run_config
  task = config["task"]
  assert task["source"]["module"] == MODULE and task["source"]["qualname"] == "Reach"
  assert (task["cost_limit"], task["episode_length"]) == (2.0, 20)
  assert config["agent_config"]["cost_limit"] == 2.0
  monkeypatch.setattr(module.Reach, "cost_limit", 7.0)  # the user edits the task's default b
  assert list(np.asarray(_replan(config, run_dir).hparams.cost_limit)) == [2.0]
  monkeypatch.setattr(module.Reach, "episode_length", 30)
  with pytest.raises(train.runner.RunDirError, match="has changed since the run was made "
                     r"\(episode_length 20 then, 30 now\)"):
    _replan(config, run_dir)


def test_a_run_of_a_task_registered_in_a_script_says_how_to_load_it(user_run_config):
  config, _, run_dir = user_run_config
  del registry._REGISTRY["user-reach-run"]  # a new process: the script that registered it is gone
  config["task"]["source"]["module"] = "__main__"
  with pytest.raises(envs.UnknownEnvError, match="registered by a script or notebook"):
    _replan(config, run_dir)


#: the installed console script, which (unlike ``python -m``) does not put the cwd on sys.path.
_SCRIPT = os.path.join(os.path.dirname(sys.executable), "jaxsafe")
CLI = [_SCRIPT] if os.path.exists(_SCRIPT) else [sys.executable, "-m", "jaxsafe"]


def _cli(*args, cwd):
  """The command line in a fresh process, without PYTHONPATH: (exit code, stdout, stderr)."""
  out = subprocess.run(CLI + list(args), cwd=cwd, env={**os.environ, "PYTHONPATH": ""},
                       capture_output=True, text=True, check=False)
  return out.returncode, out.stdout, out.stderr


@pytest.mark.slow
def test_the_cli_trains_evaluates_and_resumes_a_task_from_a_module(user_folder, tmp_path):
  """Each command in a fresh process; eval and resume from another folder than the module's."""
  run_dir, elsewhere = str(tmp_path / "run"), str(tmp_path)
  code, out, err = _cli("train", "ppo-lag", f"{MODULE}:Reach", "--total-steps", "2000",
                        "--run-dir", run_dir, "--quiet", cwd=user_folder)
  assert code == 0, err
  assert "(limit 2;" in out
  code, out, err = _cli("eval", run_dir, "--episodes", "2", cwd=elsewhere)
  assert code == 0, err
  assert "(limit 2, 2 episodes" in out
  code, out, err = _cli("train", "--resume", run_dir, "--total-steps", "4000", "--quiet",
                        cwd=elsewhere)
  assert code == 0, err
  with open(os.path.join(run_dir, "summary.json")) as f:
    assert json.load(f)["env_steps_per_run"] >= 4000
  code, _, err = _cli("train", "ppo-lag", "no_such_module_xyz:Task", cwd=elsewhere)
  assert code == 2
  assert err.count("\n") == 1 and "cannot import module" in err
