"""``rest-sweep sparsity``: JSON schema, totals consistent with the layers, one-line errors."""

from __future__ import annotations

import argparse
import json

import pytest

from rest_sweep.commands import sparsity
from trainables.errors import UserError


def run_cli(argv):
    parser = argparse.ArgumentParser()
    sparsity.register(parser.add_subparsers())
    args = parser.parse_args(["sparsity", *argv])
    return args.func(args)


def test_json_schema(capsys):
    assert run_cli(["--model", "simple_cnn", "--density", "0.05", "--init", "erk", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) == {"layers", "total", "input_size", "augment"}
    assert [layer["name"] for layer in doc["layers"]] == [
        "conv1.weight",
        "conv2.weight",
        "conv3.weight",
        "fc.weight",
    ]
    for layer in doc["layers"]:
        assert set(layer) == {"name", "shape", "density", "nonzeros", "flops"}
        assert isinstance(layer["shape"], list) and isinstance(layer["nonzeros"], int)
    total = doc["total"]
    assert set(total) == {"params", "nonzeros", "density", "flops_dense", "flops"}
    assert total["params"] == 660_992
    assert total["nonzeros"] == sum(layer["nonzeros"] for layer in doc["layers"])
    assert total["density"] == pytest.approx(0.05, abs=1e-5)
    assert total["flops"] == pytest.approx(sum(layer["flops"] for layer in doc["layers"]))
    assert total["flops_dense"] == pytest.approx(2.349e7, rel=1e-3)
    assert doc["layers"][0]["density"] == 1.0 and doc["layers"][3]["density"] == 1.0


def test_dataset_sets_size_and_classes():
    report = sparsity.sparsity_report("resnet18", 0.01, "erk", dataset="bffhq", augment="rest-code")
    assert report["layers"][-1]["shape"] == [2, 512]
    assert report["total"]["params"] == 11_167_936
    assert report["input_size"] == 128
    assert report["total"]["flops_dense"] == pytest.approx(1.18e9, rel=0.005)


def test_bffhq_reports_the_size_the_trial_trains(capsys):
    """Default augment = the paper recipe's (disent): BFFHQ at 224 px, the hook count's value."""
    from trainables.models import build_model
    from trainables.sparse.flops import layer_flops

    assert run_cli(["--model", "resnet18", "--density", "0.1", "--dataset", "bffhq", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    hooked = layer_flops(build_model("resnet18", 2), 224)
    assert doc["input_size"] == 224 and doc["augment"] == "disent"
    assert doc["total"]["flops_dense"] == sum(hooked.values())
    realised = {layer["name"]: layer["density"] for layer in doc["layers"]}
    assert doc["total"]["flops"] == pytest.approx(
        sum(realised[n] * f for n, f in hooked.items()), rel=1e-12
    )


def test_table(capsys):
    run_cli(["--model", "simple_cnn", "--density", "0.1", "--init", "uniform", "--width", "8"])
    out = capsys.readouterr().out
    assert "conv2.weight" in out and "total" in out and "of dense" in out


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["--model", "vgg", "--density", "0.1"], "--model"),
        (["--model", "simple_cnn", "--density", "0.1", "--init", "snip"], "--init"),
        (["--model", "simple_cnn", "--density", "1.5"], "--density"),
        (["--model", "simple_cnn", "--density", "0.1", "--dataset", "svhn"], "--dataset"),
        (["--model", "resnet18", "--density", "0.1", "--stem", "tiny"], "--stem"),
        (["--model", "simple_cnn", "--density", "0.1", "--augment", "big"], "--augment"),
    ],
)
def test_bad_values_raise_user_error(argv, option):
    with pytest.raises(UserError, match=f"^{option}: .*allowed: ") as error:
        run_cli(argv)
    assert "\n" not in str(error.value)
