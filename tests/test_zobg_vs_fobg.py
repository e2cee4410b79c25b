"""ZoBG vs FoBG (CGPO App. B, Tables 2-3, Eq. 69/73/74) on a reduced setting of
benchmarks/zobg_vs_fobg.py.

Policy: gbe_vs_abe's ``feedback_policy`` (holds x near -1.1). Reduced setting: lengths 1, 2, 100,
|delta| = 0.01 (delta^ = 1e-4), R = 10, N = 64, M = 1024. Measured at this setting, seeds 0/1/2:
FoBG error 0.079/0.108/0.097 at L = 2 and 0.011/0.013/0.015 at L = 100; plain ZoBG
21.5/46.1/20.4 at L = 2 and 1.13/0.63/1.56 at L = 100 (ZoBG/FoBG at L = 100: 48-108x).
At the benchmark's full size (R = 30, N = 128, M = 2048): FoBG 0.055 (L = 2), 0.012 (L = 100);
ZoBG 12.7 (L = 2), 0.84 (L = 100).

What is asserted is what holds robustly: FoBG predicts the change at L = 100 (< 0.1) and ZoBG's
error there is >= 10x FoBG's. The paper's other finding, ZoBG good at short lengths and bad at long
ones, does *not* hold on jaxsafe's ``function`` with this policy (ZoBG's error falls with L: the
short episodes' cost is dominated by the policy-independent f(x_0), pure noise in Eq. 69), so it is
not asserted; the test pins the opposite, measured, ordering loosely instead. At L = 1 the cost
f(x_0) does not depend on theta, so FoBG's gradient and the measured change are exactly 0.
"""

from __future__ import annotations

import numpy as np
import pytest

from jaxsafe.studies import gbe_vs_abe, zobg_vs_fobg

pytestmark = pytest.mark.slow  # a benchmark-backed claim: the slow tier (make test-slow)

SETTINGS = zobg_vs_fobg.Settings(lengths=(1, 2, 100), radii_sq=(1e-4,), repetitions=10,
                                 num_episodes=64, truth_episodes=1024)


@pytest.fixture(scope="module")
def results():
  return zobg_vs_fobg.run(SETTINGS, log=lambda *_: None)


def mean_error(results, length, name):
  return float(np.mean(zobg_vs_fobg.errors(results[length], name)[:, 0]))


def test_length_one_cost_does_not_depend_on_theta(results):
  out = results[1]
  assert np.all(out["fobg_norm"] == 0.0)
  assert np.all(out["fobg_measured"] == 0.0) and np.all(out["zobg_measured"] == 0.0)
  assert np.all(np.isnan(zobg_vs_fobg.errors(out, "zobg")))
  assert out["raw_mismatch"].max() < 1e-5  # Eq. 69's log-probs are of the very samples drawn


def test_fobg_predicts_the_change_and_zobg_does_not(results):
  out = results[100]
  # The measured change is real and well resolved by common random numbers.
  for name in zobg_vs_fobg.ESTIMATORS:
    assert np.median(out[f"{name}_se"][:, 0] / np.abs(out[f"{name}_measured"][:, 0])) < 0.02

  fobg = mean_error(results, 100, "fobg")
  zobg = mean_error(results, 100, "zobg")
  assert fobg < 0.1  # measured 0.011-0.015
  assert zobg >= 10 * fobg  # measured 0.63-1.56, i.e. 48-108x

  # The ZoBG code is right, its failure is variance: with a constant (leave-one-out mean)
  # baseline the same estimator predicts the change to 0.16-0.19 (seeds 0-2; full size: 0.13);
  # a sign-flipped or mis-scaled score function would give >= 0.5.
  assert mean_error(results, 100, "zobg_b") < 0.5

  # Broken FoBG (wrong sign, twice or half the scale) misses the threshold.
  measured, predicted = out["fobg_measured"][:, 0], out["fobg_predicted"][:, 0]
  for broken in (-predicted, 2.0 * predicted, 0.5 * predicted):
    assert gbe_vs_abe.relative_error(measured, broken).mean() > 0.3

  # At L = 2 FoBG still predicts the change (measured 0.08-0.11) while ZoBG is far off (>= 20).
  assert mean_error(results, 2, "fobg") < 0.2
  assert mean_error(results, 2, "zobg") > 2.0
  # On this env ZoBG's error *falls* with L (the opposite of the paper's Table 2).
  assert mean_error(results, 2, "zobg") > mean_error(results, 100, "zobg")
