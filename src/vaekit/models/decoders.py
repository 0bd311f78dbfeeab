"""Decoders: networks that map a latent z to a likelihood object p(x|z) over images.

Every decoder emits `maps * C` output channels per pixel (maps given by the likelihood and its options)
and hands them to the likelihood's builder in vaekit.likelihoods.LIKELIHOOD_BUILDERS, so every decoder
supports every likelihood.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vaekit.likelihoods import LIKELIHOOD_BUILDERS, LikelihoodOptions
from vaekit.models.encoders import ACTIVATION_FUNCTIONS, ResidualBlock, dense, spatial_latent_channels


class _LikelihoodHead:
    """Turns raw decoder output (batch, maps*C, H, W) into the configured likelihood object."""

    def __init__(self, likelihood: str, options: LikelihoodOptions) -> None:
        maps, self.build = LIKELIHOOD_BUILDERS[likelihood]
        self.options = options
        self.maps = maps(self.options)

    def __call__(self, out: torch.Tensor):
        return self.build(out, 3, self.options)


class MLPDecoder(nn.Module):
    """MLP decoder (Kingma & Welling 2013, Appendix C).

    h = ReLU(W4 z + b4);  parameters = W5 h + b5 (Bernoulli logits, C.1), or for the Gaussian
    with learned variance mu = W5 h + b5 and log sigma^2 = W6 h + b6 (C.2), stored stacked as one
    layer, with log sigma^2 squashed into [logvar_min, logvar_max] so it cannot collapse.
    Shapes: z (batch, latent_dim) -> parameters (batch, C, H, W).
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        hidden_dim: int,
        latent_dim: int,
        likelihood: str = "bernoulli",
        options: LikelihoodOptions | None = None,
        hidden_layers: int = 1,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.head = _LikelihoodHead(likelihood, options or LikelihoodOptions())
        c, h, w = self.image_shape
        self.hidden = dense(latent_dim, hidden_dim, activation)  # W4, b4
        self.deeper = nn.ModuleList(dense(hidden_dim, hidden_dim, activation) for _ in range(hidden_layers - 1))
        self.out = nn.Linear(hidden_dim, self.head.maps * c * h * w)  # W5, b5 (and W6, b6)
        self.act = ACTIVATION_FUNCTIONS[activation]

    def forward(self, z: torch.Tensor):
        c, h, w = self.image_shape
        hidden = self.act(self.hidden(z))
        for layer in self.deeper:
            hidden = self.act(layer(hidden))
        out = self.out(hidden)  # (batch, maps*C*H*W)
        return self.head(out.view(-1, self.head.maps * c, h, w))


class ConvDecoder(nn.Module):
    """Convolutional decoder mirroring ConvEncoder: two linear layers up to a (channels[-1], H/2^n,
    W/2^n) map, then n transposed convolutions (kernel 4, stride 2) each doubling height and width.
    Shapes: z (batch, latent_dim) -> parameters (batch, C, H, W).
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        hidden_dim: int,
        latent_dim: int,
        channels: tuple[int, ...],
        likelihood: str = "bernoulli",
        options: LikelihoodOptions | None = None,
    ) -> None:
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.head = _LikelihoodHead(likelihood, options or LikelihoodOptions())
        c, h, w = self.image_shape
        scale = 2 ** len(channels)
        self.start = (channels[-1], h // scale, w // scale)
        self.fc = nn.Sequential(
            nn.Linear(latent_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, math.prod(self.start)), nn.ReLU()
        )
        layers: list[nn.Module] = []
        ups = list(channels[::-1]) + [self.head.maps * c]
        for i, (cin, cout) in enumerate(zip(ups[:-1], ups[1:])):
            layers.append(nn.ConvTranspose2d(cin, cout, kernel_size=4, stride=2, padding=1))
            if i < len(ups) - 2:
                layers.append(nn.ReLU())
        self.deconv = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor):
        return self.head(self.deconv(self.fc(z).view(-1, *self.start)))


class ResidualDecoder(nn.Module):
    """The decoder of van den Oord et al. 2017, Section 4.1, mirroring ResidualEncoder: the latent map
    (latent channels, H/2^n, W/2^n), a 1x1 convolution to channels[-1] units, `blocks` residual blocks, then
    n transposed convolutions (kernel 4, stride 2) up to the likelihood's maps. Shapes: z (batch, latent_dim)
    -> parameters (batch, C, H, W)."""

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        latent_dim: int,
        channels: tuple[int, ...],
        blocks: int,
        likelihood: str = "bernoulli",
        options: LikelihoodOptions | None = None,
    ) -> None:
        super().__init__()
        self.head = _LikelihoodHead(likelihood, options or LikelihoodOptions())
        c, h, w = image_shape
        n = len(channels)
        self.start = (spatial_latent_channels(image_shape, n, latent_dim), h >> n, w >> n)
        layers: list[nn.Module] = [nn.Conv2d(self.start[0], channels[-1], 1)]
        layers += [ResidualBlock(channels[-1]) for _ in range(blocks)]
        ups = list(channels[::-1]) + [self.head.maps * c]
        for cin, cout in zip(ups[:-1], ups[1:]):
            layers += [nn.ReLU(), nn.ConvTranspose2d(cin, cout, kernel_size=4, stride=2, padding=1)]
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor):
        return self.head(self.body(z.view(-1, *self.start)))
