"""beta-VAE on MNIST: beta in {0.5, 1, 2, 4, 8} with the paper's MLP; reconstruction, KL, active
units and log p(x) for each, and a traversal picture per run."""

from __future__ import annotations

from vaekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig

BETAS = (0.5, 1.0, 2.0, 4.0, 8.0)
TITLE = "beta sweep on MNIST (784-512-16 MLP, Bernoulli decoder)"
PUBLISHED: dict[str, float] = {}


def runs(epochs: int, data: DataConfig) -> list[tuple[str, RunConfig]]:
    return [(f"beta{b:g}", RunConfig(ModelConfig(), data, TrainConfig(epochs=epochs, beta=b))) for b in BETAS]
