"""Starting or joining Ray, checking that a trial fits, and stopping gracefully on SIGTERM.

Embedded Ray is ``ray.init(address="local")``: always a fresh private instance, never an
accidental attach to a cluster that happens to run on this machine. ``--address`` joins a
cluster on purpose, and so does ``RAY_ADDRESS`` when ``--address`` is not given (what
``ray job submit`` and KubeRay set for a driver). A join is probed first, so a wrong address or
a missing auth token fails in one line within seconds. A Ray already initialised in this
process (a notebook, the test session) is used as it is and left running.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator, Mapping
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

    def validate(self, model: str | None = None) -> None:
        """One-line errors naming the flag; ``model`` names a per-model share
        (``--gpus-per-trial resnet18=1.5``), so the message shows what the user wrote."""
        if not (math.isfinite(self.cpus) and self.cpus > 0):
            raise UserError(f"--cpus-per-trial: {self.cpus:g} is not allowed; allowed: > 0")
        given = f"{model}={self.gpus:g}" if model else f"{self.gpus:g}"
        if not math.isfinite(self.gpus) or self.gpus < 0:
            raise UserError(f"--gpus-per-trial: {given} is not allowed; allowed: >= 0")
        if self.gpus > 1 and self.gpus != int(self.gpus):
            raise UserError(
                f"--gpus-per-trial: {given} is not allowed; allowed: a fraction in (0, 1] "
                "or a whole number of GPUs"
            )

    def as_dict(self) -> dict[str, float]:
        return {"cpu": self.cpus, "gpu": self.gpus}


ADDRESS_ENV = "RAY_ADDRESS"  # what `ray job submit` and KubeRay give a driver; ray.init reads it
DEFAULT_TOKEN_FILE = "~/.ray/auth_token"  # where Ray looks without RAY_AUTH_TOKEN[_PATH]
PROBE_TIMEOUT_S = 5.0  # a cluster that does not answer its GCS port within this is not there


@dataclass(frozen=True)
class ClusterAddress:
    """The cluster a launch joins: ``address`` and where it came from (``--address`` or
    ``RAY_ADDRESS``); None when the launch starts its own embedded Ray."""

    address: str | None
    source: str = ""

    @classmethod
    def resolve(cls, address: str | None) -> ClusterAddress:
        """``--address`` wins; else ``RAY_ADDRESS`` as ``ray.init()`` reads it; else embedded."""
        if address:
            return cls(address, "--address")
        from_env = os.environ.get(ADDRESS_ENV, "").strip()
        return cls(from_env, ADDRESS_ENV) if from_env else cls(None)

    @property
    def flag(self) -> str:
        """How the user named it, for error messages: ``--address X`` or ``RAY_ADDRESS=X``."""
        return (
            f"--address {self.address}"
            if self.source == "--address"
            else f"{ADDRESS_ENV}={self.address}"
        )

    def describe(self) -> str:
        if self.address is None:
            return "embedded Ray"
        origin = f" (from {ADDRESS_ENV})" if self.source == ADDRESS_ENV else ""
        return f"cluster at {self.address}{origin}"


@contextlib.contextmanager
def ray_context(
    address: str | None, num_cpus: int | None = None, num_gpus: int | None = None
) -> Iterator[str]:
    """Yield a description of the Ray in use: the caller's, a joined cluster, or embedded.

    A cluster is joined when ``address`` or ``RAY_ADDRESS`` names one; it is probed first
    (:func:`probe_cluster`), so a wrong address or a missing auth token is one line within
    seconds instead of ``ray.init``'s half minute of hidden retries.
    """
    quiet_ray_env()
    import ray

    if ray.is_initialized():
        yield "existing Ray in this process"
        return
    target = ClusterAddress.resolve(address)
    own_sigterm = _main_thread_sigterm()
    kwargs = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
    if target.address is not None:
        if num_cpus is not None or num_gpus is not None:
            raise UserError(
                f"--num-cpus/--num-gpus: apply to embedded Ray only; {target.flag} joins a "
                f"cluster (drop them, or unset {ADDRESS_ENV} to run embedded)"
            )
        probe_cluster(target)
        try:
            ray.init(address=target.address, **kwargs)
        except ConnectionError as error:
            first = (str(error).splitlines() or ["no Ray cluster"])[0]
            raise UserError(f"{target.flag}: cannot join a Ray cluster ({first})") from None
    else:
        ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, **kwargs)
    if callable(own_sigterm):  # ray.init replaced the CLI's handler (SIGTERM -> interrupted)
        signal.signal(signal.SIGTERM, own_sigterm)
    try:
        yield target.describe()
    finally:
        ray.shutdown()


def probe_cluster(target: ClusterAddress) -> None:
    """Refuse, in a few seconds and in one line, a cluster this driver cannot join.

    Ray Client (``ray://``) is refused: Tune's driver must run on the cluster (Ray Jobs does
    that). Otherwise the GCS address is resolved (``auto`` -> the cluster started on this
    machine), its port must accept a connection within :data:`PROBE_TIMEOUT_S`, and one GCS
    call made with this process's token settings must pass authentication. Ray decides token
    mode exactly as ``ray.init`` would (``RAY_AUTH_MODE``; for ``auto``, a token file alone
    turns it on). Ray's own C++ warning for the rejected call is kept off the console.
    """
    address = str(target.address)
    if "://" in address:
        raise UserError(
            f"{target.flag}: Ray Client addresses are not supported (Tune's driver must run on "
            "the cluster); allowed: HOST:PORT or auto, e.g. submit the sweep with `ray job "
            "submit -- rest-sweep run ...` (docs/cluster.md)"
        )
    from ray._private import services
    from ray._private.authentication import authentication_token_setup as auth
    from ray.exceptions import AuthenticationError

    try:
        gcs = services.canonicalize_bootstrap_address(address)
    except (ConnectionError, ValueError) as error:
        first = (str(error).splitlines() or ["no Ray cluster"])[0]
        raise UserError(f"{target.flag}: cannot join a Ray cluster ({first})") from None
    if not gcs:
        raise UserError(
            f"{target.flag}: no Ray cluster runs on this machine; allowed: HOST:PORT of a "
            "running cluster's head (`ray start --head` prints it)"
        )
    host, _, port = gcs.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=PROBE_TIMEOUT_S).close()
    except (OSError, ValueError) as error:
        raise UserError(
            f"{target.flag}: cannot join a Ray cluster (nothing answers at {gcs}: {error}); "
            "is the head running (`ray status` on it)?"
        ) from None
    token_hint = (
        f"the driver needs the cluster's token: set {auth.AUTH_MODE_ENV_VAR}=token and "
        "RAY_AUTH_TOKEN, or RAY_AUTH_TOKEN_PATH naming the token file (default "
        f"{DEFAULT_TOKEN_FILE}; `ray get-auth-token` on the head prints it)"
    )
    try:
        if address == "auto":
            auth.maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
        auth.ensure_token_if_auth_enabled(None, create_token_if_missing=False)
        with _stderr_silenced():
            from ray._raylet import GcsClient

            GcsClient(address=gcs).internal_kv_get(b"session_name", b"session", timeout=5)
    except AuthenticationError:
        raise UserError(
            f"{target.flag}: the cluster refused this driver's authentication token; {token_hint}"
        ) from None
    except Exception:  # not an auth problem: ray.init reports it (with its own retries)
        return


@contextlib.contextmanager
def _stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null (Ray's C++ client logs there directly)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _main_thread_sigterm() -> object:
    """The SIGTERM handler installed now (None outside the main thread)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.getsignal(signal.SIGTERM)


