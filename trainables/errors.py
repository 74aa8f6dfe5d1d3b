"""Errors a user can fix: the CLI prints their one-line message and exits non-zero."""


class UserError(ValueError):
    """Bad input (config value, data layout, grid file...). The message is one line that names
    the field or file, the value seen and the values allowed."""


class DataError(UserError):
    """The data root or a bundle is missing, partial or malformed."""


class DivergenceError(RuntimeError):
    """A trial's training loss became NaN or infinite (``non-finite loss at epoch E step S``).

    Not a ``UserError``: the run itself failed. ``run_trial`` marks the trial errored with this
    message; retrying from the same checkpoint would diverge again, so the Ray adapter does not
    retry it within a launch (a later launch may, when asked)."""


def first_line(error: BaseException) -> str:
    """The first line of ``error``'s message, or its type's name when it has none: what a
    one-line record (``state.json``'s ``error``, a refusal naming a file) keeps of it."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def error_line(error: BaseException) -> str:
    """``Type: first line`` of ``error``: the one line a trial's ``state.json`` and the console
    record for a failure."""
    first = (str(error).strip().splitlines() or [""])[0]
    return f"{type(error).__name__}: {first}" if first else type(error).__name__
