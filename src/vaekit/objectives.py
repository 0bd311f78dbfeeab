"""Training objectives: the variational lower bound (ELBO) and the importance-weighted bound.

Sign convention: every bound is a log-likelihood bound in nats per datapoint, summed over
pixels and latent dimensions; higher is better. The optimiser minimises `loss = -elbo`,
and that negation appears only in the training loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from vaekit.config import TrainConfig
from vaekit.likelihoods import DiagonalGaussian, standard_normal_log_prob
from vaekit.models.vae import VAE


@dataclass(frozen=True)
class ElboTerms:
    """Per-datapoint pieces of the bound, each of shape (batch,): elbo = reconstruction - kl;
    kl_per_dim (batch, latent_dim) splits the KL by latent dimension."""

    elbo: torch.Tensor
    reconstruction: torch.Tensor
    kl: torch.Tensor
    kl_per_dim: torch.Tensor


def elbo(
    model: VAE,
    x: torch.Tensor,
    num_samples: int = 1,
    generator: torch.Generator | None = None,
    eps: torch.Tensor | None = None,
) -> ElboTerms:
    """The SGVB estimator of the variational lower bound with L samples per datapoint.

    L(x) ~= -KL(q(z|x) || p(z)) + 1/L sum_l log p(x | z_l),  z_l = mu + sigma * eps_l
    (Kingma & Welling 2013, Section 2.3, the second estimator, with the KL in closed form).
    Shapes: x (batch, C, H, W); z and eps, if given, (batch, L, latent_dim); terms (batch,).
    """
    posterior = model.posterior(x)
    z = posterior.rsample(num_samples, generator, eps)  # (batch, L, J)
    batch = x.shape[0]
    likelihood = model.decode(z.reshape(batch * num_samples, -1))  # parameters (batch*L, C, H, W)
    x_rep = x.repeat_interleave(num_samples, dim=0) if num_samples > 1 else x
    log_px_z = likelihood.log_prob(x_rep).view(batch, num_samples)  # (batch, L)
    reconstruction = log_px_z.mean(dim=1)
    kl_per_dim = posterior.kl_per_dimension()  # (batch, J)
    kl = kl_per_dim.sum(-1)
    return ElboTerms(elbo=reconstruction - kl, reconstruction=reconstruction, kl=kl, kl_per_dim=kl_per_dim)


def _log_weights(
    model: VAE,
    x: torch.Tensor,
    k: int,
    posterior: DiagonalGaussian,
    generator: torch.Generator | None,
    eps: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """log w (batch, k) and its log p(x|z) part (batch, k), for z_k ~ q(z|x)."""
    z = posterior.rsample(k, generator, eps)  # (batch, k, J)
    batch = x.shape[0]
    likelihood = model.decode(z.reshape(batch * k, -1))
    log_px_z = likelihood.log_prob(x.repeat_interleave(k, dim=0)).view(batch, k)
    log_qz = DiagonalGaussian(posterior.mu.unsqueeze(1), posterior.logvar.unsqueeze(1)).log_prob(z)
    return log_px_z + standard_normal_log_prob(z) - log_qz, log_px_z


def log_importance_weights(
    model: VAE,
    x: torch.Tensor,
    num_importance_samples: int,
    generator: torch.Generator | None = None,
    posterior_params: tuple[torch.Tensor, torch.Tensor] | None = None,
    eps: torch.Tensor | None = None,
) -> torch.Tensor:
    """log w_k = log p(x | z_k) + log p(z_k) - log q(z_k | x),  z_k ~ q(z | x).

    The summands of the importance-sampled likelihood (Burda et al. 2016, Eq. 8; Kingma &
    Welling 2013, Appendix D). `posterior_params` lets a caller reuse one encoder pass
    (mu, logvar) across many chunks of samples.
    Shapes: x (batch, C, H, W) -> (batch, K).
    """
    posterior = DiagonalGaussian(*(posterior_params or model.encode(x)))
    return _log_weights(model, x, num_importance_samples, posterior, generator, eps)[0]


def iwae_bound(
    model: VAE,
    x: torch.Tensor,
    num_importance_samples: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The importance-weighted lower bound with k samples, per datapoint (batch,).

    L_k(x) = E[ log (1/k) sum_k w_k ],  w_k = p(x, z_k) / q(z_k | x)   (Burda et al. 2016, Eq. 8)
    Equals the ELBO's expectation for k = 1 and rises towards log p(x) as k grows. Computed
    with log-sum-exp so that no weight is exponentiated.
    """
    return iwae_training_terms(model, x, num_importance_samples, generator)[0]


