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


    class Drift(envs.Env):
      """Reach whose T and b are options, set in __init__ (no class attributes for them)."""

      differentiable = True
      observation_size = 2
      action_size = 1

      def __init__(self, cost_limit: float = 5.0, episode_length: int = 50):
        self.target = 1.0
        self.cost_limit = float(cost_limit)
        self.episode_length = int(episode_length)

      reset = Reach.reset
      step = Reach.step


    class NeverSetsCostLimit(envs.Env):
      differentiable = True
      observation_size = 2
      action_size = 1

      def __init__(self, episode_length: int = 20):
        self.episode_length = episode_length

      reset = Reach.reset
      step = Reach.step


    class FloatHorizon(Reach):
      episode_length = 2.5


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


def test_a_missing_method_or_a_mistyped_class_constant_is_refused_at_registration(
    user_folder, fresh_registry):
  import importlib
  module = importlib.import_module(MODULE)
  with pytest.raises(TaskContractError, match="task 'no-step': NoStep does not implement step"):
    envs.register("no-step", module.NoStep)
  with pytest.raises(TaskContractError, match=r"task 'float-t': FloatHorizon.episode_length is "
                     r"2.5; expected an int >= 1 \(the horizon T\)"):
    envs.register("float-t", module.FloatHorizon)
  with pytest.raises(TaskContractError, match="is not a subclass of jaxsafe.envs.Env"):
    envs.register("not-env", dict)
  with pytest.raises(TaskContractError, match="is not callable"):
    envs.register("not-callable", 3)
  assert not {"no-step", "float-t"} & set(envs.list_envs())


def test_a_constant_set_nowhere_is_named_at_the_first_make(user_folder, fresh_registry):
  """The class may leave a constant to ``__init__``, so registration accepts it; the first build
  names the task, the field and where to declare it, in one line."""
  import importlib
  module = importlib.import_module(MODULE)
  for name in ("NoCostLimit", "NeverSetsCostLimit"):
    envs.register(f"user-{name}", getattr(module, name))
    with pytest.raises(TaskContractError) as err:
      envs.make(f"user-{name}")
    assert str(err.value) == (
        f"task 'user-{name}': {name} does not declare cost_limit, a finite number (the episode "
        "cost limit b): set it as a class attribute or in __init__ (self.cost_limit = ...)")


def test_constants_set_in_init_from_options(user_folder, fresh_registry):
  """T and b as constructor options: registered, built with the options (per options checked),
  and ``make``'s own ``episode_length`` reaches the constructor, so task and time limit agree."""
  import importlib
  module = importlib.import_module(MODULE)
  envs.register("drift", module.Drift)
  default = envs.make("drift")
  assert (default.episode_length, default.cost_limit) == (50, 5.0)
  env = envs.make("drift", num_envs=2, cost_limit=3, episode_length=40)
  assert (env.episode_length, env.cost_limit, env.unwrapped.episode_length) == (40, 3.0, 40)
  assert envs.make("drift", **envs.registry.make_arguments(
      {"episode_length": 40}, episode_length=None)).unwrapped.episode_length == 40
  with pytest.raises(TaskContractError, match="task 'drift': cost_limit is nan; expected a "
                     "finite number"):
    envs.make("drift", cost_limit=float("nan"))  # checked again for other options
  with pytest.raises(ValueError, match="drift: episode_length is 0; expected an int >= 1"):
    envs.make("drift", episode_length=0)
  assert envs.make(f"{MODULE}:Reach", episode_length=7).episode_length == 7  # no such option


def test_make_arguments_give_the_horizon_one_meaning():
  merge = envs.registry.make_arguments
  assert merge({"episode_length": 40, "level": 2}, num_envs=4, episode_length=None) == {
      "num_envs": 4, "episode_length": 40, "level": 2}
  assert merge({"episode_length": 40}, episode_length=40)["episode_length"] == 40
  assert merge(None, num_envs=4) == {"num_envs": 4, "episode_length": None}
  with pytest.raises(ValueError, match="the horizon T is given twice, episode_length=30 .* and "
                     "episode_length=40 \\(a task option\\): give it once"):
    merge({"episode_length": 40}, episode_length=30)
  for name in ("num_envs", "auto_reset", "env_id"):
    with pytest.raises(ValueError, match=f"env option\\(s\\) \\['{name}'\\] name arguments "
                       "of envs.make"):
      merge({name: 1}, num_envs=4)


@pytest.mark.parametrize("algo", ["ppo-lag", "cgpo", "sac-lag"])
def test_a_run_of_options_for_t_and_b_records_the_values_used(user_folder, fresh_registry,
                                                               algo):
  """On-policy, first-order and off-policy agents take T and b from the options; the run's
  config.json records them (what eval and resume rebuild); a built-in task takes
  ``episode_length`` as an option too (its time limit)."""
  import importlib
  module = importlib.import_module(MODULE)
  envs.register("drift-run", module.Drift)
  p = train.runner.plan(train.RunSpec(algo, "drift-run", total_steps=2000, env_options={
      "cost_limit": 3, "episode_length": 40}))
  config = json.loads(json.dumps(train.runner.config_record(p), default=str))
  assert (config["task"]["episode_length"], config["task"]["cost_limit"]) == (40, 3.0)
  assert config["agent_config"]["cost_limit"] == 3.0
  assert list(np.asarray(_replan(config, "drift-run-dir").hparams.cost_limit)) == [3.0]
  built_in = train.runner.plan(train.RunSpec(algo, "cruise", env_options={"episode_length": 40}))
  assert built_in.agent.env.episode_length == 40


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
  """Each command in a fresh process; eval and resume from another folder than the module's.
  The task's T and b are options set in its ``__init__`` (issue 37): the run records them."""
  run_dir, elsewhere = str(tmp_path / "run"), str(tmp_path)
  code, out, err = _cli("train", "ppo-lag", f"{MODULE}:Drift", "--env-set", "cost_limit=3",
                        "--env-set", "episode_length=40", "--total-steps", "2000",
                        "--run-dir", run_dir, "--quiet", cwd=user_folder)
  assert code == 0, err
  assert "(limit 3;" in out
  with open(os.path.join(run_dir, "config.json")) as f:
    task = json.load(f)["task"]
  assert (task["episode_length"], task["cost_limit"]) == (40, 3.0)
  code, out, err = _cli("eval", run_dir, "--episodes", "2", cwd=elsewhere)
  assert code == 0, err
  assert "(limit 3, 2 episodes" in out
  code, out, err = _cli("train", "--resume", run_dir, "--total-steps", "4000", "--quiet",
                        cwd=elsewhere)
  assert code == 0, err
  with open(os.path.join(run_dir, "summary.json")) as f:
    summary = json.load(f)
  assert summary["env_steps_per_run"] >= 4000 and summary["episode_length"] == 40
  code, _, err = _cli("train", "ppo-lag", "no_such_module_xyz:Task", cwd=elsewhere)
  assert code == 2
  assert err.count("\n") == 1 and "cannot import module" in err
