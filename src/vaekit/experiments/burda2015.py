"""Burda, Grosse & Salakhutdinov (2016), Table 1 on MNIST: VAE and IWAE trained with k = 1, 5, 50,
with one stochastic layer (two deterministic hidden layers of 200 tanh units, 50 latents) and with
two (784-100-100-[100]-50-50-[50], tanh; bottom-up inference, top-down generation), dynamically
binarized MNIST, Adam, minibatch 20; test log p(x) by importance sampling with K = 5000."""

from __future__ import annotations

from vaekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig

KS = (1, 5, 50)
# The paper's recipe (Burda et al. 2016, Section 5), which --budget long runs: the learning rate 1e-3 *
# 10^(-i/7) for 3^i epochs, i = 0 .. 7 (scaled to the budget's epochs; 3,280 with --epochs 3280), Adam's
# epsilon 1e-4, and Glorot's initialisation. The short budget keeps a constant rate and PyTorch's defaults.
RECIPE = {"train.lr_schedule": "burda", "train.adam_eps": 1e-4, "model.init": "glorot"}
TITLE = "Burda et al. (2016), Table 1: VAE and IWAE, one and two stochastic layers, MNIST"
# Test negative log-likelihood in nats, as published (3^8 = 3280 passes of training).
PUBLISHED = {
    "vae-k1": 86.76,
    "vae-k5": 86.47,
    "vae-k50": 86.35,
    "iwae-k1": 86.76,
    "iwae-k5": 85.54,
    "iwae-k50": 84.78,
    "vae-2layer-k1": 85.33,
    "iwae-2layer-k50": 82.90,
}
# run -> the run its log p(x) is compared with, image by image: two layers with one, the IWAE with the VAE
BASELINES = {f"{o}-2layer-k{k}": f"{o}-k{k}" for o in ("vae", "iwae") for k in KS} | {
    f"iwae-k{k}": f"vae-k{k}" for k in KS
}
MODELS = {
    "": ModelConfig(hidden_dim=200, hidden_layers=2, activation="tanh", latent_dim=50),
    "-2layer": ModelConfig(
        hidden_dim=100,
        hidden_layers=2,
        activation="tanh",
        latent_dim=100,
        hierarchy="two-layer",
        top_latent_dim=50,
        top_hidden_dim=50,
    ),
}


def runs(epochs: int, data: DataConfig) -> list[tuple[str, RunConfig]]:
    return [
        (
            f"{objective}{layers}-k{k}",
            RunConfig(
                model,
                data,
                TrainConfig(
                    epochs=epochs,
                    batch_size=20,
                    optimizer="adam",
                    learning_rate=1e-3,
                    objective="iwae" if objective == "iwae" else "elbo",
                    num_samples=k,
                ),
            ),
        )
        for layers, model in MODELS.items()
        for objective in ("vae", "iwae")
        for k in KS
    ]
