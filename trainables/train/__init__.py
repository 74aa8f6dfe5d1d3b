"""The training loop of one trial; ``run_trial`` is the library entry point."""

from trainables.train.loop import run_trial

__all__ = ["run_trial"]
