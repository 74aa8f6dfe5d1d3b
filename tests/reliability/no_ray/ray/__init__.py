"""A poisoned ``ray`` for tests: a CLI run with this folder first on ``PYTHONPATH`` proves that
the command refused (or stopped) before it imported Ray, let alone started it."""

raise ImportError("tests/reliability/no_ray: this command must not import Ray")
