"""The FactorVAE discriminator: tells samples of q(z) from samples of prod_j q(z_j) (Kim & Mnih 2018).

Trained to classify z ~ q(z) (class 0) against the same batch with each coordinate permuted across the
batch, which samples prod_j q(z_j) (class 1), its logits estimate the density ratio
    log q(z) / prod_j q(z_j) = logit_0(z) - logit_1(z),
whose mean over q(z) is the total correlation (their Section 3).
"""

from __future__ import annotations

import torch
from torch import nn


class TotalCorrelationDiscriminator(nn.Module):
    """An MLP of `layers` hidden layers of `hidden_dim` leaky-ReLU (slope 0.2) units with two logits,
    [q(z), prod_j q(z_j)]: 6 x 1000 in Kim & Mnih 2018, Appendix A. Shapes: z (batch, J) -> (batch, 2)."""

    def __init__(self, latent_dim: int, hidden_dim: int = 1000, layers: int = 6) -> None:
        super().__init__()
        dims = [latent_dim] + [hidden_dim] * layers
        blocks: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            blocks += [nn.Linear(a, b), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*blocks, nn.Linear(dims[-1], 2))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def permute_dims(z: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each coordinate of z (batch, J) shuffled across the batch by its own permutation (Kim & Mnih 2018,
    Algorithm 1): a sample of prod_j q(z_j) from a sample of q(z). The generator (CPU) fixes the shuffles."""
    order = torch.argsort(torch.rand(z.shape, generator=generator), dim=0).to(z.device)
    return torch.gather(z, 0, order)


def density_ratio(discriminator: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """log q(z) / prod_j q(z_j) as the discriminator estimates it, logit_0 - logit_1: (batch,)."""
    logits = discriminator(z)
    return logits[:, 0] - logits[:, 1]
