"""The approximate posterior q(z|x) as one object, and the inference modules that build it.

A `Posterior` is what every objective, the evaluator and the pictures ask of q(z|x):
  rsample(L, generator, eps) -> (z, log_q)   z (batch, L, J) by reparameterization, log q(z|x) (batch, L)
  log_prob(z)                                log q(z|x), broadcasting like torch.distributions: a
                                             (B, 1, J) posterior scores (1, B, J) samples as (B, B)
  log_prob_by_layer(z)                       the same split by stochastic layer, per coordinate
  at_samples()                               the posterior with a sample dimension before J, which
                                             scores its own samples (batch, L, J) as (batch, L)
  mean                                       where pictures and the playground place an image
  closed_form_kl(prior)                      KL(q || p) per dimension by Kingma & Welling's Appendix B,
                                             or None where it has no closed form (kl_is_closed_form says which)
  sample(L, generator, eps)                  rsample's z alone, where no log q is needed
  detach()                                   the same posterior at stopped parameters (STL / DReG)
  as_gaussian()                              itself where it is one factorized Gaussian layer, else None
  has_density                                whether log_prob scores a given z (not a flow's)
The families:
  GaussianPosterior    N(mu, diag sigma^2), the paper's q(z|x) (Kingma & Welling 2013, Appendix C.2)
  FlowPosterior        a Gaussian carried through a normalizing flow (Rezende & Mohamed 2015)
  TwoLayerPosterior    q(z1|x) q(z2|z1), bottom-up (Burda et al. 2016, Section 5)
  LadderPosterior      bottom-up estimates merged top-down with p(z_i|z_{i+1}) (Sonderby et al. 2016)
  PointPosterior       an autoencoder's code f(x), all the mass at one point (no density)
  LabelledPosterior    q(y|x) q(z|x, y) over v = [onehot(y), z], of a model of labels (Kingma et al. 2014)
The latent vector of a hierarchy is z = [z_1, ..., z_L], bottom layer first; `layer_sizes` gives the
J_i. The inference module of a VAE (`GaussianInference`, `FlowInference`, `TwoLayerInference`,
`LadderInference`) maps the encoder's output to the posterior; what it shares with the prior (the
ladder's generative conditionals) is an ordinary submodule, which the checkpoint stores once.
"""

from __future__ import annotations

import torch
from torch import nn

from vaekit.errors import DataError, ModelError
from vaekit.likelihoods import DiagonalGaussian
from vaekit.models.encoders import GaussianMLP
from vaekit.models.quantiser import Quantised, VectorQuantiser


