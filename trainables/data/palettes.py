"""The colour tables of Colored MNIST: which colour each bias label paints a digit.

Two tables are known, and the evidence picks ``disent`` as the default (docs/data.md, "Colored
MNIST: which protocol"): REST trains on DisEnt's bundle, and DisEnt's README figure shows this
hue wheel for all 30 digits it draws. DisEnt never published its generator, so the rest of the
protocol (foreground colouring on black, one colour jitter per image, exact quotas) is LfF's,
whose generator is public. ``lff`` is LfF's own table, for LfF-protocol bundles. The REST paper's
text (bias 2 green, bias 4 yellow) matches neither table. Plain tuples: importable without numpy
(the ``data`` command's ``--help`` lists the names).
"""

from __future__ import annotations

from dataclasses import dataclass

from trainables.registry import Registry


@dataclass(frozen=True)
class Palette:
    """Ten mean colours in [0, 1] (index = bias label) and where they come from."""

    rgb: tuple[tuple[float, float, float], ...]
    source: str


def _bytes(*colours: tuple[int, int, int]) -> tuple[tuple[float, float, float], ...]:
    return tuple((r / 255.0, g / 255.0, b / 255.0) for r, g, b in colours)


PALETTES: Registry[Palette] = Registry("palette")
PALETTES.register(
    "disent",
    Palette(
        # The modal bright colour of each digit in DisEnt's README figure (assets/data.png of
        # kakaoenterprise/Learning-Debiased-Disentangled); reference/datasets.md section 2.2.
        rgb=_bytes(
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
        ),
        source="DisEnt README figure (the bundle REST trains on)",
    ),
)
PALETTES.register(
    "lff",
    Palette(
        # alinlab/LfF data/resource/colors.th, its 30 float32 values decoded (to 1e-4).
        rgb=(
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
        ),
        source="LfF colors.th",
    ),
)
DEFAULT_PALETTE = "disent"
# LfF's colour-noise std by severity (1 -> 0.05 ... 4 -> 0.005); its headline runs use 4.
DEFAULT_COLOR_NOISE = 0.005