# ---------------------------------------------------------------------------------------------
# Training objectives beyond the plain ELBO. Schedules are pure functions of the step, so a
# resumed run continues them exactly.


def beta_at(step: int, beta: float, warmup_steps: int) -> float:
    """KL weight at a step: beta * min(1, step / warmup_steps), linear warm-up from 0
    (Bowman et al. 2016; Sonderby et al. 2016); plain beta without warm-up (Higgins et al. 2017)."""
    return beta if warmup_steps <= 0 else beta * min(1.0, step / warmup_steps)


def capacity_at(step: int, capacity_max: float, capacity_steps: int) -> float:
    """Target KL in nats at a step, raised linearly from 0 to capacity_max (Burgess et al. 2018)."""
    return capacity_max if capacity_steps <= 0 else capacity_max * min(1.0, step / capacity_steps)


def iwae_training_terms(
    model: VAE, x: torch.Tensor, k: int, generator: torch.Generator | None = None, eps: torch.Tensor | None = None
) -> tuple[torch.Tensor, ElboTerms]:
    """The IWAE bound (batch,) for training, with ELBO terms from the same k samples for logging:
    reconstruction is the mean over samples of log p(x|z_k), kl the closed form."""
    posterior = model.posterior(x)
    log_w, log_px_z = _log_weights(model, x, k, posterior, generator, eps)
    bound = torch.logsumexp(log_w, dim=1) - math.log(k)
    kl_per_dim = posterior.kl_per_dimension()
    reconstruction = log_px_z.mean(dim=1)
    kl = kl_per_dim.sum(-1)
    return bound, ElboTerms(reconstruction - kl, reconstruction, kl, kl_per_dim)


def training_loss(
    model: VAE,
    x: torch.Tensor,
    train: TrainConfig,
    step: int,
    generator: torch.Generator | None = None,
    eps: torch.Tensor | None = None,
) -> tuple[torch.Tensor, ElboTerms]:
    """The scalar the optimiser minimises for one minibatch, and the ELBO terms for logging.

    objective "elbo":  -(1/M) sum_i [ E_q log p(x_i|z) - penalty_i ], where the penalty is
        beta_t * KL                       (beta-VAE, with linear warm-up of beta_t), or
        gamma * |KL - C_t|                (capacity control, when capacity_max > 0), and with
        free bits lambda the KL is sum_j max(lambda, (1/M) sum_i KL_ij)  (Kingma et al. 2016).
    objective "iwae":  -(1/M) sum_i L_k(x_i), k = num_samples  (Burda et al. 2016).
    eps, if given, is the reparameterization noise (batch, num_samples, latent_dim).
    """
    if train.objective == "iwae":
        bound, terms = iwae_training_terms(model, x, train.num_samples, generator, eps)
        return -bound.mean(), terms
    terms = elbo(model, x, train.num_samples, generator, eps)
    if train.free_bits > 0:
        kl = terms.kl_per_dim.mean(0).clamp_min(train.free_bits).sum()
    else:
        kl = terms.kl.mean()
    if train.capacity_max > 0:
        penalty = train.capacity_gamma * (kl - capacity_at(step, train.capacity_max, train.capacity_steps)).abs()
    else:
        penalty = beta_at(step, train.beta, train.warmup_steps) * kl
    return -terms.reconstruction.mean() + penalty, terms