def gaussian_log_prob_per_dim(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z_j; mu_j, exp(logvar_j)) for each coordinate, broadcasting z against mu: (*batch, J)."""
    return DiagonalGaussian(mu, logvar).log_prob_per_dim(z)


def _noise(shape: tuple[int, ...], like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """eps ~ N(0, I) of `shape`, drawn on the generator's device, in like's dtype and on its device."""
    device = generator.device if generator is not None else like.device
    return torch.randn(shape, generator=generator, dtype=like.dtype, device=device).to(like.device)


class Posterior:
    """What every family of q(z|x) offers (the module docstring lists it). Subclasses set
    `layer_sizes` and implement `rsample`, `mean`, and `log_prob_by_layer` where a density exists."""

    layer_sizes: tuple[int, ...]
    label = "q(z|x)"
    # Whether log_prob_by_layer scores a given z: false for a flow, whose density is known only at its
    # own samples (rsample's log q).
    has_density = True

    @property
    def latent_dim(self) -> int:
        return sum(self.layer_sizes)

    def rsample(
        self, num_samples: int = 1, generator: torch.Generator | None = None, eps: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def sample(
        self, num_samples: int = 1, generator: torch.Generator | None = None, eps: torch.Tensor | None = None
    ) -> torch.Tensor:
        """rsample's z alone, (*batch, L, J), for an objective that needs no log q (a closed-form KL)."""
        return self.rsample(num_samples, generator, eps)[0]

    @property
    def mean(self) -> torch.Tensor:
        raise NotImplementedError

    def at_samples(self) -> Posterior:
        raise NotImplementedError

    def log_prob_by_layer(self, z: torch.Tensor) -> list[torch.Tensor]:
        """log q per stochastic layer, bottom first: (*batch, J_i) per coordinate (each layer's density
        factorises given the layer above, in every family here but a flow, which has no log_prob)."""
        raise ValueError(f"a {self.label} posterior has no density at a given z; only rsample's log q is defined")

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log q(z|x) summed over latents: z (*batch, J), broadcasting against the parameters -> (*batch,)."""
        return sum(layer.sum(-1) for layer in self.log_prob_by_layer(z))  # type: ignore[return-value]

    def kl_is_closed_form(self, prior: nn.Module) -> bool:
        """Whether closed_form_kl(prior) gives the KL rather than None."""
        return False

    def closed_form_kl(self, prior: nn.Module) -> torch.Tensor | None:
        """KL(q(z|x) || p(z)) per latent dimension (batch, J) where it has a closed form, else None."""
        return None

    def detach(self) -> Posterior:
        raise ValueError(f"a {self.label} posterior has no stopped-parameter form (STL and DReG need a Gaussian)")

    def as_gaussian(self) -> GaussianPosterior | None:
        """This posterior as one factorized Gaussian layer N(mu, diag sigma^2), or None where it is not one
        (a flow, a hierarchy): what the objectives and metrics that read mu and sigma ask for."""
        return None

    def given(self, labels: torch.Tensor) -> Posterior:
        """The posterior with the label y observed (a model of labels); other models take no labels."""
        raise ModelError(f"a {self.label} posterior takes no labels: only a cvae or m2 model reads them")


class GaussianPosterior(Posterior):
    """q(z|x) = N(mu, diag exp(logvar))   (Kingma & Welling 2013, Appendix C.2).
    Shapes: mu and logvar (*batch, J); rsample adds a sample dimension before J."""

    label = "Gaussian"

    def __init__(self, mu: torch.Tensor, logvar: torch.Tensor) -> None:
        self.gaussian = DiagonalGaussian(mu, logvar)
        self.layer_sizes = (mu.shape[-1],)

    @property
    def mu(self) -> torch.Tensor:
        return self.gaussian.mu

    @property
    def logvar(self) -> torch.Tensor:
        return self.gaussian.logvar

    def rsample(
        self, num_samples: int = 1, generator: torch.Generator | None = None, eps: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """z = mu + sigma * eps (Section 2.4) and log q(z|x): (*batch, L, J) and (*batch, L)."""
        z = self.gaussian.rsample(num_samples, generator, eps)
        return z, self.at_samples().log_prob(z)

    def sample(
        self, num_samples: int = 1, generator: torch.Generator | None = None, eps: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.gaussian.rsample(num_samples, generator, eps)

    def at_samples(self) -> GaussianPosterior:
        """This posterior with a sample dimension before J, to score its own samples (*batch, L, J)."""
        return GaussianPosterior(self.mu.unsqueeze(-2), self.logvar.unsqueeze(-2))

    @property
    def mean(self) -> torch.Tensor:
        return self.mu

    def log_prob_by_layer(self, z: torch.Tensor) -> list[torch.Tensor]:
        return [gaussian_log_prob_per_dim(z, self.mu, self.logvar)]

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return self.gaussian.log_prob(z)

    def kl_is_closed_form(self, prior: nn.Module) -> bool:
        return bool(getattr(prior, "closed_form_kl", False))

    def closed_form_kl(self, prior: nn.Module) -> torch.Tensor | None:
        """KL_j = 1/2 (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2) against N(0, I) (Appendix B), (*batch, J)."""
        return self.gaussian.kl_per_dimension() if self.kl_is_closed_form(prior) else None

    def detach(self) -> GaussianPosterior:
        return GaussianPosterior(self.mu.detach(), self.logvar.detach())

    def as_gaussian(self) -> GaussianPosterior:
        return self


class FlowPosterior(Posterior):
    """z_K = f_K(... f_1(z_0)), z_0 ~ q_0 = N(mu, diag sigma^2):

    log q(z_K|x) = log q_0(z_0|x) - sum_k log |det df_k/dz_{k-1}|   (Rezende & Mohamed 2015, Eq. 6)
    Only rsample's log q is defined: the flows here are not inverted, so a given z has no density.
    """

    label = "flow"
    has_density = False

    def __init__(self, base: GaussianPosterior, flows: nn.ModuleList) -> None:
        self.base = base
        self.flows = flows
        self.layer_sizes = base.layer_sizes

    def transform(self, z0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """f_K(... f_1(z_0)) and sum_k log |det J_f_k|, (*batch, J) and (*batch,)."""
        z, log_det = z0, z0.new_zeros(z0.shape[:-1])
        for flow in self.flows:
            z, step_log_det = flow(z)
            log_det = log_det + step_log_det
        return z, log_det

    def rsample(
        self, num_samples: int = 1, generator: torch.Generator | None = None, eps: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        z0, log_q0 = self.base.rsample(num_samples, generator, eps)
        z, log_det = self.transform(z0)
        return z, log_q0 - log_det

    def at_samples(self) -> FlowPosterior:
        return FlowPosterior(self.base.at_samples(), self.flows)

    @property
    def mean(self) -> torch.Tensor:
        """The encoder's mean carried through the flow, f_K(... f_1(mu)): a stand-in for E_q[z]."""
        return self.transform(self.base.mu)[0]


