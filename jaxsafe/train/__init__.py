"""Training, evaluation and plotting (the only I/O in jaxsafe)."""

from jaxsafe.train.runner import RunDirError, RunSpec, TrainingDiverged, plan, resume, run

__all__ = ["RunDirError", "RunSpec", "TrainingDiverged", "plan", "resume", "run"]
