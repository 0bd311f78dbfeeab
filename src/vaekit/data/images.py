"""Your own images as a dataset: a folder of PNG/JPEG files, or a NumPy .npy/.npz array."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from vaekit.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


def split_arrays(
    x: np.ndarray,
    y: np.ndarray,
    valid_fraction: float,
    test_fraction: float,
    seed: int,
    origin: str,
    factors: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Shuffle once with a seed and cut into train / valid / test by the given fractions; factors (N, F),
    if given, follow their images into {split}_factors."""
    n = len(x)
    n_valid, n_test = int(round(n * valid_fraction)), int(round(n * test_fraction))
    if n - n_valid - n_test < 1 or (valid_fraction > 0 and n_valid < 1) or (test_fraction > 0 and n_test < 1):
        raise DataError(
            f"{origin} holds {n} images: too few to split into train, valid and test "
            f"({valid_fraction:g} and {test_fraction:g} held out)."
        )
    order = np.random.default_rng(seed).permutation(n)
    parts = {"valid": order[:n_valid], "test": order[n_valid : n_valid + n_test], "train": order[n_valid + n_test :]}
    out = {}
    for name, rows in parts.items():
        out[f"{name}_x"], out[f"{name}_y"] = x[rows], y[rows]
        if factors is not None:
            out[f"{name}_factors"] = factors[rows]
    return out


