"""Safety-Gymnasium's Point robot in JAX (envs/navigation/mujoco_point.py) against MuJoCo itself.

Needs the robot's MJCF from the ``safety-gymnasium`` extra (read as a file: Safety-Gymnasium is
not imported) and MuJoCo (a Brax dependency). The comparison runs in float64.
"""

import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsafe.envs.navigation import mujoco_point

mujoco = pytest.importorskip("mujoco")
_SPEC = importlib.util.find_spec("safety_gymnasium")
#: compiled once per dtype (float64 under ``jax.enable_x64``), shared by the tests
STEP = jax.jit(mujoco_point.step)
pytestmark = pytest.mark.skipif(_SPEC is None, reason="needs the safety-gymnasium extra")


@pytest.fixture(scope="module")
def model():
  path = os.path.join(os.path.dirname(_SPEC.origin), "assets", "xmls", "point.xml")
  with open(path) as f:
    return mujoco.MjModel.from_xml_string(f.read())


def rollout_errors(model, actions):
  """Per env step, the largest |qpos| and |qvel| difference between MuJoCo and ``step``."""
  data = mujoco.MjData(model)
  with jax.enable_x64(True):
    qpos, qvel = jnp.zeros(3), jnp.zeros(3)
    errors = []
    for action in actions:
      data.ctrl[:] = action
      for _ in range(mujoco_point.FRAME_SKIP):
        mujoco.mj_step(model, data)
      qpos, qvel = STEP(qpos, qvel, jnp.asarray(action))
      errors.append((np.abs(data.qpos - np.asarray(qpos)).max(),
                     np.abs(data.qvel - np.asarray(qvel)).max()))
  return np.array(errors)


def test_constants_are_the_models(model):
  assert model.opt.timestep == mujoco_point.TIMESTEP
  np.testing.assert_allclose(model.body_mass[1], mujoco_point.MASS, rtol=1e-12)
  np.testing.assert_allclose(model.body_ipos[1], [mujoco_point.COM, 0.0, 0.0], atol=1e-12)
  np.testing.assert_allclose(model.dof_damping, mujoco_point.DAMPING)
  np.testing.assert_allclose(model.actuator_gear[:, 0], mujoco_point.GEAR)
  np.testing.assert_allclose(model.actuator_forcerange, mujoco_point.FORCE_LIMIT * np.array([[-1, 1]] * 2))


def test_equals_mujoco_to_rounding_over_100_env_steps(model):
  # Below the force clamps (|u| < 0.05) the dynamics are smooth, so rounding does not grow.
  actions = np.random.default_rng(0).uniform(-0.04, 0.04, (100, 2))
  errors = rollout_errors(model, actions)
  assert errors.max() < 1e-12, errors.max(0)


def test_equals_mujoco_under_saturating_actions_until_chaos(model):
  # Full-range actions saturate both actuators; the yaw servo chatters on its clamp, and after
  # some tens of env steps rounding differences flip a clamp (MJX and MuJoCo part ways likewise).
  actions = np.random.default_rng(1).uniform(-1.0, 1.0, (10, 2))
  errors = rollout_errors(model, actions)
  assert errors.max() < 1e-9, errors.max(0)


def test_forward_push_saturates_from_five_percent_of_the_action_range():
  def speed_after(push):
    qpos, qvel = jnp.zeros(3), jnp.zeros(3)
    for _ in range(5):
      qpos, qvel = STEP(qpos, qvel, jnp.array([push, 0.0]))
    return float(jnp.hypot(qvel[0], qvel[1]))

  assert speed_after(0.05) == speed_after(1.0) > 0.2
  np.testing.assert_allclose(speed_after(0.02), 0.4 * speed_after(0.05), rtol=1e-5)
