"""Every input is checked before any work (issue 23, Build 2): one line, exit 2, nothing left.

Each bad input runs the real command line in this process with ``ray`` unimportable (a
``rest-sweep run`` that got past its checks would fail with an ``ImportError`` traceback, not
one line), and the test folder is compared before and after: no experiment folder, launch
record, bundle or analysis output appears, and a planned experiment's ledger is unchanged.
A few run as a subprocess of the real ``rest-sweep`` with ``tests/reliability/no_ray`` too.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from rest_sweep import ledger as ledgers
from tests.reliability.helpers import assert_one_line_error, cli, run_main, write_grid
from trainables.results import EPOCH_METRICS, ExperimentStore

pytestmark = pytest.mark.reliability

HUGE = "99999999999999999999999"  # 23 digits: beyond every 64-bit integer
LONG_NAME = "x" * 300


def _tree(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with a file's bytes (None for a folder)."""
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture
def place(tmp_path, monkeypatch):
    """The test folder as the current folder (an empty ``--storage`` would write here), with
    a file where folders are expected, the grid files and ``ray`` unimportable."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    (tmp_path / "afile").write_text("not a folder")
    write_grid(tmp_path)
    (tmp_path / "random.yaml").write_bytes(bytes(range(128, 256)) * 16)  # 2 KB, not UTF-8
    (tmp_path / "dup.yaml").write_text(
        "name: tiny\nfixed: {dataset: cmnist, epochs: 1}\nmethods: [erm]\nname: other\n"
    )
    (tmp_path / "dupaxis.yaml").write_text(
        "name: tiny\naxes: {seed: [1, 2], seed: [3]}\nmethods: [erm]\n"
    )
    return tmp_path


def _refused(folder: Path, args: list[str], *needles: str) -> str:
    """``rest-sweep ARGS`` is one line with every needle, exit 2, and changes nothing."""
    before = _tree(folder)
    code, _, err = run_main(*args)
    line = assert_one_line_error(code, err, *needles)
    assert _tree(folder) == before, f"{args} left something behind"
    return line


# ---------------------------------------------------------------------- run


RUN_CASES = {
    # non-finite floats: any float field of a trial (TrialConfig validation)
    "lr-inf": (["--set", "lr=inf"], ["lr: inf is not allowed; allowed: a finite number"]),
    "lr-nan": (["--set", "lr=nan"], ["lr: nan is not allowed"]),
    "weight-decay-inf": (["--set", "weight_decay=inf"], ["weight_decay: inf is not allowed"]),
    "momentum-nan": (["--set", "momentum=nan"], ["momentum: nan is not allowed"]),
    "ratio-inf": (["--set", "ratio=inf"], ["ratio: inf is not allowed"]),
    # absurd integers
    "seed-huge": (["--set", f"seed={HUGE}"], [f"seed: {HUGE} is not allowed", "<= 4294967295"]),
    "seed-2**32": (["--set", "seed=4294967296"], ["seed: 4294967296 is not allowed"]),
    "epochs-huge": (["--set", f"epochs={HUGE}"], [f"epochs: {HUGE}", "<= 100000"]),
    "width-huge": (["--set", f"width={HUGE}"], [f"width: {HUGE}", "fits 64 bits"]),
    # grid files
    "grid-random-bytes": (
        ["--grid", "random.yaml"],
        ["random.yaml: not a text file (byte 0x80 at offset 0 is not UTF-8)"],
    ),
    "grid-duplicate-key": (
        ["--grid", "dup.yaml"],
        ["dup.yaml: not valid YAML (line 4): key 'name' given twice", "first on line 1"],
    ),
    "grid-duplicate-axis": (["--grid", "dupaxis.yaml"], ["key 'seed' given twice"]),
    # names that cannot be one folder
    "name-300-chars": (["--name", LONG_NAME], ["--name 'xxxxxxxxxxxxxxxxxxxx'... (300 char"]),
    "name-newline": (["--name", "a\nb"], ["--name 'a\\nb': not a single folder name"]),
    "name-tab": (["--name", "a\tb"], ["not a single folder name"]),
    "name-backslash": (["--name", "a\\b"], ["not a single folder name"]),
    # storage
    "storage-empty": (["--storage", ""], ["--storage '': empty"]),
    "storage-blank": (["--storage", "  "], ["--storage '  ': empty"]),
    "storage-a-file": (["--storage", "afile"], ["--storage afile: is a file, not a folder"]),
    "storage-under-a-file": (["--storage", "afile/s"], ["is under the file"]),
    # launch settings
    "metric-unknown": (
        ["--scheduler", "asha", "--metric", "foo"],
        ["--metric: 'foo' is not allowed; allowed: " + ", ".join(EPOCH_METRICS)],
    ),
    "num-cpus-negative": (["--num-cpus", "-4"], ["--num-cpus: -4 is not allowed"]),
    "num-cpus-zero": (["--num-cpus", "0"], ["--num-cpus: 0 is not allowed"]),
    "num-cpus-huge": (["--num-cpus", HUGE], [f"--num-cpus: {HUGE} is not allowed"]),
    "num-gpus-negative": (["--num-gpus", "-1"], ["--num-gpus: -1 is not allowed"]),
    "cpus-per-trial-inf": (["--cpus-per-trial", "inf"], ["--cpus-per-trial: inf"]),
    "cpus-per-trial-nan": (["--cpus-per-trial", "nan"], ["--cpus-per-trial: nan"]),
    "gpus-per-trial-nan": (["--gpus-per-trial", "nan"], ["--gpus-per-trial: 'nan'"]),
    "gpus-per-trial-model-inf": (["--gpus-per-trial", "simple_cnn=inf"], ["--gpus-per-trial"]),
    "gpus-per-trial-negative": (["--gpus-per-trial", "-1"], ["--gpus-per-trial: -1"]),
    "max-concurrent-zero": (["--max-concurrent", "0"], ["--max-concurrent: 0 is not allowed"]),
    "max-concurrent-huge": (["--max-concurrent", HUGE], [f"--max-concurrent: {HUGE}"]),
    "max-failures-huge": (["--max-failures", HUGE], [f"--max-failures: {HUGE}"]),
    "max-failures-below-forever": (["--max-failures", "-2"], ["--max-failures: -2"]),
}


@pytest.mark.parametrize("case", list(RUN_CASES))
def test_run_refuses_a_bad_input_before_any_work(place, tiny_cmnist_root, case):
    given, needles = RUN_CASES[case]
    args = {
        "--grid": "tiny.yaml",
        "--data-root": str(tiny_cmnist_root),
        "--storage": "s",
        "--name": "exp",
    }
    extra = []
    for i in range(0, len(given), 2):
        if given[i] in args:
            args[given[i]] = given[i + 1]
        else:
            extra += given[i : i + 2]
    argv = ["run", *(x for pair in args.items() for x in pair), *extra]
    _refused(place, argv, *needles)


def test_the_real_cli_refuses_before_ray_and_leaves_no_experiment(tmp_path, tiny_cmnist_root):
    """The reported tracebacks, through ``rest-sweep`` with an unimportable ``ray``."""
    grid = write_grid(tmp_path)
    storage = tmp_path / "s"
    common = ["--grid", grid, "--data-root", str(tiny_cmnist_root), "--storage", str(storage)]
    for extra, needle in (
        (["--name", "e", "--scheduler", "asha", "--metric", "foo"], "--metric: 'foo'"),
        (["--name", "e", "--num-cpus", "-4"], "--num-cpus: -4"),
        (["--name", "e", "--num-gpus", "-1"], "--num-gpus: -1"),
        (["--name", "e", "--set", "lr=inf"], "lr: inf"),
        (["--name", LONG_NAME], "not a single folder name"),
    ):
        result = cli("run", *common, *extra, no_ray=True)
        assert_one_line_error(result.returncode, result.stderr, needle)
        assert not storage.exists()


def test_resume_refuses_bad_settings_before_its_launch_is_recorded(place, tiny_cmnist_root):
    from search_spaces import expand, resolve

    store = ExperimentStore(str(place / "s"), "exp")
    ledgers.record_plan(store, expand(resolve("tiny.yaml"), {}), str(tiny_cmnist_root))
    common = ["resume", "--storage", "s", "--name", "exp"]
    for extra, needle in (
        (["--num-cpus", "-4"], "--num-cpus: -4"),
        (["--num-gpus", "-1"], "--num-gpus: -1"),
        (["--scheduler", "asha", "--metric", "foo"], "--metric: 'foo'"),
        (["--cpus-per-trial", "inf"], "--cpus-per-trial: inf"),
    ):
        _refused(place, [*common, *extra], needle)
    assert store.read_ledger().get("launches", []) == []


# ---------------------------------------------------------------------- train


TRAIN_CASES = {
    "lr-inf": (["--lr", "inf"], "lr: inf is not allowed; allowed: a finite number"),
    "weight-decay-nan": (["--weight-decay", "nan"], "weight_decay: nan is not allowed"),
    "momentum-inf": (["--momentum", "inf"], "momentum: inf is not allowed"),
    "density-nan": (["--density", "nan"], "density: nan is not allowed"),
    "seed-huge": (["--seed", HUGE], f"seed: {HUGE} is not allowed"),
    "epochs-huge": (["--epochs", HUGE], f"epochs: {HUGE} is not allowed"),
    "out-a-file": (["--out", "afile"], "--out afile: cannot write there"),
}


@pytest.mark.parametrize("case", list(TRAIN_CASES))
def test_train_refuses_a_bad_input_before_any_work(place, case):
    given, needle = TRAIN_CASES[case]
    argv = ["train", "--data-root", "data", "--method", "rest", "--device", "cpu"]
    argv += ["--out", "t"] if "--out" not in given else []
    _refused(place, [*argv, *given], needle)


def test_an_odd_image_size_names_the_odd_image_not_a_correct_one(tmp_path, tiny_cmnist_root):
    """One 32x32 PNG in a 28x28 bundle, listed first in its split: ``train`` names it."""
    from tests.fixtures.data import write_png
    from trainables.data.cache import list_split

    root = tmp_path / "data"
    shutil.copytree(tiny_cmnist_root, root, ignore=shutil.ignore_patterns(".*"))
    odd = Path(list_split(root, "cmnist", 5.0, "train")[0].path)
    write_png(odd, size=32)
    code, _, err = run_main(
        "train",
        "--data-root",
        str(root),
        "--ratio",
        "5",
        "--method",
        "erm",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--no-progress",
        "--out",
        str(tmp_path / "t"),
    )
    line = assert_one_line_error(code, err, f"image size: {odd} is 32x32, expected 28x28")
    assert line.count(".png") == 2 and "data verify" in line  # the odd one, and one correct


def test_decode_names_the_odd_image_wherever_it_is(tmp_path):
    from tests.fixtures.data import write_png
    from trainables.data.decode import decode_images
    from trainables.errors import DataError

    paths = [write_png(tmp_path / f"{i}.png", size=28) for i in range(9)]
    for where in (0, 4, 8):
        write_png(paths[where], size=32)
        with pytest.raises(DataError, match=rf"image size: {paths[where]} is 32x32, expected 28"):
            decode_images(paths, workers=1)
        write_png(paths[where], size=28)
    assert decode_images(paths, workers=1).shape == (9, 3, 28, 28)


# ---------------------------------------------------------------------- grids, status, list


def test_grids_show_refuses_bad_inputs_before_expanding(place):
    for args, needle in (
        (["random.yaml"], "random.yaml: not a text file"),
        (["dup.yaml"], "key 'name' given twice"),
        (["demo", "--limit", "-1"], "--limit: -1 is not allowed; allowed: an integer >= 0"),
        (["demo", "--set", "lr=inf"], "lr: inf is not allowed"),
        (["demo", "--set", f"epochs={HUGE}"], f"epochs: {HUGE} is not allowed"),
        (["demo", "--cluster", "0x8"], "--cluster: '0x8' is not allowed"),
        (["demo", "--cluster", "4x8", "--cpus-per-trial", "inf"], "--cpus-per-trial: inf"),
        (["demo", "--cluster", "4x8", "--cpus-per-trial", "nan"], "--cpus-per-trial: nan"),
        (["demo", "--cluster", "4x8", "--gpus-per-trial", "nan"], "--gpus-per-trial: 'nan'"),
        (["demo", "--cluster", "4x8", "--gpus-per-trial", "-1"], "--gpus-per-trial: -1"),
    ):
        _refused(place, ["grids", "show", *args], needle)
    code, out, _ = run_main("grids", "show", "demo", "--limit", "0", "--no-cost")
    assert code == 0 and "more (--limit N" in out


def test_storage_that_is_a_file_or_empty_in_every_command(place):
    for args, needle in (
        (["status", "--storage", "afile", "--name", "e"], "--storage afile: is a file"),
        (["list", "--storage", "afile"], "--storage afile: is a file, not a folder"),
        (["list", "--storage", ""], "--storage '': empty"),
        (["status", "--storage", "", "--name", "e"], "--storage '': empty"),
        (["status", "--storage", "s", "--name", "a\nb"], "not a single folder name"),
        (["resume", "--storage", "afile", "--name", "e"], "--storage afile: is a file"),
        (["resume", "--storage", "", "--name", "e"], "--storage '': empty"),
        (["analyze", "--storage", "afile", "--name", "e"], "--storage afile: is a file"),
        (["analyze", "--storage", "s", "--name", LONG_NAME], "not a single folder name"),
        (["report", "--storage", "", "--name", "e"], "--storage '': empty"),
    ):
        _refused(place, args, needle)


def test_analyze_and_report_out_that_is_a_file(place, tiny_cmnist_root):
    from search_spaces import expand, resolve

    store = ExperimentStore(str(place / "s"), "exp")
    ledgers.record_plan(store, expand(resolve("tiny.yaml"), {}), str(tiny_cmnist_root))
    for command in ("analyze", "report"):
        args = [command, "--storage", "s", "--name", "exp", "--out", "afile"]
        _refused(place, args, "--out afile: is a file, not a folder")
        args[-1] = "afile/analysis"
        _refused(place, args, "--out afile/analysis: is under the file")


# ---------------------------------------------------------------------- data make, data fetch


def test_data_make_refuses_bad_inputs_before_writing(place, mnist_subset_dir):
    source = ["--source", str(mnist_subset_dir)]
    small = ["--ratios", "5", "--valid-size", "100", "--limit", "500", "--test-size", "100"]
    cmnist = ["data", "make", "cmnist", *source, "--out", "out", *small]
    for extra, needles in (
        (["--color-noise", "nan"], ["--color-noise: nan is not allowed", "[0, 1]"]),
        (["--color-noise", "inf"], ["--color-noise: inf is not allowed"]),
        (["--color-noise", "-0.1"], ["--color-noise: -0.1 is not allowed"]),
        (["--color-noise", "2"], ["--color-noise: 2.0 is not allowed"]),
        (
            ["--limit", "99999999999"],
            ["limit: 99999999999 is not allowed; allowed: 1..2900", "3000"],
        ),
        (["--test-size", "99999999"], ["test_size: 99999999", "1..1000 (the source has 1000 test"]),
        (["--seed", "-1"], ["seed: -1 is not allowed"]),
        (["--seed", str(2**64)], [f"seed: {2**64} is not allowed"]),
        (["--out", "afile"], ["--out afile: is a file, not a folder"]),
        (["--out", "afile/data"], ["--out afile/data: is under the file"]),
    ):
        argv = list(cmnist)
        if extra[0] == "--out":
            argv[argv.index("--out") + 1] = extra[1]
        elif extra[0] in argv:
            argv[argv.index(extra[0]) + 1] = extra[1]
        else:
            argv += extra
        _refused(place, argv, *needles)
    plain = ["data", "make", "mnist", *source, "--out", "out", "--valid-size", "100"]
    _refused(place, [*plain, "--limit", "99999999999"], "limit: 99999999999 is not allowed")
    _refused(place, [*plain, "--out", "afile"], "--out afile: is a file")
    cifar = ["data", "make", "cifar10c", "--source", "nowhere", "--out", "out"]
    _refused(place, [*cifar, "--workers", HUGE], f"--workers: {HUGE} is not allowed")
    _refused(place, [*cifar, "--workers", "0"], "--workers: 0 is not allowed")
    _refused(place, ["data", "fetch", "mnist", "--out", "afile"], "--out afile: is a file")
