"""Image operations behind the LfF "type0" corruptions, in numpy / scipy.ndimage only.

The reference generator leans on OpenCV, scikit-image and ImageMagick. These are small
re-implementations of the pieces it needs (HSV, luma, ImageMagick-style motion blur, plasma
fractal, affine warp, Canny-like edges, histogram equalisation, a procedural frost texture),
written from their documented behaviour so that ``corruptions.py`` reads like the recipe.
Images here are float arrays; every function is vectorised and cheap on 32x32 inputs.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

# ---------------------------------------------------------------- colour


def rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """RGB in [0, 1] -> HSV in [0, 1], with hue 0 for greys (scikit-image's convention)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    value = rgb.max(axis=-1)
    delta = value - rgb.min(axis=-1)
    sat = np.divide(delta, value, out=np.zeros_like(value), where=value > 0)
    safe = np.where(delta > 0, delta, 1.0)
    # Where two channels tie for the maximum, blue wins over green over red; the hue agrees.
    hue = np.where(
        b == value,
        4.0 + (r - g) / safe,
        np.where(g == value, 2.0 + (b - r) / safe, (g - b) / safe),
    )
    hue = np.where(delta > 0, (hue / 6.0) % 1.0, 0.0)
    return np.stack([hue, sat, value], axis=-1)


# For each hue sextant, which of (v, t, p, q) goes to R, G and B.
_SEXTANT_CHANNELS = np.array([[0, 1, 2], [3, 0, 2], [2, 0, 1], [2, 3, 0], [1, 2, 0], [0, 2, 3]])


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """HSV in [0, 1] -> RGB in [0, 1]; the inverse of :func:`rgb_to_hsv`."""
    hue, sat, value = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    h6 = hue * 6.0
    sextant = np.floor(h6)
    frac = h6 - sextant
    p = value * (1.0 - sat)
    q = value * (1.0 - frac * sat)
    t = value * (1.0 - (1.0 - frac) * sat)
    candidates = np.stack([value, t, p, q], axis=-1)
    index = _SEXTANT_CHANNELS[sextant.astype(np.int64) % 6]
    return np.take_along_axis(candidates, index, axis=-1)


def luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 grey level (OpenCV's RGB2GRAY weights), shape (H, W)."""
    return rgb @ np.array([0.299, 0.587, 0.114])


# ---------------------------------------------------------------- geometry


def center_zoom(layer: np.ndarray, factor: float) -> np.ndarray:
    """Zoom the centre of a 2-D map by ``factor`` (bilinear) and crop back to its shape."""
    if factor == 1.0:
        return layer.copy()
    h, w = layer.shape
    ch, cw = math.ceil(h / factor), math.ceil(w / factor)
    top, left = (h - ch) // 2, (w - cw) // 2
    zoomed = ndimage.zoom(layer[top : top + ch, left : left + cw], factor, order=1)
    top, left = (zoomed.shape[0] - h) // 2, (zoomed.shape[1] - w) // 2
    return zoomed[top : top + h, left : left + w]


def affine_from_points(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 affine matrix mapping three (x, y) points ``src`` onto ``dst``."""
    homogeneous = np.hstack([src, np.ones((3, 1))])
    return np.linalg.solve(homogeneous, dst).T


def warp_affine_reflect(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Bilinear warp of an (H, W, C) image by the forward affine ``matrix`` (x, y order).

    Like OpenCV's ``warpAffine`` with BORDER_REFLECT_101: each output pixel samples the input
    at the inverse-mapped position, and positions outside mirror without repeating the edge.
    """
    h, w = image.shape[:2]
    inverse = np.linalg.inv(np.vstack([matrix, [0.0, 0.0, 1.0]]))[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    src_x = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
    src_y = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
    return sample_channels(image, src_y, src_x, mode="mirror")


def sample_channels(image: np.ndarray, rows: np.ndarray, cols: np.ndarray, mode: str) -> np.ndarray:
    """Bilinear sampling of every channel of an (H, W, C) image at the same (rows, cols)."""
    coords = np.stack([rows, cols])
    return np.stack(
        [
            ndimage.map_coordinates(image[..., c], coords, order=1, mode=mode)
            for c in range(image.shape[2])
        ],
        axis=-1,
    )


# ---------------------------------------------------------------- filters


def motion_blur(layer: np.ndarray, radius: float, sigma: float, angle_deg: float) -> np.ndarray:
    """One-sided line-kernel motion blur approximating ImageMagick's ``-motion-blur``.

    The kernel has ``2*ceil(radius)+1`` taps with half-Gaussian weights exp(-i^2 / 2 sigma^2)
    (normalised); tap i reads the pixel i steps along ``angle_deg`` (x right, y down, offsets
    rounded to the nearest pixel), with edge pixels repeated outside the image.
    """
    h, w = layer.shape
    taps = np.arange(2 * math.ceil(radius) + 1)
    kernel = np.exp(-(taps.astype(np.float64) ** 2) / (2.0 * sigma * sigma))
    kernel /= kernel.sum()
    angle = math.radians(angle_deg)
    dx = np.ceil(taps * math.cos(angle) - 0.5).astype(np.int64)
    dy = np.ceil(taps * math.sin(angle) - 0.5).astype(np.int64)
    pad = len(taps)
    padded = np.pad(layer, pad, mode="edge")
    rows = np.arange(h)[None, :, None] + pad + dy[:, None, None]
    cols = np.arange(w)[None, None, :] + pad + dx[:, None, None]
    return np.tensordot(kernel, padded[rows, cols], axes=1)


def box_blur3(image: np.ndarray) -> np.ndarray:
    """3x3 mean filter with mirrored borders (OpenCV ``blur(img, (3, 3))``)."""
    return ndimage.uniform_filter(image, size=3, mode="mirror")


def equalize_histogram(image: np.ndarray) -> np.ndarray:
    """Histogram equalisation of a uint8 image: v -> round(255 (cdf(v)-cdf_min)/(N-cdf_min))."""
    counts = np.bincount(image.ravel(), minlength=256)
    cdf = np.cumsum(counts)
    cdf_min = cdf[np.flatnonzero(counts)[0]]
    if cdf_min == image.size:  # a constant image stays as it is
        return image.copy()
    lut = np.clip(np.rint((cdf - cdf_min) * (255.0 / (image.size - cdf_min))), 0, 255)
    return lut.astype(np.uint8)[image]


# Emboss kernel of the reference water spatter (applied as a correlation).
EMBOSS = np.array([[-2.0, -1.0, 0.0], [-1.0, 1.0, 1.0], [0.0, 1.0, 2.0]])


def emboss_uint8(image: np.ndarray) -> np.ndarray:
    """Correlate with :data:`EMBOSS` (mirrored borders) and saturate to uint8, like filter2D."""
    out = ndimage.correlate(image.astype(np.float64), EMBOSS, mode="mirror")
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# Neighbour offsets (drow, dcol) along the gradient for each 45-degree direction bin.
_NMS_OFFSETS = ((0, 1), (1, 1), (1, 0), (1, -1))


def gradient_edges(image: np.ndarray, low: float, high: float) -> np.ndarray:
    """Canny-style edge map: Sobel L1 magnitude, non-maximum suppression, hysteresis.

    Stands in for OpenCV's ``Canny(img, low, high)`` (3x3 Sobel with replicated borders, L1
    magnitude, gradient direction in 45-degree bins, ties kept on one side for horizontal and
    vertical and dropped for diagonal directions, 8-connected hysteresis).
    """
    gx = ndimage.sobel(image, axis=1, mode="nearest")
    gy = ndimage.sobel(image, axis=0, mode="nearest")
    magnitude = np.abs(gx) + np.abs(gy)
    direction = np.rint(np.arctan2(gy, gx) / (np.pi / 4)).astype(np.int64) % 4
    h, w = image.shape
    padded = np.pad(magnitude, 1)
    is_peak = np.zeros_like(magnitude, dtype=bool)
    for d, (dr, dc) in enumerate(_NMS_OFFSETS):
        ahead = padded[1 + dr : 1 + dr + h, 1 + dc : 1 + dc + w]
        behind = padded[1 - dr : 1 - dr + h, 1 - dc : 1 - dc + w]
        keep_tie = d % 2 == 0  # horizontal or vertical gradient
        beats_ahead = magnitude >= ahead if keep_tie else magnitude > ahead
        is_peak |= (direction == d) & beats_ahead & (magnitude > behind)
    weak = is_peak & (magnitude > low)
    labels, count = ndimage.label(weak, structure=np.ones((3, 3)))
    if count == 0:
        return weak
    strong_labels = np.unique(labels[weak & (magnitude > high)])
    return np.isin(labels, strong_labels[strong_labels > 0])


# OpenCV's 5x5 chamfer metric (DIST_L2 with DIST_MASK_5): costs of the (1, 0), (1, 1) and
# knight (2, 1) steps, listed as (drow, dcol, cost).
_CHAMFER_STEPS = tuple(
    (dr, dc, {1: 1.0, 2: 1.4, 3: 2.1969}[abs(dr) + abs(dc)])
    for dr in range(-2, 3)
    for dc in range(-2, 3)
    if (abs(dr), abs(dc)) in {(0, 1), (1, 0), (1, 1), (1, 2), (2, 1)}
)


def distance_to_edges(edges: np.ndarray, cap: float) -> np.ndarray:
    """5x5-chamfer distance of each pixel to the nearest edge pixel, truncated at ``cap``.

    The metric of OpenCV's ``distanceTransform(DIST_L2, 5)`` (an approximation of the
    Euclidean distance), by parallel relaxation: every step costs >= 1, so ``cap`` + 1 rounds
    settle every distance below ``cap``, and the rest are truncated anyway.
    """
    h, w = edges.shape
    padded = np.full((h + 4, w + 4), np.inf)
    padded[2:-2, 2:-2] = np.where(edges, 0.0, np.inf)
    rows, cols = np.indices((h, w)) + 2
    flat = np.stack([((rows + dr) * (w + 4) + cols + dc).ravel() for dr, dc, _ in _CHAMFER_STEPS])
    cost = np.array([c for _, _, c in _CHAMFER_STEPS])[:, None]
    dist = padded[2:-2, 2:-2].ravel()
    for _ in range(int(math.ceil(cap)) + 1):
        relaxed = np.minimum(dist, (padded.ravel()[flat] + cost).min(axis=0))
        if np.array_equal(relaxed, dist):
            break
        dist = relaxed
        padded[2:-2, 2:-2] = dist.reshape(h, w)
    return np.minimum(dist.reshape(h, w), cap)


# ---------------------------------------------------------------- procedural maps


def plasma_fractal(size: int, decay: float, rng: np.random.Generator) -> np.ndarray:
    """Diamond-square plasma on a toroidal ``size`` x ``size`` grid, normalised to [0, 1].

    ``size`` must be a power of two. Each midpoint is the mean of its four neighbours plus
    wibble * U(-wibble, wibble); wibble starts at 100 and is divided by ``decay`` per octave,
    so (as in the reference) the noise amplitude falls by decay^2 per octave.
    """
    grid = np.zeros((size, size))
    step, wibble = size, 100.0
    while step >= 2:
        half = step // 2
        corners = grid[0::step, 0::step]
        square = corners + np.roll(corners, -1, axis=0)
        square = square + np.roll(square, -1, axis=1)
        grid[half::step, half::step] = square / 4 + wibble * rng.uniform(
            -wibble, wibble, square.shape
        )
        centres = grid[half::step, half::step]
        across = corners + np.roll(corners, -1, axis=1) + centres + np.roll(centres, 1, axis=0)
        grid[0::step, half::step] = across / 4 + wibble * rng.uniform(-wibble, wibble, across.shape)
        down = corners + np.roll(corners, -1, axis=0) + centres + np.roll(centres, 1, axis=1)
        grid[half::step, 0::step] = down / 4 + wibble * rng.uniform(-wibble, wibble, down.shape)
        step, wibble = half, wibble / decay
    grid -= grid.min()
    return grid / grid.max()


def next_power_of_two(n: int) -> int:
    """Smallest power of two >= n."""
    return 1 << max(0, (n - 1).bit_length())


def _random_walks(
    starts: np.ndarray, headings: np.ndarray, length: int, wiggle: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Unit-step walks with slowly turning headings.

    Returns the (n, length, 2) row/col positions and the (n, length) heading at each step.
    """
    angle = headings[:, None] + np.cumsum(rng.normal(0.0, wiggle, (len(starts), length)), axis=1)
    steps = np.stack([np.sin(angle), np.cos(angle)], axis=-1)
    return starts[:, None, :] + np.cumsum(steps, axis=1), angle


def _splat(points: np.ndarray, weights: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Accumulate weighted points onto a toroidal grid (nearest pixel)."""
    h, w = shape
    rows = np.rint(points[..., 0]).astype(np.int64) % h
    cols = np.rint(points[..., 1]).astype(np.int64) % w
    flat = np.bincount((rows * w + cols).ravel(), weights=weights.ravel(), minlength=h * w)
    return flat.reshape(shape)


# Grey-blue tint of the procedural frost (R, G, B multipliers).
FROST_TINT = np.array([0.78, 0.88, 1.0])


def _unit_noise(shape: tuple[int, int], sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Uniform noise blurred (toroidally) with ``sigma`` and stretched to [0, 1]."""
    noise = ndimage.gaussian_filter(rng.random(shape), sigma=sigma, mode="wrap")
    return (noise - noise.min()) / max(float(np.ptp(noise)), 1e-12)


def _crystal_streaks(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Thin dendritic streaks in [0, 1]: stems with side branches at +-60 degrees (hexagonal ice)."""
    h, w = shape
    side = min(h, w)
    n_stems, stem_len = max(3, side // 4), max(8, side // 2)
    starts = rng.random((n_stems, 2)) * np.array([h, w])
    stems, stem_angle = _random_walks(
        starts, rng.uniform(0, 2 * np.pi, n_stems), stem_len, 0.12, rng
    )
    n_branch, branch_len = 4, max(3, stem_len // 3)
    stem_index = np.repeat(np.arange(n_stems), n_branch)
    at = rng.integers(0, stem_len, stem_index.size)
    side_of_stem = rng.choice([-1.0, 1.0], stem_index.size)
    headings = stem_angle[stem_index, at] + side_of_stem * (np.pi / 3)
    branches, _ = _random_walks(stems[stem_index, at], headings, branch_len, 0.2, rng)
    fade = np.broadcast_to(np.linspace(1.0, 0.5, stem_len), stems.shape[:2])
    crystals = _splat(stems, fade, shape) + _splat(
        branches, np.full(branches.shape[:2], 0.7), shape
    )
    return np.clip(ndimage.gaussian_filter(crystals, sigma=0.5, mode="wrap") * 2.0, 0.0, 1.0)


def frost_texture(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A seeded ice-crystal texture in [0, 255], (H, W, 3): the ``procedural`` frost layer, the
    fallback for the reference frost photographs (``trainables.data.frost``).

    Dendritic streaks over blurred low-frequency haze and fine grain, tinted grey-blue. It looks
    like frost on glass at CIFAR scale; it is *not* statistically equivalent to the ImageNet-C
    frost photos that the reference blends in (docs/corruptions.md says how it differs).
    """
    haze = _unit_noise(shape, min(shape) / 8, rng)
    grain = _unit_noise(shape, 0.7, rng)
    grey = np.clip(0.45 * haze + 0.2 * grain + 0.75 * _crystal_streaks(shape, rng), 0.0, 1.0)
    return grey[..., None] * FROST_TINT * 255.0
