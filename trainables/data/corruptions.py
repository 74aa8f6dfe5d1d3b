"""The ten LfF "type0" corruptions that make Corrupted CIFAR-10 (bias label = index in TYPE0).

``corrupt(image, name, level, rng)`` applies one corruption at level 1..5 to an (H, W, 3) uint8
RGB image and returns uint8, truncating the float result as LfF does. The level tables are the
CIFAR 32-px constants carried in LfF; sizes that LfF ties to 32 px scale with the image side.
All randomness comes from ``rng``, so a fixed generator state gives a fixed output. Frost
blends in the reference frost photographs by default, or the procedural fallback texture
(``frost=``, see :mod:`trainables.data.frost`). Where we cannot follow the reference
(ImageMagick motion blur, Canny) the substitutes are in ``corruption_ops.py``; all of it is
documented in ``docs/corruptions.md``.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from trainables.data import corruption_ops as ops
from trainables.data.frost import DEFAULT_FROST, FrostLayer, frost_layer
from trainables.errors import UserError
from trainables.registry import Registry

LEVELS: tuple[int, ...] = (1, 2, 3, 4, 5)
MIN_SIDE = 16

# A corruption maps (uint8 image, level 1..5, rng) to float or uint8 values in [0, 255].
CorruptionFn = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]
CORRUPTIONS: Registry[CorruptionFn] = Registry("corruption")


def corrupt(
    image: np.ndarray,
    name: str,
    level: int,
    rng: np.random.Generator,
    *,
    frost: str | FrostLayer = DEFAULT_FROST,
) -> np.ndarray:
    """Apply corruption ``name`` at ``level`` (LfF Severity s is level s+1); uint8 out.

    ``frost`` is what the frost corruption blends in (ignored by the other nine): a layer name
    of ``trainables.data.frost.FROST_LAYERS`` (``reference`` reads the photographs from the
    default folder once per process) or a layer built by ``frost_layer(name, folder)``.
    """
    fn = CORRUPTIONS.get(name)
    if isinstance(level, bool) or not isinstance(level, int | np.integer) or level not in LEVELS:
        raise UserError(f"corruption level {level!r} is invalid; allowed: 1, 2, 3, 4, 5")
    _check_image(image)
    options = {"layer": frost} if name == "frost" else {}
    out = np.asarray(fn(image, int(level), rng, **options))
    return np.clip(out, 0, 255).astype(np.uint8)  # truncation, as LfF's np.uint8(...)


def _check_image(image: np.ndarray) -> None:
    """Reject anything but an (H, W, 3) uint8 array with H, W >= MIN_SIDE."""
    ok = (
        isinstance(image, np.ndarray)
        and image.dtype == np.uint8
        and image.ndim == 3
        and image.shape[2] == 3
        and min(image.shape[:2]) >= MIN_SIDE
    )
    if not ok:
        seen = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image)
        raise UserError(
            f"corruption input must be an (H, W, 3) uint8 array with H, W >= {MIN_SIDE}; got {seen}"
        )


def _unit(image: np.ndarray) -> np.ndarray:
    """uint8 -> float64 in [0, 1]."""
    return image.astype(np.float64) / 255.0


def _to_255(x: np.ndarray) -> np.ndarray:
    """Clip a [0, 1] float image and scale it to [0, 255]."""
    return np.clip(x, 0.0, 1.0) * 255.0


# ---------------------------------------------------------------- snow


@dataclass(frozen=True)
class SnowLevel:
    """Snow layer N(loc, scale^2), centre zoom, threshold, motion blur, image blend weight."""

    loc: float
    scale: float
    zoom: float
    threshold: float
    blur_radius: float
    blur_sigma: float
    blend: float


SNOW = (
    SnowLevel(0.1, 0.2, 1.0, 0.6, 8, 3, 0.95),
    SnowLevel(0.1, 0.2, 1.0, 0.5, 10, 4, 0.9),
    SnowLevel(0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
    SnowLevel(0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
    SnowLevel(0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
)


def _snow_layer(shape: tuple[int, int], p: SnowLevel, rng: np.random.Generator) -> np.ndarray:
    """Motion-blurred flakes in [0, 1], quantised to 8 bits like the ImageMagick round trip."""
    layer = ops.center_zoom(rng.normal(p.loc, p.scale, shape), p.zoom)
    layer[layer < p.threshold] = 0.0
    layer = (np.clip(layer, 0.0, 1.0) * 255.0).astype(np.uint8).astype(np.float64)
    angle = rng.uniform(-135.0, -45.0)
    blurred = ops.motion_blur(layer, p.blur_radius, p.blur_sigma, angle)
    return np.clip(np.rint(blurred), 0, 255) / 255.0


@CORRUPTIONS.decorator("snow")
def snow(image: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    """Falling snow: streaked flakes (and their 180-degree copy) over a whitened image."""
    p = SNOW[level - 1]
    x = _unit(image)
    flakes = _snow_layer(x.shape[:2], p, rng)[..., None]
    washed = np.maximum(x, ops.luma(x)[..., None] * 1.5 + 0.5)
    x = p.blend * x + (1.0 - p.blend) * washed
    return _to_255(x + flakes + np.rot90(flakes, 2))


# ---------------------------------------------------------------- frost

FROST = ((1.0, 0.2), (1.0, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45))  # (w_img, w_frost)


@functools.cache
def _named_frost_layer(name: str) -> FrostLayer:
    """The layer ``name`` built from the default folder, once per process."""
    return frost_layer(name)


@CORRUPTIONS.decorator("frost")
def frost(
    image: np.ndarray,
    level: int,
    rng: np.random.Generator,
    layer: str | FrostLayer = DEFAULT_FROST,
) -> np.ndarray:
    """Frosted glass: weighted sum of the image and a frost texture on the 0..255 scale.

    ``layer`` gives the texture: by default a random crop of a reference frost photograph, as
    in LfF; ``procedural`` is the documented fallback (``trainables.data.frost``).
    """
    w_img, w_frost = FROST[level - 1]
    texture = (layer if callable(layer) else _named_frost_layer(layer))(image.shape[:2], rng)
    return np.clip(w_img * image.astype(np.float64) + w_frost * texture, 0.0, 255.0)


# ---------------------------------------------------------------- fog

FOG = ((0.2, 3.0), (0.5, 3.0), (0.75, 2.5), (1.0, 2.0), (1.5, 1.75))  # (strength, decay)


@CORRUPTIONS.decorator("fog")
def fog(image: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    """Fog: add a plasma fractal, then rescale so the brightest input value is kept."""
    strength, decay = FOG[level - 1]
    x = _unit(image)
    h, w = x.shape[:2]
    plasma = ops.plasma_fractal(ops.next_power_of_two(max(h, w)), decay, rng)[:h, :w]
    peak = x.max()
    x = x + strength * plasma[..., None]
    return _to_255(x * peak / (peak + strength))


# ---------------------------------------------------------------- brightness, contrast

BRIGHTNESS = (0.05, 0.1, 0.15, 0.2, 0.3)  # added to HSV value
CONTRAST = (0.75, 0.5, 0.4, 0.3, 0.15)  # factor on the deviation from the channel mean


@CORRUPTIONS.decorator("brightness")
def brightness(image: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    """Brighter: raise the HSV value channel by a constant."""
    hsv = ops.rgb_to_hsv(_unit(image))
    hsv[..., 2] = np.clip(hsv[..., 2] + BRIGHTNESS[level - 1], 0.0, 1.0)
    return _to_255(ops.hsv_to_rgb(hsv))


@CORRUPTIONS.decorator("contrast")
def contrast(image: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    """Lower contrast: shrink each channel towards its spatial mean."""
    x = _unit(image)
    mean = x.mean(axis=(0, 1), keepdims=True)
    return _to_255((x - mean) * CONTRAST[level - 1] + mean)


# ---------------------------------------------------------------- spatter


@dataclass(frozen=True)
class SpatterLevel:
    """Liquid field N(loc, scale^2) blurred by sigma and cut at threshold; k = strength."""

    loc: float
    scale: float
    sigma: float
    threshold: float
    k: float
    mode: str  # "water" or "mud"


SPATTER = (
    SpatterLevel(0.62, 0.1, 0.7, 0.7, 0.5, "water"),
    SpatterLevel(0.65, 0.1, 0.8, 0.7, 0.5, "water"),
    SpatterLevel(0.65, 0.3, 1.0, 0.69, 0.5, "water"),
    SpatterLevel(0.65, 0.1, 0.7, 0.69, 0.6, "mud"),
    SpatterLevel(0.65, 0.1, 0.5, 0.68, 0.6, "mud"),
)
WATER_RGB = np.array([175.0, 238.0, 238.0]) / 255.0  # pale turquoise
MUD_RGB = np.array([63.0, 42.0, 20.0]) / 255.0  # brown


def _liquid(shape: tuple[int, int], p: SpatterLevel, rng: np.random.Generator) -> np.ndarray:
    """Blurred Gaussian field with everything below the threshold set to 0."""
    field = rng.normal(p.loc, p.scale, shape)
    field = ndimage.gaussian_filter(field, p.sigma, mode="nearest", truncate=4.0)
    field[field < p.threshold] = 0.0
    return field


def _water_strength(liquid: np.ndarray, k: float) -> np.ndarray:
    """Embossed, edge-distance-shaded liquid map scaled to a maximum of ``k``."""
    liquid8 = (np.clip(liquid, 0.0, 1.0) * 255.0).astype(np.uint8)
    edges = ops.gradient_edges(liquid8.astype(np.float64), low=50.0, high=150.0)
    # float32 like the reference, so the blur's truncation to uint8 lands on the same integers
    dist = ops.distance_to_edges(edges, cap=20.0).astype(np.float32)
    dist = ops.box_blur3(dist).astype(np.uint8)
    shade = ops.box_blur3(ops.emboss_uint8(ops.equalize_histogram(dist)).astype(np.float64))
    strength = liquid8 * shade
    peak = strength.max()
    return strength * (k / peak) if peak > 0 else np.zeros_like(strength)


@CORRUPTIONS.decorator("spatter")
def spatter(image: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    """Spatter: turquoise water drops (levels 1-3) or opaque brown mud (levels 4-5)."""
    p = SPATTER[level - 1]
    x = _unit(image)
    liquid = _liquid(x.shape[:2], p, rng)
    if p.mode == "water":
        return _to_255(x + _water_strength(liquid, p.k)[..., None] * WATER_RGB)
    mud = ndimage.gaussian_filter(
        (liquid > p.threshold).astype(np.float64), p.k, mode="nearest", truncate=4.0
    )
    mud[mud < 0.8] = 0.0
    mud = mud[..., None]
    return _to_255(x * (1.0 - mud) + mud * MUD_RGB)


# ---------------------------------------------------------------- elastic

# (alpha, sigma, affine) as fractions of the image side (LfF multiplies them by 32).
ELASTIC = (
    (0.0, 0.0, 0.08),
    (0.05, 0.2, 0.07),
    (0.08, 0.06, 0.06),
    (0.1, 0.04, 0.05),
    (0.1, 0.03, 0.03),
)


def _random_affine(x: np.ndarray, jitter: float, rng: np.random.Generator) -> np.ndarray:
    """Warp by the affine map that moves three points around the centre by U(+-jitter)."""
    h, w = x.shape[:2]
    cx, cy, r = w // 2, h // 2, min(h, w) // 3
    src = np.array([[cx + r, cy + r], [cx + r, cy - r], [cx - r, cy - r]], dtype=np.float64)
    dst = src + rng.uniform(-jitter, jitter, src.shape)
    return ops.warp_affine_reflect(x, ops.affine_from_points(src, dst))


@CORRUPTIONS.decorator("elastic")
def elastic(image: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    """Elastic warp: a random affine map, then a smooth random displacement field."""
    side = min(image.shape[:2])
    alpha, sigma, jitter = (v * side for v in ELASTIC[level - 1])
    x = _random_affine(_unit(image), jitter, rng)
    shape = x.shape[:2]
    dx = ndimage.gaussian_filter(rng.uniform(-1, 1, shape), sigma, mode="reflect", truncate=3)
    dy = ndimage.gaussian_filter(rng.uniform(-1, 1, shape), sigma, mode="reflect", truncate=3)
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    return _to_255(ops.sample_channels(x, rows + alpha * dy, cols + alpha * dx, mode="reflect"))


# ---------------------------------------------------------------- jpeg, pixelate

JPEG_QUALITY = (80, 65, 58, 50, 40)
PIXELATE = (0.95, 0.9, 0.85, 0.75, 0.65)  # fraction of the side kept before scaling back


@CORRUPTIONS.decorator("jpeg")
def jpeg(image: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    """JPEG artefacts: a PIL encode/decode round trip at the level's quality."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=JPEG_QUALITY[level - 1])
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"))


