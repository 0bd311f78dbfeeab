"""The training objectives as objects, one per `train.objective`, in the registry OBJECTIVES.

An `Objective` is what the training loop asks of an objective, so that the loop names none of them:
  forward(batch, step, eps) -> (loss, ElboTerms)   the scalar the optimiser minimises for a minibatch,
                                                   and the ELBO's terms (batch,) for the logs
  parameter_groups()                               what the optimiser trains: the model's, and any
                                                   network of the objective's own with its settings
  checkpointed()                                   what the checkpoint holds
  logged_weights(step)                             where its schedules stand (kl_weight, tc_weight, kl_target)
  epoch_figures(valid_x)                           the figures it adds to each epoch's metrics line
  epoch_warning(row)                               what the loop warns of after an epoch, "" for nothing
  needs                                            config.ObjectiveNeeds: what it asks of model and settings
It is an nn.Module that holds the model, so that DistributedDataParallel wraps it whole and averages the
gradients of everything `forward` computes; the model itself never knows its objective. Each loss is
written with the bounds of `bounds.py` and the terms of `disentangling.py`; no equation is repeated here.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from vaekit.batch import Batch
from vaekit.config import OBJECTIVE_NEEDS, ObjectiveNeeds, TrainConfig
from vaekit.models.discriminators import TotalCorrelationDiscriminator, density_ratio
from vaekit.models.quantiser import encode_codes, perplexity
from vaekit.models.vae import VAE
from vaekit.objectives.bounds import ElboTerms, elbo_at, iwae_training_terms
from vaekit.objectives.disentangling import (
    dip_penalty,
    discriminator_loss,
    evaluate_kl_decomposition,
    gaussian_posterior,
    kl_decomposition,
)
from vaekit.objectives.labelled import classification_log_prob, labelled_bound, unlabelled_bound
from vaekit.randomness import derive_seed, seeded_generator
from vaekit.schedules import beta_at, capacity_at

Tensor, Generator = torch.Tensor, torch.Generator
Loss = tuple[torch.Tensor, ElboTerms]  # the minimised scalar and the ELBO's terms


class Objective(nn.Module):
    """One training objective over a model (see the module docstring); subclasses implement `loss`."""

    latent_units_apply = True  # active units and the KL per unit describe its codes (warnings, TensorBoard)

    def __init__(self, model: VAE, train: TrainConfig, dataset_size: int = 0, labelled_size: int = 0) -> None:
        super().__init__()
        self.model = model
        self.train_config = train
        self.dataset_size = dataset_size  # N, the training images (beta-TCVAE's aggregate posterior)
        self.labelled_size = labelled_size  # of them, those whose labels the objective sees (M2)
        self.needs: ObjectiveNeeds = OBJECTIVE_NEEDS[train.objective]

    def forward(self, batch: Batch, step: int, eps: torch.Tensor | None = None) -> tuple[torch.Tensor, ElboTerms]:
        return self.loss(batch.x, step, eps)

    def loss(self, x: Tensor, step: int, eps: Tensor | None = None, generator: Generator | None = None) -> Loss:
        """The minimised scalar and the ELBO terms for images x (M, C, H, W) at a training step; eps, if given,
        is the reparameterization noise (M, num_samples, latent_dim), else it is drawn from the generator."""
        raise NotImplementedError

    def parameter_groups(self) -> list[dict[str, Any]]:
        return [{"params": list(self.model.parameters())}]

    def checkpointed(self) -> nn.Module:
        return self.model

    def logged_weights(self, step: int) -> dict[str, float]:
        return {}

    def epoch_figures(self, valid_x: torch.Tensor, valid_labels: torch.Tensor | None = None) -> dict[str, float]:
        return {}

    def epoch_warning(self, row: dict[str, Any]) -> str:
        """A warning the loop logs after an epoch whose metrics line is `row`, "" for none."""
        return ""


def shaped_kl_penalty(terms: ElboTerms, train: TrainConfig, step: int) -> torch.Tensor:
    """The ELBO objective's KL penalty over a minibatch, a scalar:
        beta_t * KL                   (beta-VAE, Higgins et al. 2017, with a linear warm-up of beta_t), or
        gamma * |KL - C_t|            (capacity control, Burgess et al. 2018, when capacity_max > 0),
    where KL is the minibatch mean, or with free bits lambda sum_j max(lambda, (1/M) sum_i KL_ij)
    (Kingma et al. 2016, Eq. 15)."""
    if train.free_bits > 0:  # the config allows free bits only where the KL has a closed form
        assert terms.kl_per_dim is not None
        kl = terms.kl_per_dim.mean(0).clamp_min(train.free_bits).sum()
    else:
        kl = terms.kl.mean()
    if train.capacity_max > 0:
        return train.capacity_gamma * (kl - capacity_at(step, train.capacity_max, train.capacity_steps)).abs()
    return beta_at(step, train.beta, train.warmup_steps) * kl


class ElboObjective(Objective):
    """-(1/M) sum_i [E_q log p(x_i|z) - penalty_i], the penalty `shaped_kl_penalty` (beta 1, no capacity, no
    free bits: the negative SGVB estimator of Kingma & Welling 2013, Section 2.3, with L = num_samples)."""

    def loss(self, x: Tensor, step: int, eps: Tensor | None = None, generator: Generator | None = None) -> Loss:
        tc = self.train_config
        terms = elbo_at(self.model, x, self.model.posterior(x), tc.num_samples, generator, eps, tc.gradient_estimator)
        return -terms.reconstruction.mean() + shaped_kl_penalty(terms, tc, step), terms

    def logged_weights(self, step: int) -> dict[str, float]:
        tc = self.train_config
        if tc.capacity_max > 0:
            return {"kl_target": capacity_at(step, tc.capacity_max, tc.capacity_steps)}
        return {"kl_weight": beta_at(step, tc.beta, tc.warmup_steps)}


class DipVaeObjective(ElboObjective):
    """The ELBO objective's loss + `dip_penalty` over the minibatch (Kumar et al. 2018, Eq. 6 for DIP-VAE-I,
    Eq. 7 for DIP-VAE-II; the variant is train.objective)."""

    def loss(self, x: Tensor, step: int, eps: Tensor | None = None, generator: Generator | None = None) -> Loss:
        tc = self.train_config
        posterior = gaussian_posterior(self.model, x)
        terms = elbo_at(self.model, x, posterior, tc.num_samples, generator, eps, tc.gradient_estimator)
        penalty = shaped_kl_penalty(terms, tc, step) + dip_penalty(posterior, tc.objective, *dip_weights(tc))
        return -terms.reconstruction.mean() + penalty, terms


def dip_weights(train: TrainConfig) -> tuple[float, float]:
    """(lambda_od, lambda_d): lambda_d defaults to 10 lambda_od for DIP-VAE-I and lambda_od for DIP-VAE-II,
    the settings of Kumar et al. 2018, Section 5."""
    diag = train.dip_lambda_diag or train.dip_lambda_offdiag * (10 if train.objective == "dip-vae-i" else 1)
    return train.dip_lambda_offdiag, diag


class IwaeObjective(Objective):
    """-(1/M) sum_i L_k(x_i), k = num_samples (Burda et al. 2016, Eq. 8), with the configured encoder
    gradient (reparameterization, STL or DReG: `bounds.iwae_training_terms`)."""

    def loss(self, x: Tensor, step: int, eps: Tensor | None = None, generator: Generator | None = None) -> Loss:
        tc = self.train_config
        bound, terms = iwae_training_terms(self.model, x, tc.num_samples, generator, eps, tc.gradient_estimator)
        return -bound.mean(), terms


class BetaTcvaeObjective(Objective):
    """-(1/M) sum_i [E_q log p(x_i|z) - MI_i - beta_t TC_i - DWKL_i] at one sample per image (Chen et al. 2018,
    Eq. 4 with alpha = gamma = 1): `kl_decomposition` over the N training images at the ELBO's own z, beta_t
    warmed up as the ELBO objective's. Its terms are the ELBO's, with the closed-form KL."""

    def loss(self, x: Tensor, step: int, eps: Tensor | None = None, generator: Generator | None = None) -> Loss:
        tc = self.train_config
        posterior = gaussian_posterior(self.model, x)
        terms = elbo_at(self.model, x, posterior, 1, generator, eps)
        assert terms.z is not None
        parts = kl_decomposition(
            posterior, terms.z[:, 0], self.model.prior, self.dataset_size or len(x), tc.tc_sampling
        )
        weight = beta_at(step, tc.beta, tc.warmup_steps)
        penalty = parts.mutual_information + weight * parts.total_correlation + parts.dimension_kl
        return -(terms.reconstruction - penalty).mean(), terms

    def logged_weights(self, step: int) -> dict[str, float]:
        tc = self.train_config  # beta, warmed up as the ELBO's, weighs the total correlation alone
        return {"tc_weight": beta_at(step, tc.beta, tc.warmup_steps)}

    def epoch_figures(self, valid_x: torch.Tensor, valid_labels: torch.Tensor | None = None) -> dict[str, float]:
        """The KL's three parts on the validation images (valid_mutual_information, ...), in nats."""
        tc = self.train_config
        generator = seeded_generator(tc.seed, "eval", 1)
        parts = evaluate_kl_decomposition(self.model, valid_x, tc.batch_size, tc.tc_sampling, generator)
        return {f"valid_{name}": value for name, value in parts.items()}


