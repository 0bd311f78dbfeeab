"""A trained model's features: the posterior means of its images as a dataset, for Kingma et al. 2014's M1 + M2
(Section 3.2: M2 trained on the latent representation that M1, a VAE, gives each image).

`write_features(RUN)` writes RUN/features.npz: {train,valid,test}_x (N, 1, 1, J') float32, the means of q(z|x) at
each split's evaluation observations (a fixed binarization, where the run binarizes), {train,valid,test}_y the
labels, and `kept`, the latent units whose mean moves across the training images (standard deviation above
min_std, 0 by default; Kingma et al.'s released code keeps those above 0.1). `vaekit train --features-from RUN`
trains on it (data.dataset features).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from vaekit import rundir
from vaekit.config import SPLIT_NAMES
from vaekit.data import load_dataset
from vaekit.errors import ModelError

MIN_FEATURE_STD = 0.0  # keep every unit whose mean moves at all (Kingma et al.'s code: 0.1, `--min-std 0.1`)


@torch.no_grad()
def posterior_means(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """The means of q(z|x) of images x (N, C, H, W): (N, J) float32 on the CPU."""
    device = next(model.parameters()).device
    means = [model.posterior(x[i : i + batch_size].to(device)).mean.float().cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(means) if means else torch.zeros(0, model.latent_dim)


def feature_shape(path: str | Path) -> tuple[int, int, int]:
    """The (1, 1, J') shape of one feature vector in a features file: the model.image_shape that trains on it."""
    with np.load(path, allow_pickle=False) as loaded:
        return tuple(int(n) for n in loaded["train_x"].shape[1:])  # type: ignore[return-value]


def write_features(
    run_dir: str | Path, min_std: float = MIN_FEATURE_STD, log: Callable[[str], None] = lambda line: None
) -> Path:
    """RUN/features.npz from the run's model and data (see the module docstring); returns its path."""
    model, config = rundir.load_run(run_dir)
    if model.family != "vae":
        raise ModelError(
            f"features come from a VAE's posterior means, and {run_dir} holds a model of family {model.family}."
        )
    model.eval()
    data = load_dataset(config.data, config.model.image_shape, log)
    means = {name: posterior_means(model, data.evaluation_observations(name)) for name in SPLIT_NAMES}
    kept = (means["train"].std(0) > min_std).nonzero()[:, 0]
    if len(kept) == 0:
        raise ModelError(
            f"no latent unit of {run_dir} moves by more than {min_std} over the training images: train it longer, "
            "or write its features with vaekit features RUN --min-std 0."
        )
    arrays: dict[str, np.ndarray] = {"kept": kept.numpy(), "class_names": np.array(data.class_names)}
    for name in SPLIT_NAMES:
        arrays[f"{name}_x"] = means[name][:, kept].reshape(-1, 1, 1, len(kept)).numpy()
        arrays[f"{name}_y"] = data.split(name).labels.numpy()
    log(f"features: {len(kept)} of {model.latent_dim} latent units move (posterior mean's std > {min_std})")
    return rundir.write_features(run_dir, arrays)
