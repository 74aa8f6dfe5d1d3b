"""Colored MNIST in the DisEnt layout, from any MNIST-format IDX source.

Foreground colouring on black (LfF's protocol): per image one colour
``c = clip(palette[bias] + N(0, noise^2 I), 0, 1)``, output ``c * gray`` truncated to uint8, so the
background stays black and the stroke keeps its anti-aliasing. With the Debian Fashion-MNIST
files as source this is a real "Colored Fashion-MNIST", the offline stand-in for CMNIST.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trainables.data.bundle import BundlePlan, write_bundle
from trainables.data.sources import read_mnist_format
from trainables.errors import UserError

# DisEnt's hue wheel, measured from its README figure (datasets.md section 2.2).
DISENT_PALETTE = (
    np.array(
        [
            (255, 0, 0),
            (255, 128, 0),
            (255, 255, 0),
            (128, 255, 0),
            (0, 255, 0),
            (0, 255, 255),
            (0, 0, 255),
            (128, 0, 255),
            (255, 0, 128),
            (255, 0, 255),
        ],
        dtype=np.float64,
    )
    / 255.0
)
# LfF's fixed random colours (its colors.th, decoded; datasets.md section 2.2).
LFF_PALETTE = np.array(
    [
        (0.9837, 0.3125, 0.1686),
        (0.9905, 0.9156, 0.3515),
        (0.6730, 0.4611, 0.5798),
        (0.7833, 0.8316, 0.6013),
        (0.0880, 0.7780, 0.9818),
        (0.3214, 0.9611, 0.4464),
        (0.0246, 0.2357, 0.7587),
        (0.5552, 0.1016, 0.7618),
        (0.2077, 0.3929, 0.0187),
        (0.8337, 0.2024, 0.2669),
    ],
    dtype=np.float64,
)
PALETTES = {"disent": DISENT_PALETTE, "lff": LFF_PALETTE}
DEFAULT_COLOR_NOISE = 0.005  # LfF severity 4, the setting its headline runs use


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
    palette: str = "disent",
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
    if color_noise < 0:
        raise UserError(f"color_noise: {color_noise} is not allowed; allowed: a number >= 0")
    table = PALETTES[palette]
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
    return write_bundle(plan, Path(out), train, test, render, overwrite=overwrite)
