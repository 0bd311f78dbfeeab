"""Discrete latents on 8-bit MNIST: the VQ-VAE (van den Oord et al. 2017) with its two priors beside the conv VAE
of the mnist-8bit experiment, on the same test images, in bits per dimension.

The VQ-VAE is the mnist-vq-vae preset (a 7x7 map of codes from 256 vectors, a mixture of 5 discretized logistics
as p(x|z)); after training, its gated PixelCNN prior is fitted to the training codes (`vaekit train-prior`, the
budget's prior_epochs). Its figure is the bound log p(x|z_q) + log p(z_q) (q(z|x) is a point mass, so no
importance-sampled log p(x) exists), stated under the uniform prior of training (whose cost is N log2 K / D bits
per dimension: 0.5 here) and under the PixelCNN, each paired image by image with the conv VAE's importance-sampled
log p(x) and its ELBO. No VQ-VAE figure on 8-bit MNIST is published; the CIFAR-10 experiment
(vandenoord2017-cifar10) stands beside the paper's."""

from __future__ import annotations

import dataclasses

from vaekit.config import DataConfig, RunConfig, TrainConfig, load_config
from vaekit.experiments.budgets import Budget
from vaekit.experiments.mnist8bit import MODELS as VAE_MODELS

TITLE = "8-bit MNIST in bits/dim: the VQ-VAE under its uniform and PixelCNN priors beside the conv VAE"
PUBLISHED: dict[str, float] = {}  # no VQ-VAE figure on 8-bit MNIST is published
PUBLISHED_BITS: dict[str, float] = {}
BASELINES = {"vq-vae": "conv-dmol"}

# smoke: a minute's check of the pipeline; short: the CPU budget of docs/results.md; long: a GPU's.
BUDGETS = {
    "smoke": Budget(epochs=1, train_limit=500, eval_limit=100, num_importance_samples=10, prior_epochs=1),
    "short": Budget(epochs=15, train_limit=0, eval_limit=1000, num_importance_samples=500, prior_epochs=4),
    "long": Budget(epochs=100, train_limit=0, eval_limit=0, num_importance_samples=5000, prior_epochs=100),
}


def data(budget: Budget) -> DataConfig:
    """MNIST at its exact 8-bit levels within the budget's limits."""
    return DataConfig(binarization="none", train_limit=budget.train_limit, eval_limit=budget.eval_limit)


def runs(epochs: int, data: DataConfig) -> list[tuple[str, RunConfig]]:
    """The mnist-vq-vae preset, and the mnist-8bit experiment's conv VAE with its warm-up, both for `epochs`."""
    preset = load_config("mnist-vq-vae")
    vq = RunConfig(preset.model, data, dataclasses.replace(preset.train, epochs=epochs))
    vae = RunConfig(VAE_MODELS["conv-dmol"], data, TrainConfig(epochs=epochs, learning_rate=1e-3, warmup_share=0.2))
    return [("conv-dmol", vae), ("vq-vae", vq)]
