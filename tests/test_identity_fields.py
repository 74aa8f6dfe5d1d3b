"""The fields outside a trial's identity, listed once (``NON_IDENTITY_FIELDS``, from the field
metadata ``trial_hash`` reads), and what reads the list: analysis never makes a variant of them.
"""

from __future__ import annotations

from dataclasses import fields

import pandas as pd

from analysis import cells
from trainables.config import NON_IDENTITY_FIELDS, TrialConfig

# A value other than the default for each, valid on the config it is set on.
OTHER_VALUES = {
    "data_root": "/elsewhere",
    "device": "cpu",
    "channels_last": False,
    "compile": True,
    "cuda_graphs": False,
    "checkpoint_every": 3,
    "keep_checkpoints": 5,
    "final_checkpoint": "weights",
    "levels": 4,
    "disent_allow_no_swap": True,
}
METHOD_OF = {"levels": "prune", "disent_allow_no_swap": "disent"}


def test_the_list_is_the_identity_metadata() -> None:
    from_metadata = tuple(f.name for f in fields(TrialConfig) if not f.metadata["identity"])
    assert from_metadata == NON_IDENTITY_FIELDS
    assert set(NON_IDENTITY_FIELDS) == set(OTHER_VALUES)  # a new one: add its value above


def test_non_identity_fields_keep_the_hash() -> None:
    for name, value in OTHER_VALUES.items():
        cfg = TrialConfig.from_recipe("paper", method=METHOD_OF.get(name, "rest"))
        other = cfg.replace(**{name: value})
        assert getattr(other, name) != getattr(cfg, name)
        assert other.trial_hash == cfg.trial_hash, name


def test_no_variant_of_a_non_identity_field() -> None:
    not_variant = cells._NOT_VARIANT
    assert not_variant == {"seed", *NON_IDENTITY_FIELDS}
    base = TrialConfig.from_recipe("paper", method="rest", density=0.05, epochs=2)
    rows = [base, base.replace(seed=42, keep_checkpoints=5, cuda_graphs=False, device="cpu")]
    assert list(cells._variants(pd.DataFrame([c.to_dict() for c in rows]))) == ["", ""]
    ablation = [base, base.replace(seed=42, sparse_init="er")]
    variants = list(cells._variants(pd.DataFrame([c.to_dict() for c in ablation])))
    assert variants == ["sparse_init=erk", "sparse_init=er"]
