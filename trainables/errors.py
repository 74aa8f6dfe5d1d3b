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
