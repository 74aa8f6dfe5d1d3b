"""Errors a user can fix: the CLI prints their one-line message and exits non-zero."""


class UserError(ValueError):
    """Bad input (config value, data layout, grid file...). The message is one line that names
    the field or file, the value seen and the values allowed."""


class DataError(UserError):
    """The data root or a bundle is missing, partial or malformed."""
