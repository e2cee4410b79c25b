"""The ``jaxsafe`` command line: list, train, eval, plot, and one-line errors with exit code 2."""

import os
import subprocess
import sys

import numpy as np
import pytest

from jaxsafe import agents, envs
from jaxsafe.cli import main
from jaxsafe.train.logger import read_progress


def _run(capsys, *argv):
  code = main(list(argv))
  out, err = capsys.readouterr()
  return code, out, err


def test_list_names_every_algorithm_and_env(capsys):
  code, out, _ = _run(capsys, "list")
  assert code == 0
  for name in ["ppo", "ppo-lag", "pid-lag", "function", "function-floor", "cartpole-position",
               "reacher-position", "halfcheetah-velocity", "ant-velocity", "swimmer-velocity"]:
    assert f"  {name} " in out, name
  assert set(agents.list_agents()) | set(envs.list_envs()) <= set(out.split())


BAD_INPUTS = [
    (["train", "ppo-lagg", "function"], "unknown algorithm 'ppo-lagg' (did you mean: ppo-lag"),
    (["train", "ppo-lag", "functon"], "unknown env id 'functon' (did you mean: function"),
    (["train", "ppo-lag", "function", "--set", "learning_rat=0.1"], "did you mean: learning_rate"),
    (["train", "ppo-lag", "function", "--set", "learning_rate=fast"], "expected a number"),
    (["train", "ppo-lag", "function", "--set", "learning_rate=3"], "out of range"),
    (["train", "ppo-lag", "function", "--set", "num_envs=2.5"], "expected an integer"),
    (["train", "ppo-lag", "function", "--set", "distribution=beta"], "expected one of"),
    (["train", "ppo-lag", "function", "--set", "gamma"], "expected key=value"),
    (["train", "ppo-lag", "function", "--seeds", "0"], "--seeds must be >= 1"),
    (["train", "ppo-lag", "function", "--seeds", "two"], "invalid int value"),
    (["train", "ppo-lag", "function", "--total-steps", "0"], "--total-steps must be >= 1"),
    (["train", "ppo-lag", "function", "--checkpoint-every", "0"],
     "--checkpoint-every must be >= 1, got 0"),
    (["train", "--resume", "/no/such/run", "--checkpoint-every", "2"], "cannot be combined"),
    (["train", "ppo-lag", "function", "--sweep", "num_envs=8,16"], "not a sweepable"),
    (["train", "--resume", "/no/such/run"], "does not exist"),
    (["eval", "/no/such/run"], "does not exist"),
    (["plot", "/no/such/run"], "not a jaxsafe run directory"),
    (["train", "cgpo", "function-floor"], "not differentiable; use mb-cgpo"),
    (["train", "cgpo", "function", "--set", "short_horizon=500"], "exceeds the episode length 100"),
    (["train"], "needs ALGO and ENV"),
    (["train", "ppo-lag", "function", "--env-set", "smooth_cost=true"],
     "function: bad env option(s) ['smooth_cost']"),
    (["train", "ppo-lag", "point-goal", "--env-set", "level"], "--env-set level: expected key"),
    # episode_length is the horizon T as an option or a hyper-parameter, given once (issue 37).
    (["train", "cgpo", "function", "--set", "episode_length=30", "--env-set",
      "episode_length=40"], "the horizon T is given twice, episode_length=30"),
    (["train", "ppo-lag", "function", "--env-set", "episode_length=0"],
     "function: episode_length is 0; expected an int >= 1"),
    (["train", "ppo-lag", "function", "--env-set", "num_envs=4"],
     "env option(s) ['num_envs'] name arguments of envs.make"),
    (["frobnicate"], "invalid choice"),
    # A field another algorithm uses is refused, never accepted silently (issue 12).
    (["train", "cgpo", "function", "--set", "lagrangian_lr=0.1"], "unknown hyper-parameter 'lagrangian_lr'"),
    (["train", "cgpo", "function", "--set", "multiplier_learning_rate=0.1"],
     "'multiplier_learning_rate' is not a hyper-parameter of cgpo (it belongs to ppo-lag, pdo, appo, cup, trpo-lag, shac-lag, bptt-lag)"),
    (["train", "cgpo", "function", "--sweep", "multiplier_learning_rate=0.1,0.2"],
     "'multiplier_learning_rate' is not a hyper-parameter of cgpo"),
    (["train", "ppo", "function", "--sweep", "pid_kp=0.1,0.2"],
     "(it belongs to pid-lag, cvpo, sac-lag, td3-lag, ddpg-lag)"),
    (["train", "bptt-lag", "function", "--set", "short_horizon=5"], "(it belongs to cgpo, mb-cgpo, shac-lag)"),
]