class TwoLayerPosterior(Posterior):
    """q(z1, z2 | x) = q(z1|x) q(z2|z1), each a diagonal Gaussian   (Burda et al. 2016, Section 5).

    z1 = mu1(x) + sigma1(x) eps1, z2 = mu2(z1) + sigma2(z1) eps2; `conditional` maps z1 to
    (mu2, logvar2). Shapes: z = [z1, z2] (*batch, J1 + J2).
    """

    label = "two-layer"

    def __init__(self, bottom: GaussianPosterior, conditional: nn.Module, top_dim: int) -> None:
        self.bottom = bottom
        self.conditional = conditional
        self.layer_sizes = (bottom.latent_dim, top_dim)

    def rsample(
        self, num_samples: int = 1, generator: torch.Generator | None = None, eps: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mu1 = self.bottom.mu
        if eps is None:
            eps = _noise((*mu1.shape[:-1], num_samples, self.latent_dim), mu1, generator)
        eps1, eps2 = eps.split(self.layer_sizes, -1)
        z1, log_q1 = self.bottom.rsample(num_samples, eps=eps1)
        mu2, logvar2 = self.conditional(z1)
        z2 = mu2 + torch.exp(0.5 * logvar2) * eps2.to(mu2)
        return torch.cat([z1, z2], -1), log_q1 + gaussian_log_prob_per_dim(z2, mu2, logvar2).sum(-1)

    def at_samples(self) -> TwoLayerPosterior:
        return TwoLayerPosterior(self.bottom.at_samples(), self.conditional, self.layer_sizes[1])

    @property
    def mean(self) -> torch.Tensor:
        """[mu1(x), mu2(mu1(x))]: each layer's mean given the mean below it."""
        return torch.cat([self.bottom.mu, self.conditional(self.bottom.mu)[0]], -1)

    def log_prob_by_layer(self, z: torch.Tensor) -> list[torch.Tensor]:
        z1, z2 = z.split(self.layer_sizes, -1)
        return [self.bottom.log_prob_by_layer(z1)[0], gaussian_log_prob_per_dim(z2, *self.conditional(z1))]


def precision_weighted(
    mu_hat: torch.Tensor, logvar_hat: torch.Tensor, mu_p: torch.Tensor, logvar_p: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ladder's merge of a bottom-up estimate with the generative p(z_i|z_{i+1}), Bayes' rule for
    two Gaussians (Sonderby et al. 2016, Eq. 18-19):
        sigma_q^-2 = sigma^^-2 + sigma_p^-2,   mu_q = (mu^ sigma^^-2 + mu_p sigma_p^-2) sigma_q^2
    Returns (mu_q, logvar_q), broadcasting the inputs."""
    precision_hat, precision_p = torch.exp(-logvar_hat), torch.exp(-logvar_p)
    var_q = 1 / (precision_hat + precision_p)
    return (mu_hat * precision_hat + mu_p * precision_p) * var_q, torch.log(var_q)


class LadderPosterior(Posterior):
    """The ladder's top-down inference (Sonderby et al. 2016, Eq. 17-19):

    q(z_L|x) = N(mu^_L, sigma^_L^2);  q(z_i | z_{i+1}, x) = N(mu_q, sigma_q^2), the precision-weighted
    merge of the bottom-up estimate (mu^_i, sigma^_i) with the generative p(z_i|z_{i+1}) (`conditionals[i]`
    maps z_{i+1} to it, counting from 0 at the bottom), so log q = sum_i log q(z_i | z_{i+1}, x).
    Shapes: mu_hat, logvar_hat (*batch, sum J_i), bottom layer first.
    """

    label = "ladder"

    def __init__(
        self, mu_hat: torch.Tensor, logvar_hat: torch.Tensor, conditionals: nn.ModuleList, sizes: tuple[int, ...]
    ) -> None:
        self.mu_hat, self.logvar_hat = mu_hat, logvar_hat
        self.estimates = list(zip(mu_hat.split(sizes, -1), logvar_hat.split(sizes, -1)))
        self.conditionals = conditionals
        self.layer_sizes = tuple(sizes)

    def at_samples(self) -> LadderPosterior:
        unsqueezed = (self.mu_hat.unsqueeze(-2), self.logvar_hat.unsqueeze(-2))
        return LadderPosterior(*unsqueezed, self.conditionals, self.layer_sizes)

    def _layer(self, i: int, above: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar) of q(z_i | z_{i+1}, x); the top layer's is the bottom-up estimate itself."""
        mu_hat, logvar_hat = self.estimates[i]
        return (
            (mu_hat, logvar_hat)
            if above is None
            else precision_weighted(mu_hat, logvar_hat, *self.conditionals[i](above))
        )

    def rsample(
        self, num_samples: int = 1, generator: torch.Generator | None = None, eps: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mu_top = self.estimates[-1][0]
        if eps is None:
            eps = _noise((*mu_top.shape[:-1], num_samples, self.latent_dim), mu_top, generator)
        noise, q = eps.to(mu_top).split(self.layer_sizes, -1), self.at_samples()
        layers: list[torch.Tensor] = []
        log_q = mu_top.new_zeros(())
        for i in reversed(range(len(self.layer_sizes))):
            mu, logvar = q._layer(i, layers[0] if layers else None)
            z_i = mu + torch.exp(0.5 * logvar) * noise[i]
            log_q = log_q + gaussian_log_prob_per_dim(z_i, mu, logvar).sum(-1)
            layers.insert(0, z_i)
        return torch.cat(layers, -1), log_q

    @property
    def mean(self) -> torch.Tensor:
        """Top-down means: mu^_L, then each layer's merged mean given the mean above it."""
        layers: list[torch.Tensor] = []
        for i in reversed(range(len(self.layer_sizes))):
            layers.insert(0, self._layer(i, layers[0] if layers else None)[0])
        return torch.cat(layers, -1)

    def log_prob_by_layer(self, z: torch.Tensor) -> list[torch.Tensor]:
        layers = z.split(self.layer_sizes, -1)
        out = []
        for i, z_i in enumerate(layers):
            above = layers[i + 1] if i + 1 < len(layers) else None
            out.append(gaussian_log_prob_per_dim(z_i, *self._layer(i, above)))
        return out


# ---------------------------------------------------------------------------------------------
# Inference modules: the encoder's output -> the Posterior. Each is a submodule of the VAE.


class PointPosterior(Posterior):
    """An autoencoder's code as a posterior: q(z|x) = delta(z - f(x)), all its mass at the encoder's code
    f(x) (batch, J). It has no density, so no ELBO or log p(x) is built on it: `rsample` repeats the code
    with log q = +inf (a point mass has no finite density; anything that sums it shows the misuse), and
    its `closed_form_kl` is 0, as the autoencoder's objective has no KL term."""

    label = "point (autoencoder)"
    has_density = False

    def __init__(self, code: torch.Tensor) -> None:
        self.code = code
        self.layer_sizes = (code.shape[-1],)

    def rsample(
        self, num_samples: int = 1, generator: torch.Generator | None = None, eps: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.sample(num_samples)
        return z, torch.full(z.shape[:-1], torch.inf, dtype=z.dtype, device=z.device)

    def sample(
        self, num_samples: int = 1, generator: torch.Generator | None = None, eps: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The code, L times: (*batch, L, J)."""
        return self.code.unsqueeze(-2).expand(*self.code.shape[:-1], num_samples, self.code.shape[-1])

    def at_samples(self) -> PointPosterior:
        return PointPosterior(self.code.unsqueeze(-2))

    @property
    def mean(self) -> torch.Tensor:
        return self.code

    def kl_is_closed_form(self, prior: nn.Module) -> bool:
        return True

    def closed_form_kl(self, prior: nn.Module) -> torch.Tensor | None:
        return torch.zeros_like(self.code)

    def detach(self) -> PointPosterior:
        return PointPosterior(self.code.detach())


class QuantisedPosterior(PointPosterior):
    """A VQ-VAE's q(z|x) (van den Oord et al. 2017, Section 3.1): all its mass on the code map z_q = e_codes of the
    nearest codes, a one-hot distribution over the K^N code maps. As a probability (not a density) it is 1 there,
    so log q = 0 and KL(q || p) = -log p(codes), exact: N ln K under the uniform prior of training, the PixelCNN's
    -sum_i log p(c_i | c_<i) once it is fitted (`closed_form_kl`). The code z (batch, J) is the straight-through
    z_q flattened, J = D h w; `quantised` keeps z_e, the codes and z_q for the objective."""

    label = "nearest codes (VQ-VAE)"

    def __init__(self, quantised: Quantised) -> None:
        super().__init__(quantised.straight_through.flatten(1))
        self.quantised = quantised

    def closed_form_kl(self, prior: nn.Module) -> torch.Tensor | None:
        """-log p(c_i | c_<i) of each position, shared evenly by its D coordinates: (batch, J), summing to the KL."""
        per_position = -prior.code_log_prob(self.quantised.codes)  # (batch, h, w)
        dim = self.quantised.z_q.shape[1]
        return (per_position / dim).unsqueeze(1).expand_as(self.quantised.z_q).flatten(1).to(self.code.dtype)


class QuantisedInference(nn.Module):
    """encoder output (z_e flattened, ignored) -> QuantisedPosterior: the encoder's first head viewed as the code
    map (batch, D, h, w) of `code_shape` and quantised. Holds the quantiser, and says why no importance-sampled
    log p(x) exists for it (`why_no_marginal`)."""

    why_no_marginal = (
        "q(z|x) is a point mass on the nearest codes, so importance sampling with it as the proposal returns the "
        "bound itself; log p(x) would need the sum over all K^N code maps"
    )

    def __init__(self, quantiser: VectorQuantiser, code_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.quantiser, self.code_shape = quantiser, tuple(code_shape)

    def forward(self, encoded: tuple[torch.Tensor, torch.Tensor]) -> Posterior:
        return QuantisedPosterior(self.quantiser(encoded[0].view(-1, *self.code_shape)))


class PointInference(nn.Module):
    """encoder output (mu, logvar) -> PointPosterior(mu): an autoencoder reads the encoder's first head as
    its code and ignores the second."""

    def forward(self, encoded: tuple[torch.Tensor, torch.Tensor]) -> Posterior:
        return PointPosterior(encoded[0])


class GaussianInference(nn.Module):
    """The encoder's (mu, logvar) is the posterior itself."""

    def forward(self, encoded: tuple[torch.Tensor, torch.Tensor]) -> Posterior:
        return GaussianPosterior(*encoded)


class FlowInference(nn.Module):
    """The encoder's Gaussian carried through `flows` (models/flows.py), each z -> (f(z), log |det J|)."""

    def __init__(self, flows: nn.ModuleList) -> None:
        super().__init__()
        self.flows = flows

    def forward(self, encoded: tuple[torch.Tensor, torch.Tensor]) -> Posterior:
        return FlowPosterior(GaussianPosterior(*encoded), self.flows)


class TwoLayerInference(nn.Module):
    """q(z2|z1) on top of the encoder's q(z1|x): `conditional` maps z1 to (mu2, logvar2)."""

    def __init__(self, conditional: GaussianMLP, top_dim: int) -> None:
        super().__init__()
        self.conditional = conditional
        self.top_dim = top_dim

    def forward(self, encoded: tuple[torch.Tensor, torch.Tensor]) -> Posterior:
        return TwoLayerPosterior(GaussianPosterior(*encoded), self.conditional, self.top_dim)


class LadderInference(nn.Module):
    """The ladder's top-down pass over the encoder's bottom-up estimates; `conditionals` are the
    prior's p(z_i|z_{i+1}), the same modules (inference shares the generative path)."""

    def __init__(self, conditionals: nn.ModuleList, sizes: tuple[int, ...]) -> None:
        super().__init__()
        self.conditionals = conditionals
        self.sizes = tuple(sizes)

    def forward(self, encoded: tuple[torch.Tensor, torch.Tensor]) -> Posterior:
        return LadderPosterior(*encoded, self.conditionals, self.sizes)


NEEDS_LABELS = (
    "a conditional VAE's q(z|x, y) needs the labels y of the images: pass labels (the split's labels), as "
    "model.posterior(x, labels)"
)


def _at_label(onehot: torch.Tensor, per_label: torch.Tensor) -> torch.Tensor:
    """The row of per_label (*batch, C, J) that a one-hot label (*batch', C) picks, broadcasting: (*, J)."""
    return (onehot.unsqueeze(-1) * per_label).sum(-2)


class LabelledPosterior(Posterior):
    """q(y, z | x) = q(y|x) q(z|x, y) of a model of labels (Kingma et al. 2014, Eq. 7), over v = [onehot(y), z]
    (*batch, C + J): the label's one-hot code first, then z. log_q_y (*batch, C) is log q(y|x), the classifier's
    log-softmax, or where y is observed 0 at it and -inf elsewhere (`given`); None for a conditional VAE before its
    labels are given, which has no q(y|x). mu, logvar (*batch, C, J) are q(z|x, y)'s at every label.

    rsample draws y ~ q(y|x) by inverting its CDF at Phi(eps_0) (the other C - 1 noise coordinates of the label
    are unused), then z = mu_y + sigma_y eps_z, so that log p(x) by importance sampling sums y out with q(y|x) as
    its proposal. The KL has a closed form against the LabelledPrior p(y) N(0, I):
        KL(q(y|x) q(z|x,y) || p(y) p(z)) = sum_y q(y|x) [log q(y|x) - log p(y) + KL(q(z|x, y) || N(0, I))],
    split as its label part (C terms) and its z part (J terms, Appendix B of Kingma & Welling 2013 under q(y|x)).
    With y given it is -log p(y) + KL(q(z|x, y) || N(0, I)), so the ELBO is Kingma et al.'s L(x, y) (Eq. 6)."""

    label = "q(y|x) q(z|x, y)"

    def __init__(self, log_q_y: torch.Tensor | None, mu: torch.Tensor, logvar: torch.Tensor) -> None:
        self.log_q_y, self.mu, self.logvar = log_q_y, mu, logvar
        self.classes = mu.shape[-2]
        self.layer_sizes = (self.classes + mu.shape[-1],)

    @property
    def label_log_probs(self) -> torch.Tensor:
        """log q(y|x) (*batch, C); a conditional VAE without its labels has none and says so."""
        if self.log_q_y is None:
            raise DataError(NEEDS_LABELS + ".")
        return self.log_q_y

    def given(self, labels: torch.Tensor) -> LabelledPosterior:
        """q(z|x, y) at observed labels (*batch,) int64 in 0 .. C-1, as a posterior over v that puts all of y's
        mass on them."""
        labels = torch.as_tensor(labels, device=self.mu.device)
        if labels.is_floating_point() or labels.shape != self.mu.shape[:-2]:
            raise DataError(
                f"labels must be integers of shape {tuple(self.mu.shape[:-2])}, one per image, but they are "
                f"{labels.dtype} of shape {tuple(labels.shape)}."
            )
        if len(labels) and (labels.min() < 0 or labels.max() >= self.classes):
            raise DataError(f"labels must lie in 0 .. {self.classes - 1}, the model's classes.")
        onehot = nn.functional.one_hot(labels, self.classes).bool()
        log_q_y = torch.zeros(onehot.shape, dtype=self.mu.dtype, device=self.mu.device).masked_fill(~onehot, -torch.inf)
        return LabelledPosterior(log_q_y, self.mu, self.logvar)

    def every_label(self) -> LabelledPosterior:
        """Each of the B images at each of the C labels, C * B rows label by label (rows c B .. c B + B - 1 at
        label c): what M2's unlabelled bound sums over (objectives/labelled.py)."""
        batch = self.mu.shape[0]
        labels = torch.arange(self.classes, device=self.mu.device).repeat_interleave(batch)
        repeat = LabelledPosterior(None, self.mu.repeat(self.classes, 1, 1), self.logvar.repeat(self.classes, 1, 1))
        return repeat.given(labels)

    def rsample(
        self, num_samples: int = 1, generator: torch.Generator | None = None, eps: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """v = [onehot(y), mu_y + sigma_y eps_z], y ~ q(y|x), and log q(y, z|x): (*batch, L, C + J), (*batch, L)."""
        if eps is None:
            eps = _noise((*self.mu.shape[:-2], num_samples, self.latent_dim), self.mu, generator)
        eps = eps.to(self.mu)
        probs = self.label_log_probs.exp()  # (*batch, C)
        cdf = probs.cumsum(-1).unsqueeze(-2)  # (*batch, 1, C)
        u = torch.special.ndtr(eps[..., :1]) * cdf[..., -1:]  # (*batch, L, 1), in (0, total]
        y = (cdf < u).sum(-1)  # the first label whose CDF reaches u: never one of probability 0
        onehot = nn.functional.one_hot(y, self.classes).to(self.mu.dtype)  # (*batch, L, C)
        at = self.at_samples()
        z = _at_label(onehot, at.mu) + torch.exp(0.5 * _at_label(onehot, at.logvar)) * eps[..., self.classes :]
        v = torch.cat([onehot, z], -1)
        return v, at.log_prob(v)

    def at_samples(self) -> LabelledPosterior:
        log_q_y = None if self.log_q_y is None else self.log_q_y.unsqueeze(-2)
        return LabelledPosterior(log_q_y, self.mu.unsqueeze(-3), self.logvar.unsqueeze(-3))

    @property
    def mean(self) -> torch.Tensor:
        """[onehot(y*), mu_y*] at the most probable label y* of q(y|x) (the observed one, where given)."""
        onehot = nn.functional.one_hot(self.label_log_probs.argmax(-1), self.classes).to(self.mu.dtype)
        return torch.cat([onehot, _at_label(onehot, self.mu)], -1)

    def log_prob_by_layer(self, v: torch.Tensor) -> list[torch.Tensor]:
        """[log q(y|x) on the label's coordinate (0 on the others), log N(z_j; mu_yj, sigma_yj^2)]: (*, C + J)."""
        onehot, z = v.split([self.classes, v.shape[-1] - self.classes], -1)
        log_y = torch.where(onehot > 0, self.label_log_probs, 0.0)
        log_z = gaussian_log_prob_per_dim(z, _at_label(onehot, self.mu), _at_label(onehot, self.logvar))
        return [torch.cat([log_y, log_z], -1)]

    def kl_is_closed_form(self, prior: nn.Module) -> bool:
        return hasattr(prior, "label_log_probs") and self.log_q_y is not None

    def closed_form_kl(self, prior: nn.Module) -> torch.Tensor | None:
        """The KL split by coordinate of v (batch, C + J): q(y|x) (log q(y|x) - log p(y)) for each label (0 where
        q(y|x) = 0), then sum_y q(y|x) KL_j(q(z|x, y) || N(0, I)) for each z_j."""
        if not self.kl_is_closed_form(prior):
            return None
        log_q = self.label_log_probs
        q = log_q.exp()
        kl_y = torch.where(q > 0, q * (log_q - prior.label_log_probs()), 0.0)
        kl_z = _at_label(q, DiagonalGaussian(self.mu, self.logvar).kl_per_dimension())
        return torch.cat([kl_y, kl_z], -1)

    def detach(self) -> LabelledPosterior:
        log_q_y = None if self.log_q_y is None else self.log_q_y.detach()
        return LabelledPosterior(log_q_y, self.mu.detach(), self.logvar.detach())


class LabelledInference(nn.Module):
    """encoder output (logits of q(y|x) or None, mu, logvar at every label) -> LabelledPosterior. `needs_labels`:
    a conditional VAE, which has no classifier, takes its posterior only at given labels; `classifies`: M2's
    q(y|x) predicts them."""

    def __init__(self, needs_labels: bool) -> None:
        super().__init__()
        self.needs_labels, self.classifies = needs_labels, not needs_labels

    def forward(self, encoded: tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]) -> Posterior:
        logits, mu, logvar = encoded
        if logits is None or self.needs_labels:  # a conditional VAE has no q(y|x)
            return LabelledPosterior(None, mu, logvar)
        return LabelledPosterior(torch.log_softmax(logits, -1), mu, logvar)
