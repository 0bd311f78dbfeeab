"""Training objectives: the variational lower bound (ELBO) and the importance-weighted bound.

Sign convention: every bound is a log-likelihood bound in nats per datapoint, summed over
pixels and latent dimensions; higher is better. The optimiser minimises `loss = -elbo`,
and that negation appears only in the training loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from vaekit.likelihoods import DiagonalGaussian, standard_normal_log_prob
from vaekit.models.vae import VAE


@dataclass(frozen=True)
class ElboTerms:
    """Per-datapoint pieces of the bound, each of shape (batch,): elbo = reconstruction - kl."""

    elbo: torch.Tensor
    reconstruction: torch.Tensor
    kl: torch.Tensor


def elbo(
    model: VAE,
    x: torch.Tensor,
    num_samples: int = 1,
    generator: torch.Generator | None = None,
) -> ElboTerms:
    """The SGVB estimator of the variational lower bound with L samples per datapoint.

    L(x) ~= -KL(q(z|x) || p(z)) + 1/L sum_l log p(x | z_l),  z_l = mu + sigma * eps_l
    (Kingma & Welling 2013, Section 2.3, the second estimator, with the KL in closed form).
    Shapes: x (batch, C, H, W); z (batch, L, latent_dim); result terms (batch,).
    """
    posterior = model.posterior(x)
    z = posterior.rsample(num_samples, generator)  # (batch, L, J)
    batch = x.shape[0]
    likelihood = model.decode(z.reshape(batch * num_samples, -1))  # parameters (batch*L, C, H, W)
    x_rep = x.repeat_interleave(num_samples, dim=0) if num_samples > 1 else x
    log_px_z = likelihood.log_prob(x_rep).view(batch, num_samples)  # (batch, L)
    reconstruction = log_px_z.mean(dim=1)
    kl = posterior.kl_to_standard_normal()  # (batch,)
    return ElboTerms(elbo=reconstruction - kl, reconstruction=reconstruction, kl=kl)


def log_importance_weights(
    model: VAE,
    x: torch.Tensor,
    num_importance_samples: int,
    generator: torch.Generator | None = None,
    posterior_params: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """log w_k = log p(x | z_k) + log p(z_k) - log q(z_k | x),  z_k ~ q(z | x).

    The summands of the importance-sampled likelihood (Burda et al. 2016, Eq. 8; Kingma &
    Welling 2013, Appendix D). `posterior_params` lets a caller reuse one encoder pass
    (mu, logvar) across many chunks of samples.
    Shapes: x (batch, C, H, W) -> (batch, K).
    """
    posterior = DiagonalGaussian(*(posterior_params or model.encode(x)))
    z = posterior.rsample(num_importance_samples, generator)  # (batch, K, J)
    batch = x.shape[0]
    likelihood = model.decode(z.reshape(batch * num_importance_samples, -1))
    x_rep = x.repeat_interleave(num_importance_samples, dim=0)
    log_px_z = likelihood.log_prob(x_rep).view(batch, num_importance_samples)
    log_pz = standard_normal_log_prob(z)  # (batch, K)
    log_qz = DiagonalGaussian(posterior.mu.unsqueeze(1), posterior.logvar.unsqueeze(1)).log_prob(z)
    return log_px_z + log_pz - log_qz


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
    log_w = log_importance_weights(model, x, num_importance_samples, generator)
    return torch.logsumexp(log_w, dim=1) - math.log(num_importance_samples)
