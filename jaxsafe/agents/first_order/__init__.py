"""The first-order family: agents that differentiate the return and cost through the dynamics
(a differentiable simulator, or a learned world model for MB-CGPO).

``base.py`` holds what they share (configs, ``FirstOrder``: whole episodes, the short-horizon or
BPTT gradients, time-conditioned critics, bookkeeping); ``cgpo.py``, ``mb_cgpo.py`` and
``shac_lag.py`` (SHAC-Lag and BPTT-Lag) are the algorithm boxes.
"""
