"""Priors p(z): the standard normal, a learned mixture of Gaussians, and the VampPrior; NoPrior, an
autoencoder's code space, which has none.

Each prior is a module shaped like a torch.distributions object:
  log_prob(z)            log p(z) summed over latent dimensions, z (*batch, J) -> (*batch,)
  sample(n, generator)   n draws (n, J), on the generator's device (the CPU without one)
  log_prob_by_layer(z)   per stochastic layer: (*batch, J_i) per coordinate where the layer's density
                         factorises (given the layer above), else the layer's total (*batch,)
  typical_point()        a point of high density (J,), where the playground's sliders start
  fill_below(z, i)       z with the layers below layer i set to their conditional means given the layer
                         above (a hierarchy's; the identity for one layer), for traversals and sliders
  learned_inputs()       the VampPrior's pseudo-inputs (K, C, H, W), None for the others
and declares what the rest of the code needs to know: `closed_form_kl` (whether the KL of a Gaussian
posterior to it has Kingma & Welling's Appendix-B form), `label` (for pictures), `layer_sizes`,
`has_density` (whether log_prob and sample exist, which the ELBO and log p(x) need; where not,
`why_no_density` says why in one sentence) and
`pictures_without` (picture name -> why it does not apply to a model with this prior).
The VampPrior holds the encoder as an ordinary submodule, the same module as the VAE's; the
checkpoint stores a shared tensor once.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vaekit.errors import ModelError
from vaekit.likelihoods import LOG_2PI, standard_normal_log_prob


def mixture_log_prob(
    z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, log_weights: torch.Tensor
) -> torch.Tensor:
    """log sum_k w_k N(z; mu_k, diag exp(logvar_k)), by log-sum-exp over the components.

    Each component's log density is expanded into matrix products,
        log N(z; mu_k, sigma_k^2) = -1/2 [ sum_j (log 2pi + log sigma_kj^2 + mu_kj^2 / sigma_kj^2)
                                           + (z^2) . (1 / sigma_k^2) - 2 z . (mu_k / sigma_k^2) ],
    so that no (*batch, K, J) tensor is made: with K = 500 components that tensor made evaluation
    memory-bound. The products are taken in float64, because the expanded terms are large and
    cancel when z is near mu_k and sigma_k is small. Shapes: z (*batch, J); mu, logvar (K, J);
    log_weights (K,) normalised. Returns (*batch,) in z's dtype.
    """
    z64, mu64, logvar64 = z.double(), mu.double(), logvar.double()
    precision = torch.exp(-logvar64)  # (K, J)
    constant = (LOG_2PI + logvar64 + mu64**2 * precision).sum(-1)  # (K,)
    quadratic = (z64**2) @ precision.T - 2 * z64 @ (mu64 * precision).T  # (*batch, K)
    per_component = -0.5 * (constant + quadratic)
    return torch.logsumexp(per_component + log_weights.double(), dim=-1).to(z.dtype)


def mixture_sample(
    n: int, mu: torch.Tensor, logvar: torch.Tensor, log_weights: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    """n draws (n, J): a component k ~ Categorical(w), then z ~ N(mu_k, diag exp(logvar_k))."""
    device = mu.device if generator is None else generator.device
    k = torch.multinomial(log_weights.exp().to(device), n, replacement=True, generator=generator).to(mu.device)
    eps = torch.randn((n, mu.shape[-1]), generator=generator, device=device).to(mu.device)
    return mu[k] + torch.exp(0.5 * logvar[k]) * eps


class _CentredCodes(nn.Module):
    """What a one-layer code space centred at the origin offers without a density: its size, the origin as
    the typical point, no layers below, no learned inputs."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.layer_sizes = (latent_dim,)

    def typical_point(self) -> torch.Tensor:
        return torch.zeros(self.latent_dim)

    def fill_below(self, z: torch.Tensor, layer: int) -> torch.Tensor:
        return z

    def learned_inputs(self) -> torch.Tensor | None:
        return None


