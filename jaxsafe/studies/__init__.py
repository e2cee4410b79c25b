"""Studies of the gradient estimators behind CGPO (Dai et al., "Safe Reinforcement Learning using
Finite-Horizon Gradient-based Estimation", ICML 2024): computations that the scripts in
benchmarks/ print at full size and the tests check at a reduced one.

- ``gbe_vs_abe``: predicting J_C's change after a small step, gradient- vs advantage-based
  (App. C, Fig. 1 and 5);
- ``zobg_vs_fobg``: zeroth- vs first-order gradient estimates per trajectory length (App. B,
  Tables 2-3);
- ``estimator_check``: the short-horizon gradient of a ``FirstOrder`` agent against BPTT's.
"""