def read_image_folder(
    folder: Path,
    image_shape: tuple[int, int, int],
    on_bad_file: str = "stop",
    log: Callable[[str], None] = lambda s: None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """All PNG/JPEG files under `folder` as uint8 (N, C, H, W), resized and centre-cropped to (H, W),
    their labels (N,) and the class names the labels index.

    The classes are the first-level subfolders (sorted by name), and "(top folder)" after them
    for files directly in `folder`.
    An unreadable file stops with its name (on_bad_file "stop") or is skipped and reported to `log` ("skip").
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"image folder {folder} does not exist.")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DataError(f"image folder {folder} holds no .png, .jpg or .jpeg files.")
    classes = sorted({p.relative_to(folder).parts[0] for p in files if len(p.relative_to(folder).parts) > 1})
    top_label = len(classes)  # files directly in the folder
    c, h, w = image_shape
    if c not in (1, 3):
        raise DataError(f"model.image_shape = {image_shape}: images from a folder have 1 (grey) or 3 (RGB) channels.")
    images, labels, skipped = [], [], []
    for path in files:
        try:
            array = _read_image(path, c, h, w)
        except Exception as err:  # Pillow raises many types: unidentified, truncated, decompression bombs, ...
            if on_bad_file == "stop":
                raise DataError(
                    f"{path} is not a readable image ({err}); fix or remove it, or set data.on_bad_file=skip."
                ) from None
            skipped.append(path)
            continue
        images.append(array[None] if c == 1 else array.transpose(2, 0, 1))
        parts = path.relative_to(folder).parts
        labels.append(classes.index(parts[0]) if len(parts) > 1 else top_label)
    if skipped:
        names = ", ".join(str(p) for p in skipped[:5]) + (" ..." if len(skipped) > 5 else "")
        log(f"skipped {len(skipped)} unreadable image(s): {names}")
    if not images:
        raise DataError(f"no readable image in {folder}.")
    names = classes + ["(top folder)"] * (top_label in labels)
    return np.stack(images), np.asarray(labels, dtype=np.int64), names


def _read_image(path: Path, c: int, h: int, w: int) -> np.ndarray:
    """One image file as uint8 (H, W) or (H, W, 3), resized and centre-cropped to (h, w)."""
    from PIL import Image, ImageOps

    with warnings.catch_warnings():
        # A header claiming more pixels than Pillow's limit is refused, not decoded into memory.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as img:
            img = ImageOps.fit(img.convert("L" if c == 1 else "RGB"), (w, h), method=Image.BICUBIC)
            return np.asarray(img, dtype=np.uint8)


Arrays = tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]  # images, labels, factors, names


def _load_arrays(path: Path) -> Arrays:
    """Images, labels (zeros when absent), factors and factor names as NumPy reads them; whatever NumPy
    raises, for a damaged file, a pickled object array or a zip without the arrays, is one error naming
    the file."""
    if not path.exists():
        raise DataError(f"array file {path} does not exist.")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            return loaded, np.zeros(len(loaded), np.int64), None, None
        with loaded:
            key = next((k for k in ("x", "images") if k in loaded.files), None)
            if key is None:
                raise DataError(f"{path} has arrays {loaded.files}; name the images 'x' or 'images'.")
            label_key = next((k for k in ("y", "labels") if k in loaded.files), None)
            x = loaded[key]  # NpzFile reads lazily: an object array fails here, not in np.load
            y = loaded[label_key] if label_key else np.zeros(len(x), np.int64)
            factors, names = (loaded[k] if k in loaded.files else None for k in ("factors", "factor_names"))
            return x, y, factors, names
    except DataError:
        raise
    except Exception as err:  # NumPy raises ValueError, OSError, EOFError, zipfile errors, ...
        raise DataError(f"{path} is not a readable .npy/.npz array without pickles: {err}.") from None


def image_shape_of(array_shape: tuple[int, ...]) -> tuple[int, int, int] | None:
    """The (C, H, W) of images stored as (N, H, W), (N, H, W, C) or (N, C, H, W) with 1 or 3
    channels; None when the shape is none of these."""
    if len(array_shape) == 3:
        return (1, *array_shape[1:])
    if len(array_shape) == 4 and array_shape[3] in (1, 3):
        return (array_shape[3], array_shape[1], array_shape[2])
    if len(array_shape) == 4 and array_shape[1] in (1, 3):
        return tuple(array_shape[1:])  # type: ignore[return-value]
    return None


def read_array_file(path: Path, image_shape: tuple[int, int, int]) -> Arrays:
    """Images from .npy (the images) or .npz (keys x or images; optional y or labels; optional factors,
    the discrete factor classes (N, F) of each image, as Shapes3D, MPI3D or one's own data have, and
    optional factor_names, F strings).

    Shapes (N, H, W), (N, H, W, C) or (N, C, H, W) matching the model's image shape; uint8 in
    0..255 or floats in [0, 1]. Returns images (N, C, H, W) in their dtype, labels (N,), factors
    (N, F) int64 or None, and the factors' names (F,) str or None.
    """
    x, y, factors, names = _load_arrays(Path(path))
    c, h, w = image_shape
    if x.ndim == 3 and c == 1 and x.shape[1:] == (h, w):
        x = x[:, None]
    elif x.ndim == 4 and x.shape[1:] == (h, w, c) and x.shape[1:] != (c, h, w):
        x = x.transpose(0, 3, 1, 2)
    if x.ndim != 4 or x.shape[1:] != (c, h, w):
        shape = image_shape_of(x.shape)
        fix = (
            f"pass --image-shape {','.join(map(str, shape))} (channels, height, width)"
            if shape
            else "store the images as (N, H, W), (N, H, W, C) or (N, C, H, W) with 1 or 3 channels"
        )
        raise DataError(f"{path} holds images of shape {x.shape}, but model.image_shape is {image_shape}: {fix}.")
    if y.shape != (len(x),):
        raise DataError(f"{path}: labels of shape {y.shape} do not match {len(x)} images.")
    if x.dtype != np.uint8:
        if not np.issubdtype(x.dtype, np.floating):
            raise DataError(f"{path} holds {x.dtype} images; use uint8 (0..255) or floats in [0, 1].")
        if not np.isfinite(x).all():
            raise DataError(f"{path} holds NaN or infinite pixel values ({int((~np.isfinite(x)).sum())} of them).")
        if x.min() < 0 or x.max() > 1:
            raise DataError(f"{path} holds values from {x.min():g} to {x.max():g}; float images must lie in [0, 1].")
        x = x.astype(np.float32)
    if factors is not None:
        factors = _checked_factors(path, factors, len(x))
    if names is not None:
        names = _checked_factor_names(path, names, factors)
    return x, np.asarray(y, dtype=np.int64), factors, names


def _checked_factor_names(path: Path, names: np.ndarray, factors: np.ndarray | None) -> np.ndarray:
    """F distinct strings, one per factor; one sentence otherwise."""
    count = None if factors is None else factors.shape[1]
    if factors is None or names.shape != (count,) or names.dtype.kind != "U" or len(set(names.tolist())) != count:
        raise DataError(
            f"{path}: factor_names must be {count or 'F'} distinct strings, one per column of 'factors' (found "
            f"{names.dtype} of shape {names.shape}{'' if factors is not None else ' and no factors'})."
        )
    return names


def _checked_factors(path: Path, factors: np.ndarray, n: int) -> np.ndarray:
    """Factor classes (N, F) as int64, or one error naming the file and what is wrong."""
    if factors.ndim != 2 or len(factors) != n:
        raise DataError(f"{path}: factors of shape {factors.shape} do not match {n} images; store them as (N, F).")
    if not np.issubdtype(factors.dtype, np.integer) or (factors < 0).any():
        raise DataError(
            f"{path}: factors must be the classes 0, 1, 2, ... of each factor (integers), not {factors.dtype}."
        )
    return factors.astype(np.int64)
