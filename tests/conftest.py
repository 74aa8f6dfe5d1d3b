"""Shared fixtures live in plugin modules, one per owner, so they can grow independently."""

pytest_plugins = [
    "tests.fixtures.data",
    "tests.fixtures.ray_cluster",
    "tests.fixtures.torch_threads",
]