@pytest.mark.parametrize("argv,message", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(capsys, tmp_path, argv, message):
  run_dir = tmp_path / "run"
  extra = ["--run-dir", str(run_dir)] if argv[0] == "train" and len(argv) > 2 else []
  with pytest.raises(SystemExit) if argv[0] == "frobnicate" or "two" in argv else _no_raise():
    code, out, err = _run(capsys, *argv, *extra)
    assert code == 2
    assert err.count("\n") == 1 and message in err, err
    assert "Traceback" not in err and out == ""
  if argv[0] == "frobnicate" or "two" in argv:  # argparse's own errors exit 2 through SystemExit
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
  assert not run_dir.exists()


class _no_raise:
  def __enter__(self):
    return self

  def __exit__(self, *exc):
    return False


def test_entry_point_exit_code_and_single_stderr_line():
  """The installed console script itself (not only main()) exits 2 with one stderr line."""
  exe = os.path.join(os.path.dirname(sys.executable), "jaxsafe")
  out = subprocess.run([exe, "train", "ppo-lag", "cartpole-positon"], capture_output=True,
                       text=True, timeout=120, check=False)
  assert out.returncode == 2
  assert out.stderr.count("\n") == 1 and "did you mean: cartpole-position" in out.stderr
  assert out.stdout == ""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """Acceptance: `jaxsafe train ppo-lag function --seeds 2 --total-steps 100000 --run-dir DIR`."""
  run_dir = str(tmp_path_factory.mktemp("cli") / "DIR")
  code = main(["train", "ppo-lag", "function", "--seeds", "2", "--total-steps", "100000",
               "--run-dir", run_dir, "--quiet"])
  assert code == 0
  return run_dir


def test_train_writes_progress_tensorboard_and_checkpoint(trained):
  cols = read_progress(trained)
  for name in ("seed", "env_steps", "episode_return", "episode_cost", "cost_limit"):
    assert name in cols, name
  assert set(cols["seed"]) == {0.0, 1.0}
  assert cols["env_steps"].max() >= 100_000
  assert np.isfinite(cols["episode_cost"]).all()
  events = [f for d, _, fs in os.walk(os.path.join(trained, "tb")) for f in fs if "tfevents" in f]
  assert len(events) == 2
  assert os.listdir(os.path.join(trained, "checkpoints"))
  assert os.path.exists(os.path.join(trained, "summary.json"))


def test_eval_reports_mean_and_std_per_seed(trained, capsys):
  code, out, _ = _run(capsys, "eval", trained, "--episodes", "3")
  assert code == 0
  lines = [l for l in out.splitlines() if l.startswith("setting")]
  assert len(lines) == 2 and all("+-" in l and "deterministic" in l for l in lines)


def test_eval_video_refuses_a_task_it_cannot_draw(trained, tmp_path, capsys):
  gif = tmp_path / "x.gif"
  code, _, err = _run(capsys, "eval", trained, "--video", str(gif))
  assert code == 2 and err.count("\n") == 1 and "navigation tasks only" in err
  assert "point-goal" in err and not gif.exists()


def test_plot_writes_png(trained, tmp_path, capsys):
  out_png = str(tmp_path / "curves.png")
  code, out, _ = _run(capsys, "plot", trained, "--out", out_png)
  assert code == 0 and out_png in out
  with open(out_png, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert os.path.getsize(out_png) > 10_000


@pytest.mark.parametrize("algo", ["ppo-lag", "cppo", "cgpo"])
def test_optional_hyper_parameters_are_parsed_from_strings(algo):
  """`--set cost_limit=5` gives the float 5.0 whether the field is Optional[float] or float | None."""
  config = agents.make(algo, "function", cost_limit="5").config
  assert config.cost_limit == 5.0 and isinstance(config.cost_limit, float)


def test_eval_on_another_task_of_the_same_sizes(trained, capsys):
  code, out, _ = _run(capsys, "eval", trained, "--episodes", "2", "--env", "function-floor")
  assert code == 0 and "evaluated on function-floor" in out
  assert len([l for l in out.splitlines() if l.startswith("setting")]) == 2


def test_eval_refuses_a_task_of_other_sizes_and_options_without_env(trained, capsys):
  code, _, err = _run(capsys, "eval", trained, "--env", "point-goal")
  assert code == 2 and err.count("\n") == 1 and "observation size is 1, the task's 55" in err
  code, _, err = _run(capsys, "eval", trained, "--env-set", "fixed_layout=true")
  assert code == 2 and "--env-set needs --env" in err
