"""Distributions of the model: the Gaussian posterior and prior, and the decoder likelihoods.

Each distribution is a small object holding its parameters, with `log_prob` summed over
every event dimension so that results are in nats per datapoint (the paper's convention:
summed over pixels and latent dimensions, never averaged).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LOG_2PI = math.log(2.0 * math.pi)


def _sum_event(t: torch.Tensor, event_dims: int) -> torch.Tensor:
    """Sum the trailing `event_dims` dimensions: (*batch, *event) -> (*batch,)."""
    return t.sum(dim=tuple(range(-event_dims, 0))) if event_dims else t


class DiagonalGaussian:
    """A Gaussian with diagonal covariance, N(mu, diag(exp(logvar))).

    Used for the approximate posterior q(z|x) (Kingma & Welling 2013, Appendix C.2) and, with
    mu = 0 and logvar = 0, for the prior p(z) = N(0, I).
    Shapes: mu and logvar are (*batch, latent_dim).
    """

    def __init__(self, mu: torch.Tensor, logvar: torch.Tensor) -> None:
        self.mu = mu
        self.logvar = logvar

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    def rsample(self, num_samples: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw z by the reparameterization trick, differentiable in mu and logvar.

        z = mu + sigma * eps,  eps ~ N(0, I)   (Kingma & Welling 2013, Section 2.4)
        Returns (*batch, num_samples, latent_dim).
        """
        mu, std = self.mu.unsqueeze(-2), self.std.unsqueeze(-2)
        shape = (*self.mu.shape[:-1], num_samples, self.mu.shape[-1])
        eps = torch.randn(shape, generator=generator, dtype=mu.dtype, device=mu.device)
        return mu + std * eps

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """Log density summed over latent dimensions.

        log N(z; mu, sigma^2) = -1/2 sum_j (log 2pi + log sigma_j^2 + (z_j - mu_j)^2 / sigma_j^2)
        z may carry extra sample dimensions before the last one that broadcast against mu:
        z (*batch, num_samples, J) with mu (*batch, 1, J). Returns z's shape without J.
        """
        return -0.5 * (LOG_2PI + self.logvar + (z - self.mu) ** 2 * torch.exp(-self.logvar)).sum(-1)

    def kl_per_dimension(self) -> torch.Tensor:
        """Closed-form KL(q || N(0, I)) for each latent dimension, (*batch, J).

        KL_j = 1/2 (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2)
        (the Gaussian case, Kingma & Welling 2013, Appendix B)
        """
        return 0.5 * (self.mu**2 + torch.exp(self.logvar) - 1.0 - self.logvar)

    def kl_to_standard_normal(self) -> torch.Tensor:
        """Closed-form KL(q || N(0, I)) summed over latent dimensions, (*batch,).

        -KL = 1/2 sum_j (1 + log sigma_j^2 - mu_j^2 - sigma_j^2)   (Appendix B)
        """
        return self.kl_per_dimension().sum(-1)


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """Log density of the prior N(0, I) summed over the last dimension.

    log p(z) = -1/2 sum_j (log 2pi + z_j^2)
    """
    return -0.5 * (LOG_2PI + z**2).sum(-1)


class BernoulliLikelihood:
    """Independent Bernoulli pixels parameterised by logits: p(x|z) = prod_d p_d^x_d (1-p_d)^(1-x_d).

    The decoder for binary (binarized) images (Kingma & Welling 2013, Appendix C.1).
    Shapes: logits (batch, *event); event_dims says how many trailing dimensions are pixels.
    """

    def __init__(self, logits: torch.Tensor, event_dims: int) -> None:
        self.logits = logits
        self.event_dims = event_dims

    @property
    def mean(self) -> torch.Tensor:
        """Pixel probabilities, the image one shows for a decoded z."""
        return torch.sigmoid(self.logits)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x|z) = sum_d x_d log p_d + (1 - x_d) log(1 - p_d), computed stably from logits.

        x has the event shape and broadcasts against logits. Returns (batch,).
        """
        logits, x = torch.broadcast_tensors(self.logits, x)
        return -_sum_event(F.binary_cross_entropy_with_logits(logits, x, reduction="none"), self.event_dims)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.bernoulli(self.mean, generator=generator)


class GaussianLikelihood:
    """Independent Gaussian pixels with learned diagonal variance, N(x; mu, diag(exp(logvar))).

    The decoder for continuous data (Kingma & Welling 2013, Appendix C.2). The decoder bounds
    logvar (see `bounded_logvar`) so that the density stays finite on pixels that never vary.
    """

    def __init__(self, mu: torch.Tensor, logvar: torch.Tensor, event_dims: int) -> None:
        self.mu = mu
        self.logvar = logvar
        self.event_dims = event_dims

    @property
    def mean(self) -> torch.Tensor:
        return self.mu

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x|z) = -1/2 sum_d (log 2pi + log sigma_d^2 + (x_d - mu_d)^2 / sigma_d^2). Returns (batch,)."""
        per_pixel = -0.5 * (LOG_2PI + self.logvar + (x - self.mu) ** 2 * torch.exp(-self.logvar))
        return _sum_event(per_pixel, self.event_dims)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        eps = torch.randn(self.mu.shape, generator=generator, dtype=self.mu.dtype, device=self.mu.device)
        return self.mu + torch.exp(0.5 * self.logvar) * eps


def bounded_logvar(raw: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Map an unconstrained output into (low, high): logvar = low + (high - low) * sigmoid(raw).

    Why: a Gaussian decoder with free variance can shrink sigma towards 0 on pixels that are
    constant in the data (MNIST's black border), sending log p(x|z) to +infinity and the ELBO
    with it. A smooth squashing keeps a gradient everywhere, unlike a hard clamp.
    """
    return low + (high - low) * torch.sigmoid(raw)
