"""Kingma & Welling (2013), Figure 2 on MNIST: the lower bound against training images seen,
for latent sizes 3, 5, 10, 20 and 200 (500 hidden units, minibatch 100, L = 1), trained with
Adagrad as in the paper and with Adam, the modern default."""

from __future__ import annotations

from vaekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig

LATENT_SIZES = (3, 5, 10, 20, 200)
# The paper tuned Adagrad's step size from {0.01, 0.02, 0.1}; 0.02 is the middle choice.
LEARNING_RATES = {"adagrad": 0.02, "adam": 1e-3}
TITLE = "Kingma & Welling (2013), Figure 2: lower bound vs training images, MNIST"
# The paper's recipe (Section 5), which --budget long runs: weights drawn from N(0, 0.01) (read as a standard
# deviation) and a small weight decay for the prior p(theta) = N(0, I): its log density over the 50,000
# training images, per image as the loss is averaged, is a decay of 1/50,000 = 2e-5.
RECIPE = {"model.init": "normal", "train.weight_decay": 2e-5}
PUBLISHED: dict[str, float] = {}  # the paper gives curves, not a table


def runs(epochs: int, data: DataConfig) -> list[tuple[str, RunConfig]]:
    return [
        (
            f"z{j}-{name}",
            RunConfig(
                ModelConfig(hidden_dim=500, latent_dim=j, activation="tanh"),
                data,
                TrainConfig(epochs=epochs, batch_size=100, optimizer=name, learning_rate=lr, num_samples=1),
            ),
        )
        for name, lr in LEARNING_RATES.items()
        for j in LATENT_SIZES
    ]