@CORRUPTIONS.decorator("pixelate")
def pixelate(image: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    """Pixelation: BOX-downscale by the level factor, then BOX-upscale to the input size."""
    h, w = image.shape[:2]
    factor = PIXELATE[level - 1]
    small = Image.fromarray(image).resize((int(w * factor), int(h * factor)), Image.Resampling.BOX)
    return np.asarray(small.resize((w, h), Image.Resampling.BOX))


# ---------------------------------------------------------------- saturate

SATURATE = ((0.3, 0.0), (0.1, 0.0), (1.5, 0.0), (2.0, 0.1), (2.5, 0.2))  # S -> S*scale+shift


@CORRUPTIONS.decorator("saturate")
def saturate(image: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    """Change saturation: scale and shift the HSV saturation channel (levels 1-2 desaturate)."""
    scale, shift = SATURATE[level - 1]
    hsv = ops.rgb_to_hsv(_unit(image))
    hsv[..., 1] = np.clip(hsv[..., 1] * scale + shift, 0.0, 1.0)
    return _to_255(ops.hsv_to_rgb(hsv))


# The corruption of bias label i is the i-th registered above: LfF's type0 order (snow, frost,
# fog, brightness, contrast, spatter, elastic, jpeg, pixelate, saturate; pinned by the tests).
TYPE0: tuple[str, ...] = tuple(CORRUPTIONS.names())
