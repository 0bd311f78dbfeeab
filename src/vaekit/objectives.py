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
from vaekit.models.posteriors import GaussianPosterior, Posterior
from vaekit.models.vae import VAE
from vaekit.schedules import beta_at, capacity_at


@dataclass(frozen=True)
class ElboTerms:
    """Per-datapoint pieces of the bound, each of shape (batch,): elbo = reconstruction - kl;
    kl_per_dim (batch, latent_dim) splits the KL by latent dimension where it has a closed form
    (a Gaussian posterior and the N(0, I) prior), else None."""

    elbo: torch.Tensor
    reconstruction: torch.Tensor
    kl: torch.Tensor
    kl_per_dim: torch.Tensor | None


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
) -> ElboTerms:
    """The SGVB estimator of the variational lower bound with L samples per datapoint.

    L(x) ~= -KL(q(z|x) || p(z)) + 1/L sum_l log p(x | z_l),  z_l ~ q(z|x) by reparameterization
    (Kingma & Welling 2013, Section 2.3, the second estimator, with the KL in closed form) where the
    posterior has one against the prior (`Posterior.closed_form_kl`). Otherwise (a learned prior, a
    flow, a hierarchy) the KL is the Monte-Carlo estimate over the same samples,
    1/L sum_l [log q(z_l|x) - log p(z_l)] (the first estimator, Section 2.3). estimator "stl" takes
    the Monte-Carlo form with log q at stopped parameters: the same values, another gradient.
    Shapes: x (batch, C, H, W); z and eps, if given, (batch, L, latent_dim); terms (batch,).
    """
    return elbo_at(model, x, model.posterior(x), num_samples, generator, eps, estimator)


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
    z, log_q = posterior.rsample(num_samples, generator, eps)  # (batch, L, J), (batch, L)
    reconstruction = _log_likelihood(model, x, z).mean(dim=1)
    kl_per_dim = posterior.closed_form_kl(model.prior)  # (batch, J) or None
    if kl_per_dim is not None and estimator == "reparameterization":
        kl = kl_per_dim.sum(-1)
    else:
        kl = (_log_posterior(posterior, z, log_q, estimator) - model.prior.log_prob(z)).mean(dim=1)
    return ElboTerms(elbo=reconstruction - kl, reconstruction=reconstruction, kl=kl, kl_per_dim=kl_per_dim)


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
) -> torch.Tensor:
    """log w_k = log p(x | z_k) + log p(z_k) - log q(z_k | x),  z_k ~ q(z | x).

    The summands of the importance-sampled likelihood (Burda et al. 2016, Eq. 8; Kingma &
    Welling 2013, Appendix D). `encoded`, the encoder's output for x, lets a caller reuse one
    encoder pass across many chunks of samples (tensors, so that the function compiles).
    Shapes: x (batch, C, H, W) -> (batch, K).
    """
    posterior = model.inference(encoded if encoded is not None else model.encoder(x))
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
# Training objectives beyond the plain ELBO. Schedules are pure functions of the step, so a
# resumed run continues them exactly.


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
    return bound, ElboTerms(reconstruction - kl, reconstruction, kl, kl_per_dim)


@dataclass(frozen=True)
class KLDecomposition:
    """The KL term split three ways (Chen et al. 2018, Eq. 2), each (batch,), in nats, for z_i ~ q(z|x_i):
        mutual_information     log q(z|x) - log q(z)                      (index-code MI)
        total_correlation      log q(z) - sum_j log q(z_j)
        dimension_kl           sum_j log q(z_j) - log p(z)                (dimension-wise KL)
    q(z) = 1/N sum_n q(z|x_n) is the aggregate posterior over the N training images, estimated from the
    minibatch. The three add up to log q(z|x) - log p(z), the Monte-Carlo KL, exactly."""

    mutual_information: torch.Tensor
    total_correlation: torch.Tensor
    dimension_kl: torch.Tensor


def log_minibatch_weights(batch_size: int, dataset_size: int, sampling: str) -> torch.Tensor:
    """log w_ij (M, M): the weight of q(z_i | x_j) in the minibatch estimate q(z_i) ~ sum_j w_ij q(z_i | x_j).

    "mws" (minibatch weighted sampling, Chen et al. 2018, Section 4.1): w_ij = 1 / (N M). Biased: where
    the posteriors are narrow its total correlation is (D - 1) log M too large.
    "mss" (minibatch stratified sampling, their Appendix C.2, in the form written for this case): image
    i's own term weighs 1/N and each of the other M - 1, a uniform draw from the other N - 1 images,
    (N - 1) / (N (M - 1)), so that the estimate of q(z_i) is unbiased.
    """
    m, n = batch_size, max(dataset_size, batch_size)
    if sampling == "mws" or m == 1:
        return torch.full((m, m), -math.log(n * m))
    weights = torch.full((m, m), (n - 1) / (n * (m - 1)))
    weights.fill_diagonal_(1 / n)
    return weights.log()


