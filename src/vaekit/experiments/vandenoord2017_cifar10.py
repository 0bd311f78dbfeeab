"""The VQ-VAE on CIFAR-10, on the user's CIFAR-10 (van den Oord et al. 2017, Section 4.1): the cifar10-vq-vae
preset (two strided 4x4 convolutions and two residual blocks of 256 units, an 8x8 map of codes from 512 vectors
of 64 values; Adam at 2e-4 in batches of 128 for 250,000 steps, 711 epochs of the 45,000 training images) beside
the conv VAE of the cifar10-bpd experiment. Published, in bits/dim: the VQ-VAE's 4.67 under the uniform prior of
training (the paper gives no figure under its PixelCNN prior), the best public reproduction's 5.00 (as the issue
that asked for this experiment reports it; not checked here), and the paper's continuous VAE at 4.51. Every figure
this experiment writes is a user-run one."""

from __future__ import annotations

import dataclasses

from vaekit.config import DataConfig, RunConfig, load_config
from vaekit.experiments import cifar10
from vaekit.experiments.budgets import Budget

TITLE = "CIFAR-10 in bits/dim (user-run, on your CIFAR-10): the VQ-VAE under its two priors beside the conv VAE"
PUBLISHED: dict[str, float] = {}
PUBLISHED_BITS = {"vq-vae": 4.67, "conv-vae-dmol": 4.51}  # van den Oord et al. 2017, Section 4.1
REPRODUCED_BITS = {"vq-vae": 5.00}  # the best public reproduction under the uniform prior, as the issue lists it
BASELINES = {"vq-vae": "conv-vae-dmol"}

BUDGETS = {
    "smoke": Budget(epochs=1, train_limit=64, eval_limit=16, num_importance_samples=4, prior_epochs=1),
    "short": Budget(epochs=20, train_limit=0, eval_limit=1000, num_importance_samples=500, prior_epochs=20),
    "long": Budget(epochs=711, train_limit=0, eval_limit=0, num_importance_samples=5000, prior_epochs=100),
}


data = cifar10.data  # the same data: the user's CIFAR-10 at its 8-bit levels


def runs(epochs: int, data: DataConfig) -> list[tuple[str, RunConfig]]:
    """The cifar10-vq-vae preset for `epochs`, beside the cifar10-bpd experiment's conv VAE."""
    preset = load_config("cifar10-vq-vae")
    batch = min(preset.train.batch_size, data.train_limit or 128)
    vq = RunConfig(preset.model, data, dataclasses.replace(preset.train, epochs=epochs, batch_size=batch))
    return [*cifar10.runs(epochs, data), ("vq-vae", vq)]
