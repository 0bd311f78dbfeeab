"""Tomczak & Welling (2018), "VAE with a VampPrior", Table 1 on dynamically binarized MNIST, one
stochastic layer: the standard prior, a learned mixture of Gaussians and the VampPrior with K = 500
(an MLP of two hidden layers of 300 units, 40 latents, Adam with step 5e-4, minibatch 100, the
KL weight warmed up linearly over the first half of training, at most 100 epochs as in the paper);
test log p(x) by importance sampling with K = 5000. The two-layer rows use Burda et al.'s bottom-up
hierarchy (40 latents below, 40 above), not the paper's HVAE, whose inference runs top-down
(q(z1|x, z2) q(z2|x)); the VampPrior on a two-layer model is not here yet."""

from __future__ import annotations

from vaekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig

PRIORS = {"standard": "standard", "mog": "mixture", "vampprior": "vampprior"}
TITLE = "Tomczak & Welling (2018), Table 1: standard, mixture and VampPrior priors, one stochastic layer, MNIST"
# Test negative log-likelihood in nats, as published for the one-layer VAE (their Table 1).
PUBLISHED = {"vae-standard": 88.56, "vae-vampprior": 85.57, "hvae-standard": 86.05}
STEPS_PER_EPOCH = 500  # 50,000 training images in minibatches of 100


def runs(epochs: int, data: DataConfig) -> list[tuple[str, RunConfig]]:
    warmup = STEPS_PER_EPOCH * min(100, max(1, epochs // 2))
    train = TrainConfig(epochs=epochs, batch_size=100, optimizer="adam", learning_rate=5e-4, warmup_steps=warmup)
    one = [
        (f"vae-{name}", ModelConfig(hidden_dim=300, hidden_layers=2, latent_dim=40, prior=prior, prior_components=500))
        for name, prior in PRIORS.items()
    ]
    two = [
        (
            f"hvae-{name}",
            ModelConfig(
                hidden_dim=300,
                hidden_layers=2,
                latent_dim=40,
                prior=prior,
                prior_components=500,
                hierarchy="two-layer",
                top_latent_dim=40,
                top_hidden_dim=300,
            ),
        )
        for name, prior in PRIORS.items()
        if prior != "vampprior"
    ]
    return [(name, RunConfig(model, data, train)) for name, model in one + two]
