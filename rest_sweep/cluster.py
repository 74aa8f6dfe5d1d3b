"""Starting or joining Ray, checking that a trial fits, and stopping gracefully on SIGTERM.

Embedded Ray is ``ray.init(address="local")``: always a fresh private instance, never an
accidental attach to a cluster that happens to run on this machine. ``--address`` joins a
cluster on purpose. A Ray already initialised in this process (a notebook, the test session)
is used as it is and left running.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass

from trainables.errors import UserError

# Quiet, predictable Ray (docs/ray_tune notes): legacy reporter with verbose=0 prints nothing,
# no Train-V2 migration warnings, no snapshot-spam warning, CPU-only trials do not see GPUs.
QUIET_ENV = {
    "RAY_AIR_NEW_OUTPUT": "0",
    "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "1",
    "TUNE_DISABLE_AUTO_INIT": "1",
}


def quiet_ray_env() -> None:
    """Set the environment Ray reads at import/start; a value the user exported wins."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    # Token auth stays on; only its per-start notice is silenced. Tune's stop notices end with
    # a `Tuner.restore(...)` hint that is wrong here: the service prints `rest-sweep resume`.
    for logger in ("ray._private.authentication.authentication_token_setup", "ray.tune.tune"):
        logging.getLogger(logger).setLevel(logging.ERROR)


@dataclass(frozen=True)
class TrialResources:
    """What one trial asks for; fractional GPUs pack several trials on one GPU."""

    cpus: float = 1.0
    gpus: float = 0.0

    def validate(self) -> None:
        if self.cpus <= 0:
            raise UserError(f"--cpus-per-trial: {self.cpus:g} is not allowed; allowed: > 0")
        if self.gpus < 0:
            raise UserError(f"--gpus-per-trial: {self.gpus:g} is not allowed; allowed: >= 0")
        if self.gpus > 1 and self.gpus != int(self.gpus):
            raise UserError(
                f"--gpus-per-trial: {self.gpus:g} is not allowed; allowed: a fraction in (0, 1] "
                "or a whole number of GPUs"
            )

    def as_dict(self) -> dict[str, float]:
        return {"cpu": self.cpus, "gpu": self.gpus}


@contextlib.contextmanager
def ray_context(
    address: str | None, num_cpus: int | None = None, num_gpus: int | None = None
) -> Iterator[str]:
    """Yield a description of the Ray in use: the caller's, a joined cluster, or embedded."""
    quiet_ray_env()
    import ray

    if ray.is_initialized():
        yield "existing Ray in this process"
        return
    own_sigterm = _main_thread_sigterm()
    kwargs = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
    if address:
        if num_cpus is not None or num_gpus is not None:
            raise UserError("--num-cpus/--num-gpus apply to embedded Ray only; drop --address")
        try:
            ray.init(address=address, **kwargs)
        except ConnectionError as error:
            first = (str(error).splitlines() or ["no Ray cluster"])[0]
            raise UserError(f"--address {address}: cannot join a Ray cluster ({first})") from None
        where = f"cluster at {address}"
    else:
        ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, **kwargs)
        where = "embedded Ray"
    if callable(own_sigterm):  # ray.init replaced the CLI's handler (SIGTERM -> interrupted)
        signal.signal(signal.SIGTERM, own_sigterm)
    try:
        yield where
    finally:
        ray.shutdown()


def _main_thread_sigterm() -> object:
    """The SIGTERM handler installed now (None outside the main thread)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.getsignal(signal.SIGTERM)


def check_fits(resources: TrialResources) -> None:
    """Reject, before ``fit()``, a request no alive node can satisfy (Tune would wait forever)."""
    import ray

    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    fits = [
        n for n in nodes if n.get("CPU", 0) >= resources.cpus and n.get("GPU", 0) >= resources.gpus
    ]
    if fits:
        return
    best_cpu = max((n.get("CPU", 0) for n in nodes), default=0)
    best_gpu = max((n.get("GPU", 0) for n in nodes), default=0)
    raise UserError(
        f"--cpus-per-trial {resources.cpus:g} --gpus-per-trial {resources.gpus:g}: no node of the "
        f"cluster can run a trial (largest node: {best_cpu:g} CPUs, {best_gpu:g} GPUs); allowed: "
        f"at most {best_cpu:g} CPUs and {best_gpu:g} GPUs per trial"
    )


@contextlib.contextmanager
def sigterm_as_sigint() -> Iterator[None]:
    """SIGTERM becomes SIGINT, which Tune turns into a graceful stop with a final snapshot.

    Installed after ``ray.init`` (which sets its own SIGTERM handler) and removed afterwards;
    a no-op outside the main thread, where Python cannot install signal handlers.
    """
    try:
        previous = signal.signal(signal.SIGTERM, _forward_to_sigint)
    except ValueError:
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _forward_to_sigint(signum: int, frame: object) -> None:
    print("SIGTERM: stopping the sweep (running trials keep their last checkpoint)", flush=True)
    os.kill(os.getpid(), signal.SIGINT)
