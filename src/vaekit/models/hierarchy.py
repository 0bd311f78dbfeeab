"""Two stochastic layers (Burda et al. 2016, Section 5): bottom-up inference q(z1|x) q(z2|z1),
top-down generation p(z2) p(z1|z2) p(x|z1), composed from the parts of the one-layer VAE.

The latent vector is z = [z1, z2] (batch, ..., J1 + J2), and each part of the hierarchy is one
part of the latent-variable interface, so that the ELBO, the IWAE bound and log p(x) apply
unchanged:
  PaddedEncoder           q_0(z|x) = N([mu1(x), 0], diag [sigma1^2(x), 1]): z1's Gaussian, and the
                          noise eps2 ~ N(0, I) of the upper layer
  ConditionalGaussianStep the "flow" [z1, eps2] -> [z1, mu2(z1) + sigma2(z1) * eps2], whose
                          log-determinant sum_j log sigma2_j turns log q_0 into log q(z1|x) + log q(z2|z1)
  HierarchicalPrior       log p(z) = log p(z2) + log N(z1; mu(z2), diag sigma^2(z2))
  BottomDecoder           p(x|z) = p(x|z1)
"""

from __future__ import annotations

import torch
from torch import nn

from vaekit.likelihoods import DiagonalGaussian
from vaekit.models.encoders import ACTIVATION_FUNCTIONS, ENCODER_LOGVAR_MAX, ENCODER_LOGVAR_MIN


class GaussianMLP(nn.Module):
    """A diagonal Gaussian whose parameters are an MLP of its input: h = act(W h + b) `layers` times,
    then (mu, logvar) = heads(h). Shapes: v (*batch, in_dim) -> mu, logvar (*batch, out_dim)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, layers: int, activation: str) -> None:
        super().__init__()
        dims = [in_dim] + [hidden_dim] * layers
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.heads = nn.Linear(dims[-1], 2 * out_dim)
        self.act = ACTIVATION_FUNCTIONS[activation]

    def forward(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = v
        for layer in self.hidden:
            h = self.act(layer(h))
        mu, logvar = self.heads(h).chunk(2, dim=-1)
        return mu, logvar.clamp(ENCODER_LOGVAR_MIN, ENCODER_LOGVAR_MAX)  # the encoder's guard, for the same reason


class PaddedEncoder(nn.Module):
    """The bottom encoder's (mu1, logvar1), padded with (0, 0) for the upper layer's noise."""

    def __init__(self, bottom: nn.Module, top_dim: int) -> None:
        super().__init__()
        self.bottom = bottom
        self.top_dim = top_dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.bottom(x)
        pad = mu.new_zeros(*mu.shape[:-1], self.top_dim)
        return torch.cat([mu, pad], -1), torch.cat([logvar, pad], -1)


class ConditionalGaussianStep(nn.Module):
    """q(z2|z1) as a change of variables on [z1, eps2]: z2 = mu2(z1) + sigma2(z1) * eps2,
    log |det J| = sum_j log sigma2_j(z1) (the Jacobian is triangular with z1's block the identity)."""

    def __init__(self, bottom_dim: int, conditional: GaussianMLP) -> None:
        super().__init__()
        self.bottom_dim = bottom_dim
        self.conditional = conditional

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z1, eps2 = z[..., : self.bottom_dim], z[..., self.bottom_dim :]
        mu, logvar = self.conditional(z1)
        return torch.cat([z1, mu + torch.exp(0.5 * logvar) * eps2], -1), 0.5 * logvar.sum(-1)


class HierarchicalPrior(nn.Module):
    """p(z1, z2) = p(z2) p(z1|z2): any one-layer prior on top, a Gaussian MLP for p(z1|z2)."""

    def __init__(self, bottom_dim: int, top: nn.Module, conditional: GaussianMLP) -> None:
        super().__init__()
        self.bottom_dim = bottom_dim
        self.top = top
        self.conditional = conditional

    def log_prob(self, z: torch.Tensor, encode: object = None) -> torch.Tensor:
        z1, z2 = z[..., : self.bottom_dim], z[..., self.bottom_dim :]
        return self.top.log_prob(z2) + DiagonalGaussian(*self.conditional(z2)).log_prob(z1)

    def sample(self, n: int, generator: torch.Generator | None, encode: object = None) -> torch.Tensor:
        z2 = self.top.sample(n, generator)
        mu, logvar = self.conditional(z2.to(self.conditional.heads.weight.device))
        device = generator.device if generator is not None else mu.device
        eps = torch.randn(mu.shape, generator=generator, device=device).to(mu.device)
        return torch.cat([mu + torch.exp(0.5 * logvar) * eps, z2.to(mu.device)], -1)


class BottomDecoder(nn.Module):
    """p(x|z) = p(x|z1): the one-layer decoder applied to z's first block."""

    def __init__(self, decoder: nn.Module, bottom_dim: int) -> None:
        super().__init__()
        self.decoder = decoder
        self.bottom_dim = bottom_dim

    def forward(self, z: torch.Tensor) -> object:
        return self.decoder(z[..., : self.bottom_dim])
