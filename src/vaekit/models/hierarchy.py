"""Stochastic layers z_1 (bottom) ... z_L (top), composed from the parts of the one-layer VAE.

Two ways to infer them, one way to generate: p(z_L) prod_i p(z_i | z_{i+1}) p(x | z_1), top-down.
  two-layer (Burda et al. 2016, Section 5): bottom-up inference q(z1|x) q(z2|z1)
  ladder (Sonderby et al. 2016): a bottom-up pass gives estimates (mu^_i, sigma^_i) for every layer;
    inference then runs top-down, merging each estimate with the generative p(z_i|z_{i+1}) by precision
The latent vector is z = [z_1, ..., z_L] (batch, ..., J_1 + ... + J_L), and each part of a hierarchy
is one part of the latent-variable interface, so that the ELBO, the IWAE bound and log p(x) apply
unchanged:
  PaddedEncoder           (two-layer) q_0(z|x) = N([mu1(x), 0], diag [sigma1^2(x), 1]): z1's Gaussian,
                          and the noise eps2 ~ N(0, I) of the upper layer
  ConditionalGaussianStep (two-layer) the "flow" [z1, eps2] -> [z1, mu2(z1) + sigma2(z1) * eps2]
  LadderEncoder           (ladder) q_0(z|x) = N(mu^, diag sigma^2), the bottom-up estimates of all layers
  LadderStep              (ladder) the top-down merge as a change of variables of q_0's sample
  HierarchicalPrior       log p(z) = log p(z_L) + sum_i log N(z_i; mu(z_{i+1}), diag sigma^2(z_{i+1}))
  BottomDecoder           p(x|z) = p(x|z_1)
Each step's log-determinant turns log q_0 into the hierarchy's log q(z|x), as in models/flows.py.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vaekit.likelihoods import DiagonalGaussian
from vaekit.models.encoders import ACTIVATION_FUNCTIONS, ENCODER_LOGVAR_MAX, ENCODER_LOGVAR_MIN
from vaekit.models.priors import Encode


class GaussianMLP(nn.Module):
    """A diagonal Gaussian whose parameters are an MLP of its input: h = act(W h + b) `layers` times,
    then (mu, logvar) = heads(h). Shapes: v (*batch, in_dim) -> mu, logvar (*batch, out_dim)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, layers: int, activation: str) -> None:
        super().__init__()
        dims = [in_dim] + [hidden_dim] * layers
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.heads = nn.Linear(dims[-1], 2 * out_dim)
        self.act = ACTIVATION_FUNCTIONS[activation]

    def forward(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = v
        for layer in self.hidden:
            h = self.act(layer(h))
        mu, logvar = self.heads(h).chunk(2, dim=-1)
        return mu, logvar.clamp(ENCODER_LOGVAR_MIN, ENCODER_LOGVAR_MAX)  # the encoder's guard, for the same reason


class PaddedEncoder(nn.Module):
    """The bottom encoder's (mu1, logvar1), padded with (0, 0) for the upper layer's noise."""

    def __init__(self, bottom: nn.Module, top_dim: int) -> None:
        super().__init__()
        self.bottom = bottom
        self.top_dim = top_dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.bottom(x)
        pad = mu.new_zeros(*mu.shape[:-1], self.top_dim)
        return torch.cat([mu, pad], -1), torch.cat([logvar, pad], -1)


class ConditionalGaussianStep(nn.Module):
    """q(z2|z1) as a change of variables on [z1, eps2]: z2 = mu2(z1) + sigma2(z1) * eps2,
    log |det J| = sum_j log sigma2_j(z1) (the Jacobian is triangular with z1's block the identity)."""

    def __init__(self, bottom_dim: int, conditional: GaussianMLP) -> None:
        super().__init__()
        self.bottom_dim = bottom_dim
        self.conditional = conditional

    def forward(self, z: torch.Tensor, posterior: object = None) -> tuple[torch.Tensor, torch.Tensor]:
        z1, eps2 = z[..., : self.bottom_dim], z[..., self.bottom_dim :]
        mu, logvar = self.conditional(z1)
        return torch.cat([z1, mu + torch.exp(0.5 * logvar) * eps2], -1), 0.5 * logvar.sum(-1)


def split_layers(z: torch.Tensor, dims: list[int]) -> list[torch.Tensor]:
    """[z_1, ..., z_L] from z (*batch, sum(dims)), bottom layer first."""
    return list(torch.split(z, dims, dim=-1))


class HierarchicalPrior(nn.Module):
    """p(z_1, ..., z_L) = p(z_L) prod_{i<L} p(z_i | z_{i+1}): any one-layer prior on top, a Gaussian MLP
    for each conditional (conditionals[i] maps z_{i+2} to the parameters of z_{i+1}, counting from 1)."""

    def __init__(self, dims: list[int], top: nn.Module, conditionals: nn.ModuleList) -> None:
        super().__init__()
        self.dims = list(dims)
        self.top = top
        self.conditionals = conditionals

    def top_encode(self, encode: Encode | None) -> Encode | None:
        """The encoder's Gaussian for the top layer alone: the last block of a ladder's bottom-up
        estimates, q(z_L|u), which is what a VampPrior on the top layer mixes."""
        if encode is None:
            return None
        top = self.dims[-1]
        return lambda u: tuple(t[..., -top:] for t in encode(u))  # type: ignore[return-value]

    def log_prob(self, z: torch.Tensor, encode: Encode | None = None) -> torch.Tensor:
        layers = split_layers(z, self.dims)
        total = self.top.log_prob(layers[-1], self.top_encode(encode))
        for i, conditional in enumerate(self.conditionals):
            total = total + DiagonalGaussian(*conditional(layers[i + 1])).log_prob(layers[i])
        return total

    def below(self, top: torch.Tensor, generator: torch.Generator | None = None, mean: bool = False) -> torch.Tensor:
        """The whole z for a top layer (n, J_L): each lower layer drawn from p(z_i|z_{i+1}), or its mean."""
        layers = [top]
        for conditional in reversed(self.conditionals):
            mu, logvar = conditional(layers[0])
            if not mean:
                device = generator.device if generator is not None else mu.device
                mu = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=generator, device=device).to(
                    mu.device
                )
            layers.insert(0, mu)
        return torch.cat(layers, -1)

    def sample(self, n: int, generator: torch.Generator | None, encode: Encode | None = None) -> torch.Tensor:
        top = self.top.sample(n, generator, self.top_encode(encode)).to(self.conditionals[0].heads.weight.device)
        return self.below(top, generator)