def kl_decomposition(
    posterior: GaussianPosterior, z: torch.Tensor, prior: torch.nn.Module, dataset_size: int, sampling: str = "mss"
) -> KLDecomposition:
    """Index-code MI, total correlation and dimension-wise KL at one sample per image, z (M, J) with
    z_i ~ q(z|x_i), from the pairwise densities log q(z_ij | x_k) of the minibatch's posteriors (M, J)
    (Chen et al. 2018, Section 4.1): log q(z_i) ~ logsumexp_k [log w_ik + sum_j log q(z_ij|x_k)] and
    log q(z_ij) ~ logsumexp_k [log w_ik + log q(z_ij|x_k)], with the weights of `log_minibatch_weights`.
    The prior must factorise over coordinates (N(0, I))."""
    pairs = posterior.at_samples().log_prob_by_layer(z.unsqueeze(0))[0].transpose(0, 1)  # [i, k, j]: (M, M, J)
    log_w = log_minibatch_weights(len(z), dataset_size, sampling).to(z)  # (M, M)
    log_q_joint = torch.logsumexp(log_w + pairs.sum(-1), dim=1)  # (M,)
    log_q_marginals = torch.logsumexp(log_w.unsqueeze(-1) + pairs, dim=1).sum(-1)  # (M,)
    log_q_given_x = pairs.diagonal(dim1=0, dim2=1).sum(0)  # log q(z_i | x_i), (M,)
    (log_p,) = prior.log_prob_by_layer(z)
    return KLDecomposition(
        mutual_information=log_q_given_x - log_q_joint,
        total_correlation=log_q_joint - log_q_marginals,
        dimension_kl=log_q_marginals - log_p.sum(-1),
    )


def dip_penalty(posterior: GaussianPosterior, variant: str, lambda_offdiag: float, lambda_diag: float) -> torch.Tensor:
    """The DIP-VAE regulariser (Kumar et al. 2018, Eq. 6 and 7): a covariance matched to the identity,
        lambda_od sum_{i != j} C_ij^2 + lambda_d sum_i (C_ii - 1)^2,
    C = Cov_x[mu(x)] for DIP-VAE-I, and C = Cov_x[mu(x)] + E_x[diag sigma^2(x)], the covariance of z under
    the aggregate posterior, for DIP-VAE-II; both over the minibatch. A scalar."""
    mu = posterior.mu
    centred = mu - mu.mean(0)
    cov = centred.T @ centred / len(mu)
    if variant == "dip-vae-ii":
        cov = cov + torch.diag(posterior.logvar.exp().mean(0))
    diagonal = torch.diagonal(cov)
    return (
        lambda_offdiag * (cov**2).sum()
        - lambda_offdiag * (diagonal**2).sum()
        + lambda_diag * ((diagonal - 1) ** 2).sum()
    )


def training_loss(
    model: VAE,
    x: torch.Tensor,
    train: TrainConfig,
    step: int,
    generator: torch.Generator | None = None,
    eps: torch.Tensor | None = None,
    dataset_size: int = 0,
) -> tuple[torch.Tensor, ElboTerms]:
    """The scalar the optimiser minimises for one minibatch, and the ELBO terms for logging.

    objective "elbo":  -(1/M) sum_i [ E_q log p(x_i|z) - penalty_i ], where the penalty is
        beta_t * KL                       (beta-VAE, with linear warm-up of beta_t), or
        gamma * |KL - C_t|                (capacity control, when capacity_max > 0), and with
        free bits lambda the KL is sum_j max(lambda, (1/M) sum_i KL_ij)  (Kingma et al. 2016).
    objective "iwae":  -(1/M) sum_i L_k(x_i), k = num_samples  (Burda et al. 2016).
    objective "beta-tcvae": -(1/M) sum_i [ E_q log p(x_i|z) - MI_i - beta_t TC_i - DWKL_i ] (Chen et al.
        2018, Eq. 4 with alpha = gamma = 1; `kl_decomposition` over the N = dataset_size training images).
    objective "dip-vae-i" / "dip-vae-ii": the elbo objective's loss + `dip_penalty` (Kumar et al. 2018).
    eps, if given, is the reparameterization noise (batch, num_samples, latent_dim).
    """
    if train.objective == "iwae":
        bound, terms = iwae_training_terms(model, x, train.num_samples, generator, eps, train.gradient_estimator)
        return -bound.mean(), terms
    if train.objective == "beta-tcvae":
        return _beta_tcvae_loss(model, x, train, step, dataset_size, generator, eps)
    posterior = model.posterior(x)
    terms = elbo_at(model, x, posterior, train.num_samples, generator, eps, train.gradient_estimator)
    if train.free_bits > 0:  # the config allows free bits only where the KL has a closed form
        assert terms.kl_per_dim is not None
        kl = terms.kl_per_dim.mean(0).clamp_min(train.free_bits).sum()
    else:
        kl = terms.kl.mean()
    if train.capacity_max > 0:
        penalty = train.capacity_gamma * (kl - capacity_at(step, train.capacity_max, train.capacity_steps)).abs()
    else:
        penalty = beta_at(step, train.beta, train.warmup_steps) * kl
    if train.objective in ("dip-vae-i", "dip-vae-ii"):
        assert isinstance(posterior, GaussianPosterior)  # the config allows DIP-VAE with one Gaussian layer only
        penalty = penalty + dip_penalty(posterior, train.objective, *dip_weights(train))
    return -terms.reconstruction.mean() + penalty, terms