class StandardNormalPrior(_CentredCodes):
    """p(z) = N(0, I) (Kingma & Welling 2013, Section 3). No parameters; its KL against a diagonal
    Gaussian posterior has the closed form of Appendix B."""

    closed_form_kl = True
    label = "N(0, I)"
    has_density = True
    pictures_without: dict[str, str] = {}

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return standard_normal_log_prob(z)

    def log_prob_by_layer(self, z: torch.Tensor) -> list[torch.Tensor]:
        return [-0.5 * (LOG_2PI + z**2)]

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        device = generator.device if generator is not None else torch.device("cpu")
        return torch.randn(n, self.latent_dim, generator=generator, device=device)


class _Mixture(nn.Module):
    """What a mixture of diagonal Gaussians offers, given `components()` -> (mu, logvar, log_weights)."""

    closed_form_kl = False
    has_density = True
    pictures_without: dict[str, str] = {}

    def components(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return mixture_log_prob(z, *self.components())

    def log_prob_by_layer(self, z: torch.Tensor) -> list[torch.Tensor]:
        return [self.log_prob(z)]  # a mixture does not factorise over coordinates

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return mixture_sample(n, *self.components(), generator)

    @torch.no_grad()
    def typical_point(self) -> torch.Tensor:
        """The mean of the heaviest component (the first, where all weigh the same)."""
        mu, _, log_weights = self.components()
        return mu[int(torch.argmax(log_weights))].detach().cpu()

    def fill_below(self, z: torch.Tensor, layer: int) -> torch.Tensor:
        return z

    def learned_inputs(self) -> torch.Tensor | None:
        return None


class MixturePrior(_Mixture):
    """A learned mixture of K diagonal Gaussians, p(z) = sum_k w_k N(z; mu_k, diag sigma_k^2),
    w = softmax(logits) (the "mixture of Gaussians" prior of Tomczak & Welling 2018, Section 2).
    Means start as draws from N(0, I), variances at 1, weights uniform."""

    label = "mixture of Gaussians"

    def __init__(self, latent_dim: int, components: int) -> None:
        super().__init__()
        self.mu = nn.Parameter(torch.randn(components, latent_dim))
        self.logvar = nn.Parameter(torch.zeros(components, latent_dim))
        self.logits = nn.Parameter(torch.zeros(components))
        self.layer_sizes = (latent_dim,)

    def components(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.mu, self.logvar, torch.log_softmax(self.logits, 0)


class VampPrior(_Mixture):
    """The variational mixture of posteriors (Tomczak & Welling 2018, Eq. 9):

    p(z) = 1/K sum_k q(z | u_k),  u_k learned pseudo-inputs.
    The pseudo-inputs are images kept in [0, 1] as u = sigmoid(raw); they start near the mean
    pixel intensity with a little noise. `encoder` (x -> mu, logvar of the layer this prior is on)
    is the VAE's own encoder, or a view of its top block on a ladder. Shapes: raw (K, C, H, W).
    """

    label = "VampPrior"

    def __init__(self, image_shape: tuple[int, int, int], components: int, encoder: nn.Module, latent_dim: int) -> None:
        super().__init__()
        self.raw = nn.Parameter(
            torch.logit(torch.full((components, *image_shape), 0.1)) + 0.1 * torch.randn(components, *image_shape)
        )
        self.encoder = encoder
        self.layer_sizes = (latent_dim,)

    def pseudo_inputs(self) -> torch.Tensor:
        return torch.sigmoid(self.raw)

    def learned_inputs(self) -> torch.Tensor | None:
        return self.pseudo_inputs()

    def components(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(self.pseudo_inputs())  # (K, J) each
        return mu, logvar, torch.full((len(mu),), -math.log(len(mu)), device=mu.device)


class NoPrior(_CentredCodes):
    """An autoencoder's code space: J coordinates and no p(z). It has no log_prob and no samples, so no bound,
    and the pictures drawn from the prior do not apply; traversals and the playground start at the origin."""

    closed_form_kl = False
    label = "no prior (autoencoder)"
    has_density = False
    why_no_density = (
        "an autoencoder has no prior p(z), so it has no ELBO and no log p(x); its figure is the reconstruction "
        "log-likelihood log p(x|z) at its code z = f(x)"
    )

    def __init__(self, latent_dim: int) -> None:
        super().__init__(latent_dim)
        why = "an autoencoder has no prior p(z) to draw codes from"
        # the manifold is drawn for two latents only: only then is its absence worth a word
        self.pictures_without = {"samples": why, **({"manifold": why} if latent_dim == 2 else {})}

    def _none(self) -> ModelError:
        return ModelError("an autoencoder has no prior p(z): it has no log p(z), no samples and no bound on log p(x).")

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        raise self._none()

    def log_prob_by_layer(self, z: torch.Tensor) -> list[torch.Tensor]:
        raise self._none()

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        raise self._none()


class CodePrior(nn.Module):
    """p(z) of a VQ-VAE (van den Oord et al. 2017, Section 3.1): a distribution over code maps c in {0..K-1}^N, N = h
    w positions, with z = e_c. Uniform, p(c) = K^-N, while the VQ-VAE trains (its KL is then the constant N ln K);
    or, once `vaekit train-prior` has fitted one (`attach`), autoregressive over raster order, p(c) = prod_i p(c_i |
    c_<i), a gated PixelCNN (models.pixelcnn). It holds the quantiser, the same module as the inference's (the
    checkpoint stores the codebook once). z is (*batch, J) with J = D h w, as the decoder takes it."""

    closed_form_kl = True  # the posterior's KL is -log p(codes), exact (QuantisedPosterior)
    has_density = True  # a probability of each code map: the ELBO, not importance sampling (the inference's word)

    def __init__(self, quantiser: nn.Module, code_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.quantiser, self.code_shape = quantiser, tuple(code_shape)
        self.latent_dim = math.prod(self.code_shape)
        self.layer_sizes = (self.latent_dim,)
        self.pixelcnn: nn.Module | None = None
        self.pictures_without = {"traversals": "a VQ-VAE's codes are discrete: there is no direction to sweep"}

    @property
    def label(self) -> str:
        k = self.quantiser.codebook_size
        return f"PixelCNN over {k} codes" if self.pixelcnn is not None else f"uniform over {k} codes"

    def attach(self, pixelcnn: nn.Module) -> None:
        """Make the fitted PixelCNN (codes (batch, h, w) -> logits (batch, K, h, w)) the prior."""
        self.pixelcnn = pixelcnn

    def code_log_prob(self, codes: torch.Tensor) -> torch.Tensor:
        """log p(c_i | c_<i) of each position of code maps (batch, h, w) -> (batch, h, w): -ln K everywhere under
        the uniform prior, the PixelCNN's log-softmax at the codes under the learned one."""
        if self.pixelcnn is None:
            return torch.full(codes.shape, -math.log(self.quantiser.codebook_size), device=codes.device)
        logits = self.pixelcnn(codes)  # (batch, K, h, w)
        return torch.log_softmax(logits.float(), 1).gather(1, codes.unsqueeze(1)).squeeze(1)

    def codes_of(self, z: torch.Tensor) -> torch.Tensor:
        """The code map (*batch, h, w) whose vectors are nearest to z (*batch, J)."""
        d, h, w = self.code_shape
        vectors = z.reshape(-1, d, h * w).transpose(1, 2).reshape(-1, d)
        return self.quantiser.nearest(vectors).view(*z.shape[:-1], h, w)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(c) of the code map at the codebook vectors nearest to z (*batch, J) -> (*batch,)."""
        codes = self.codes_of(z)
        return self.code_log_prob(codes.reshape(-1, *codes.shape[-2:])).sum((1, 2)).view(z.shape[:-1])

    def log_prob_by_layer(self, z: torch.Tensor) -> list[torch.Tensor]:
        return [self.log_prob(z)]

    def sample_codes(self, n: int, generator: torch.Generator | None = None, uniform: bool = False) -> torch.Tensor:
        """n code maps (n, h, w) from the prior (from the uniform one, with uniform), on the codebook's device."""
        _, h, w = self.code_shape
        device = self.quantiser.codebook.device
        if self.pixelcnn is None or uniform:
            return torch.randint(self.quantiser.codebook_size, (n, h, w), generator=generator).to(device)
        return self.pixelcnn.sample(n, (h, w), generator).to(device)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.quantiser.embed(self.sample_codes(n, generator)).flatten(1)

    @torch.no_grad()
    def typical_point(self) -> torch.Tensor:
        """The most used code at every position (J,)."""
        code = torch.full((1, *self.code_shape[1:]), int(self.quantiser.usage.argmax()), dtype=torch.long)
        return self.quantiser.embed(code.to(self.quantiser.codebook.device)).flatten().detach().cpu()

    def fill_below(self, z: torch.Tensor, layer: int) -> torch.Tensor:
        return z

    def learned_inputs(self) -> torch.Tensor | None:
        return None


class LabelledPrior(nn.Module):
    """p(y) p(z) of a model of labels over v = [onehot(y), z] (*batch, C + J): z ~ N(0, I) and y uniform over the
    C classes (Kingma et al. 2014, Eq. 5: p(y) = Cat(y | pi), pi uniform), or for a conditional VAE, whose label is
    an input rather than a variable it models (`given`), log p(y) = 0, so that its bound is on log p(x|y) (Sohn et
    al. 2015); its samples draw y uniformly. `join` and `split` convert between v and (labels, z)."""

    closed_form_kl = True  # LabelledPosterior.closed_form_kl
    has_density = True
    pictures_without = {
        "traversals": "the first coordinates of a labelled model's latent are the label's one-hot code; the classes "
        "picture shows each label instead",
        "interpolations": "a path between two posterior means would cross the label's one-hot code; the analogies "
        "picture keeps an image's z and changes its label",
        "manifold": "a labelled model's latent holds the label beside z",
        "latents": "a labelled model's latent holds the label beside z; the classes picture shows each label",
    }

    def __init__(self, classes: int, latent_dim: int, given: bool = False) -> None:
        super().__init__()
        self.classes, self.latent_dim, self.given = classes, latent_dim, given
        self.layer_sizes = (classes + latent_dim,)
        self.label_dims = classes  # the latent's first coordinates, which are no latent units (diagnostics)
        self.label = "N(0, I), y drawn uniformly" if given else "uniform p(y) N(0, I)"

    def label_log_probs(self) -> torch.Tensor:
        """log p(y) for each class (C,): -log C, or 0 for a conditional VAE's given label."""
        return torch.full((self.classes,), 0.0 if self.given else -math.log(self.classes))

    def join(self, labels: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """v = [onehot(labels), z]: labels (n,) int64, z (n, J) -> (n, C + J)."""
        return torch.cat([nn.functional.one_hot(labels.to(z.device), self.classes).to(z.dtype), z], -1)

    def split(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(labels (*batch,), z (*batch, J)) of v (*batch, C + J)."""
        return v[..., : self.classes].argmax(-1), v[..., self.classes :]

    def log_prob_by_layer(self, v: torch.Tensor) -> list[torch.Tensor]:
        onehot, z = v.split([self.classes, self.latent_dim], -1)
        log_y = onehot * self.label_log_probs().to(v)  # log p(y) on the label's coordinate
        return [torch.cat([log_y, -0.5 * (LOG_2PI + z**2)], -1)]

    def log_prob(self, v: torch.Tensor) -> torch.Tensor:
        return self.log_prob_by_layer(v)[0].sum(-1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        device = generator.device if generator is not None else torch.device("cpu")
        labels = torch.randint(self.classes, (n,), generator=generator, device=device)
        return self.join(labels, torch.randn(n, self.latent_dim, generator=generator, device=device))

    def typical_point(self) -> torch.Tensor:
        return self.join(torch.zeros(1, dtype=torch.int64), torch.zeros(1, self.latent_dim))[0]

    def fill_below(self, z: torch.Tensor, layer: int) -> torch.Tensor:
        return z

    def learned_inputs(self) -> torch.Tensor | None:
        return None
