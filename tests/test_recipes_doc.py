"""Each seed grid pinned to its seed: every fixed value equals its source's, or says why not.

The reference tables (search_spaces/references.py) are written from the papers, the public
code and the seed's README, never read back from the grids; docs/recipes.md is generated from
them, so a grid that drifts, a field without a source and a stale document all fail here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import search_spaces
from search_spaces.references import (
    PROTOCOLS,
    UNFIXED,
    Protocol,
    Ref,
    check_trial,
    findings,
    render_markdown,
)

DOC = Path(__file__).resolve().parents[1] / "docs" / "recipes.md"


@pytest.fixture(scope="module")
def all_findings():
    return list(findings())


def test_every_seed_grid_value_is_its_sources_or_a_marked_deviation(all_findings) -> None:
    bad = sorted(
        {
            f"{f.protocol} / {f.grid} / {f.method} / {f.dataset}: {f.name}={f.value!r} "
            f"({f.status}; source value {f.ref.shown() if f.ref else None})"
            for f in all_findings
            if not f.ok
        }
    )
    assert not bad, "\n".join(bad[:40])


def test_every_seed_grid_is_covered() -> None:
    """Every registered paper-* and sdd-* grid (the union and the demo aside) has a protocol."""
    covered = {grid for protocol in PROTOCOLS for grid in protocol.grids}
    seed_grids = {
        name
        for name in search_spaces.GRIDS.names()
        if name.startswith(("paper-", "sdd-")) and name not in ("paper-all", "sdd-demo")
    }
    assert seed_grids <= covered, sorted(seed_grids - covered)


def test_a_drifted_value_fails_and_a_marked_deviation_passes() -> None:
    cfg = search_spaces.expand(search_spaces.resolve("paper-table3-cmnist")).trials[0]
    plain = Protocol("t", "t", (), "paper", lambda g, c: {"lr": Ref(0.5, "s")})
    marked = Protocol(
        "t", "t", (), "paper", lambda g, c: {"lr": Ref(0.5, "s", deviation="why", ours=cfg.lr)}
    )
    other = Protocol("t", "t", (), "paper", lambda g, c: {"lr": Ref(0.5, "s", "why", ours=0.7)})
    unfixed = Protocol("t", "t", (), "paper", lambda g, c: {"lr": Ref(UNFIXED, "ours: doc")})

    def lr_finding(protocol: Protocol):
        return next(f for f in check_trial(protocol, "g", cfg) if f.name == "lr")

    assert not lr_finding(plain).ok and lr_finding(plain).status == "DIFFERS"
    assert lr_finding(marked).ok and lr_finding(marked).status.startswith("deviation: why")
    assert not lr_finding(other).ok  # a deviation names the one value it allows
    assert lr_finding(unfixed).ok
    missing = next(f for f in check_trial(plain, "g", cfg) if f.name == "batch_size")
    assert not missing.ok and missing.status == "MISSING REFERENCE"


def test_docs_recipes_is_generated_from_the_tables() -> None:
    assert DOC.read_text() == render_markdown(), (
        "docs/recipes.md is stale: run python scripts/write_recipes_doc.py"
    )


def test_a_seed_grid_drifting_back_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """The drift the recipes issue fixed: the retrain grid back on exactly-20 % symmetric noise
    without random labels, weight decay 5e-4, the first conv kept dense."""
    from search_spaces import sdd
    from search_spaces.references import PROTOCOLS as ALL

    old = {
        **sdd.CIFAR_FIXED,
        "noise_type": "symmetric",
        "noise_fraction": 0.2,
        "random_labels_fraction": 0.0,
        "weight_decay": 5e-4,
        "dense_first_layer": True,
    }
    monkeypatch.setattr(sdd, "CIFAR_FIXED", old)
    grid = next(g for g in sdd.sdd_grids() if g.name == "sdd-retrain-cifar10")
    monkeypatch.setitem(search_spaces.GRIDS._items, "sdd-retrain-cifar10", grid)
    protocol = next(p for p in ALL if "sdd-retrain-cifar10" in p.grids)
    drifted = Protocol(protocol.name, "", ("sdd-retrain-cifar10",), protocol.recipe, protocol.refs)
    failed = {f.name for f in findings((drifted,)) if not f.ok}
    assert {
        "noise_type",
        "noise_fraction",
        "random_labels_fraction",
        "weight_decay",
        "dense_first_layer",
    } <= failed