def check_fits(requests: Mapping[str, TrialResources]) -> None:
    """Reject, before ``fit()``, a request no alive node can satisfy (Tune would wait forever).

    ``requests`` maps each model of the launch to what one of its trials asks for (GPU shares
    are per model), so the error names the model whose trials could never start. The flag is
    shown as the user would write it: one value when every model asks the same, else
    ``MODEL=SHARE``.
    """
    import ray

    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    same = len(set(requests.values())) == 1
    for model, wanted in requests.items():
        if any(n.get("CPU", 0) >= wanted.cpus and n.get("GPU", 0) >= wanted.gpus for n in nodes):
            continue
        best_cpu = max((n.get("CPU", 0) for n in nodes), default=0)
        best_gpu = max((n.get("GPU", 0) for n in nodes), default=0)
        share = f"{wanted.gpus:g}" if same else f"{model}={wanted.gpus:g}"
        raise UserError(
            f"--cpus-per-trial {wanted.cpus:g} --gpus-per-trial {share}: no node of the cluster "
            f"can run a {model} trial ({wanted.cpus:g} CPU and {wanted.gpus:g} GPU each; largest "
            f"node: {best_cpu:g} CPUs, {best_gpu:g} GPUs); allowed: at most {best_cpu:g} CPUs "
            f"and {best_gpu:g} GPUs per trial"
        )


@contextlib.contextmanager
def sigterm_as_sigint(first: Callable[[], None] | None = None) -> Iterator[None]:
    """SIGTERM becomes SIGINT, which Tune turns into a graceful stop with a final snapshot.

    ``first`` runs before anything else on the first SIGTERM (the launch records its
    interruption: Ray Jobs kills the driver a few seconds after SIGTERM); its failure is one
    line on stderr. Installed after ``ray.init`` (which sets its own SIGTERM handler) and
    removed afterwards; a no-op outside the main thread, where Python cannot install signal
    handlers.
    """
    pending = [first] if first is not None else []

    def handler(signum: int, frame: object) -> None:
        while pending:
            try:
                pending.pop()()
            except Exception as error:  # noqa: BLE001 - the stop must go on
                print(f"warning: interruption not recorded: {error}", file=sys.stderr, flush=True)
        _forward_to_sigint(signum, frame)

    try:
        previous = signal.signal(signal.SIGTERM, handler)
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
