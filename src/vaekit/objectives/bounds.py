"""The bounds, written once for every model family: the variational lower bound (ELBO) and the
importance-weighted bound, with their estimators (closed-form or Monte-Carlo KL; STL and DReG gradients).

Sign convention: every bound is a log-likelihood bound in nats per datapoint, summed over
pixels and latent dimensions; higher is better. The optimiser minimises `loss = -elbo`,
and that negation appears only in the training loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from vaekit.models.posteriors import Posterior
from vaekit.models.vae import VAE


@dataclass(frozen=True)
class ElboTerms:
    """Per-datapoint pieces of the bound, each of shape (batch,): elbo = reconstruction - kl;
    kl_per_dim (batch, latent_dim) splits the KL by latent dimension where it has a closed form
    (a Gaussian posterior and the N(0, I) prior), else None; z (batch, L, latent_dim) are the samples
    the reconstruction term was taken at, for objectives that add terms at the same z."""

    elbo: torch.Tensor
    reconstruction: torch.Tensor
    kl: torch.Tensor
    kl_per_dim: torch.Tensor | None
    z: torch.Tensor | None = None


def _log_likelihood(model: VAE, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """log p(x | z_l) for each of L latents per image: x (batch, C, H, W), z (batch, L, J) -> (batch, L)."""
    batch, num_samples = z.shape[:2]
    likelihood = model.decode(z.reshape(batch * num_samples, -1))  # parameters (batch*L, C, H, W)
    x_rep = x.repeat_interleave(num_samples, dim=0) if num_samples > 1 else x
    return likelihood.log_prob(x_rep).view(batch, num_samples)


def _log_posterior(posterior: Posterior, z: torch.Tensor, log_q: torch.Tensor, estimator: str) -> torch.Tensor:
    """log q(z|x) at the posterior's samples z (batch, L, J) -> (batch, L): rsample's own log_q, or for
    estimator stl / dreg the same value at stopped parameters, so that its gradient reaches the encoder
    through z only: the path derivative (Roeder et al. 2017)."""
    return log_q if estimator == "reparameterization" else posterior.detach().at_samples().log_prob(z)


def elbo(
    model: VAE,
    x: torch.Tensor,
    num_samples: int = 1,
    generator: torch.Generator | None = None,
    eps: torch.Tensor | None = None,
    estimator: str = "reparameterization",
    labels: torch.Tensor | None = None,
) -> ElboTerms:
    """The SGVB estimator of the variational lower bound with L samples per datapoint (with labels (batch,), a
    conditional VAE's at them).

    L(x) ~= -KL(q(z|x) || p(z)) + 1/L sum_l log p(x | z_l),  z_l ~ q(z|x) by reparameterization
    (Kingma & Welling 2013, Section 2.3, the second estimator, with the KL in closed form) where the
    posterior has one against the prior (`Posterior.closed_form_kl`). Otherwise (a learned prior, a
    flow, a hierarchy) the KL is the Monte-Carlo estimate over the same samples,
    1/L sum_l [log q(z_l|x) - log p(z_l)] (the first estimator, Section 2.3). estimator "stl" takes
    the Monte-Carlo form with log q at stopped parameters: the same values, another gradient.
    Shapes: x (batch, C, H, W); z and eps, if given, (batch, L, latent_dim); terms (batch,).
    """
    return elbo_at(model, x, model.posterior(x, labels), num_samples, generator, eps, estimator)


def elbo_at(
    model: VAE,
    x: torch.Tensor,
    posterior: Posterior,
    num_samples: int = 1,
    generator: torch.Generator | None = None,
    eps: torch.Tensor | None = None,
    estimator: str = "reparameterization",
) -> ElboTerms:
    """`elbo` for a posterior already computed, q(z|x) = posterior (for objectives that also read it)."""
    # The order of the operations is that of the runs vaekit has always trained: autograd adds the
    # gradients that meet at mu and logvar in the order the graph was built, so a new order would
    # change the last bits of every step and, over a run, the published figures.
    closed_form = estimator == "reparameterization" and posterior.kl_is_closed_form(model.prior)
    if closed_form:  # the KL needs no log q(z|x): samples alone
        z, log_q = posterior.sample(num_samples, generator, eps), None  # (batch, L, J)
    else:
        z, log_q = posterior.rsample(num_samples, generator, eps)  # (batch, L, J), (batch, L)
    reconstruction = _log_likelihood(model, x, z).mean(dim=1)
    kl_per_dim = posterior.closed_form_kl(model.prior)  # (batch, J) or None
    if closed_form:
        kl = kl_per_dim.sum(-1)
    else:
        kl = (_log_posterior(posterior, z, log_q, estimator) - model.prior.log_prob(z)).mean(dim=1)
    return ElboTerms(reconstruction - kl, reconstruction, kl, kl_per_dim, z)


def _log_weights(
    model: VAE,
    x: torch.Tensor,
    k: int,
    posterior: Posterior,
    generator: torch.Generator | None,
    eps: torch.Tensor | None = None,
    estimator: str = "reparameterization",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """log w (batch, k), its log p(x|z) part (batch, k) and z (batch, k, J), for z_k ~ q(z|x);
    with estimator stl or dreg, log q is taken at stopped parameters (see `elbo`)."""
    z, log_q = posterior.rsample(k, generator, eps)  # (batch, k, J); the order of operations as in `elbo`
    log_px_z = _log_likelihood(model, x, z)
    log_q = _log_posterior(posterior, z, log_q, estimator)
    return log_px_z + model.prior.log_prob(z) - log_q, log_px_z, z


def log_importance_weights(
    model: VAE,
    x: torch.Tensor,
    num_importance_samples: int,
    generator: torch.Generator | None = None,
    encoded: tuple[torch.Tensor, torch.Tensor] | None = None,
    eps: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """log w_k = log p(x | z_k) + log p(z_k) - log q(z_k | x),  z_k ~ q(z | x).

    The summands of the importance-sampled likelihood (Burda et al. 2016, Eq. 8; Kingma &
    Welling 2013, Appendix D). `encoded`, the encoder's output for x, lets a caller reuse one
    encoder pass across many chunks of samples (tensors, so that the function compiles); labels (batch,), a
    conditional VAE's, at which q(z|x, y) is taken (the weights of log p(x|y)).
    Shapes: x (batch, C, H, W) -> (batch, K).
    """
    posterior = model.infer(encoded if encoded is not None else model.encoder(x), labels)
    return _log_weights(model, x, num_importance_samples, posterior, generator, eps)[0]


def log_mean_exp(log_w: torch.Tensor) -> torch.Tensor:
    """log (1/k) sum_k exp(log_w_k) over the last dimension, by log-sum-exp: (batch, k) -> (batch,)."""
    return torch.logsumexp(log_w, dim=-1) - math.log(log_w.shape[-1])


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
    return log_mean_exp(log_importance_weights(model, x, num_importance_samples, generator))


# ---------------------------------------------------------------------------------------------
# The IWAE bound as a training objective (objectives/losses.py: IwaeObjective), with its gradients.


def iwae_training_terms(
    model: VAE,
    x: torch.Tensor,
    k: int,
    generator: torch.Generator | None = None,
    eps: torch.Tensor | None = None,
    estimator: str = "reparameterization",
) -> tuple[torch.Tensor, ElboTerms]:
    """The IWAE bound (batch,) for training, with ELBO terms from the same k samples for logging:
    reconstruction is the mean over samples of log p(x|z_k); kl the closed form where the model has
    one, else the Monte-Carlo estimate mean_k [log q(z_k|x) - log p(z_k)].

    estimator "stl": log q at stopped parameters (Roeder et al. 2017). "dreg": the doubly
    reparameterized gradient (Tucker et al. 2019, Eq. 5), which for the encoder weights each
    sample's path gradient by the squared normalised weight w~_k^2 instead of w~_k, removing the
    score-function term whose variance grows with k; the decoder's gradient stays the IWAE one.
    It is computed as the gradient of sum_k w~_k log w_k (w~ held fixed) with z's gradient
    multiplied by w~_k on its way back to the encoder. The returned bound then carries that
    gradient and still has the bound's value.
    """
    posterior = model.posterior(x)
    log_w, log_px_z, z = _log_weights(model, x, k, posterior, generator, eps, estimator)
    bound = log_mean_exp(log_w)
    if estimator == "dreg" and z.requires_grad:
        weights = torch.softmax(log_w.detach(), dim=1)  # w~_k, (batch, k)
        z.register_hook(lambda grad: grad * weights.unsqueeze(-1))
        surrogate = (weights * log_w).sum(dim=1)
        bound = surrogate + (bound - surrogate).detach()  # the bound's value, the DReG gradient
    kl_per_dim = posterior.closed_form_kl(model.prior)
    reconstruction = log_px_z.mean(dim=1)
    # log p(x|z) - log w = log q(z|x) - log p(z): the Monte-Carlo KL where there is no closed form
    kl = kl_per_dim.sum(-1) if kl_per_dim is not None else (log_px_z - log_w).mean(dim=1).detach()
    return bound, ElboTerms(reconstruction - kl, reconstruction, kl, kl_per_dim, z)
