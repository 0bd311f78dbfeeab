"""The VAE: an encoder q(z|x) (with an optional flow), a decoder p(x|z) and a prior p(z); the registries."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from torch import nn

from vaekit.config import ModelConfig
from vaekit.likelihoods import (
    BernoulliLikelihood,
    ContinuousBernoulliLikelihood,
    DiagonalGaussian,
    GaussianLikelihood,
)
from vaekit.models.decoders import ConvDecoder, MLPDecoder
from vaekit.models.encoders import ConvEncoder, MLPEncoder
from vaekit.models.flows import build_flows
from vaekit.models.hierarchy import (
    BottomDecoder,
    ConditionalGaussianStep,
    GaussianMLP,
    HierarchicalPrior,
    LadderEncoder,
    LadderStep,
    PaddedEncoder,
)
from vaekit.models.priors import MixturePrior, StandardNormalPrior, VampPrior

Likelihood = BernoulliLikelihood | ContinuousBernoulliLikelihood | GaussianLikelihood


class VAE(nn.Module):
    """Variational autoencoder (Kingma & Welling 2013, Section 3), as the latent-variable model
    that every objective and the evaluator use:

    posterior(x)              the diagonal Gaussian q_0(z|x) the encoder gives
    sample_posterior(q_0, L)  z ~ q(z|x) by reparameterization through the flows, and log q(z|x)
    log_prior(z)              log p(z): N(0, I), a learned mixture or the VampPrior
    decode(z)                 the likelihood p(x|z)
    analytic_kl               whether KL(q || p) has a closed form (N(0, I) prior, no flow)

    Holds the networks and nothing else: objectives live in vaekit.objectives, persistence in
    vaekit.checkpoint. Images are (batch, C, H, W); latents are (batch, latent_dim).
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        latent_dim: int,
        prior: nn.Module | None = None,
        flows: nn.ModuleList | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.latent_dim = latent_dim
        self.prior = prior if prior is not None else StandardNormalPrior(latent_dim)
        self.flows = flows if flows is not None else nn.ModuleList()

    @property
    def analytic_kl(self) -> bool:
        """True when KL(q(z|x) || p(z)) has the closed form of Appendix B: a diagonal Gaussian
        posterior (no flow) against the N(0, I) prior; otherwise the KL is estimated by Monte Carlo."""
        return isinstance(self.prior, StandardNormalPrior) and len(self.flows) == 0

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Parameters of q_0(z|x): (mu, logvar), each (batch, latent_dim)."""
        return self.encoder(x)

    def posterior(self, x: torch.Tensor) -> DiagonalGaussian:
        """The encoder's diagonal Gaussian q_0(z|x) (the posterior itself when there is no flow)."""
        return DiagonalGaussian(*self.encode(x))

    @torch.no_grad()
    def posterior_mean(self, x: torch.Tensor) -> torch.Tensor:
        """The point every picture and the playground place an image at: the encoder's mean carried
        through the flows, f_K(... f_1(mu(x))), (batch, latent_dim). Without a flow it is E_q[z|x]
        exactly; with a flow a stand-in for it; for a ladder it is the merged top-down posterior's
        path, not the bottom-up estimate alone."""
        posterior = self.posterior(x)
        return self.flow(posterior.mu, posterior)[0]

    def sample_posterior(
        self,
        posterior: DiagonalGaussian,
        num_samples: int = 1,
        generator: torch.Generator | None = None,
        eps: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """z ~ q(z|x) by reparameterization, and log q(z|x) at it.

        z_0 = mu + sigma * eps, then z_K = f_K(... f_1(z_0)) through the flows, with
        log q(z_K|x) = log q_0(z_0|x) - sum_k log |det J_f_k|   (Rezende & Mohamed 2015, Eq. 6).
        Shapes: posterior (batch, J); eps, if given, (batch, L, J) -> z (batch, L, J), log q (batch, L).
        """
        z0 = posterior.rsample(num_samples, generator, eps)
        z, log_det = self.flow(z0, posterior)
        return z, self.log_posterior(posterior, z0, log_det)

    def flow(
        self, z0: torch.Tensor, posterior: DiagonalGaussian | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """z_K = f_K(... f_1(z_0)) and sum_k log |det J_f_k| (*batch,); z_0 itself and None without a flow.
        The steps may read the encoder's Gaussian q_0 (the ladder's bottom-up estimates)."""
        z, log_det = z0, None
        for flow in self.flows:
            z, step_log_det = flow(z, posterior)
            log_det = step_log_det if log_det is None else log_det + step_log_det
        return z, log_det

    @staticmethod
    def log_posterior(posterior: DiagonalGaussian, z0: torch.Tensor, log_det: torch.Tensor | None) -> torch.Tensor:
        """log q(z_K|x) = log q_0(z_0|x) - sum_k log |det J_f_k|: z0 (batch, L, J) -> (batch, L)."""
        log_q0 = DiagonalGaussian(posterior.mu.unsqueeze(-2), posterior.logvar.unsqueeze(-2)).log_prob(z0)
        return log_q0 if log_det is None else log_q0 - log_det

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) summed over latent dimensions: z (*batch, J) -> (*batch,)."""
        return self.prior.log_prob(z, self.encode)

    def decode(self, z: torch.Tensor) -> Likelihood:
        """The likelihood p(x|z) for latents z of shape (batch, latent_dim)."""
        return self.decoder(z)

    @torch.no_grad()
    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n draws z ~ p(z) from the model's prior, (n, latent_dim), on the model's device."""
        return self.prior.sample(n, generator, self.encode).to(self._device())

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decoded means of n draws z ~ p(z): images (n, C, H, W) in the data's range."""
        return self.decode(self.sample_prior(n, generator)).mean

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decoded mean at the posterior mean (`posterior_mean`): E[x | z = mu(x)], images shaped like x."""
        return self.decode(self.posterior_mean(x)).mean

    def _device(self) -> torch.device:
        return next(self.parameters()).device


def _likelihood_options(config: ModelConfig) -> dict[str, float]:
    return {
        "logvar_min": config.decoder_logvar_min,
        "logvar_max": config.decoder_logvar_max,
        "fixed_std": config.decoder_fixed_std,
    }


Networks = tuple[nn.Module, nn.Module]  # (encoder, decoder)


def _mlp(config: ModelConfig) -> Networks:
    encoder = MLPEncoder(
        config.image_shape, config.hidden_dim, config.latent_dim, config.hidden_layers, config.activation
    )
    decoder = MLPDecoder(
        config.image_shape,
        config.hidden_dim,
        config.latent_dim,
        config.likelihood,
        _likelihood_options(config),
        config.hidden_layers,
        config.activation,
    )
    return encoder, decoder


def _conv(config: ModelConfig) -> Networks:
    encoder = ConvEncoder(config.image_shape, config.hidden_dim, config.latent_dim, config.conv_channels)
    decoder = ConvDecoder(
        config.image_shape,
        config.hidden_dim,
        config.latent_dim,
        config.conv_channels,
        config.likelihood,
        _likelihood_options(config),
    )
    return encoder, decoder


# architecture name -> builder of the encoder and decoder. Names match config.ARCHITECTURE_NAMES (a test checks).
ARCHITECTURE_BUILDERS: dict[str, Callable[[ModelConfig], Networks]] = {"mlp": _mlp, "conv": _conv}

# prior name -> builder. Names match config.PRIOR_NAMES (a test checks).
PRIOR_BUILDERS: dict[str, Callable[[ModelConfig], nn.Module]] = {
    "standard": lambda c: StandardNormalPrior(c.latent_dim),
    "mixture": lambda c: MixturePrior(c.latent_dim, c.prior_components),
    "vampprior": lambda c: VampPrior(c.image_shape, c.prior_components),
}


def _two_layer(config: ModelConfig, encoder: nn.Module, decoder: nn.Module) -> VAE:
    """Burda et al.'s two stochastic layers around the one-layer networks (see models/hierarchy.py)."""
    j1, j2, h = config.latent_dim, config.top_latent_dim, config.top_hidden_dim
    layers, act = config.hidden_layers, config.activation
    step = ConditionalGaussianStep(j1, GaussianMLP(j1, h, j2, layers, act))  # q(z2|z1)
    top = PRIOR_BUILDERS[config.prior](dataclasses.replace(config, latent_dim=j2, hierarchy="none"))
    prior = HierarchicalPrior([j1, j2], top, nn.ModuleList([GaussianMLP(j2, h, j1, layers, act)]))  # p(z2) p(z1|z2)
    return VAE(PaddedEncoder(encoder, j2), BottomDecoder(decoder, j1), j1 + j2, prior, nn.ModuleList([step]))


def _ladder(config: ModelConfig) -> VAE:
    """Sonderby et al.'s ladder VAE: a bottom-up pass, then top-down inference sharing the generative
    conditionals (see models/hierarchy.py); the decoder p(x|z_1) is the MLP decoder of the bottom layer."""
    dims, hidden = list(config.ladder_latent_dims), list(config.ladder_hidden_dims)
    layers, act = config.hidden_layers, config.activation
    encoder = LadderEncoder(config.image_shape, hidden, dims, layers, act)
    decoder = MLPDecoder(config.image_shape, hidden[0], dims[0], config.likelihood, _likelihood_options(config),
                         layers, act)  # fmt: skip
    top = PRIOR_BUILDERS[config.prior](dataclasses.replace(config, latent_dim=dims[-1], hierarchy="none"))
    conditionals = nn.ModuleList(
        GaussianMLP(dims[i + 1], hidden[i], dims[i], layers, act) for i in range(len(dims) - 1)
    )
    prior = HierarchicalPrior(dims, top, conditionals)
    return VAE(encoder, BottomDecoder(decoder, dims[0]), sum(dims), prior, nn.ModuleList([LadderStep(prior)]))


def build_model(config: ModelConfig) -> VAE:
    """A freshly initialised VAE for a model config (seed torch beforehand for repeatability).

    The encoder and decoder are built first, so that a model with the standard prior and no flow
    draws exactly the initial weights it always did; the prior and the flow follow.
    """
    if config.hierarchy == "ladder":
        return _ladder(config)
    encoder, decoder = ARCHITECTURE_BUILDERS[config.architecture](config)
    if config.hierarchy == "two-layer":
        return _two_layer(config, encoder, decoder)
    prior = PRIOR_BUILDERS[config.prior](config)
    steps = config.flow_steps if config.posterior_flow != "none" else 0
    flows = build_flows(config.posterior_flow, config.latent_dim, steps, config.flow_hidden_dim)
    return VAE(encoder, decoder, config.latent_dim, prior, flows)
