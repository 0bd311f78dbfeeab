"""Tomczak & Welling (2018), "VAE with a VampPrior", Table 1 on dynamically binarized MNIST, with one
and two stochastic layers: the standard prior, a learned mixture of Gaussians and the VampPrior with K = 500
(an MLP of two gated hidden layers of 300 units, 40 latents, Adam with step 5e-4, minibatch 100, the
KL weight warmed up linearly over the first half of training, at most 100 epochs as in the paper, early
stopping after 50 epochs without a better validation ELBO);
test log p(x) by importance sampling with K = 5000. The two-layer rows (hvae-*) are two-layer ladders,
40 latents in each layer, whose inference runs as the paper's HVAE does, q(z2|x) q(z1|x, z2), with
q(z1|x, z2) the ladder's precision-weighted merge rather than the paper's MLP of x and z2; the
VampPrior then sits on the top layer, p(z2) = 1/K sum_k q(z2|u_k), the paper's best configuration."""

from __future__ import annotations

from vaekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from vaekit.schedules import scaled_to_run

PRIORS = {"standard": "standard", "mog": "mixture", "vampprior": "vampprior"}
TITLE = (
    "Tomczak & Welling (2018), Table 1: standard, mixture and VampPrior priors, one and two stochastic layers, MNIST"
)
# Test negative log-likelihood in nats, as published (their Table 1, dynamically binarized MNIST).
PUBLISHED = {"vae-standard": 88.56, "vae-vampprior": 85.57, "hvae-standard": 86.05, "hvae-vampprior": 83.19}
# run -> the run its log p(x) is compared with, image by image: each prior with the standard one, two layers with one
BASELINES = {
    "vae-mog": "vae-standard",
    "vae-vampprior": "vae-standard",
    "hvae-standard": "vae-standard",
    "hvae-mog": "hvae-standard",
    "hvae-vampprior": "hvae-standard",
}
MNIST_TRAIN_IMAGES = 50_000  # the training split (the other 10,000 of MNIST's 60,000 validate)
BATCH_SIZE = 100
WARMUP_EPOCHS = 100  # the KL weight's linear warm-up (Tomczak & Welling 2018, Section 5)


def steps_per_epoch(data: DataConfig) -> int:
    """Optimisation steps in one epoch of this data: 500 on the whole training split, 5 on the smoke
    budget's 500 images, so that the warm-up is a share of the run whatever the budget."""
    images = min(data.train_limit or MNIST_TRAIN_IMAGES, MNIST_TRAIN_IMAGES)
    return -(-images // BATCH_SIZE)


def runs(epochs: int, data: DataConfig) -> list[tuple[str, RunConfig]]:
    # the paper's 100 epochs of warm-up, half of a 200-epoch run, kept at half of a shorter one
    warmup = steps_per_epoch(data) * scaled_to_run(WARMUP_EPOCHS, epochs, 2 * WARMUP_EPOCHS)
    train = TrainConfig(
        epochs=epochs,
        batch_size=BATCH_SIZE,
        optimizer="adam",
        learning_rate=5e-4,
        warmup_steps=warmup,
        early_stopping_patience=50,
    )
    net = {"hidden_layers": 2, "activation": "gated", "prior_components": 500}  # the paper's gated units
    one = [
        (f"vae-{name}", ModelConfig(hidden_dim=300, latent_dim=40, prior=prior, **net))
        for name, prior in PRIORS.items()
    ]
    two = [
        (
            f"hvae-{name}",
            ModelConfig(
                hierarchy="ladder", ladder_latent_dims=(40, 40), ladder_hidden_dims=(300, 300), prior=prior, **net
            ),
        )
        for name, prior in PRIORS.items()
    ]
    return [(name, RunConfig(model, data, train)) for name, model in one + two]
