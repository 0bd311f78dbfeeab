"""The VQ-VAE's vector quantiser (van den Oord et al. 2017, Sections 3.1-3.2 and Appendix A.1): a codebook of K
vectors e_1..e_K of D values, the nearest code of each encoder output, the straight-through gradient, the two
loss terms, the moving-average codebook update, and the k-means start and dead-code restarts against codebook
collapse. Code maps are (batch, D, h, w) tensors of encoder outputs z_e; codes are (batch, h, w) int64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

# Laplace smoothing of the moving-average counts (Appendix A.1's update, as in the authors' Sonnet code): a code
# assigned nothing keeps a count of about this, so its e_i = m_i / N_i stays finite.
EMA_EPSILON = 1e-5
KMEANS_ITERATIONS = 10  # Lloyd steps of the k-means start, on the first training batch


@dataclass(frozen=True)
class Quantised:
    """One code map through the quantiser: z_e (batch, D, h, w) the encoder's outputs; codes (batch, h, w) the index
    of each position's nearest code; z_q = e_codes (batch, D, h, w), which carries the codebook's gradient;
    straight_through, z_q in value with the identity gradient to z_e (Eq. 3's sg[.] line)."""

    z_e: torch.Tensor
    codes: torch.Tensor
    z_q: torch.Tensor

    @property
    def straight_through(self) -> torch.Tensor:
        """z_q bit for bit in the forward pass (z_e - sg[z_e] is exactly 0), and dL/dz_e = dL/dz_q backwards."""
        return self.z_q.detach() + (self.z_e - self.z_e.detach())

    def codebook_loss(self) -> torch.Tensor:
        """||sg[z_e] - e||^2 summed over positions and the D values, per image (batch,): reaches the codebook only."""
        return (self.z_e.detach() - self.z_q).pow(2).sum((1, 2, 3))

    def commitment_loss(self) -> torch.Tensor:
        """||z_e - sg[e]||^2 summed over positions and the D values, per image (batch,): reaches the encoder only
        (Eq. 3 weighs it by beta, train.commitment_weight)."""
        return (self.z_e - self.z_q.detach()).pow(2).sum((1, 2, 3))


@torch.no_grad()
def encode_codes(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """The nearest codes of a VQ-VAE's encoder outputs for images x (N, C, H, W) -> code maps (N, h, w) int64 on the
    CPU, in batches, the model in eval mode for the pass (nothing of the quantiser moves) and restored after."""
    was_training, device = model.training, next(model.parameters()).device
    model.eval()
    codes = [
        model.posterior(x[i : i + batch_size].to(device)).quantised.codes.cpu() for i in range(0, len(x), batch_size)
    ]
    model.train(was_training)
    return torch.cat(codes) if codes else torch.zeros(0, dtype=torch.long)


def perplexity(counts: torch.Tensor) -> float:
    """exp(H(p)) of the share p_k = n_k / sum n of each code's assignments (counts (K,)), 0 log 0 = 0: K when
    every code is used equally, 1 when one code takes everything (the codebook-collapse figure)."""
    p = counts.double() / counts.sum().clamp_min(1)
    return math.exp(-(p * p.clamp_min(1e-300).log()).sum().item())


class VectorQuantiser(nn.Module):
    """The nearest-neighbour lookup of Eq. 1-2, z_q(x) = e_k with k = argmin_j ||z_e(x) - e_j||^2 at each position.

    update "gradient": the codebook is a parameter, trained by the codebook loss. update "ema": the codebook is a
    buffer set by `update` from moving averages of the assigned outputs (Appendix A.1), outside the optimiser.
    Buffers (all in the state dict, so a checkpoint resumes them): ema_count (K,) and ema_sum (K, D); usage (K,),
    the moving average of each code's assignments per step, which `restart` reads; started, whether the first
    training batch has been seen (the k-means start, the usage's first value)."""

    def __init__(
        self,
        codebook_size: int,
        code_dim: int,
        update: str = "gradient",
        decay: float = 0.99,
        init: str = "random",
        restart: float = 0.0,
    ) -> None:
        super().__init__()
        self.codebook_size, self.code_dim = codebook_size, code_dim
        self.update_rule, self.decay, self.init, self.restart = update, decay, init, restart
        codebook = torch.empty(codebook_size, code_dim).uniform_(-1 / codebook_size, 1 / codebook_size)
        if update == "ema":
            self.register_buffer("codebook", codebook)
        else:
            self.codebook = nn.Parameter(codebook)
        self.register_buffer("ema_count", torch.ones(codebook_size))
        self.register_buffer("ema_sum", codebook.clone())
        self.register_buffer("usage", torch.zeros(codebook_size))
        self.register_buffer("started", torch.zeros((), dtype=torch.bool))

    def nearest(self, vectors: torch.Tensor) -> torch.Tensor:
        """argmin_k ||v - e_k||^2 for vectors (n, D) -> codes (n,), by ||v||^2 - 2 v.e_k + ||e_k||^2 (no cdist: its
        square root has no finite gradient at 0 and it is slower); ties go to the lowest index. In float32 at least,
        outside autocast: a bf16 product would pick codes that are not the nearest."""
        dtype = torch.promote_types(vectors.dtype, torch.float32)
        with torch.autocast(vectors.device.type, enabled=False):
            v, e = vectors.detach().to(dtype), self.codebook.detach().to(dtype)
            distances = v.pow(2).sum(1, keepdim=True) - 2 * v @ e.T + e.pow(2).sum(1)
        return distances.argmin(1)

    def forward(self, z_e: torch.Tensor) -> Quantised:
        """z_e (batch, D, h, w) -> Quantised, with z_q = codebook[codes] (batch, D, h, w)."""
        batch, dim, h, w = z_e.shape
        flat = z_e.detach().permute(0, 2, 3, 1).reshape(-1, dim)
        codes = self.nearest(flat).view(batch, h, w)
        return Quantised(z_e, codes, self.embed(codes))

    def embed(self, codes: torch.Tensor) -> torch.Tensor:
        """e_codes: codes (batch, h, w) -> (batch, D, h, w)."""
        return self.codebook[codes].permute(0, 3, 1, 2)

    def counts(self, codes: torch.Tensor) -> torch.Tensor:
        """Assignments of each code in codes (any shape) -> (K,) float."""
        return torch.bincount(codes.flatten(), minlength=self.codebook_size).to(self.usage.dtype)

    @torch.no_grad()
    def update(self, quantised: Quantised, generator: torch.Generator) -> None:
        """What a training step changes besides the optimiser's parameters, from its batch: on the first, the
        k-means start (codebook_init kmeans); the usage average; the ema codebook (`ema_step`); the restart of
        dead codes (`restart_dead`). The generator, a function of (seed, step), picks the vectors."""
        vectors = quantised.z_e.detach().permute(0, 2, 3, 1).reshape(-1, self.code_dim)
        codes = quantised.codes.flatten()
        if not self.started:
            if self.init == "kmeans":
                self.kmeans_start(vectors, generator)
                codes = self.nearest(vectors)
            self.usage.fill_(len(vectors) / self.codebook_size)  # the first average: even use
            self.started.fill_(True)
        counts = self.counts(codes)
        self.usage.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        if self.update_rule == "ema":
            self.ema_step(vectors, codes)
        if self.restart > 0:
            self.restart_dead(vectors, generator)
        self.sync_from_first_process()

    def sync_from_first_process(self) -> None:
        """Under torch.distributed, every process takes the first's codebook and statistics after each update, so
        that the k-means start and the restarts (which DistributedDataParallel does not average) leave one
        codebook: the quantiser's state then follows the first process's batches. Nothing without it."""
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return
        for tensor in (self.codebook.data, self.ema_count, self.ema_sum, self.usage, self.started):
            torch.distributed.broadcast(tensor, 0)

    def ema_step(self, vectors: torch.Tensor, codes: torch.Tensor) -> None:
        """Appendix A.1 with gamma = decay: N_i <- gamma N_i + (1 - gamma) n_i, m_i <- gamma m_i + (1 - gamma)
        sum_{j: code j = i} z_e_j, e_i = m_i / N~_i, with the Laplace-smoothed count N~_i = (N_i + eps) n / (n + K
        eps), n = sum_i N_i. vectors (n, D), codes (n,)."""
        one_hot = torch.zeros(len(codes), self.codebook_size, dtype=vectors.dtype, device=vectors.device)
        one_hot[torch.arange(len(codes), device=codes.device), codes] = 1
        self.ema_count.mul_(self.decay).add_(one_hot.sum(0), alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(one_hot.T @ vectors, alpha=1 - self.decay)
        n = self.ema_count.sum()
        smoothed = (self.ema_count + EMA_EPSILON) / (n + self.codebook_size * EMA_EPSILON) * n
        self.codebook.copy_(self.ema_sum / smoothed.unsqueeze(1))

    def kmeans_start(self, vectors: torch.Tensor, generator: torch.Generator) -> None:
        """The codebook from k-means on the batch's encoder outputs vectors (n, D): K of them drawn without
        replacement (with, where n < K) as the first centres, then KMEANS_ITERATIONS Lloyd steps; a centre left
        with no vector keeps its place."""
        n = len(vectors)
        if n >= self.codebook_size:
            picks = torch.randperm(n, generator=generator)[: self.codebook_size]
        else:
            picks = torch.randint(n, (self.codebook_size,), generator=generator)
        centres = vectors[picks.to(vectors.device)].clone()
        for _ in range(KMEANS_ITERATIONS):
            self.codebook.copy_(centres)
            codes = self.nearest(vectors)
            sums = torch.zeros_like(centres).index_add_(0, codes, vectors)
            sizes = torch.bincount(codes, minlength=self.codebook_size).unsqueeze(1)
            centres = torch.where(sizes > 0, sums / sizes.clamp_min(1), centres)
        self.codebook.copy_(centres)
        self.ema_sum.copy_(centres * self.ema_count.unsqueeze(1))

    def restart_dead(self, vectors: torch.Tensor, generator: torch.Generator) -> None:
        """Each code whose usage average is below `restart` moves to a random encoder output of the batch (drawn
        by the generator; Dhariwal et al. 2020, Section 2.2); its usage is reset to the threshold and its moving
        averages to that one vector, so it is not restarted again at once."""
        dead = (self.usage < self.restart).nonzero().flatten()
        if len(dead) == 0:
            return
        picks = torch.randint(len(vectors), (len(dead),), generator=generator).to(vectors.device)
        self.codebook[dead] = vectors[picks]
        self.usage[dead] = self.restart
        self.ema_count[dead] = 1.0
        self.ema_sum[dead] = vectors[picks]
