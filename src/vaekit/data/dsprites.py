"""dSprites (Matthey et al. 2017) on its exact factor grid, rendered here, and DeepMind's own file.

The grid is the original's: shape in {square, ellipse, heart}, scale = linspace(0.5, 1, 6),
orientation = linspace(0, 2 pi, 40) with both ends included, posX and posY = linspace(0, 1, 32); one
binary 64 x 64 image per combination, 737,280 in all, in row-major order of the factors (posY fastest),
as DeepMind's file stores them.

The rendering, stated so that anyone can repeat it (it is ours; DeepMind's sprites differ in detail):
a pixel (row i, column j) is on when its centre (x, y) = (j + 0.5, i + 0.5) lies inside the shape. The
shape's centre is (10.5 + 43 posX, 10.5 + 43 posY): posY = 0 is the top. In the shape's own frame,
(u, v) = R(-theta) (x - cx, y - cy) / (RADIUS * scale) with RADIUS = 10 pixels, the shapes are
  square   max(|u|, |v|) <= 1 / sqrt(2)                       (its corners on the unit circle)
  ellipse  u^2 + (2 v)^2 <= 1                                 (axes 1 and 1/2)
  heart    (a^2 + b^2 - 1)^3 - a^2 b^3 <= 0, (a, b) = HEART_SCALE (u, HEART_SHIFT - v)
so every shape lies within RADIUS * scale of its centre and no pixel of any image leaves the frame.
Deterministic: float64 arithmetic, no randomness. tests/test_dsprites.py pins the checksum of every 997th
image; that of all 737,280 (images_digest(render_all()), 21 s and under 1 GB on 2 cores) is
224aa4a21c976db6eb4e4ab7f003223e20dd2bba1b7529d00607cae07139b0f7.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from vaekit.errors import DataError

FACTOR_NAMES = ("shape", "scale", "orientation", "posX", "posY")
FACTOR_SIZES = (3, 6, 40, 32, 32)
FACTOR_VALUES = (
    np.array([1.0, 2.0, 3.0]),  # square, ellipse, heart, as DeepMind's file numbers them
    np.linspace(0.5, 1.0, 6),
    np.linspace(0.0, 2 * math.pi, 40),
    np.linspace(0.0, 1.0, 32),
    np.linspace(0.0, 1.0, 32),
)
SHAPE_NAMES = ("square", "ellipse", "heart")
IMAGES = math.prod(FACTOR_SIZES)  # 737,280
SIZE = 64
RADIUS = 10.0  # pixels, at scale 1
MARGIN = 10.5  # the centre's distance from the frame's edge at posX or posY = 0
# The heart curve spans a in [-1.139, 1.139] and b in [-1, 1.236]: shifted by HEART_SHIFT it is centred on
# the origin in b, and HEART_SCALE brings its farthest point (1.32 from that centre) inside the unit circle.
HEART_SHIFT = 0.118
HEART_SCALE = 1.33
WINDOW = 22  # pixels around each centre that can hold the shape: 2 RADIUS, and one for the centre's offset
OFFICIAL_FILE = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"


def factor_classes(indices: np.ndarray) -> np.ndarray:
    """The factor classes of images by index, row-major (posY fastest): (n,) -> (n, 5) int64."""
    return np.stack(np.unravel_index(indices, FACTOR_SIZES), 1).astype(np.int64)


def _inside(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Whether points (u, v) in the unit frame lie inside shape 0 (square), 1 (ellipse) or 2 (heart)."""
    if shape == 0:
        return np.maximum(np.abs(u), np.abs(v)) <= 1 / math.sqrt(2)
    if shape == 1:
        return u**2 + (2 * v) ** 2 <= 1
    a, b = HEART_SCALE * u, HEART_SCALE * (HEART_SHIFT - v)
    return (a**2 + b**2 - 1) ** 3 - a**2 * b**3 <= 0


