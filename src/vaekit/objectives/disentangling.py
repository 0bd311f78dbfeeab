"""The terms the disentangling objectives add to the ELBO, over the posteriors of a minibatch: beta-TCVAE's
split of the KL (Chen et al. 2018), FactorVAE's discriminator loss (Kim & Mnih 2018) and DIP-VAE's covariance
penalty (Kumar et al. 2018). Each reads mu and sigma of a one-layer Gaussian q(z|x) (`gaussian_posterior`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from vaekit.models.discriminators import permute_dims
from vaekit.models.posteriors import GaussianPosterior
from vaekit.models.vae import VAE


def gaussian_posterior(model: VAE, x: torch.Tensor) -> GaussianPosterior:
    """q(z|x) of images x (batch, C, H, W) as one factorized Gaussian layer, which the config guarantees for
    the objectives that need one (config.ObjectiveNeeds.one_gaussian_layer)."""
    posterior = model.posterior(x).as_gaussian()
    if posterior is None:
        raise ValueError("this objective needs q(z|x) to be one factorized Gaussian layer (no flow, no hierarchy)")
    return posterior


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


def discriminator_loss(discriminator: torch.nn.Module, z: torch.Tensor, permutation: torch.Generator) -> torch.Tensor:
    """The FactorVAE discriminator's cross-entropy: z (M, J) from q(z) as class 0, the same with each
    coordinate permuted across the batch (a sample of prod_j q(z_j)) as class 1, averaged over the 2M."""
    both = torch.cat([z, permute_dims(z, permutation)])
    labels = torch.cat([torch.zeros(len(z)), torch.ones(len(z))]).long().to(z.device)
    return torch.nn.functional.cross_entropy(discriminator(both), labels)


@torch.no_grad()
def evaluate_kl_decomposition(
    model: VAE, x: torch.Tensor, batch_size: int, sampling: str, generator: torch.Generator
) -> dict[str, float]:
    """beta-TCVAE's three terms (objectives.kl_decomposition) averaged over the images x (N, C, H, W), in
    minibatches of batch_size in x's order, the aggregate posterior being that of x's N images: keys
    mutual_information, total_correlation, dimension_kl (nats). For a model with a Gaussian posterior and
    the N(0, I) prior."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    sums = torch.zeros(3, dtype=torch.float64)
    for start in range(0, len(x), batch_size):
        posterior = gaussian_posterior(model, x[start : start + batch_size].to(device))
        z, _ = posterior.rsample(1, generator)
        parts = kl_decomposition(posterior, z[:, 0], model.prior, len(x), sampling)
        terms = (parts.mutual_information, parts.total_correlation, parts.dimension_kl)
        sums += torch.stack([t.sum() for t in terms]).double().cpu()
    model.train(was_training)
    means = (sums / max(len(x), 1)).tolist()
    return dict(zip(("mutual_information", "total_correlation", "dimension_kl"), means))