def factor_vae_loss(
    model: VAE,
    discriminator: nn.Module,
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
    terms = elbo_at(model, x, gaussian_posterior(model, x), 1, None, eps)
    assert terms.z is not None
    z = terms.z[:, 0]
    fixed = {name: p.detach() for name, p in discriminator.named_parameters()}
    tc = density_ratio(lambda v: functional_call(discriminator, fixed, (v,)), z)  # (M,)
    vae_loss = -terms.elbo.mean() + gamma * tc.mean()
    return vae_loss + discriminator_loss(discriminator, z.detach(), permutation), terms


class FactorVaeObjective(Objective):
    """`factor_vae_loss`, with its discriminator trained in the same step by its own Adam settings, 1e-4 and
    betas (0.5, 0.9) (Kim & Mnih 2018, Appendix A), and saved beside the model. The permutations, like the
    noise, are a function of (seed, step)."""

    def __init__(self, model: VAE, train: TrainConfig, dataset_size: int = 0, labelled_size: int = 0) -> None:
        super().__init__(model, train, dataset_size, labelled_size)
        device = next(model.parameters()).device
        self.discriminator = TotalCorrelationDiscriminator(model.latent_dim).to(device)

    def loss(self, x: Tensor, step: int, eps: Tensor | None = None, generator: Generator | None = None) -> Loss:
        tc = self.train_config
        permutation = torch.Generator().manual_seed(derive_seed(tc.seed, "permutation", step))
        return factor_vae_loss(self.model, self.discriminator, x, tc.factor_gamma, permutation, eps)

    def parameter_groups(self) -> list[dict[str, Any]]:
        own = {"params": list(self.discriminator.parameters()), "lr": 1e-4, "betas": (0.5, 0.9)}
        return super().parameter_groups() + [own]

    def checkpointed(self) -> nn.Module:
        return nn.ModuleDict({"model": self.model, "discriminator": self.discriminator})


def corrupt(x: torch.Tensor, corruption: str, level: float, generator: torch.Generator) -> torch.Tensor:
    """x~ ~ q_D(x~|x), the corruption of a denoising autoencoder (Vincent et al. 2008, Section 2.3), images x
    (M, C, H, W) -> (M, C, H, W): "masking", each pixel set to 0 independently with probability `level`
    (their destruction of a fixed share nu is the same in expectation); "gaussian", x + level * N(0, I),
    isotropic additive noise (Vincent et al. 2010, Section 4.2); "none", x itself."""
    if corruption == "none" or level == 0:
        return x
    noise = torch.rand if corruption == "masking" else torch.randn
    draws = noise(x.shape, generator=generator, dtype=x.dtype, device=generator.device).to(x.device)
    return x * (draws >= level) if corruption == "masking" else x + level * draws


class ReconstructionObjective(Objective):
    """-(1/M) sum_i log p(x_i | z = f(x~_i)): an autoencoder's reconstruction error in nats per image, the
    likelihood's negative log density of the clean image x at the code of its corrupted copy x~ (`corrupt`;
    x~ = x for a plain autoencoder), which a denoising autoencoder minimises (Vincent et al. 2008, Eq. 3 with
    their cross-entropy loss for the Bernoulli likelihood). Its terms are `elbo_at`'s with the point
    posterior: reconstruction = log p(x|f(x~)) and kl = 0, so they are no bound on log p(x). The corruption
    noise, like the reparameterization noise, is a function of (seed, step)."""

    def loss(self, x: Tensor, step: int, eps: Tensor | None = None, generator: Generator | None = None) -> Loss:
        tc = self.train_config
        if generator is None:
            generator = torch.Generator(device=x.device).manual_seed(derive_seed(tc.seed, "corruption", step))
        corrupted = corrupt(x, tc.corruption, tc.corruption_level, generator)
        terms = elbo_at(self.model, x, self.model.posterior(corrupted))
        return -terms.reconstruction.mean(), terms


class VqVaeObjective(Objective):
    """-(1/M) sum_i [log p(x_i | z_q(x_i)) - ||sg[z_e(x_i)] - e||^2 - beta ||z_e(x_i) - sg[e]||^2], the VQ-VAE's loss
    (van den Oord et al. 2017, Eq. 3, with beta = train.commitment_weight), the reconstruction taken at the
    straight-through z_q; under codebook_update ema the codebook term is left out and the codebook moves by the
    moving averages instead (Appendix A.1). Each training step then updates the quantiser's own state from its
    batch (`VectorQuantiser.update`: the usage, the ema codebook, the k-means start, dead-code restarts), with the
    randomness a function of (seed, step). Its terms are the ELBO under the uniform prior: log p(x|z_q) - N ln K.
    Each epoch's metrics line gets the codebook's usage on the validation images (`epoch_figures`)."""

    latent_units_apply = False  # its codes do not collapse to a prior, its codebook does (epoch_warning)

    def loss(self, x: Tensor, step: int, eps: Tensor | None = None, generator: Generator | None = None) -> Loss:
        tc = self.train_config
        posterior = self.model.posterior(x)
        quantised = posterior.quantised
        terms = elbo_at(self.model, x, posterior)
        penalty = tc.commitment_weight * quantised.commitment_loss()
        if self.quantiser.update_rule == "gradient":
            penalty = penalty + quantised.codebook_loss()
        if self.model.training and torch.is_grad_enabled():
            self.quantiser.update(quantised, seeded_generator(tc.seed, "codebook", step))
        return -(terms.reconstruction - penalty).mean(), terms

    @property
    def quantiser(self) -> nn.Module:
        return self.model.inference.quantiser

    @torch.no_grad()
    def epoch_figures(self, valid_x: torch.Tensor, valid_labels: torch.Tensor | None = None) -> dict[str, float]:
        """The codebook's use on the validation images: valid_perplexity (exp of the entropy of the codes' shares:
        K at even use, 1 at collapse) and valid_codes_used (codes assigned at least once)."""
        codes = encode_codes(self.model, valid_x, self.train_config.eval_batch_size)
        counts = self.quantiser.counts(codes.to(self.quantiser.usage.device))
        return {"valid_perplexity": perplexity(counts), "valid_codes_used": int((counts > 0).sum())}

    def epoch_warning(self, row: dict[str, Any]) -> str:
        """Codebook collapse: fewer than COLLAPSED_SHARE of the codes in use on the validation images."""
        used, k = row.get("valid_codes_used"), self.quantiser.codebook_size
        if used is None or used >= COLLAPSED_SHARE * k:
            return ""
        q = self.quantiser
        remedies = [("--codebook-init kmeans", q.init != "kmeans"), ("--codebook-restart 1", q.restart <= 0)]
        remedies += [("--codebook-update ema", q.update_rule != "ema"), ("a lower --learning-rate", True)]
        return (
            f"warning: only {used} of the {k} codes are in use on the validation images (perplexity "
            f"{row['valid_perplexity']:.1f}): the codebook has collapsed. Try "
            + ", ".join(name for name, untried in remedies if untried)
            + "."
        )


class CvaeObjective(ElboObjective):
    """-(1/M) sum_i [E_q log p(x_i|y_i, z) - penalty_i], the ELBO objective (beta, warm-up, capacity, free bits)
    of a conditional VAE at each image's label: its bound is on log p(x|y) (Sohn et al. 2015, Eq. 4)."""

    def forward(self, batch: Batch, step: int, eps: torch.Tensor | None = None) -> Loss:
        tc = self.train_config
        posterior = self.model.posterior(batch.x, batch.labels)
        terms = elbo_at(self.model, batch.x, posterior, tc.num_samples, None, eps, tc.gradient_estimator)
        return -terms.reconstruction.mean() + shaped_kl_penalty(terms, tc, step), terms


class M2Objective(Objective):
    """Kingma et al. 2014's J^alpha (Eq. 9) per training image, for a minibatch whose labels are -1 where hidden:
        -[(N_u mean_u U(x) + N_l mean_l L(x, y)) / (N_u + N_l) + a mean_l log q(y|x)],
    N_l the labelled training images (`labelled_size`), N_u the others, a = train.classification_weight (their
    alpha = 0.1 N is a = 0.1 per image). The loop adds a minibatch of labelled images to every step
    (ObjectiveNeeds.labelled_batch), so both means are taken each step. Each z is drawn from a generator seeded by
    (seed, "labels", step). Its terms are the images' bounds: U(x) where the label is hidden, L(x, y) where not."""

    def forward(self, batch: Batch, step: int, eps: torch.Tensor | None = None) -> Loss:
        tc, x = self.train_config, batch.x
        labels = batch.labels if batch.labels is not None else torch.full((len(x),), -1, device=x.device)
        known = labels >= 0
        generator = torch.Generator(device=x.device).manual_seed(derive_seed(tc.seed, "labels", step))
        xu, xl, yl = x[~known], x[known], labels[known]
        unlabelled = unlabelled_bound(self.model, xu, self.model.posterior(xu), generator) if len(xu) else None
        posterior = self.model.posterior(xl)
        labelled = labelled_bound(self.model, xl, yl, generator, posterior=posterior)
        n_l = self.labelled_size or len(xl)
        n_u = max(self.dataset_size - n_l, 0) if unlabelled is not None else 0
        bound = n_l * labelled.elbo.mean() + (n_u * unlabelled.elbo.mean() if unlabelled is not None else 0.0)
        log_q = classification_log_prob(posterior, yl).mean()
        loss = -(bound / (n_u + n_l) + tc.classification_weight * log_q)
        parts = [t for t in (unlabelled, labelled) if t is not None]
        terms = ElboTerms(*(torch.cat([getattr(t, k) for t in parts]) for k in ("elbo", "reconstruction", "kl")), None)
        return loss, terms

    @torch.no_grad()
    def epoch_figures(self, valid_x: torch.Tensor, valid_labels: torch.Tensor | None = None) -> dict[str, float]:
        """valid_error: the share of validation images whose most probable label under q(y|x) is not theirs."""
        if valid_labels is None:
            return {}
        return {
            "valid_error": classification_error(self.model, valid_x, valid_labels, self.train_config.eval_batch_size)[0]
        }


@torch.no_grad()
def classification_error(
    model: VAE, x: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000
) -> tuple[float, float]:
    """The error of argmax_y q(y|x) on images x (N, C, H, W) with labels (N,), and its standard error
    sqrt(e (1 - e) / N)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    wrong = 0
    for start in range(0, len(x), batch_size):
        posterior = model.posterior(x[start : start + batch_size].to(device))
        guess = posterior.label_log_probs.argmax(-1).cpu()
        wrong += int((guess != labels[start : start + batch_size]).sum())
    model.train(was_training)
    error = wrong / max(len(x), 1)
    return error, (error * (1 - error) / max(len(x), 1)) ** 0.5


COLLAPSED_SHARE = 0.05  # a codebook with fewer than this share of its codes in use is said to have collapsed

# train.objective -> its Objective class; the names are config.OBJECTIVE_NEEDS's (a test checks)
OBJECTIVES: dict[str, type[Objective]] = {
    "elbo": ElboObjective,
    "iwae": IwaeObjective,
    "beta-tcvae": BetaTcvaeObjective,
    "factor-vae": FactorVaeObjective,
    "dip-vae-i": DipVaeObjective,
    "dip-vae-ii": DipVaeObjective,
    "reconstruction": ReconstructionObjective,
    "vq-vae": VqVaeObjective,
    "cvae": CvaeObjective,
    "m2": M2Objective,
}


def build_objective(model: VAE, train: TrainConfig, dataset_size: int = 0, labelled_size: int = 0) -> Objective:
    """The configured objective over a model; dataset_size is N, the number of training images, labelled_size
    the number of them whose labels it sees (M2)."""
    return OBJECTIVES[train.objective](model, train, dataset_size, labelled_size)


def training_loss(
    model: VAE,
    x: torch.Tensor,
    train: TrainConfig,
    step: int,
    generator: torch.Generator | None = None,
    eps: torch.Tensor | None = None,
    dataset_size: int = 0,
) -> tuple[torch.Tensor, ElboTerms]:
    """The configured objective's loss and ELBO terms for one minibatch x (M, C, H, W) at a step: the
    objective built for one call (an objective with a network of its own builds it afresh)."""
    return build_objective(model, train, dataset_size).loss(x, step, eps, generator)