def factor_vae_loss(
    model: VAE,
    discriminator: torch.nn.Module,
    x: torch.Tensor,
    gamma: float,
    permutation: torch.Generator,
    eps: torch.Tensor | None = None,
) -> tuple[torch.Tensor, ElboTerms]:
    """FactorVAE's two losses as one scalar, each reaching its own parameters only (Kim & Mnih 2018, Eq. 2
    and Algorithm 1): for the VAE, -(1/M) sum_i [ELBO_i - gamma TC(z_i)] with TC(z) = log q(z) / prod_j
    q(z_j) as the discriminator estimates it (its parameters held fixed here); for the discriminator, the
    cross-entropy of telling z ~ q(z|x) (class 0) from the same z with each coordinate permuted across the
    minibatch (class 1), with z held fixed. The permuted samples come from the same minibatch rather than a
    second one, as in most implementations. One sample per image; the ELBO's KL in closed form."""
    from torch.func import functional_call

    from vaekit.models.discriminators import density_ratio

    posterior = model.posterior(x)
    assert isinstance(posterior, GaussianPosterior)  # the config allows FactorVAE with one Gaussian layer
    z, _ = posterior.rsample(1, eps=eps)
    reconstruction = _log_likelihood(model, x, z).mean(dim=1)
    kl_per_dim = posterior.gaussian.kl_per_dimension()
    kl = kl_per_dim.sum(-1)
    z = z[:, 0]
    fixed = {name: p.detach() for name, p in discriminator.named_parameters()}
    tc = density_ratio(lambda v: functional_call(discriminator, fixed, (v,)), z)  # (M,)
    vae_loss = -(reconstruction - kl).mean() + gamma * tc.mean()
    terms = ElboTerms(elbo=reconstruction - kl, reconstruction=reconstruction, kl=kl, kl_per_dim=kl_per_dim)
    return vae_loss + discriminator_loss(discriminator, z.detach(), permutation), terms


def discriminator_loss(discriminator: torch.nn.Module, z: torch.Tensor, permutation: torch.Generator) -> torch.Tensor:
    """The FactorVAE discriminator's cross-entropy: z (M, J) from q(z) as class 0, the same with each
    coordinate permuted across the batch (a sample of prod_j q(z_j)) as class 1, averaged over the 2M."""
    from vaekit.models.discriminators import permute_dims

    both = torch.cat([z, permute_dims(z, permutation)])
    labels = torch.cat([torch.zeros(len(z)), torch.ones(len(z))]).long().to(z.device)
    return torch.nn.functional.cross_entropy(discriminator(both), labels)


def dip_weights(train: TrainConfig) -> tuple[float, float]:
    """(lambda_od, lambda_d): lambda_d defaults to 10 lambda_od for DIP-VAE-I and lambda_od for DIP-VAE-II,
    the settings of Kumar et al. 2018, Section 5."""
    diag = train.dip_lambda_diag or train.dip_lambda_offdiag * (10 if train.objective == "dip-vae-i" else 1)
    return train.dip_lambda_offdiag, diag


def _beta_tcvae_loss(
    model: VAE,
    x: torch.Tensor,
    train: TrainConfig,
    step: int,
    dataset_size: int,
    generator: torch.Generator | None,
    eps: torch.Tensor | None,
) -> tuple[torch.Tensor, ElboTerms]:
    """The beta-TCVAE loss (see training_loss) at one sample per image; its terms are the ELBO's, with the
    closed-form KL (the config requires a Gaussian posterior and the N(0, I) prior)."""
    posterior = model.posterior(x)
    assert isinstance(posterior, GaussianPosterior)
    z, _ = posterior.rsample(1, generator, eps)  # (M, 1, J)
    reconstruction = _log_likelihood(model, x, z).mean(dim=1)
    parts = kl_decomposition(posterior, z[:, 0], model.prior, dataset_size or len(x), train.tc_sampling)
    weight = beta_at(step, train.beta, train.warmup_steps)
    penalty = parts.mutual_information + weight * parts.total_correlation + parts.dimension_kl
    kl_per_dim = posterior.gaussian.kl_per_dimension()
    kl = kl_per_dim.sum(-1)
    terms = ElboTerms(elbo=reconstruction - kl, reconstruction=reconstruction, kl=kl, kl_per_dim=kl_per_dim)
    return -(reconstruction - penalty).mean(), terms
