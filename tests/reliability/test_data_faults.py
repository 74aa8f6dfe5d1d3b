"""Bad bundles: an undecodable image (verify, the trial's own load) and a stale manifest."""

from __future__ import annotations

import shutil

import pytest

from rest_sweep.cli import main as cli_main
from trainables.config import TrialConfig
from trainables.data.verify import ensure_manifest_current
from trainables.errors import DataError
from trainables.train import run_trial

pytestmark = pytest.mark.reliability


@pytest.fixture
def bundle(tiny_cmnist_root, tmp_path, monkeypatch):
    """A private copy of the tiny bundle (modification times kept) with its own cache."""
    root = tmp_path / "data"
    shutil.copytree(tiny_cmnist_root, root, ignore=shutil.ignore_patterns(".*"))
    monkeypatch.setenv("REST_SWEEP_CACHE", str(tmp_path / "cache"))
    return root


def break_image(root):
    victim = sorted((root / "cmnist" / "5pct" / "align" / "3").glob("*.png"))[5]
    victim.write_bytes(victim.read_bytes()[:60])  # a truncated PNG: the header still parses
    return victim


def test_verify_decodes_every_image_and_names_the_bad_one(bundle, capsys):
    victim = break_image(bundle)
    code = cli_main(["data", "verify", str(bundle / "cmnist")])
    out = capsys.readouterr()
    assert code == 2
    assert f"image: cannot decode {victim}" in out.out + out.err
    assert not (bundle / "cmnist" / "manifest.json").exists()


def test_trial_load_of_an_undecodable_image_is_one_line(bundle, tmp_path):
    victim = break_image(bundle)
    cfg = TrialConfig.from_recipe(
        "paper",
        dataset="cmnist",
        ratio=5.0,
        method="erm",
        epochs=1,
        data_root=str(bundle),
        device="cpu",
    )
    with pytest.raises(DataError) as caught:
        run_trial(cfg, checkpoint_dir=str(tmp_path / "trial"))
    message = str(caught.value)
    assert message.startswith(f"image: cannot decode {victim}") and "\n" not in message


def test_a_bundle_changed_after_verify_is_refused(bundle, capsys):
    assert ensure_manifest_current(bundle, "cmnist") is None  # never verified: nothing to compare
    assert cli_main(["data", "verify", str(bundle / "cmnist")]) == 0
    capsys.readouterr()
    manifest = bundle / "cmnist" / "manifest.json"
    assert ensure_manifest_current(bundle, "cmnist", [5.0]) == manifest

    # Compared by content (sizes and hashes in the manifest), not by modification time.
    changed = sorted((bundle / "cmnist" / "1pct" / "align" / "0").glob("*.png"))[0]
    other = sorted((bundle / "cmnist" / "1pct" / "align" / "0").glob("*.png"))[1]
    changed.write_bytes(other.read_bytes())
    assert ensure_manifest_current(bundle, "cmnist", [5.0]) == manifest  # 1pct not needed
    with pytest.raises(DataError, match=f"data: {changed} changed after {manifest}"):
        ensure_manifest_current(bundle, "cmnist")

    removed = sorted((bundle / "cmnist" / "test" / "1").glob("*.png"))[0]
    removed.unlink()
    with pytest.raises(DataError, match=f"data: {removed} was removed after {manifest}"):
        ensure_manifest_current(bundle, "cmnist", [5.0])
