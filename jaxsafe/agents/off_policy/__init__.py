"""The off-policy family: agents that learn from a replay buffer carried in their state.

``base.py`` holds what they share (config, state, ``OffPolicy``: collection into the buffer, Q
critics and their targets, the update loop); ``cvpo.py`` and ``lagrangian.py`` (SAC-, TD3- and
DDPG-Lag) are the algorithm boxes.
"""
