"""``rest-sweep sparsity``: per-layer densities, non-zeros and FLOPs of a sparse model.

Shows what a trial at a given density will train before any GPU time is spent: the layer
densities the rule assigns, the exact non-zero counts the engine will build and the forward
FLOPs per image at the dataset's input size.
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


def sparsity_report(
    model: str,
    density: float,
    init: str,
    dataset: str = "cmnist",
    width: int = 64,
    stem: str = "imagenet",
    dense_first_layer: bool = False,
    dense_last_layer: bool = False,
) -> dict[str, Any]:
    """The ``--json`` document: one row per maskable layer and the totals."""
    from trainables.config import DATASETS
    from trainables.models import MODELS, build_model
    from trainables.sparse import (
        DENSITY_RULES,
        layer_counts,
        layer_densities,
        layer_flops,
        maskable_parameters,
        sparse_forward_flops,
    )

    _allowed("model", model, MODELS.names())
    _allowed("init", init, DENSITY_RULES.names())
    _allowed("dataset", dataset, tuple(DATASETS))
    _allowed("stem", stem, ("imagenet", "cifar"))
    if not 0 < density <= 1:
        raise UserError(f"--density: {density!r} is not allowed; allowed: a number in (0, 1]")
    if width < 1:
        raise UserError(f"--width: {width!r} is not allowed; allowed: an integer >= 1")
    info = DATASETS[dataset]
    net = build_model(model, info["num_classes"], width=width, stem=stem)
    params = maskable_parameters(net, dense_first_layer, dense_last_layer)
    shapes = {name: tuple(p.shape) for name, p in params.items()}
    counts = layer_counts(shapes, layer_densities(shapes, density, init))
    flops = layer_flops(net, info["image_size"])
    realised = {name: counts[name] / params[name].numel() for name in params}
    layers = [
        {
            "name": name,
            "shape": list(shapes[name]),
            "density": realised[name],
            "nonzeros": counts[name],
            "flops": realised[name] * flops[name],
        }
        for name in params
    ]
    total_params = sum(p.numel() for p in params.values())
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
    }


def _table(report: dict[str, Any], title: str) -> str:
    rows = [("layer", "shape", "density", "nonzeros", "flops/img")]
    for layer in report["layers"]:
        shape = "x".join(map(str, layer["shape"]))
        rows.append(
            (layer["name"], shape, f"{layer['density']:.4f}", f"{layer['nonzeros']:,}",
             f"{layer['flops']:.3e}")
        )  # fmt: skip
    total = report["total"]
    rows.append(
        ("total", f"{total['params']:,} weights", f"{total['density']:.4f}",
         f"{total['nonzeros']:,}", f"{total['flops']:.3e}")
    )  # fmt: skip
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
        args.model, args.density, args.init, args.dataset, args.width, args.stem,
        args.dense_first_layer, args.dense_last_layer,
    )  # fmt: skip
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        from trainables.config import DATASETS

        size = DATASETS[args.dataset]["image_size"]
        title = (
            f"{args.model} (width {args.width}, {args.stem} stem) on {args.dataset} "
            f"({size}x{size}), {args.init} at density {args.density:g}"
        )
        print(_table(report, title))
    return 0
