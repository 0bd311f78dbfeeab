"""CIFAR-10 in bits per dimension, on the user's CIFAR-10: the conv VAE of van den Oord et al. 2017,
Section 4.1 (two strided 4x4 convolutions and two residual blocks of 256 units, a spatial latent map) with
a mixture of 10 discretized logistics (Salimans et al. 2017) as p(x|z), beside the published chain:

    conv VAE 4.51 (van den Oord et al. 2017), LVAE 3.34 (the figure the issue lists; its source is not
    checked here), IAF 3.11 (Kingma et al. 2016), NVAE 2.91 (Vahdat & Kautz 2020), VDVAE 2.87 (Child 2021)
    bits/dim.

vaekit builds the first of these; the others are targets its hierarchies and flows are measured against.
The data are the user's archive (cifar-10-python.tar.gz: in the cache, or --source file through a preset),
so every figure this experiment writes is a user-run figure, not one this repository reports."""

from __future__ import annotations

import dataclasses

from vaekit.config import DataConfig, RunConfig, load_config
from vaekit.experiments.budgets import Budget

TITLE = "CIFAR-10 in bits/dim (user-run, on your CIFAR-10): van den Oord et al.'s conv VAE with discretized logistics"
PUBLISHED: dict[str, float] = {}  # nats per image: none; the published figures are in bits/dim
PUBLISHED_BITS = {"conv-vae-dmol": 4.51}  # van den Oord et al. 2017, Section 4.1
TARGETS = {"conv VAE": 4.51, "LVAE": 3.34, "IAF": 3.11, "NVAE": 2.91, "VDVAE": 2.87}  # the chain, in bits/dim


# smoke: a check that the pipeline runs (a CPU's minute); short: a first figure on a GPU; long: the paper's
# scale (VQ-VAE trains 250,000 steps of 128, 711 epochs of the 45,000 training images), with K = 5000.
BUDGETS = {
    "smoke": Budget(epochs=1, train_limit=64, eval_limit=16, num_importance_samples=4),
    "short": Budget(epochs=20, train_limit=0, eval_limit=1000, num_importance_samples=500),
    "long": Budget(epochs=700, train_limit=0, eval_limit=0, num_importance_samples=5000),
}


def data(budget: Budget) -> DataConfig:
    """CIFAR-10 at its 8-bit levels within the budget's limits, from the cache (or the checked download)."""
    return DataConfig(
        dataset="cifar10", binarization="none", train_limit=budget.train_limit, eval_limit=budget.eval_limit
    )


def runs(epochs: int, data: DataConfig) -> list[tuple[str, RunConfig]]:
    """The cifar10-dmol preset's model and optimiser, for the budget's epochs."""
    preset = load_config("cifar10-dmol")
    train = dataclasses.replace(
        preset.train, epochs=epochs, batch_size=min(preset.train.batch_size, data.train_limit or 128)
    )
    return [("conv-vae-dmol", RunConfig(preset.model, data, train))]
