"""Burda, Grosse & Salakhutdinov (2016), Table 1, one stochastic layer on MNIST: VAE and IWAE
trained with k = 1, 5, 50 (two deterministic hidden layers of 200 tanh units, 50 latents,
dynamically binarized MNIST, Adam), test log p(x) by importance sampling with K = 5000."""

from __future__ import annotations

from vaekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig

KS = (1, 5, 50)
TITLE = "Burda et al. (2016), Table 1: VAE and IWAE, one stochastic layer, MNIST"
# Test negative log-likelihood in nats, as published (3^8 = 3280 passes of training).
PUBLISHED = {"vae-k1": 86.76, "vae-k5": 86.47, "vae-k50": 86.35, "iwae-k1": 86.76, "iwae-k5": 85.54, "iwae-k50": 84.78}


def runs(epochs: int, data: DataConfig) -> list[tuple[str, RunConfig]]:
    model = ModelConfig(hidden_dim=200, hidden_layers=2, activation="tanh", latent_dim=50)
    return [
        (
            f"{objective}-k{k}",
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
        for objective in ("vae", "iwae")
        for k in KS
    ]
