"""The VAE: an encoder q(z|x), a decoder p(x|z) and the prior p(z) = N(0, I); the model registry."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from vaekit.config import ModelConfig
from vaekit.likelihoods import (
    BernoulliLikelihood,
    ContinuousBernoulliLikelihood,
    DiagonalGaussian,
    GaussianLikelihood,
)
from vaekit.models.decoders import ConvDecoder, MLPDecoder
from vaekit.models.encoders import ConvEncoder, MLPEncoder

Likelihood = BernoulliLikelihood | ContinuousBernoulliLikelihood | GaussianLikelihood


class VAE(nn.Module):
    """Variational autoencoder (Kingma & Welling 2013, Section 3).

    Holds the networks and nothing else: objectives live in vaekit.objectives, persistence in
    vaekit.checkpoint. Images are (batch, C, H, W); latents are (batch, latent_dim).
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, latent_dim: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.latent_dim = latent_dim

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Parameters of q(z|x): (mu, logvar), each (batch, latent_dim)."""
        return self.encoder(x)

    def posterior(self, x: torch.Tensor) -> DiagonalGaussian:
        """The approximate posterior q(z|x) as a distribution object."""
        return DiagonalGaussian(*self.encode(x))

    def prior(self, batch: int, device: torch.device | None = None) -> DiagonalGaussian:
        """The prior p(z) = N(0, I) for `batch` datapoints."""
        zeros = torch.zeros(batch, self.latent_dim, device=device or self._device())
        return DiagonalGaussian(zeros, zeros)

    def decode(self, z: torch.Tensor) -> Likelihood:
        """The likelihood p(x|z) for latents z of shape (batch, latent_dim)."""
        return self.decoder(z)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decoded means of n draws z ~ p(z): images (n, C, H, W) in the data's range."""
        z = torch.randn(n, self.latent_dim, generator=generator, device=self._device())
        return self.decode(z).mean

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decoded mean at the posterior mean: E[x | z = mu(x)], images shaped like x."""
        mu, _ = self.encode(x)
        return self.decode(mu).mean

    def _device(self) -> torch.device:
        return next(self.parameters()).device


def _likelihood_options(config: ModelConfig) -> dict[str, float]:
    return {
        "logvar_min": config.decoder_logvar_min,
        "logvar_max": config.decoder_logvar_max,
        "fixed_std": config.decoder_fixed_std,
    }


def _mlp(config: ModelConfig) -> VAE:
    encoder = MLPEncoder(
        config.image_shape, config.hidden_dim, config.latent_dim, config.hidden_layers, config.activation
    )
    decoder = MLPDecoder(
        config.image_shape,
        config.hidden_dim,
        config.latent_dim,
        config.likelihood,
        _likelihood_options(config),
        config.hidden_layers,
        config.activation,
    )
    return VAE(encoder, decoder, config.latent_dim)


def _conv(config: ModelConfig) -> VAE:
    encoder = ConvEncoder(config.image_shape, config.hidden_dim, config.latent_dim, config.conv_channels)
    decoder = ConvDecoder(
        config.image_shape,
        config.hidden_dim,
        config.latent_dim,
        config.conv_channels,
        config.likelihood,
        _likelihood_options(config),
    )
    return VAE(encoder, decoder, config.latent_dim)


# One registry: architecture name -> builder. Names match config.ARCHITECTURE_NAMES (a test checks).
ARCHITECTURE_BUILDERS: dict[str, Callable[[ModelConfig], VAE]] = {"mlp": _mlp, "conv": _conv}


def build_model(config: ModelConfig) -> VAE:
    """A freshly initialised VAE for a model config (seed torch beforehand for repeatability)."""
    return ARCHITECTURE_BUILDERS[config.architecture](config)
