"""The VAE: an encoder and an inference module that give q(z|x), a decoder p(x|z), a prior p(z); the registries."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from vaekit.config import ModelConfig
from vaekit.errors import DataError, ModelError
from vaekit.likelihoods import (
    BernoulliLikelihood,
    CategoricalLevels,
    ContinuousBernoulliLikelihood,
    DiscretizedLogisticMixture,
    GaussianLikelihood,
    LikelihoodOptions,
)
from vaekit.models.decoders import ConvDecoder, MLPDecoder, ResidualDecoder
from vaekit.models.encoders import (
    ConvEncoder,
    GaussianMLP,
    LabelledEncoder,
    MLPEncoder,
    ResidualEncoder,
    spatial_latent_channels,
)
from vaekit.models.flows import build_flows
from vaekit.models.hierarchy import BottomDecoder, HierarchicalPrior, LadderEncoder, TopBlock
from vaekit.models.posteriors import (
    FlowInference,
    GaussianInference,
    LabelledInference,
    LadderInference,
    PointInference,
    Posterior,
    QuantisedInference,
    TwoLayerInference,
)
from vaekit.models.priors import CodePrior, LabelledPrior, MixturePrior, NoPrior, StandardNormalPrior, VampPrior
from vaekit.models.quantiser import VectorQuantiser

Likelihood = (
    BernoulliLikelihood
    | ContinuousBernoulliLikelihood
    | GaussianLikelihood
    | DiscretizedLogisticMixture
    | CategoricalLevels
)


class VAE(nn.Module):
    """Variational autoencoder (Kingma & Welling 2013, Section 3), as the latent-variable model
    that every objective, the evaluator and the pictures use:

    posterior(x)      q(z|x), a models.posteriors.Posterior: rsample -> (z, log q), log_prob, mean,
                      closed_form_kl(prior)
    prior             p(z), a module with log_prob(z) and sample(n, generator) (models.priors)
    decode(z)         the likelihood p(x|z)
    latent_sizes      the stochastic layers' sizes, bottom first; latent_dim is their sum
    sample, reconstruct, sample_prior: decoded draws and reconstructions for pictures

    The submodules are `encoder` (x -> its parameters), `inference` (those parameters -> the
    Posterior: a flow, q(z2|z1), a ladder's top-down pass), `decoder` and `prior`. Holds the networks
    and nothing else: objectives live in vaekit.objectives, persistence in vaekit.checkpoint.
    Images are float (batch, C, H, W) with (C, H, W) = image_shape (any, where image_shape is None);
    latents are (batch, latent_dim). posterior and decode refuse other batches with one sentence.

    Every model family is this object with its own parts (models.vae.MODEL_BUILDERS), and what the rest
    of the code needs to know of a family it reads from declarations, never from a class: `family`
    (config.MODEL_FAMILY_NAMES), `has_bound` (whether the ELBO and the importance-sampled log p(x)
    exist: the prior declares whether it has a density) and `pictures_without` (picture name -> why it
    does not apply, as the prior declares: no samples without a prior to draw them from).
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        prior: nn.Module,
        inference: nn.Module | None = None,
        image_shape: tuple[int, int, int] | None = None,
        family: str = "vae",
    ) -> None:
        super().__init__()
        self.family = family
        self.encoder = encoder
        self.decoder = decoder
        self.prior = prior
        self.inference = inference if inference is not None else GaussianInference()
        self.image_shape = None if image_shape is None else tuple(image_shape)

    @property
    def has_bound(self) -> bool:
        return bool(self.prior.has_density)

    @property
    def no_bound(self) -> str:
        """Why the model has no ELBO or log p(x), in one sentence its prior gives; "" where it has them."""
        return "" if self.has_bound else str(self.prior.why_no_density)

    @property
    def no_marginal(self) -> str:
        """Why no importance-sampled log p(x) exists, in one sentence ("" where it does): the model has no bound,
        or its inference declares why (a VQ-VAE's point mass on discrete codes)."""
        return self.no_bound or str(getattr(self.inference, "why_no_marginal", ""))

    @property
    def pictures_without(self) -> dict[str, str]:
        return dict(self.prior.pictures_without)

    @property
    def latent_sizes(self) -> tuple[int, ...]:
        """Sizes J_1, ..., J_L of the stochastic layers, bottom first: (latent_dim,) for one layer."""
        return tuple(self.prior.layer_sizes)

    @property
    def latent_dim(self) -> int:
        return sum(self.latent_sizes)

    @property
    def needs_labels(self) -> bool:
        """Whether q(z|x) exists only given the images' labels (a conditional VAE): evaluation then passes them."""
        return bool(getattr(self.inference, "needs_labels", False))

    @property
    def classifies(self) -> bool:
        """Whether the posterior holds a classifier q(y|x) (M2), whose test error evaluation reports."""
        return bool(getattr(self.inference, "classifies", False))

    def posterior(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> Posterior:
        """q(z|x) for float images x (batch, C, H, W) in the data's range [0, 1]; for a model of labels, with
        labels (batch,) given, q(z|x, y) at them (Posterior.given)."""
        check_images(x, self.image_shape)
        weight = next(self.encoder.parameters(), None)
        if weight is not None and x.dtype != weight.dtype:
            raise DataError(
                f"the model's weights are {weight.dtype} but the batch is {x.dtype}: pass x.to({weight.dtype})."
            )
        return self.infer(self.encoder(x), labels)

    def infer(self, encoded: tuple[torch.Tensor | None, ...], labels: torch.Tensor | None = None) -> Posterior:
        """The posterior from the encoder's output, at the given labels where there are any."""
        posterior = self.inference(encoded)
        return posterior if labels is None else posterior.given(labels)

    def decode(self, z: torch.Tensor) -> Likelihood:
        """The likelihood p(x|z) for float latents z of shape (batch, latent_dim)."""
        check_latents(z, self.latent_dim)
        return self.decoder(z)

    @torch.no_grad()
    def sample_prior(
        self, n: int, generator: torch.Generator | None = None, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """n draws z ~ p(z) from the model's prior, (n, latent_dim), on the model's device; for a model of labels
        with labels (n,) given, the draws of z joined to those labels instead of drawn ones."""
        v = self.prior.sample(n, generator).to(next(self.parameters()).device)
        if labels is None:
            return v
        if not hasattr(self.prior, "join"):
            raise ModelError(f"a {self.family} model takes no labels: only cvae and m2 models draw at a label")
        labels = torch.as_tensor(labels)
        if labels.shape != (n,) or labels.is_floating_point() or labels.min() < 0 or labels.max() >= self.prior.classes:
            raise DataError(f"labels must be {n} integers in 0 .. {self.prior.classes - 1}, one per sample.")
        return self.prior.join(labels, self.prior.split(v)[1])

    @torch.no_grad()
    def sample(
        self, n: int, generator: torch.Generator | None = None, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Decoded means of n draws z ~ p(z): images (n, C, H, W) in the data's range (at the given labels (n,), for
        a model of labels)."""
        return self.decode(self.sample_prior(n, generator, labels)).mean

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Decoded mean at the posterior's mean: E[x | z = mean of q(z|x)], images shaped like x (a conditional
        VAE's at the given labels)."""
        return self.decode(self.posterior(x, labels).mean).mean


def check_images(x: torch.Tensor, image_shape: tuple[int, int, int] | None) -> None:
    """One sentence for a batch of images the model cannot take (integer pixels, another shape), rather than a
    traceback from deep inside the encoder. It reads the tensor's metadata only: no device synchronisation."""
    if not torch.is_tensor(x):
        raise DataError(f"the model takes a torch.Tensor of images, not {type(x).__name__}: pass torch.as_tensor(x).")
    if not x.is_floating_point():
        raise DataError(
            f"the model takes float images in [0, 1], but the batch is {x.dtype}: convert it (uint8 levels as "
            "x.float() / 255), or load the images with vaekit.data.load_dataset(config)."
        )
    if image_shape is not None and (x.ndim != 4 or tuple(x.shape[1:]) != image_shape):
        fix = (
            "add the batch dimension (x.unsqueeze(0))"
            if tuple(x.shape) == image_shape
            else "load the run's images with vaekit.data.load_dataset(config), which gives them the run's shape"
        )
        raise DataError(
            f"the model takes images of shape (batch, {', '.join(map(str, image_shape))}), but the batch has shape "
            f"{tuple(x.shape)}: {fix}."
        )


def check_latents(z: torch.Tensor, latent_dim: int) -> None:
    """One sentence for latents the decoder cannot take (integers, another shape); metadata only, as check_images."""
    if not z.is_floating_point():
        raise DataError(f"model.decode takes float latents, but z is {z.dtype}: pass z.float().")
    if z.ndim != 2 or z.shape[1] != latent_dim:
        fix = "add the batch dimension (z.unsqueeze(0))" if tuple(z.shape) == (latent_dim,) else "one row per code"
        raise DataError(
            f"model.decode takes latents of shape (batch, {latent_dim}), but z has shape {tuple(z.shape)}: {fix}."
        )


def likelihood_options(config: ModelConfig, levels: int = 256) -> LikelihoodOptions:
    """What the decoder's likelihood builder needs beyond its raw output: the Gaussian decoder's bounds,
    the mixture's components and channel coupling, and the number of grey levels (2^data.bits)."""
    return LikelihoodOptions(
        logvar_min=config.decoder_logvar_min,
        logvar_max=config.decoder_logvar_max,
        fixed_std=config.decoder_fixed_std,
        components=config.likelihood_components,
        coupled=config.likelihood_channel_coupling,
        levels=levels,
    )


Networks = tuple[nn.Module, nn.Module]  # (encoder, decoder)


def _mlp(config: ModelConfig, options: LikelihoodOptions) -> Networks:
    encoder = MLPEncoder(
        config.image_shape, config.hidden_dim, config.latent_dim, config.hidden_layers, config.activation
    )
    decoder = MLPDecoder(
        config.image_shape,
        config.hidden_dim,
        config.latent_dim,
        config.likelihood,
        options,
        config.hidden_layers,
        config.activation,
    )
    return encoder, decoder


def _conv(config: ModelConfig, options: LikelihoodOptions) -> Networks:
    encoder = ConvEncoder(config.image_shape, config.hidden_dim, config.latent_dim, config.conv_channels)
    decoder = ConvDecoder(
        config.image_shape,
        config.hidden_dim,
        config.latent_dim,
        config.conv_channels,
        config.likelihood,
        options,
    )
    return encoder, decoder


def _resnet(config: ModelConfig, options: LikelihoodOptions) -> Networks:
    channels, blocks = config.conv_channels, config.conv_residual_blocks
    encoder = ResidualEncoder(config.image_shape, config.latent_dim, channels, blocks)
    decoder = ResidualDecoder(config.image_shape, config.latent_dim, channels, blocks, config.likelihood, options)
    return encoder, decoder


# architecture name -> builder of the encoder and decoder. Names match config.ARCHITECTURE_NAMES (a test checks).
ARCHITECTURE_BUILDERS: dict[str, Callable[[ModelConfig, LikelihoodOptions], Networks]] = {
    "mlp": _mlp,
    "conv": _conv,
    "resnet": _resnet,
}

# prior name -> builder of a one-layer prior over `latent_dim` latents; `encoder` gives the Gaussian of
# that layer (x -> mu, logvar), which the VampPrior mixes. Names match config.PRIOR_NAMES (a test checks).
PRIOR_BUILDERS: dict[str, Callable[[ModelConfig, int, nn.Module], nn.Module]] = {
    "standard": lambda c, j, encoder: StandardNormalPrior(j),
    "mixture": lambda c, j, encoder: MixturePrior(j, c.prior_components),
    "vampprior": lambda c, j, encoder: VampPrior(c.image_shape, c.prior_components, encoder, j),
}


def _two_layer(config: ModelConfig, encoder: nn.Module, decoder: nn.Module) -> VAE:
    """Burda et al.'s two stochastic layers around the one-layer networks: q(z1|x) is the encoder,
    q(z2|z1) and p(z1|z2) Gaussian MLPs, p(z2) the configured prior (see models/posteriors.py)."""
    j1, j2, h = config.latent_dim, config.top_latent_dim, config.top_hidden_dim
    layers, act = config.hidden_layers, config.activation
    inference = TwoLayerInference(GaussianMLP(j1, h, j2, layers, act), j2)  # q(z2|z1)
    top = PRIOR_BUILDERS[config.prior](config, j2, encoder)
    prior = HierarchicalPrior([j1, j2], top, nn.ModuleList([GaussianMLP(j2, h, j1, layers, act)]))  # p(z2) p(z1|z2)
    return VAE(encoder, BottomDecoder(decoder, j1), prior, inference, config.image_shape)


def _ladder(config: ModelConfig, options: LikelihoodOptions) -> VAE:
    """Sonderby et al.'s ladder VAE: a bottom-up pass, then top-down inference sharing the generative
    conditionals (see models/posteriors.py); the decoder p(x|z_1) is the MLP decoder of the bottom layer."""
    dims, hidden = list(config.ladder_latent_dims), list(config.ladder_hidden_dims)
    layers, act = config.hidden_layers, config.activation
    encoder = LadderEncoder(config.image_shape, hidden, dims, layers, act)
    decoder = MLPDecoder(config.image_shape, hidden[0], dims[0], config.likelihood, options, layers, act)
    top = PRIOR_BUILDERS[config.prior](config, dims[-1], TopBlock(encoder, dims[-1]))
    conditionals = nn.ModuleList(
        GaussianMLP(dims[i + 1], hidden[i], dims[i], layers, act) for i in range(len(dims) - 1)
    )
    prior = HierarchicalPrior(dims, top, conditionals)
    inference = LadderInference(conditionals, tuple(dims))
    return VAE(encoder, BottomDecoder(decoder, dims[0]), prior, inference, config.image_shape)


def build_model(config: ModelConfig, levels: int = 256) -> VAE:
    """A freshly initialised model of the configured family (MODEL_BUILDERS; seed torch beforehand for
    repeatability); `levels`, the data's grey levels 2^data.bits, sizes the likelihoods over levels."""
    return MODEL_BUILDERS[config.family](config, levels)


def build_vae(config: ModelConfig, levels: int = 256) -> VAE:
    """A VAE for a model config: the encoder and decoder are built first, so that a model with the standard
    prior and no flow draws exactly the initial weights it always did; the prior and the flow follow; then
    model.init re-draws the layers' weights where it is not PyTorch's default (`initialise`)."""
    return _finished(_build(config, likelihood_options(config, levels)), config)


def build_autoencoder(config: ModelConfig, levels: int = 256) -> VAE:
    """An autoencoder: the configured architecture's encoder, whose first head gives the code z = f(x)
    (PointInference), and decoder p(x|z) with the configured likelihood, over a code space with no prior
    (NoPrior). Trained by the reconstruction objective; plain or denoising is the objective's setting."""
    encoder, decoder = ARCHITECTURE_BUILDERS[config.architecture](config, likelihood_options(config, levels))
    model = VAE(encoder, decoder, NoPrior(config.latent_dim), PointInference(), config.image_shape, "autoencoder")
    return _finished(model, config)


def build_vq_vae(config: ModelConfig, levels: int = 256) -> VAE:
    """A VQ-VAE (van den Oord et al. 2017, Section 4.1): the resnet encoder (conv: with no residual blocks) whose
    first head gives the code map z_e of D = latent_dim / (h w) channels, the vector quantiser of
    codebook_size codes (QuantisedInference), the mirroring decoder with the configured likelihood, and the code
    prior, uniform until `vaekit train-prior` fits its PixelCNN (CodePrior). Trained by the vq-vae objective."""
    channels, options = config.conv_channels, likelihood_options(config, levels)
    blocks = config.conv_residual_blocks if config.architecture == "resnet" else 0
    encoder = ResidualEncoder(config.image_shape, config.latent_dim, channels, blocks)
    decoder = ResidualDecoder(config.image_shape, config.latent_dim, channels, blocks, config.likelihood, options)
    _, h, w = config.image_shape
    code_shape = (
        spatial_latent_channels(config.image_shape, len(channels), config.latent_dim),
        h >> len(channels),
        w >> len(channels),
    )
    quantiser = VectorQuantiser(
        config.codebook_size,
        code_shape[0],
        config.codebook_update,
        config.codebook_decay,
        config.codebook_init,
        config.codebook_restart,
    )
    inference = QuantisedInference(quantiser, code_shape)
    model = VAE(encoder, decoder, CodePrior(quantiser, code_shape), inference, config.image_shape, "vq-vae")
    return _finished(model, config)


def build_labelled(config: ModelConfig, levels: int = 256) -> VAE:
    """A model of labels over v = [onehot(y), z] (LabelledPosterior, LabelledPrior): the configured architecture's
    q(z|x, y) at every label (its encoder built with `classes`), the decoder p(x|y, z) of the likelihood taking v,
    the label's one-hot code concatenated to z; for m2 (Kingma et al. 2014, Section 3.1.2) also the classifier
    q(y|x), an encoder of the same architecture with `classes` outputs, and the uniform p(y); for cvae (Sohn et al.
    2015) no classifier, and the label given."""
    options, c, m2 = likelihood_options(config, levels), config.classes, config.family == "m2"
    shape, hidden, layers, act = config.image_shape, config.hidden_dim, config.hidden_layers, config.activation
    if config.architecture == "mlp":
        latent = MLPEncoder(shape, hidden, config.latent_dim, layers, act, classes=c)
        classifier = MLPEncoder(shape, hidden, c, layers, act) if m2 else None
        decoder = MLPDecoder(shape, hidden, c + config.latent_dim, config.likelihood, options, layers, act)
    else:
        channels = config.conv_channels
        latent = ConvEncoder(shape, hidden, config.latent_dim, channels, classes=c)
        classifier = ConvEncoder(shape, hidden, c, channels) if m2 else None
        decoder = ConvDecoder(shape, hidden, c + config.latent_dim, channels, config.likelihood, options)
    prior = LabelledPrior(c, config.latent_dim, given=not m2)
    model = VAE(LabelledEncoder(latent, classifier), decoder, prior, LabelledInference(not m2), shape, config.family)
    return _finished(model, config)


def _finished(model: VAE, config: ModelConfig) -> VAE:
    """The model with its weights drawn as model.init says, and conv weights channels-last (faster conv steps:
    README, Benchmarks)."""
    initialise(model, config.init)
    if config.architecture != "mlp":
        model.to(memory_format=torch.channels_last)
    return model


def initialise(model: nn.Module, init: str) -> None:
    """Every linear and conv layer's weights: glorot, U(-a, a) with a = sqrt(6 / (fan_in + fan_out)) (Glorot
    & Bengio 2010), biases 0; normal, weights and biases from N(0, 0.01^2) (Kingma & Welling 2013, Section 5:
    "N(0, 0.01)", read as a standard deviation); default leaves PyTorch's."""
    if init == "default":
        return
    for layer in model.modules():
        if isinstance(layer, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            if init == "glorot":
                nn.init.xavier_uniform_(layer.weight)
            else:
                nn.init.normal_(layer.weight, std=0.01)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias) if init == "glorot" else nn.init.normal_(layer.bias, std=0.01)


def _build(config: ModelConfig, options: LikelihoodOptions) -> VAE:
    if config.hierarchy == "ladder":
        return _ladder(config, options)
    encoder, decoder = ARCHITECTURE_BUILDERS[config.architecture](config, options)
    if config.hierarchy == "two-layer":
        return _two_layer(config, encoder, decoder)
    prior = PRIOR_BUILDERS[config.prior](config, config.latent_dim, encoder)
    if config.posterior_flow == "none":
        return VAE(encoder, decoder, prior, image_shape=config.image_shape)
    flows = build_flows(config.posterior_flow, config.latent_dim, config.flow_steps, config.flow_hidden_dim)
    return VAE(encoder, decoder, prior, FlowInference(flows), config.image_shape)


# model family -> builder of a freshly initialised model (config, grey levels) -> model. Names match
# config.MODEL_FAMILY_NAMES (a test checks). A family's model offers the VAE's surface and declarations.
MODEL_BUILDERS: dict[str, Callable[[ModelConfig, int], VAE]] = {
    "vae": build_vae,
    "autoencoder": build_autoencoder,
    "vq-vae": build_vq_vae,
    "cvae": build_labelled,
    "m2": build_labelled,
}