class LadderEncoder(nn.Module):
    """The ladder's bottom-up pass (Sonderby et al. 2016, Eq. 16): d_0 = x, d_i = MLP_i(d_{i-1}), and
    from each d_i the estimates (mu^_i, log sigma^2_i) of layer i. Returns them for all layers,
    concatenated bottom first: (batch, sum J_i) each."""

    def __init__(self, image_shape: tuple[int, int, int], hidden_dims: list[int], latent_dims: list[int],
                 layers: int, activation: str) -> None:  # fmt: skip
        super().__init__()
        ins = [math.prod(image_shape), *hidden_dims[:-1]]
        self.blocks = nn.ModuleList(
            nn.ModuleList(nn.Linear(a if k == 0 else h, h) for k in range(layers)) for a, h in zip(ins, hidden_dims)
        )
        self.heads = nn.ModuleList(nn.Linear(h, 2 * j) for h, j in zip(hidden_dims, latent_dims))
        self.act = ACTIVATION_FUNCTIONS[activation]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d, mus, logvars = x.flatten(1), [], []
        for block, head in zip(self.blocks, self.heads):
            for layer in block:
                d = self.act(layer(d))
            mu, logvar = head(d).chunk(2, dim=-1)
            mus.append(mu)
            logvars.append(logvar.clamp(ENCODER_LOGVAR_MIN, ENCODER_LOGVAR_MAX))
        return torch.cat(mus, -1), torch.cat(logvars, -1)


class LadderStep(nn.Module):
    """The ladder's top-down inference (Sonderby et al. 2016, Eq. 17-19) as one change of variables.

    z_L = mu^_L + sigma^_L eps_L (q_0's own sample); below it, with (mu_p, sigma_p) = p(z_i|z_{i+1}),
        sigma_q^-2 = sigma^_i^-2 + sigma_p^-2,  mu_q = (mu^_i sigma^_i^-2 + mu_p sigma_p^-2) sigma_q^2,
        z_i = mu_q + sigma_q eps_i = mu_q + (sigma_q / sigma^_i) (z0_i - mu^_i),
    with log |det J| = sum_i sum_j log(sigma_q / sigma^_i), so that log q_0(z0) - log |det J| is
    log N(z_L; mu^_L, sigma^_L) + sum_i log N(z_i; mu_q, sigma_q). The generative conditionals are the
    prior's own (inference shares the generative path); they are read from the prior at each call
    rather than held, so that their weights are stored once, under the prior.
    """

    def __init__(self, prior: HierarchicalPrior) -> None:
        super().__init__()
        self.__dict__["prior"] = prior  # not a submodule: see above

    def forward(self, z0: torch.Tensor, posterior: DiagonalGaussian | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        assert posterior is not None, "the ladder's inference needs the bottom-up estimates"
        prior, dims = self.prior, self.prior.dims
        mu_hat, logvar_hat = posterior.mu, posterior.logvar
        if z0.dim() > mu_hat.dim():  # samples: (batch, L, J) against (batch, J)
            mu_hat, logvar_hat = mu_hat.unsqueeze(-2), logvar_hat.unsqueeze(-2)
        noise, mus, logvars = (split_layers(t, dims) for t in (z0, mu_hat, logvar_hat))
        layers, log_det = [noise[-1]], z0.new_zeros(z0.shape[:-1])
        for i in reversed(range(len(dims) - 1)):
            mu_p, logvar_p = prior.conditionals[i](layers[0])
            precision_hat, precision_p = torch.exp(-logvars[i]), torch.exp(-logvar_p)
            var_q = 1 / (precision_hat + precision_p)
            mu_q = (mus[i] * precision_hat + mu_p * precision_p) * var_q
            log_scale = 0.5 * (torch.log(var_q) - logvars[i])  # log(sigma_q / sigma^_i)
            layers.insert(0, mu_q + torch.exp(log_scale) * (noise[i] - mus[i]))
            log_det = log_det + log_scale.sum(-1)
        return torch.cat(layers, -1), log_det


class BottomDecoder(nn.Module):
    """p(x|z) = p(x|z1): the one-layer decoder applied to z's first block."""

    def __init__(self, decoder: nn.Module, bottom_dim: int) -> None:
        super().__init__()
        self.decoder = decoder
        self.bottom_dim = bottom_dim

    def forward(self, z: torch.Tensor) -> object:
        return self.decoder(z[..., : self.bottom_dim])
