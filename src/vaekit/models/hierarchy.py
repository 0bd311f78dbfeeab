"""Stochastic layers z_1 (bottom) ... z_L (top): the generative side and the ladder's bottom-up pass.

One way to generate, p(z_L) prod_i p(z_i | z_{i+1}) p(x | z_1), top-down; two ways to infer, each a
named posterior in models/posteriors.py:
  two-layer (Burda et al. 2016, Section 5): bottom-up, q(z1|x) q(z2|z1)        TwoLayerPosterior
  ladder (Sonderby et al. 2016): a bottom-up pass gives estimates (mu^_i, sigma^_i) for every layer;
    inference then runs top-down, merging each estimate with p(z_i|z_{i+1}) by precision  LadderPosterior
The latent vector is z = [z_1, ..., z_L] (batch, ..., J_1 + ... + J_L). This module holds:
  HierarchicalPrior   log p(z) = log p(z_L) + sum_i log N(z_i; mu(z_{i+1}), diag sigma^2(z_{i+1}))
  LadderEncoder       the ladder's bottom-up estimates of all layers
  TopBlock            a view of an encoder's top block: what a VampPrior on a ladder's top layer mixes
  BottomDecoder       p(x|z) = p(x|z_1)
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vaekit.likelihoods import DiagonalGaussian
from vaekit.models.encoders import ACTIVATION_FUNCTIONS, dense, gaussian_parameters
from vaekit.models.posteriors import gaussian_log_prob_per_dim


def split_layers(z: torch.Tensor, dims: list[int]) -> list[torch.Tensor]:
    """[z_1, ..., z_L] from z (*batch, sum(dims)), bottom layer first."""
    return list(torch.split(z, dims, dim=-1))


class HierarchicalPrior(nn.Module):
    """p(z_1, ..., z_L) = p(z_L) prod_{i<L} p(z_i | z_{i+1}): any one-layer prior on top, a Gaussian MLP
    for each conditional (conditionals[i] maps z_{i+2} to the parameters of z_{i+1}, counting from 1)."""

    closed_form_kl = False
    has_density = True
    pictures_without: dict[str, str] = {}

    def __init__(self, dims: list[int], top: nn.Module, conditionals: nn.ModuleList) -> None:
        super().__init__()
        self.dims = list(dims)
        self.layer_sizes = tuple(dims)
        self.top = top
        self.conditionals = conditionals
        self.label = f"{len(dims)} layers, {top.label} on top"

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        layers = split_layers(z, self.dims)
        total = self.top.log_prob(layers[-1])
        for i, conditional in enumerate(self.conditionals):
            total = total + DiagonalGaussian(*conditional(layers[i + 1])).log_prob(layers[i])
        return total

    def log_prob_by_layer(self, z: torch.Tensor) -> list[torch.Tensor]:
        layers = split_layers(z, self.dims)
        below = [gaussian_log_prob_per_dim(layers[i], *c(layers[i + 1])) for i, c in enumerate(self.conditionals)]
        return below + self.top.log_prob_by_layer(layers[-1])

    def below(self, top: torch.Tensor, generator: torch.Generator | None = None, mean: bool = False) -> torch.Tensor:
        """The whole z for a top layer (n, J_L): each lower layer drawn from p(z_i|z_{i+1}), or its mean."""
        layers = [top]
        for conditional in reversed(self.conditionals):
            mu, logvar = conditional(layers[0])
            if not mean:
                device = generator.device if generator is not None else mu.device
                mu = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=generator, device=device).to(
                    mu.device
                )
            layers.insert(0, mu)
        return torch.cat(layers, -1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        top = self.top.sample(n, generator).to(self.conditionals[0].heads.weight.device)
        return self.below(top, generator)

    def typical_point(self) -> torch.Tensor:
        """The top prior's typical point: the playground's sliders move the top layer."""
        return self.top.typical_point()

    def fill_below(self, z: torch.Tensor, layer: int) -> torch.Tensor:
        """z (*batch, sum J_i) with every layer below `layer` (0: the bottom) replaced, top-down, by the
        mean of p(z_i | z_{i+1}): what the layers below make of a change to layer `layer`."""
        layers = split_layers(z, self.dims)
        for i in reversed(range(layer)):
            layers[i] = self.conditionals[i](layers[i + 1])[0]
        return torch.cat(layers, -1)

    def learned_inputs(self) -> torch.Tensor | None:
        return self.top.learned_inputs()


class LadderEncoder(nn.Module):
    """The ladder's bottom-up pass (Sonderby et al. 2016, Eq. 16): d_0 = x, d_i = MLP_i(d_{i-1}), and
    from each d_i the estimates (mu^_i, log sigma^2_i) of layer i. Returns them for all layers,
    concatenated bottom first: (batch, sum J_i) each."""

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        hidden_dims: list[int],
        latent_dims: list[int],
        layers: int,
        activation: str,
    ) -> None:
        super().__init__()
        ins = [math.prod(image_shape), *hidden_dims[:-1]]
        self.blocks = nn.ModuleList(
            nn.ModuleList(dense(a if k == 0 else h, h, activation) for k in range(layers))
            for a, h in zip(ins, hidden_dims)
        )
        self.heads = nn.ModuleList(nn.Linear(h, 2 * j) for h, j in zip(hidden_dims, latent_dims))
        self.act = ACTIVATION_FUNCTIONS[activation]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d, mus, logvars = x.flatten(1), [], []
        for block, head in zip(self.blocks, self.heads):
            for layer in block:
                d = self.act(layer(d))
            mu, logvar = gaussian_parameters(head, d)
            mus.append(mu)
            logvars.append(logvar)
        return torch.cat(mus, -1), torch.cat(logvars, -1)


class TopBlock(nn.Module):
    """The top `top_dim` coordinates of an encoder's (mu, logvar): q(z_L|u) from a ladder's bottom-up
    pass, the Gaussian a VampPrior on the top layer mixes. Holds the encoder itself (shared)."""

    def __init__(self, encoder: nn.Module, top_dim: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.top_dim = top_dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(x)
        return mu[..., -self.top_dim :], logvar[..., -self.top_dim :]


class BottomDecoder(nn.Module):
    """p(x|z) = p(x|z1): the one-layer decoder applied to z's first block."""

    def __init__(self, decoder: nn.Module, bottom_dim: int) -> None:
        super().__init__()
        self.decoder = decoder
        self.bottom_dim = bottom_dim

    def forward(self, z: torch.Tensor) -> object:
        return self.decoder(z[..., : self.bottom_dim])
