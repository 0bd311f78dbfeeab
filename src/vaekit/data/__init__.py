"""Datasets held in memory as tensors: loading, splitting, binarizing."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaekit.config import SPLIT_NAMES, DataConfig, RunConfig
from vaekit.data import cifar10, dsprites
from vaekit.data.binarize import dynamic_binarize, static_binarize
from vaekit.data.images import read_array_file, read_image_folder, split_arrays
from vaekit.data.mnist import CLASS_NAMES, cache_dir, load_idx_dataset
from vaekit.errors import ConfigError, DataError
from vaekit.randomness import seeded_generator

Log = Callable[[str], None]  # where a loader says what it does (a fetch, skipped files): the CLI's stderr
Loader = Callable[[DataConfig, tuple[int, int, int], Log], dict[str, Any]]


def _idx(name: str) -> Loader:
    def load(config: DataConfig, image_shape: tuple[int, int, int], log: Log) -> dict[str, np.ndarray]:
        arrays = load_idx_dataset(name, config.source, config.path, log)
        return {**arrays, "class_names": np.array(CLASS_NAMES[name])}

    return load


def _image_folder(config: DataConfig, image_shape: tuple[int, int, int], log: Log) -> dict[str, np.ndarray]:
    x, y, class_names = read_image_folder(Path(config.path or ""), image_shape, config.on_bad_file, log)
    return {
        **split_arrays(x, y, config.valid_fraction, config.test_fraction, config.split_seed, str(config.path)),
        "scale": np.array(255.0),
        "class_names": np.array(class_names),
    }


def _array(config: DataConfig, image_shape: tuple[int, int, int], log: Log) -> dict[str, Any]:
    x, y, factors, names = read_array_file(Path(config.path or ""), image_shape)
    described = {} if factors is None else _factor_table(factors, names, x)
    return {
        **described,
        **split_arrays(x, y, config.valid_fraction, config.test_fraction, config.split_seed, str(config.path), factors),
        "scale": np.array(255.0 if x.dtype == np.uint8 else 1.0),
        "class_names": np.array([str(i) for i in range(int(y.max(initial=0)) + 1)]),  # the labels are the names
    }


def _factor_table(factors: np.ndarray, names: np.ndarray | None, x: np.ndarray) -> dict[str, Any]:
    """Names (the file's, else f0, f1, ...) and sizes (largest class + 1) of factors given as classes (N, F);
    where the images hold every combination of the factors' classes (Shapes3D, MPI3D), `observe` too, which
    finds the image of any combination (the intervention scores and Chen et al.'s MIG need it)."""
    sizes = tuple(int(v) + 1 for v in factors.max(0))
    table = {
        "factor_names": tuple(names.tolist()) if names is not None else tuple(f"f{k}" for k in range(factors.shape[1])),
        "factor_sizes": sizes,
        "factor_values": tuple(tuple(float(v) for v in range(s)) for s in sizes),
    }
    index = np.ravel_multi_index(tuple(factors.T), sizes)
    row_of = np.full(math.prod(sizes), -1, dtype=np.int64)
    row_of[index] = np.arange(len(index))  # the last image of a combination that occurs more than once
    if (row_of >= 0).all():
        scale = np.float32(255.0 if x.dtype == np.uint8 else 1.0)
        table["observe"] = lambda wanted: x[row_of[np.ravel_multi_index(tuple(np.asarray(wanted).T), sizes)]] / scale
    return table


def _render_factors(factors: np.ndarray) -> np.ndarray:
    """dSprites images of factor classes (n, 5): (n, 1, 64, 64) float32 in {0, 1}."""
    indices = np.ravel_multi_index(tuple(np.asarray(factors).T), dsprites.FACTOR_SIZES)
    return dsprites.render(indices)[:, None].astype(np.float32)


def _dsprites(config: DataConfig, image_shape: tuple[int, int, int], log: Log) -> dict[str, Any]:
    """dSprites split by config (valid_fraction, test_fraction, split_seed; labels are the shapes), with its
    factors. With both limits set only the images used are rendered; otherwise all, once, into the cache."""
    if image_shape != (1, dsprites.SIZE, dsprites.SIZE):
        raise DataError(
            f"dSprites images are (1, 64, 64), but model.image_shape is {image_shape}: pass --image-shape 1,64,64."
        )
    n = dsprites.IMAGES
    order = np.random.default_rng(config.split_seed).permutation(n)
    n_valid, n_test = int(round(n * config.valid_fraction)), int(round(n * config.test_fraction))
    parts = {"valid": order[:n_valid], "test": order[n_valid : n_valid + n_test], "train": order[n_valid + n_test :]}
    for name in parts:
        limit = config.train_limit if name == "train" else config.eval_limit
        parts[name] = parts[name][:limit] if limit else parts[name]
    partial = config.source == "auto" and config.train_limit and config.eval_limit
    packed = (
        None if partial else dsprites.load_dsprites(config.source, config.path, cache_dir() / "dsprites-v1.npz", log)
    )
    out: dict[str, Any] = {
        "scale": np.array(1.0),
        "class_names": np.array(dsprites.SHAPE_NAMES),
        "factor_names": dsprites.FACTOR_NAMES,
        "factor_sizes": dsprites.FACTOR_SIZES,
        "factor_values": tuple(tuple(float(v) for v in values) for values in dsprites.FACTOR_VALUES),
        "observe": _render_factors,
    }
    for name, rows in parts.items():
        factors = dsprites.factor_classes(rows)
        images = dsprites.render(rows) if packed is None else np.unpackbits(packed[rows], axis=-1)
        out.update({f"{name}_x": images, f"{name}_y": factors[:, 0], f"{name}_factors": factors})
    return out


def _cifar10(config: DataConfig, image_shape: tuple[int, int, int], log: Log) -> dict[str, Any]:
    if image_shape != (3, 32, 32):
        raise DataError(
            f"CIFAR-10 images are (3, 32, 32), but model.image_shape is {image_shape}: pass --image-shape 3,32,32."
        )
    return cifar10.load_cifar10(config.source, config.path, cache_dir(), log)


def _features(config: DataConfig, image_shape: tuple[int, int, int], log: Log) -> dict[str, Any]:
    """A model's features (vaekit features RUN: features.npz at data.path), each image a (1, 1, J) vector of reals."""
    path = Path(config.path or "")
    if not path.is_file():
        raise DataError(
            f"{path} does not exist: train on a VAE run's features with vaekit train --features-from RUN, which writes "
            "RUN/features.npz (or vaekit features RUN)."
        )
    keys = [f"{name}_{part}" for name in SPLIT_NAMES for part in ("x", "y")]
    try:
        with np.load(path, allow_pickle=False) as loaded:
            arrays = {key: loaded[key] for key in keys + ["class_names"]}
    except (OSError, ValueError, KeyError, EOFError) as err:
        raise DataError(
            f"{path}: not a features file of vaekit features ({err}); write it with vaekit features RUN."
        ) from None
    shape = tuple(arrays["train_x"].shape[1:])
    if shape != tuple(image_shape):
        raise DataError(f"{path} holds features of shape {shape}, but model.image_shape is {tuple(image_shape)}.")
    return {**arrays, "scale": np.array(1.0)}


# dataset name -> loader of arrays {train,valid,test}_{x,y}, `scale` (x / scale lies in [0, 1]) and
# `class_names` (the name of each label); for data with known factors also {train,valid,test}_factors
# (N, F) of classes and factor_names, factor_sizes, factor_values;
# x is (N, H, W) or (N, C, H, W), uint8 or float32. Names match config.DATASET_NAMES (a test checks).
DATASET_LOADERS: dict[str, Loader] = {
    "mnist": _idx("mnist"),
    "fashion-mnist": _idx("fashion-mnist"),
    "kmnist": _idx("kmnist"),
    "image-folder": _image_folder,
    "array": _array,
    "dsprites": _dsprites,
    "cifar10": _cifar10,
    "features": _features,
}

# Offsets that keep the fixed evaluation binarizations of the splits independent of each other.
_SPLIT_SEED_OFFSET = {name: i for i, name in enumerate(SPLIT_NAMES)}  # train 0, valid 1, test 2


@dataclass(frozen=True)
class Split:
    """One split in memory: images (N, C, H, W) float32 in [0, 1], labels (N,) int64 (-1 where hidden: the
    training images outside an m2 run's labelled subset, data.labelled), and for data with known generative
    factors their classes (N, F) int64 (None for other data)."""

    images: torch.Tensor
    labels: torch.Tensor
    factors: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.images)


@dataclass(frozen=True)
class Dataset:
    """The train / valid / test splits and how observations are made from pixels."""

    train: Split
    valid: Split
    test: Split
    binarization: str
    binarization_seed: int
    class_names: tuple[str, ...] = ()  # the name of each label: "0".."9" for MNIST, subfolders for a folder
    # Data with known generative factors (dSprites, an array file with `factors`): their names, numbers of
    # classes and the value of each class (dSprites: scale 0.5 .. 1, orientation 0 .. 2 pi, ...); else empty.
    factor_names: tuple[str, ...] = ()
    factor_sizes: tuple[int, ...] = ()
    factor_values: tuple[tuple[float, ...], ...] = ()
    # The observations of any factor combination (n, F) -> (n, C, H, W), where the data can show every one
    # (dSprites renders them); the interventional metrics need it. None for other data.
    observe: Callable[[np.ndarray], np.ndarray] | None = None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])  # type: ignore[return-value]

    def split(self, name: str) -> Split:
        if name not in _SPLIT_SEED_OFFSET:
            raise DataError(f"unknown split '{name}': choose train, valid or test.")
        return getattr(self, name)

    def training_observations(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """What the model sees in training: a fresh binarization (dynamic) or the images themselves."""
        return dynamic_binarize(x, generator) if self.binarization == "dynamic" else x

    def evaluation_observations(self, name: str) -> torch.Tensor:
        """The fixed observations of a split for evaluation: one seeded binarization, so that
        repeated evaluations of a model agree (or the grey levels, without binarization)."""
        images = self.split(name).images
        if self.binarization == "none":
            return images
        return static_binarize(images, self.binarization_seed * 3 + _SPLIT_SEED_OFFSET[name])


def reduce_levels(images: torch.Tensor, bits: int) -> torch.Tensor:
    """8-bit images x = k/256 (or k/255) reduced to 2^bits levels, x = floor(k / 2^(8-bits)) / 2^bits:
    floor(x * 2^bits) / 2^bits, exact for both scales (Kingma & Dhariwal 2018's 5-bit images)."""
    levels = 2**bits
    return torch.floor(images * levels).clamp_(0, levels - 1).div_(levels)


def labelled_subset(labels: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """The rows (n,) of a labelled subset, sorted: n / K of each of the K classes present, each class's drawn by a
    permutation seeded by (seed, "labelled", class), so the subset of a class does not depend on the others
    (Kingma et al. 2014, Section 4.1: the labelled images are spread evenly over the classes)."""
    classes = labels.unique()
    per = n // len(classes)
    picks = []
    for c in classes.tolist():
        rows = (labels == c).nonzero()[:, 0]
        if len(rows) < per:
            raise DataError(
                f"data.labelled = {n} asks for {per} labelled images of class {c}, but the training split has "
                f"{len(rows)}: use at most {len(classes) * min(int((labels == k).sum()) for k in classes)}."
            )
        picks.append(rows[torch.randperm(len(rows), generator=seeded_generator(seed, "labelled", c))[:per]])
    return torch.cat(picks).sort().values


def hide_labels(labels: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """The labels with all but a labelled subset of n (`labelled_subset`) set to -1, hidden."""
    hidden = torch.full_like(labels, -1)
    rows = labelled_subset(labels, n, seed)
    hidden[rows] = labels[rows]
    return hidden


def load_dataset(
    config: RunConfig | DataConfig, image_shape: tuple[int, int, int] | None = None, log: Log = lambda line: None
) -> Dataset:
    """Load a dataset as float tensors in [0, 1], apply the limits and static binarization.

    `config` is a run's config (its data, shaped as its model.image_shape: what the run trained on, whatever the
    dataset) or a DataConfig with `image_shape` (the model's; MNIST's (1, 28, 28) if not given), which sets the
    size that folders of images are resized to and that array files, dSprites and CIFAR-10 must have; `log`
    hears of a first fetch of MNIST and of skipped unreadable images.
    """
    if isinstance(config, RunConfig):
        if image_shape is not None and tuple(image_shape) != config.model.image_shape:
            raise ConfigError(
                f"image_shape {tuple(image_shape)} differs from the run's model.image_shape "
                f"{config.model.image_shape}: leave image_shape out to load the run's data as it trained on it."
            )
        config, image_shape = config.data, config.model.image_shape
    image_shape = (1, 28, 28) if image_shape is None else tuple(image_shape)  # type: ignore[assignment]
    arrays = DATASET_LOADERS[config.dataset](config, image_shape, log)  # type: ignore[arg-type]
    scale = float(arrays["scale"])
    splits = {}
    for name in SPLIT_NAMES:
        x, y = arrays[f"{name}_x"], arrays[f"{name}_y"]
        limit = config.train_limit if name == "train" else config.eval_limit
        if limit:
            x, y = x[:limit], y[:limit]
        images = torch.from_numpy(np.ascontiguousarray(x)).to(torch.float32).div_(scale)
        images = images.unsqueeze(1) if images.ndim == 3 else images  # (N, C, H, W)
        if config.binarization == "static" and name == "train":
            images = static_binarize(images, config.binarization_seed * 3)
        if config.binarization == "none" and config.bits < 8:
            images = reduce_levels(images, config.bits)
        factors = arrays.get(f"{name}_factors")
        if factors is not None:
            factors = torch.from_numpy(np.asarray(factors[:limit] if limit else factors, dtype=np.int64))
        splits[name] = Split(images, torch.from_numpy(np.asarray(y, dtype=np.int64)), factors)
    if config.labelled:
        train = splits["train"]
        splits["train"] = Split(
            train.images, hide_labels(train.labels, config.labelled, config.split_seed), train.factors
        )
    names = tuple(str(n) for n in arrays["class_names"])
    return Dataset(
        **splits,
        binarization=config.binarization,
        binarization_seed=config.binarization_seed,
        class_names=names,
        factor_names=tuple(arrays.get("factor_names", ())),
        factor_sizes=tuple(arrays.get("factor_sizes", ())),
        factor_values=tuple(arrays.get("factor_values", ())),
        observe=arrays.get("observe"),
    )