def render(indices: np.ndarray) -> np.ndarray:
    """The images of the given grid indices: (n,) -> (n, 64, 64) uint8 in {0, 1}."""
    classes = factor_classes(np.asarray(indices))
    n = len(classes)
    scale = FACTOR_VALUES[1][classes[:, 1]]
    theta = FACTOR_VALUES[2][classes[:, 2]]
    cx = MARGIN + (SIZE - 2 * MARGIN) * FACTOR_VALUES[3][classes[:, 3]]
    cy = MARGIN + (SIZE - 2 * MARGIN) * FACTOR_VALUES[4][classes[:, 4]]
    # only a window around each centre can hold the shape: compute there, then place it in the frame
    col0 = np.clip(np.floor(cx - WINDOW / 2).astype(np.int64), 0, SIZE - WINDOW)
    row0 = np.clip(np.floor(cy - WINDOW / 2).astype(np.int64), 0, SIZE - WINDOW)
    offsets = np.arange(WINDOW)
    x = (col0[:, None] + offsets + 0.5 - cx[:, None])[:, None, :]  # (n, 1, W)
    y = (row0[:, None] + offsets + 0.5 - cy[:, None])[:, :, None]  # (n, W, 1)
    cos, sin, r = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None], (RADIUS * scale)[:, None, None]
    u, v = (cos * x + sin * y) / r, (-sin * x + cos * y) / r
    window = np.zeros(u.shape, dtype=np.uint8)
    for shape in np.unique(classes[:, 0]).tolist():
        mine = classes[:, 0] == shape
        window[mine] = _inside(shape, u[mine], v[mine])
    images = np.zeros((n, SIZE, SIZE), dtype=np.uint8)
    rows = row0[:, None, None] + offsets[None, :, None]
    cols = col0[:, None, None] + offsets[None, None, :]
    images[np.arange(n)[:, None, None], rows, cols] = window
    return images


def render_all(chunk: int = 8192) -> np.ndarray:
    """Every image of the grid, bit-packed along rows: (737280, 64, 8) uint8 (about 377 MB)."""
    out = np.empty((IMAGES, SIZE, SIZE // 8), dtype=np.uint8)
    for start in range(0, IMAGES, chunk):
        indices = np.arange(start, min(start + chunk, IMAGES))
        out[start : start + len(indices)] = np.packbits(render(indices), axis=-1)
    return out


def images_digest(packed: np.ndarray) -> str:
    """SHA-256 of bit-packed images (n, 64, 8): what the tests pin."""
    return hashlib.sha256(np.ascontiguousarray(packed).tobytes()).hexdigest()


def read_official_file(path: Path) -> np.ndarray:
    """DeepMind's dSprites file, checked by its shape and factor table: bit-packed images (737280, 64, 8).
    Whatever NumPy raises for a damaged file becomes one error naming it."""
    try:
        with np.load(path, allow_pickle=False) as loaded:
            images, classes = loaded["imgs"], loaded["latents_classes"]
    except FileNotFoundError:
        raise DataError(f"dSprites file {path} does not exist.") from None
    except Exception as err:  # zipfile, OSError, ValueError, KeyError for a file of other arrays
        raise DataError(f"{path} is not DeepMind's dSprites file ({OFFICIAL_FILE}): {err}.") from None
    if images.shape != (IMAGES, SIZE, SIZE) or classes.shape != (IMAGES, 6):
        raise DataError(
            f"{path} holds images {images.shape} and factors {classes.shape}; dSprites has ({IMAGES}, 64, 64) "
            "and (737280, 6)."
        )
    if not np.array_equal(classes[:, 1:], factor_classes(np.arange(IMAGES))):
        raise DataError(f"{path}: its factor table is not dSprites' grid in row-major order.")
    return np.packbits(images.astype(bool), axis=-1)


def load_dsprites(
    source: str, path: str | None, cache: Path, log: Callable[[str], None] = lambda s: None
) -> np.ndarray:
    """All 737,280 images bit-packed (737280, 64, 8): from DeepMind's file (source "file"), or rendered
    here and cached in `cache` (the first time about a minute on 2 cores)."""
    if source == "file":
        return read_official_file(Path(path or OFFICIAL_FILE))
    if cache.exists():
        try:
            with np.load(cache, allow_pickle=False) as loaded:
                return loaded["packed"]
        except Exception as err:  # a damaged cache is rendered again
            log(f"the dSprites cache {cache} is unreadable ({err}); rendering again")
    log("rendering dSprites (737,280 images, about a minute; cached afterwards)")
    packed = render_all()
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, packed=packed)
    tmp.replace(cache)
    return packed
