"""Training lengths written ``160ep``, ``1000it`` or ``80ep50it``, parsed once into :class:`Step`.

A step is a number of epochs plus a number of iterations (optimizer steps); it becomes a plain
iteration count once the epoch length (``ceil(n_train / batch_size)``) is known. Torch-free:
config checks parse with it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from trainables.errors import UserError

_PATTERN = re.compile(r"^(?:(\d+)ep)?(?:(\d+)it)?$")
ALLOWED = "a step such as 160ep, 1000it or 80ep50it"


@dataclass(frozen=True)
class Step:
    """``epochs`` whole epochs plus ``iterations`` optimizer steps."""

    epochs: int = 0
    iterations: int = 0

    @classmethod
    def parse(cls, text: str, name: str = "step") -> Step:
        """``160ep`` / ``1000it`` / ``80ep50it``; anything else is a one-line error naming
        ``name``."""
        match = _PATTERN.match(text.strip())
        if not text.strip() or match is None:
            raise UserError(f"{name}: {text!r} is not allowed; allowed: {ALLOWED}")
        return cls(int(match.group(1) or 0), int(match.group(2) or 0))

    def to_iterations(self, per_epoch: int) -> int:
        return self.epochs * per_epoch + self.iterations

    def __str__(self) -> str:
        if self.epochs and self.iterations:
            return f"{self.epochs}ep{self.iterations}it"
        return f"{self.iterations}it" if self.iterations else f"{self.epochs}ep"


def parse_steps(text: str, name: str) -> tuple[Step, ...]:
    """A comma list of steps (``80,120`` or ``80ep,120ep``: a bare integer counts epochs);
    the empty string is the empty tuple."""
    if not text.strip():
        return ()
    steps = []
    for part in text.split(","):
        part = part.strip()
        steps.append(Step(int(part)) if part.isdigit() else _parse_in_list(part, name, text))
    return tuple(steps)


def _parse_in_list(part: str, name: str, text: str) -> Step:
    try:
        return Step.parse(part, name)
    except UserError:
        raise UserError(
            f"{name}: {text!r} is not allowed; allowed: a comma list of steps such as 80,120 "
            "(epochs) or 80ep,120ep50it"
        ) from None


_Batch = TypeVar("_Batch")  # a trial's batch, or a fused group's stacked one


@dataclass(frozen=True)
class EpochSlice:
    """One epoch a trial trains: which epoch's data order and augmentation are drawn, and
    which of its batches train (``first`` up to ``stop``; None: to the end)."""

    data_epoch: int  # 1-based
    first: int
    stop: int | None
    start_iteration: int  # the schedule's iteration of the first trained batch (0-based)

    def select(self, batches: Iterable[_Batch]) -> Iterator[_Batch]:
        """The batches at positions ``first`` up to ``stop`` of the epoch's ``batches``; those
        before ``first`` are drawn (the augmentation stream stays aligned), not yielded."""
        for position, batch in enumerate(batches):
            if self.stop is not None and position >= self.stop:
                break
            if position >= self.first:
                yield batch


@dataclass(frozen=True)
class Span:
    """Where in its schedule a trial trains: iterations ``start`` up to ``end`` (None: the
    config's ``epochs``), counted as in OpenLTH's ``standard_train(start_step, end_step)``.

    An ordinary trial is ``Span()``: every batch of epochs 1..``epochs``. A stage of a staged
    run may start mid-epoch (a lottery level starts at its rewind iteration) or stop early (a
    fine-tuning length): its first epoch draws the same data order as an uninterrupted run and
    skips the batches before ``start``, so a rewound stage replays exactly the batches the
    schedule had from there."""

    start: Step = Step()
    end: Step | None = None

    def iterations(self, epochs: int, per_epoch: int) -> tuple[int, int]:
        """(first, end) iterations, with ``end`` defaulting to ``epochs`` x ``per_epoch``."""
        end = (self.end or Step(epochs)).to_iterations(per_epoch)
        return self.start.to_iterations(per_epoch), end

    def slices(
        self, epochs: int, per_epoch: int, blame: tuple[str, object] = ("span", None)
    ) -> list[EpochSlice]:
        """Every epoch the span trains, in order; a span that trains nothing is a one-line
        error naming ``blame`` (the field that placed it, and its value)."""
        start, end = self.iterations(epochs, per_epoch)
        if not start < end:
            name, value = blame
            raise UserError(
                f"{name}: {value if value is not None else (start, end)!r} is not allowed; "
                f"allowed: a point inside the training length of {epochs} epochs x {per_epoch} "
                "iterations"
            )
        out = []
        for data_epoch in range(start // per_epoch + 1, -(-end // per_epoch) + 1):
            base = (data_epoch - 1) * per_epoch
            first = max(start - base, 0)
            stop = end - base if end - base < per_epoch else None
            out.append(EpochSlice(data_epoch, first, stop, base + first))
        return out

    def epoch_count(self, epochs: int, per_epoch: int) -> int:
        """How many epochs (rows) the span trains at ``per_epoch`` iterations per epoch."""
        return len(self.slices(epochs, per_epoch))
