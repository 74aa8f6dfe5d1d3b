"""``rest-sweep sparsity``: per-layer densities, non-zeros and FLOPs of a sparse model.

Shows what a trial at a given density will train before any GPU time is spent: the layer
densities the rule assigns, the exact non-zero counts the engine will build and the forward
FLOPs per image at the size the trial trains (``DatasetInfo.trained_size(augment)``: BFFHQ is
224 px under the paper recipe's ``disent`` preset, 128 under ``rest-code``). Shapes and FLOPs
come from the model catalogue's analytic tables (:mod:`trainables.flops`); no model is built.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from trainables.errors import UserError

EPILOG = """\
examples:
  rest-sweep sparsity --model simple_cnn --density 0.05 --init erk
  rest-sweep sparsity --model resnet18 --density 0.01 --init erk --dataset cifar10c
  rest-sweep sparsity --model resnet18 --density 0.1 --init uniform --dataset bffhq --json
  rest-sweep sparsity --model resnet18 --density 0.1 --dataset bffhq --augment rest-code
  rest-sweep sparsity --model resnet18 --density 0.1 --init erk --dataset cifar10c --stem cifar
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sparsity",
        help="per-layer densities, non-zeros and FLOPs of a model at a density",
        description="Per-layer densities, exact non-zero counts and forward FLOPs per image of a "
        "model at a global density, before any training.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    parser.add_argument("--model", required=True, help="architecture (simple_cnn, resnet18)")
    parser.add_argument("--density", required=True, type=float, help="global density in (0, 1]")
    parser.add_argument(
        "--init", default="erk", help="layer-density rule: erk (default), er or uniform"
    )
    parser.add_argument(
        "--dataset", default="cmnist", help="sets input size and classes (cmnist, cifar10c, bffhq)"
    )
    parser.add_argument(
        "--augment",
        default=None,
        help="augmentation preset, sets the input size (default: the paper recipe's, disent; "
        "rest-code trains bffhq at 128 px instead of 224)",
    )
    parser.add_argument("--width", type=int, default=64, help="base width (64 = paper)")
    parser.add_argument("--stem", default="imagenet", help="ResNet stem: imagenet or cifar")
    parser.add_argument(
        "--dense-first-layer", action="store_true", help="keep the first conv dense"
    )
    parser.add_argument("--dense-last-layer", action="store_true", help="keep the classifier dense")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run)


def _allowed(option: str, value: Any, allowed: list[str] | tuple[str, ...]) -> None:
    if value not in allowed:
        raise UserError(f"--{option}: {value!r} is not allowed; allowed: {', '.join(allowed)}")


def default_augment(dataset: str) -> str:
    """The augmentation preset of the ``paper`` recipe for ``dataset``."""
    from trainables.config import TrialConfig

    return TrialConfig.from_recipe("paper", dataset=dataset).augment


def sparsity_report(
    model: str,
    density: float,
    init: str,
    dataset: str = "cmnist",
    width: int = 64,
    stem: str = "imagenet",
    dense_first_layer: bool = False,
    dense_last_layer: bool = False,
    augment: str | None = None,
) -> dict[str, Any]:
    """The ``--json`` document: one row per maskable layer, the totals and the input size."""
    from trainables.datasets import DATASETS
    from trainables.flops import layer_densities_for, sparse_forward_flops
    from trainables.models import MODELS
    from trainables.models.catalog import STEMS
    from trainables.sparse.densities import DENSITY_RULES

    _allowed("model", model, MODELS.names())
    _allowed("init", init, DENSITY_RULES.names())
    _allowed("dataset", dataset, DATASETS.names())
    _allowed("stem", stem, STEMS)
    if not 0 < density <= 1:
        raise UserError(f"--density: {density!r} is not allowed; allowed: a number in (0, 1]")
    if width < 1:
        raise UserError(f"--width: {width!r} is not allowed; allowed: an integer >= 1")
    info = DATASETS.get(dataset)
    augment = augment or default_augment(dataset)
    _allowed("augment", augment, tuple(info.trained_sizes))
    size = info.trained_size(augment)
    table = MODELS.get(model).layers(info.num_classes, width, stem, size)
    shapes = {name: layer.shape for name, layer in table.items()}
    densities = layer_densities_for(
        shapes,
        density,
        init,
        dense_first_layer=dense_first_layer,
        dense_last_layer=dense_last_layer,
    )
    counts = _layer_counts(shapes, densities)
    realised = {name: counts[name] / table[name].numel for name in counts}
    flops = {name: layer.flops for name, layer in table.items()}
    layers = [
        {
            "name": name,
            "shape": list(shapes[name]),
            "density": realised[name],
            "nonzeros": counts[name],
            "flops": realised[name] * flops[name],
        }
        for name in counts
    ]
    total_params = sum(table[name].numel for name in counts)
    nonzeros = sum(counts.values())
    return {
        "layers": layers,
        "total": {
            "params": total_params,
            "nonzeros": nonzeros,
            "density": nonzeros / total_params,
            "flops_dense": sum(flops.values()),
            "flops": sparse_forward_flops(flops, realised),
        },
        "input_size": size,
        "augment": augment,
    }


def _layer_counts(shapes: dict[str, tuple[int, ...]], densities: dict[str, float]) -> dict:
    # The engine's exact-count rule lives with the masks (trainables.sparse.masks, which
    # imports torch); it is used, not restated, so the counts shown are the ones trained.
    from trainables.sparse.masks import layer_counts

    return layer_counts({n: shapes[n] for n in densities}, densities)


def _table(report: dict[str, Any], title: str) -> str:
    rows = [("layer", "shape", "density", "nonzeros", "flops/img")]
    for layer in report["layers"]:
        shape = "x".join(map(str, layer["shape"]))
        flops = f"{layer['flops']:.3e}"
        rows.append(
            (layer["name"], shape, f"{layer['density']:.4f}", f"{layer['nonzeros']:,}", flops)
        )
    total = report["total"]
    weights = f"{total['params']:,} weights"
    nonzeros = f"{total['nonzeros']:,}"
    rows.append(("total", weights, f"{total['density']:.4f}", nonzeros, f"{total['flops']:.3e}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [title]
    for index, row in enumerate(rows):
        if index in (1, len(rows) - 1):
            lines.append("  ".join("-" * w for w in widths))
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1])]
        cells += [cell.rjust(width) for cell, width in zip(row[2:], widths[2:], strict=True)]
        lines.append("  ".join(cells))
    ratio = total["flops"] / total["flops_dense"]
    lines.append(
        f"dense forward FLOPs/img {total['flops_dense']:.3e}; sparse {total['flops']:.3e} "
        f"({ratio:.3f} of dense); 2*MAC, conv+linear only"
    )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    report = sparsity_report(
        args.model,
        args.density,
        args.init,
        args.dataset,
        args.width,
        args.stem,
        args.dense_first_layer,
        args.dense_last_layer,
        augment=args.augment,
    )
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        size = report["input_size"]
        title = (
            f"{args.model} (width {args.width}, {args.stem} stem) on {args.dataset} "
            f"({size}x{size}, {report['augment']} preset), {args.init} at density "
            f"{args.density:g}"
        )
        print(_table(report, title))
    return 0
