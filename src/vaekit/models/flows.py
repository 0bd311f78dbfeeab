"""Normalizing flows on the posterior: z_K = f_K(... f_1(z_0)), z_0 ~ q_0(z|x) the diagonal Gaussian.

log q_K(z_K | x) = log q_0(z_0 | x) - sum_k log |det df_k / dz_{k-1}|   (Rezende & Mohamed 2015, Eq. 6)
Each flow maps z (*batch, J) to (f(z), log |det J_f(z)|) with the log-determinant (*batch,);
models/posteriors.py: FlowPosterior chains them. The flows' parameters are global (learned with the
model, the same for every x).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PlanarFlow(nn.Module):
    """f(z) = z + u_hat tanh(w.z + b)   (Rezende & Mohamed 2015, Eq. 10), with

    log |det J| = log |1 + u_hat . psi(z)|,  psi(z) = (1 - tanh^2(w.z + b)) w   (Eq. 11-12)
    u_hat = u + (m(w.u) - w.u) w / |w|^2, m(a) = -1 + softplus(a), which keeps w.u_hat >= -1 so that
    f is invertible (their Appendix A.1).
    """

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.u = nn.Parameter(0.01 * torch.randn(latent_dim))
        self.w = nn.Parameter(0.01 * torch.randn(latent_dim))
        self.b = nn.Parameter(torch.zeros(()))

    def u_hat(self) -> torch.Tensor:
        wu = self.w @ self.u
        return self.u + (F.softplus(wu) - 1 - wu) * self.w / (self.w @ self.w).clamp_min(1e-12)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u = self.u_hat()
        activation = torch.tanh(z @ self.w + self.b)  # (*batch,)
        psi = (1 - activation**2).unsqueeze(-1) * self.w  # (*batch, J)
        log_det = torch.log((1 + psi @ u).abs().clamp_min(1e-12))  # 1 + u_hat.psi > 0 by construction
        return z + activation.unsqueeze(-1) * u, log_det


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed 0/1 mask (MADE, Germain et al. 2015)."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__(mask.shape[1], mask.shape[0])
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


def made_masks(latent_dim: int, hidden_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks of a one-hidden-layer MADE over inputs 1..J in order: output j sees only inputs i < j.

    Hidden unit h gets degree m(h) in 1..J-1 (cycled); input -> hidden allowed when i <= m(h),
    hidden -> output j allowed when m(h) < j. Shapes: (hidden, J) and (J, hidden).
    """
    degrees_in = torch.arange(1, latent_dim + 1)
    degrees_hidden = torch.arange(hidden_dim) % max(latent_dim - 1, 1) + 1
    first = (degrees_in.unsqueeze(0) <= degrees_hidden.unsqueeze(1)).float()
    second = (degrees_hidden.unsqueeze(0) < degrees_in.unsqueeze(1)).float()
    return first, second


class IAFStep(nn.Module):
    """One step of the inverse autoregressive flow (Kingma et al. 2016, Eq. 10):

    [m, s] = MADE(z);  f(z) = m + exp(s) * z;  log |det J| = sum_j s_j
    The Jacobian is triangular because m_j and s_j depend on z_<j only. The MADE's output layers
    start at zero, so a new step is the identity and training moves it away from there; `reverse`
    flips the order of the dimensions first, so that stacked steps condition each coordinate on
    different others. s is kept in (-5, 5) by 5 tanh(s / 5), a guard against one bad step.
    """

    def __init__(self, latent_dim: int, hidden_dim: int, reverse: bool = False) -> None:
        super().__init__()
        first, second = made_masks(latent_dim, hidden_dim)
        self.hidden = MaskedLinear(first)
        self.out_m = MaskedLinear(second)
        self.out_s = MaskedLinear(second)
        for layer in (self.out_m, self.out_s):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.reverse = reverse

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.reverse:
            z = z.flip(-1)
        h = F.elu(self.hidden(z))
        m, s = self.out_m(h), 5 * torch.tanh(self.out_s(h) / 5)
        out = m + torch.exp(s) * z
        return (out.flip(-1) if self.reverse else out), s.sum(-1)


def build_flows(name: str, latent_dim: int, steps: int, hidden_dim: int) -> nn.ModuleList:
    """The posterior's flow by name (config.FLOW_NAMES): none, planar or iaf, with `steps` steps."""
    if name == "planar":
        return nn.ModuleList(PlanarFlow(latent_dim) for _ in range(steps))
    if name == "iaf":
        return nn.ModuleList(IAFStep(latent_dim, hidden_dim, reverse=k % 2 == 1) for k in range(steps))
    return nn.ModuleList()
