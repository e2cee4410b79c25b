"""``envs.to_gymnasium``: a jaxsafe task as a Gymnasium vector env (envs/gymnasium_export.py).

Gymnasium's own checker, ``gymnasium.utils.env_checker.check_env``, is written for single envs
with the five-tuple ``step``; it runs here on ``FirstEnv``, a thin single-env view of the export
(``num_envs=1``, the cost moved into ``info``), and checks the spaces, the reset signature and
return types, seeding through ``np_random``, and the passive step checks. The vector API itself
(batched spaces, the six-tuple ``step``, dtypes, autoreset, identical numbers for equal seeds) is
checked by hand below with Gymnasium's ``data_equivalence``.
"""

import inspect
import sys

import numpy as np
import pytest

from jaxsafe import envs
from jaxsafe.envs import gymnasium_export
from jaxsafe.envs.safety_gymnasium import INSTALL_HINT, is_available

requires_extra = pytest.mark.skipif(not is_available(), reason=INSTALL_HINT)

NUM_ENVS = 4
#: jaxsafe ids that compile fast enough for the suite; the navigation tasks join once registered.
IDS = ["function"] + [i for i in ("point-goal",) if i in envs.list_envs()]


@pytest.fixture(scope="module", params=IDS)
def vec(request):
  env = envs.to_gymnasium(request.param, NUM_ENVS)
  yield env
  env.close()


@requires_extra
def test_is_a_gymnasium_vector_env_with_float32_box_spaces(vec):
  import gymnasium
  assert isinstance(vec, gymnasium.vector.VectorEnv) and vec.num_envs == NUM_ENVS
  obs_size, act_size = vec.env.observation_size, vec.env.action_size
  for space, shape in ((vec.single_observation_space, (obs_size,)),
                       (vec.single_action_space, (act_size,)),
                       (vec.observation_space, (NUM_ENVS, obs_size)),
                       (vec.action_space, (NUM_ENVS, act_size))):
    assert isinstance(space, gymnasium.spaces.Box) and space.dtype == np.float32
    assert space.shape == shape
  np.testing.assert_array_equal(vec.single_action_space.low, -1.0)
  np.testing.assert_array_equal(vec.single_action_space.high, 1.0)


@requires_extra
def test_reset_and_step_signatures_and_return_types(vec):
  params = inspect.signature(vec.reset).parameters
  assert params["seed"].default is None and params["options"].default is None
  obs, info = vec.reset(seed=0)
  assert isinstance(info, dict)
  assert isinstance(obs, np.ndarray) and obs.dtype == np.float32 and obs in vec.observation_space
  out = vec.step(vec.action_space.sample())
  assert isinstance(out, tuple) and len(out) == 6
  obs, reward, cost, terminated, truncated, info = out
  assert obs.dtype == np.float32 and obs in vec.observation_space
  for x, dtype in ((reward, np.float32), (cost, np.float32), (terminated, np.bool_),
                   (truncated, np.bool_)):
    assert isinstance(x, np.ndarray) and x.shape == (NUM_ENVS,) and x.dtype == dtype
  assert np.isfinite(reward).all() and np.isfinite(cost).all() and isinstance(info, dict)


@requires_extra
def test_autoreset_at_the_time_limit(vec):
  obs, _ = vec.reset(seed=1)
  zeros = np.zeros(vec.action_space.shape, np.float32)
  for _ in range(vec.episode_length - 1):
    obs, _, _, terminated, truncated, info = vec.step(zeros)
    assert not terminated.any() and not truncated.any() and info == {}
  obs, _, _, terminated, truncated, info = vec.step(zeros)
  assert truncated.all() and not terminated.any()
  np.testing.assert_array_equal(info["_final_observation"], True)
  final = np.stack(info["final_observation"])
  assert final.dtype == np.float32 and final.shape == obs.shape
  assert not np.allclose(final, obs)  # obs already starts the next episode
  obs, _, _, terminated, truncated, info = vec.step(zeros)
  assert not truncated.any() and info == {}


@requires_extra
def test_equal_seeds_give_identical_numbers(vec):
  from gymnasium.utils.env_checker import data_equivalence

  def run(seed):
    obs, _ = vec.reset(seed=seed)
    actions = np.random.default_rng(0).uniform(-1, 1, (5, *vec.action_space.shape))
    return [obs] + [vec.step(a.astype(np.float32))[:5] for a in actions]

  first = run(7)
  assert data_equivalence(first, run(7))
  assert not data_equivalence(first[0], run(8)[0])
  # Without a seed, resets continue the seeded stream: still reproducible.
  vec.reset(seed=7)
  again, _ = vec.reset()
  vec.reset(seed=7)
  assert data_equivalence(again, vec.reset()[0])


@requires_extra
def test_gymnasium_env_checker_on_a_single_env_view():
  import gymnasium
  from gymnasium.utils.env_checker import check_env

  class FirstEnv(gymnasium.Env):
    """``to_gymnasium(id, 1)`` as a single Gymnasium env (five-tuple step, cost in info)."""

    def __init__(self, env_id):
      self.vec = envs.to_gymnasium(env_id, 1)
      self.observation_space = self.vec.single_observation_space
      self.action_space = self.vec.single_action_space

    def reset(self, *, seed=None, options=None):
      super().reset(seed=seed)
      obs, info = self.vec.reset(seed=None if seed is None else seed)
      return obs[0], info

    def step(self, action):
      obs, reward, cost, terminated, truncated, _ = self.vec.step(action[None])
      return obs[0], float(reward[0]), bool(terminated[0]), bool(truncated[0]), {"cost": cost[0]}

  env = FirstEnv("function")
  check_env(env, skip_render_check=True)
  env.vec.close()
  assert env.vec.closed


def test_missing_gymnasium_names_the_install_command(monkeypatch):
  gymnasium_export._vector_env_class.cache_clear()
  monkeypatch.setitem(sys.modules, "gymnasium", None)  # import fails as if absent
  try:
    with pytest.raises(ImportError, match=r"pip install jaxsafe\[safety-gymnasium\]"):
      envs.to_gymnasium("function", 2)
  finally:
    gymnasium_export._vector_env_class.cache_clear()
