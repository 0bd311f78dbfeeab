"""Datasets held in memory as tensors: loading, splitting, binarizing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from vaekit.config import DataConfig
from vaekit.data.binarize import dynamic_binarize, static_binarize
from vaekit.data.mnist import load_mnist
from vaekit.errors import DataError

# dataset name -> loader returning uint8 arrays {train,valid,test}_{x,y} and `scale`.
DATASETS: dict[str, Callable[[str, str | None], dict[str, np.ndarray]]] = {"mnist": load_mnist}

# Offsets that keep the fixed evaluation binarizations of the splits independent of each other.
_SPLIT_SEED_OFFSET = {"train": 0, "valid": 1, "test": 2}


@dataclass(frozen=True)
class Split:
    """One split in memory: images (N, C, H, W) float32 in [0, 1] and labels (N,) int64."""

    images: torch.Tensor
    labels: torch.Tensor

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


def load_dataset(config: DataConfig) -> Dataset:
    """Load a dataset as float tensors in [0, 1], apply the limits and static binarization."""
    arrays = DATASETS[config.dataset](config.source, config.path)
    scale = float(arrays["scale"])
    splits = {}
    for name in ("train", "valid", "test"):
        x, y = arrays[f"{name}_x"], arrays[f"{name}_y"]
        limit = config.train_limit if name == "train" else config.eval_limit
        if limit:
            x, y = x[:limit], y[:limit]
        images = torch.from_numpy(np.ascontiguousarray(x)).to(torch.float32).div_(scale).unsqueeze(1)
        if config.binarization == "static" and name == "train":
            images = static_binarize(images, config.binarization_seed * 3)
        splits[name] = Split(images, torch.from_numpy(np.asarray(y, dtype=np.int64)))
    return Dataset(**splits, binarization=config.binarization, binarization_seed=config.binarization_seed)
