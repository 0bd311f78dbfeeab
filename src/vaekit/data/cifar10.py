"""CIFAR-10 (Krizhevsky 2009) from its Python archive, read without running the archive's pickles' code.

`cifar-10-python.tar.gz` holds six pickled batches (data_batch_1 .. 5, test_batch), each a dict with
`data`, a (10000, 3072) uint8 array of images stored channel by channel (1024 red, 1024 green, 1024 blue,
row-major), and `labels`. The batches are unpickled with the MNIST reader's unpickler, which resolves
only the globals NumPy uses to rebuild an array; anything else in a file is refused.

The archive comes from the user (`--source file --path F`) or, with `--source download` (or `auto` when
the cache lacks it), from the authors' site, checked against its published MD5 before it is read.
"""

from __future__ import annotations

import pickle
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from vaekit.data.mnist import NumpyArrayUnpickler, fetch_verified
from vaekit.errors import DataError

ARCHIVE = "cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
URL = "https://www.cs.toronto.edu/~kriz/" + ARCHIVE
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
VALID_IMAGES = 5000  # the last 5,000 training images validate (45,000 train)


def _read_batch(archive: tarfile.TarFile, name: str, origin: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch's images (N, 3, 32, 32) uint8 and labels (N,) int64."""
    member = next((m for m in archive.getmembers() if m.isfile() and Path(m.name).name == name), None)
    if member is None:
        raise DataError(f"{origin} has no member {name}: it is not CIFAR-10's Python archive ({ARCHIVE}).")
    handle = archive.extractfile(member)
    assert handle is not None
    try:
        batch = NumpyArrayUnpickler(handle, encoding="bytes").load()
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError) as err:
        raise DataError(f"{origin}: {member.name} is not a readable CIFAR-10 batch: {err}.") from None
    data, labels = (batch.get(key) if isinstance(batch, dict) else None for key in (b"data", b"labels"))
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == 3072):
        raise DataError(f"{origin}: {member.name} holds no (N, 3072) uint8 array 'data'.")
    labels = np.asarray(labels, dtype=np.int64) if isinstance(labels, list) else None
    if labels is None or len(labels) != len(data) or labels.min(initial=0) < 0 or labels.max(initial=0) > 9:
        raise DataError(f"{origin}: {member.name} holds no list of {len(data)} labels 0..9.")
    return data.reshape(-1, 3, 32, 32), labels


def read_archive(path: Path) -> dict[str, np.ndarray]:
    """The splits of a CIFAR-10 archive: train (the first 45,000), valid (the last 5,000 of training) and test,
    as uint8 images (N, 3, 32, 32) with labels, and scale 256 (x = k/256, as the MNIST wheel's levels)."""
    try:
        with tarfile.open(path, "r:gz") as archive:
            train = [_read_batch(archive, name, path) for name in TRAIN_BATCHES]
            test_x, test_y = _read_batch(archive, TEST_BATCH, path)
    except (OSError, tarfile.TarError, EOFError) as err:
        raise DataError(f"{path} is not a readable {ARCHIVE}: {err}.") from None
    x, y = np.concatenate([b[0] for b in train]), np.concatenate([b[1] for b in train])
    n = len(x) - min(VALID_IMAGES, len(x) // 10)  # a small archive (the tests') keeps a tenth to validate
    return {
        "train_x": x[:n],
        "train_y": y[:n],
        "valid_x": x[n:],
        "valid_y": y[n:],
        "test_x": test_x,
        "test_y": test_y,
        "scale": np.array(256.0),
        "class_names": np.array(CLASS_NAMES),
    }


def load_cifar10(source: str, path: str | None, cache: Path, log: Callable[[str], None]) -> dict[str, np.ndarray]:
    """CIFAR-10 from the user's archive (source file, data.path), or the cached or downloaded one (auto,
    download), whose MD5 is checked."""
    if source == "file":
        if not path:
            raise DataError(f"--source file needs --path: the {ARCHIVE} you have.")
        return read_archive(Path(path))
    target = cache / ARCHIVE
    if source == "download" or not target.exists():
        log(f"downloading {URL} into {cache} (163 MB, checked against MD5 {ARCHIVE_MD5})")
        cache.mkdir(parents=True, exist_ok=True)
        fetch_verified([URL], target, ARCHIVE_MD5)
    return read_archive(target)
