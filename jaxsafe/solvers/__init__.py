"""The papers' exact sub-problems, each a pure, jittable solver tested against scipy or dense
float64 linear algebra (tests/test_solvers_vs_scipy.py and one test file per solver):

- ``trust_region``: CGPO's trust-region sub-problem in closed form (Dai et al. 2024, Theorem 5.1),
  also in a metric for CPO's linearised step;
- ``ratio_region``: CPPO's E-step over the centred probability ratios (Eq. 4a-4b);
- ``action_weights``: CVPO's E-step, the convex dual over sampled actions (Eq. 8-9);
- ``weighted_fit``: CVPO's M-step, a Gaussian fitted under decoupled KL bounds (Eq. 53-58);
- ``natural_gradient``: Fisher-vector products and conjugate gradients (TRPO, CPO).

The generic blocks the agents are built from (networks, returns, normalisation, minibatching,
replay) live in ``jaxsafe.core``.
"""
