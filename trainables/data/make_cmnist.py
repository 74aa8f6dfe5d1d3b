"""Colored MNIST in the DisEnt layout, from any MNIST-format IDX source.

Foreground colouring on black (LfF's protocol): per image one colour
``c = clip(palette[bias] + N(0, noise^2 I), 0, 1)``, output ``c * gray`` truncated to uint8, so the
background stays black and the stroke keeps its anti-aliasing. With real MNIST (``rest-sweep data
fetch mnist``) this is the paper's Colored MNIST; with the Debian Fashion-MNIST files it is
"Colored Fashion-MNIST", an offline stand-in whose numbers are not the paper's. The palette
default and the evidence behind it: :mod:`trainables.data.palettes`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from trainables.data.bundle import BundlePlan, write_bundle
from trainables.data.palettes import DEFAULT_COLOR_NOISE, DEFAULT_PALETTE, PALETTES
from trainables.data.raw_sources import idx_provenance
from trainables.data.sources import read_mnist_format
from trainables.errors import UserError

# Each palette as a float64 (10, 3) table (trainables/data/palettes.py says where each is from).
PALETTE_TABLES = {name: np.asarray(PALETTES.get(name).rgb, dtype=np.float64) for name in PALETTES}
DISENT_PALETTE = PALETTE_TABLES["disent"]
# The largest colour jitter: a std of 1 already drowns the palette (channels are in [0, 1]).
COLOR_NOISE_MAX = 1.0


def colorize(
    gray: np.ndarray, bias: np.ndarray, palette: np.ndarray, noise: float, rng: np.random.Generator
) -> np.ndarray:
    """(N, H, W) gray uint8 -> (N, H, W, 3) uint8 coloured by ``palette[bias]`` plus jitter."""
    colours = (
        palette[bias] + rng.normal(0.0, noise, size=(len(bias), 3)) if noise else palette[bias]
    )
    colours = np.clip(colours, 0.0, 1.0)
    return (colours[:, None, None, :] * gray[..., None].astype(np.float64)).astype(np.uint8)


def make_cmnist(
    source: str | Path,
    out: str | Path,
    *,
    ratios: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0),
    palette: str = DEFAULT_PALETTE,
    color_noise: float = DEFAULT_COLOR_NOISE,
    valid_size: int = 5000,
    limit: int | None = None,
    test_size: int | None = None,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write ``<out>/cmnist/`` (train per ratio, biased valid, unbiased test); returns it."""
    if palette not in PALETTES:
        raise UserError(f"palette: {palette!r} is not allowed; allowed: {', '.join(PALETTES)}")
    if not (math.isfinite(color_noise) and 0 <= color_noise <= COLOR_NOISE_MAX):
        raise UserError(
            f"--color-noise: {color_noise} is not allowed; allowed: a number in "
            f"[0, {COLOR_NOISE_MAX:g}] (the std of a colour whose channels are in [0, 1])"
        )
    table = PALETTE_TABLES[palette]
    train = read_mnist_format(Path(source), "train")
    test = read_mnist_format(Path(source), "test")
    for split, (_, labels) in (("train", train), ("test", test)):
        if labels.min() < 0 or labels.max() > 9:
            raise UserError(
                f"source: {source} {split} labels span {labels.min()}..{labels.max()};"
                " allowed: 0..9"
            )

    def render(gray, labels, bias, seed_sequence):
        return colorize(gray, bias, table, color_noise, np.random.default_rng(seed_sequence))

    plan = BundlePlan(
        dataset="cmnist",
        ratios=tuple(ratios),
        valid_size=valid_size,
        limit=limit,
        test_size=test_size,
        seed=seed,
        nested_valid=False,
        num_classes=10,
    )
    provenance = {
        **idx_provenance(Path(source), "cmnist", "Colored {}"),
        "palette": palette,
        "color_noise": color_noise,
    }
    return write_bundle(
        plan, Path(out), train, test, render, provenance=provenance, overwrite=overwrite
    )
