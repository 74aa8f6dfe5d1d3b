"""Ray's W&B callback, with logging actors that let W&B finish writing a run before Ray kills them.

Ray's ``WandbLoggerCallback`` logs each trial from a small actor and kills it (``ray.kill``) as
soon as its ``run()`` returns, right after ``wandb.finish()``. wandb (0.31) writes the run's records
to disk in its separate service process, and ``finish()`` returns before that service has closed
the run's stream: a kill in that window leaves an empty ``run-*.wandb`` (offline, 2 of 7 test
sweeps on a loaded 2-core machine). The actor here calls ``wandb.teardown()`` after ``run()``,
which waits for the service to finish every run. Imported only when a launch uses
``--callback wandb`` (it imports Ray's W&B integration); a module-level class, because
``tuner.pkl`` pickles the launch's callbacks.

It relies on two private names of ``ray.air.integrations.wandb`` (``_WandbLoggingActor``, the
``_logger_actor_cls`` hook); without them it is Ray's callback unchanged.
"""

from __future__ import annotations

from typing import Any

from ray.air.integrations import wandb as ray_wandb

_RayActor: Any = getattr(ray_wandb, "_WandbLoggingActor", None)


if _RayActor is not None:

    class FlushingWandbActor(_RayActor):  # type: ignore[misc,valid-type]
        """Ray's W&B logging actor that returns only once W&B has written the run."""

        def run(self) -> None:
            super().run()
            self._wandb.teardown()

    class WandbCallback(ray_wandb.WandbLoggerCallback):
        """``WandbLoggerCallback`` whose actors wait for W&B to write each run."""

        _logger_actor_cls = FlushingWandbActor

else:  # pragma: no cover - a Ray without the private actor class
    WandbCallback = ray_wandb.WandbLoggerCallback  # type: ignore[misc]
