"""Priors p(z): the standard normal, a learned mixture of Gaussians, and the VampPrior.

Each prior is a module with `log_prob(z, encode)` summed over latent dimensions and
`sample(n, generator, encode)`; `encode` is the model's encoder (x -> mu, logvar), which the
VampPrior evaluates at its pseudo-inputs and the others ignore. The encoder is passed in rather
than held, so that its weights are stored once, under the encoder.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from vaekit.likelihoods import LOG_2PI, standard_normal_log_prob

Encode = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def mixture_log_prob(
    z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, log_weights: torch.Tensor
) -> torch.Tensor:
    """log sum_k w_k N(z; mu_k, diag exp(logvar_k)), by log-sum-exp over the components.

    Each component's log density is expanded into matrix products,
        log N(z; mu_k, sigma_k^2) = -1/2 [ sum_j (log 2pi + log sigma_kj^2 + mu_kj^2 / sigma_kj^2)
                                           + (z^2) . (1 / sigma_k^2) - 2 z . (mu_k / sigma_k^2) ],
    so that no (*batch, K, J) tensor is made: with K = 500 components that tensor made evaluation
    memory-bound. The products are taken in float64, because the expanded terms are large and
    cancel when z is near mu_k and sigma_k is small. Shapes: z (*batch, J); mu, logvar (K, J);
    log_weights (K,) normalised. Returns (*batch,) in z's dtype.
    """
    z64, mu64, logvar64 = z.double(), mu.double(), logvar.double()
    precision = torch.exp(-logvar64)  # (K, J)
    constant = (LOG_2PI + logvar64 + mu64**2 * precision).sum(-1)  # (K,)
    quadratic = (z64**2) @ precision.T - 2 * z64 @ (mu64 * precision).T  # (*batch, K)
    per_component = -0.5 * (constant + quadratic)
    return torch.logsumexp(per_component + log_weights.double(), dim=-1).to(z.dtype)


def mixture_sample(
    n: int, mu: torch.Tensor, logvar: torch.Tensor, log_weights: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    """n draws (n, J): a component k ~ Categorical(w), then z ~ N(mu_k, diag exp(logvar_k))."""
    device = mu.device if generator is None else generator.device
    k = torch.multinomial(log_weights.exp().to(device), n, replacement=True, generator=generator).to(mu.device)
    eps = torch.randn((n, mu.shape[-1]), generator=generator, device=device).to(mu.device)
    return mu[k] + torch.exp(0.5 * logvar[k]) * eps


class StandardNormalPrior(nn.Module):
    """p(z) = N(0, I) (Kingma & Welling 2013, Section 3). No parameters; its KL against a diagonal
    Gaussian posterior has the closed form of Appendix B."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim

    def log_prob(self, z: torch.Tensor, encode: Encode | None = None) -> torch.Tensor:
        return standard_normal_log_prob(z)

    def sample(self, n: int, generator: torch.Generator | None, encode: Encode | None = None) -> torch.Tensor:
        device = generator.device if generator is not None else torch.device("cpu")
        return torch.randn(n, self.latent_dim, generator=generator, device=device)


class MixturePrior(nn.Module):
    """A learned mixture of K diagonal Gaussians, p(z) = sum_k w_k N(z; mu_k, diag sigma_k^2),
    w = softmax(logits) (the "mixture of Gaussians" prior of Tomczak & Welling 2018, Section 2).
    Means start as draws from N(0, I), variances at 1, weights uniform."""

    def __init__(self, latent_dim: int, components: int) -> None:
        super().__init__()
        self.mu = nn.Parameter(torch.randn(components, latent_dim))
        self.logvar = nn.Parameter(torch.zeros(components, latent_dim))
        self.logits = nn.Parameter(torch.zeros(components))

    def log_prob(self, z: torch.Tensor, encode: Encode | None = None) -> torch.Tensor:
        return mixture_log_prob(z, self.mu, self.logvar, torch.log_softmax(self.logits, 0))

    def sample(self, n: int, generator: torch.Generator | None, encode: Encode | None = None) -> torch.Tensor:
        return mixture_sample(n, self.mu, self.logvar, torch.log_softmax(self.logits, 0), generator)


class VampPrior(nn.Module):
    """The variational mixture of posteriors (Tomczak & Welling 2018, Eq. 9):

    p(z) = 1/K sum_k q(z | u_k),  u_k learned pseudo-inputs.
    The pseudo-inputs are images kept in [0, 1] as u = sigmoid(raw); they start near the mean
    pixel intensity with a little noise. Shapes: raw (K, C, H, W).
    """

    def __init__(self, image_shape: tuple[int, int, int], components: int) -> None:
        super().__init__()
        self.raw = nn.Parameter(
            torch.logit(torch.full((components, *image_shape), 0.1)) + 0.1 * torch.randn(components, *image_shape)
        )

    def pseudo_inputs(self) -> torch.Tensor:
        return torch.sigmoid(self.raw)

    def components(self, encode: Encode) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = encode(self.pseudo_inputs())  # (K, J) each
        return mu, logvar, torch.full((len(mu),), -math.log(len(mu)), device=mu.device)

    def log_prob(self, z: torch.Tensor, encode: Encode | None = None) -> torch.Tensor:
        assert encode is not None, "the VampPrior needs the encoder"
        return mixture_log_prob(z, *self.components(encode))

    def sample(self, n: int, generator: torch.Generator | None, encode: Encode | None = None) -> torch.Tensor:
        assert encode is not None, "the VampPrior needs the encoder"
        return mixture_sample(n, *self.components(encode), generator)
