"""The on-policy family: PPO-style agents that learn from fresh batches of the current policy.

``base.py`` holds what they share (config, state, ``ActorCritic``: collection, GAE, the SGD
epochs, bookkeeping); each other module is one algorithm box and the variants that differ from it
only by a rule passed in.
"""
