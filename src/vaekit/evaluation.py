"""Evaluation of a trained model: the ELBO over a split and the importance-sampled log p(x)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from vaekit.models.vae import VAE
from vaekit.objectives import elbo, log_importance_weights


@dataclass(frozen=True)
class ElboSummary:
    """Means over a split, in nats per datapoint: elbo = reconstruction - kl."""

    elbo: float
    reconstruction: float
    kl: float
    count: int

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        return {f"{prefix}elbo": self.elbo, f"{prefix}reconstruction": self.reconstruction, f"{prefix}kl": self.kl}


@torch.no_grad()
def evaluate_elbo(
    model: VAE,
    x: torch.Tensor,
    batch_size: int = 1000,
    num_samples: int = 1,
    generator: torch.Generator | None = None,
) -> ElboSummary:
    """The ELBO estimator averaged over the images x (N, C, H, W), accumulated in float64."""
    was_training = model.training
    model.eval()
    totals = torch.zeros(3, dtype=torch.float64)
    for start in range(0, len(x), batch_size):
        terms = elbo(model, x[start : start + batch_size], num_samples, generator)
        totals += torch.stack([terms.elbo.sum(), terms.reconstruction.sum(), terms.kl.sum()]).double().cpu()
    model.train(was_training)
    mean = (totals / max(len(x), 1)).tolist()
    return ElboSummary(elbo=mean[0], reconstruction=mean[1], kl=mean[2], count=len(x))


@dataclass(frozen=True)
class LogLikelihood:
    """Importance-sampled log p(x): the mean over datapoints and its standard error."""

    mean: float
    stderr: float
    per_datapoint: torch.Tensor  # (N,) float64
    num_importance_samples: int


@torch.no_grad()
def importance_sampled_log_likelihood(
    model: VAE,
    x: torch.Tensor,
    num_importance_samples: int = 5000,
    batch_size: int = 100,
    sample_chunk: int = 500,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> LogLikelihood:
    """Estimate log p(x) by importance sampling with q(z|x) as the proposal.

    log p(x) ~= log (1/K) sum_k p(x | z_k) p(z_k) / q(z_k | x),  z_k ~ q(z | x)
    (Kingma & Welling 2013, Appendix D uses another estimator; this is the one of Burda et al.
    2016, Section 5, the standard for reported figures with K = 5000.)
    Memory is bounded by chunking the K samples: each chunk's log-sum-exp is folded into a
    running float64 log-sum-exp per datapoint, because summing 5,000 weights spanning hundreds
    of nats in float32 loses the small ones. Shapes: x (N, C, H, W) -> per_datapoint (N,).
    The estimate is a stochastic lower bound on log p(x) that rises towards it as K grows.
    """
    was_training = model.training
    model.eval()
    results = []
    bar = tqdm(total=len(x), desc=f"log p(x), K={num_importance_samples}", unit="img", disable=not progress)
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size]
        params = model.encode(xb)  # one encoder pass reused by every chunk of samples
        acc = torch.full((len(xb),), -math.inf, dtype=torch.float64, device=xb.device)
        for done in range(0, num_importance_samples, sample_chunk):
            k = min(sample_chunk, num_importance_samples - done)
            log_w = log_importance_weights(model, xb, k, generator, posterior_params=params)
            acc = torch.logaddexp(acc, torch.logsumexp(log_w.double(), dim=1))
        results.append((acc - math.log(num_importance_samples)).cpu())
        bar.update(len(xb))
    bar.close()
    model.train(was_training)
    per_datapoint = torch.cat(results)
    n = len(per_datapoint)
    stderr = per_datapoint.std().item() / math.sqrt(n) if n > 1 else float("nan")
    return LogLikelihood(per_datapoint.mean().item(), stderr, per_datapoint, num_importance_samples)
