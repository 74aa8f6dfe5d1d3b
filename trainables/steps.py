"""Training lengths written ``160ep``, ``1000it`` or ``80ep50it``, parsed once into :class:`Step`.

A step is a number of epochs plus a number of iterations (optimizer steps); it becomes a plain
iteration count once the epoch length (``ceil(n_train / batch_size)``) is known. Torch-free:
config checks parse with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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
