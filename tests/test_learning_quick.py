"""make test's short learning runs of the gradient-based and off-policy families, on one seed.

Beside tests/test_learning.py's on-policy ones: the two xdist workers take one file at a time, and
the four short runs (~30 s each) in one file kept one worker busy while the other idled.
"""

from __future__ import annotations

import pytest
from learning import GRADIENT_AGENTS, OFF_POLICY_AGENTS, QUICK_CLAIMS, SEEDS, assert_claim


@pytest.mark.parametrize("claim_id", [c for c, claim in QUICK_CLAIMS.items()
                                      if claim.algo in GRADIENT_AGENTS + OFF_POLICY_AGENTS])
def test_family_learns_quickly(claim_id):
  """One short run of CGPO and of SAC-Lag (the claims in tests/learning.py)."""
  assert_claim(claim_id, QUICK_CLAIMS, SEEDS[:1])
