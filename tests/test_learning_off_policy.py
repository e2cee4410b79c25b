"""Learning tests of the off-policy agents (cvpo, sac-lag, td3-lag, ddpg-lag): their claims of
tests/learning.py on 3 seeds, shifted by ``JAXSAFE_SEED_OFFSET`` (see test_learning.py)."""

from __future__ import annotations

import pytest
from learning import CLAIMS, OFF_POLICY_AGENTS, assert_claim

#: learning runs execute for tens of seconds: compiled optimised even in `make test` (conftest.py).
RUNS_LONG_PROGRAMS = True

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("claim_id", [c for c, claim in CLAIMS.items()
                                      if claim.algo in OFF_POLICY_AGENTS])
def test_claim(claim_id):
  assert_claim(claim_id)
