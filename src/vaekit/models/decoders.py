"""Decoders: networks that map a latent z to a likelihood object p(x|z) over images."""

from __future__ import annotations

import math

import torch
from torch import nn

from vaekit.likelihoods import BernoulliLikelihood, GaussianLikelihood, bounded_logvar


class MLPDecoder(nn.Module):
    """MLP decoder with a Bernoulli or Gaussian output (Kingma & Welling 2013, Appendix C).

    Bernoulli (C.1):  h = ReLU(W4 z + b4);  logits = W5 h + b5
    Gaussian  (C.2):  h = ReLU(W4 z + b4);  mu = W5 h + b5;  log sigma^2 = W6 h + b6,
        with log sigma^2 squashed into [logvar_min, logvar_max] by `bounded_logvar` so the
        variance cannot collapse to a spike; W5 and W6 are stored stacked as one layer.
    Shapes: z (batch, latent_dim) -> parameters (batch, C, H, W).
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        hidden_dim: int,
        latent_dim: int,
        likelihood: str = "bernoulli",
        logvar_min: float = -6.0,
        logvar_max: float = 2.0,
    ) -> None:
        super().__init__()
        if likelihood not in ("bernoulli", "gaussian"):
            raise ValueError(f"unknown likelihood {likelihood!r}")
        self.image_shape = tuple(image_shape)
        self.likelihood = likelihood
        self.logvar_min, self.logvar_max = logvar_min, logvar_max
        pixels = math.prod(image_shape)
        self.hidden = nn.Linear(latent_dim, hidden_dim)  # W4, b4
        self.out = nn.Linear(hidden_dim, pixels if likelihood == "bernoulli" else 2 * pixels)

    def forward(self, z: torch.Tensor) -> BernoulliLikelihood | GaussianLikelihood:
        h = torch.relu(self.hidden(z))  # (batch, hidden_dim)
        out = self.out(h)
        event = len(self.image_shape)
        if self.likelihood == "bernoulli":
            return BernoulliLikelihood(out.view(-1, *self.image_shape), event)
        mu, raw = out.chunk(2, dim=-1)
        logvar = bounded_logvar(raw, self.logvar_min, self.logvar_max)
        return GaussianLikelihood(mu.view(-1, *self.image_shape), logvar.view(-1, *self.image_shape), event)
