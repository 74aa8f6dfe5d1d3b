"""What makes planning fast keeps configs exactly what they were.

Construction looks fields up once, validates only the fields that do not hold their default,
computes a trial's hash once, and remembers what depends only on the method registry (its
parameter groups, which method takes which key, a recipe's values per cell), forgetting it when
the registry changes.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import pickle

import pytest

from search_spaces import GRIDS, expand
from search_spaces.grid import takes
from trainables import config
from trainables.config import ConfigError, TrialConfig, planned_batch, recipe_defaults
from trainables.methods import METHODS


def test_every_field_default_passes_its_own_checks():
    """``validate`` skips fields holding their default: each default must pass its checks."""
    for f in dataclasses.fields(TrialConfig):
        choices = f.metadata["choices"]
        assert choices is None or f.default in choices, f.name
        if f.type == "float":
            assert isinstance(f.default, int | float) and not isinstance(f.default, bool), f.name
            assert math.isfinite(f.default), f.name
        elif f.type == "int":
            assert isinstance(f.default, int) and not isinstance(f.default, bool), f.name
        elif f.type == "bool":
            assert isinstance(f.default, bool), f.name
    config.validate(TrialConfig())  # every field at its default


def test_a_bad_value_is_still_refused_by_name():
    with pytest.raises(ConfigError, match=r"^optimizer: 'lion' is not allowed; allowed: adam"):
        TrialConfig(optimizer="lion")
    with pytest.raises(ConfigError, match=r"^epochs: '3' is not allowed; allowed: an integer"):
        TrialConfig(epochs="3")


def test_the_hash_is_computed_once_and_never_shared():
    cfg = TrialConfig.from_recipe("paper", method="rest", density=0.1, seed=3)
    first = cfg.trial_hash
    assert cfg.trial_hash is first
    other = cfg.replace(seed=4)
    assert other.trial_hash != first and other == TrialConfig.from_dict(other.to_dict())
    for copied in (
        copy.copy(cfg),
        copy.deepcopy(cfg),
        pickle.loads(pickle.dumps(cfg)),
        TrialConfig.from_dict(cfg.to_dict(), validated=True),
        TrialConfig.from_dict(cfg.to_dict()),
    ):
        assert copied == cfg and copied.trial_hash == first
    assert "_hash" not in cfg.to_dict() and "_hash" not in config.field_names()


def test_recipe_values_are_a_fresh_dict_each_time():
    given = {"density", "seed"}
    values = recipe_defaults("paper", "cmnist", 1.0, "rest", given=given)
    values["lr"] = -1.0
    assert recipe_defaults("paper", "cmnist", 1.0, "rest", given=given)["lr"] > 0


def test_what_depends_on_the_registry_follows_it(monkeypatch: pytest.MonkeyPatch):
    assert takes("rest", "drop_fraction") and not takes("erm", "drop_fraction")
    rest = METHODS.get("rest")
    with monkeypatch.context() as patch:
        patch.setitem(METHODS._items, "rest2", rest)  # a plug-in registered later
        assert takes("rest2", "drop_fraction")
        patch.delitem(METHODS._items, "rest")
        assert takes("rest", "drop_fraction")  # no longer registered: a pending method takes all
    assert takes("rest", "drop_fraction") and config.method_memo() is config.method_memo()


def test_a_batch_is_left_on_an_error():
    with pytest.raises(RuntimeError), planned_batch():
        raise RuntimeError
    assert config._PINNED == [0]
    trials = expand(GRIDS.get("demo")).trials
    assert trials and config._PINNED == [0]
