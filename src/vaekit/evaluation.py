"""Evaluation of a trained model: the ELBO over a split, the importance-sampled log p(x), latent diagnostics."""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaekit import disentanglement as metrics
from vaekit import rundir
from vaekit.compiling import CompiledOrEager
from vaekit.config import DENSITY_LIKELIHOOD_NAMES, DISCRETE_LIKELIHOOD_NAMES
from vaekit.data import Dataset, dsprites, load_dataset
from vaekit.distributed import Context, all_reduce_sum, gather_rows
from vaekit.errors import DataError
from vaekit.likelihoods import level_of
from vaekit.models.posteriors import GaussianPosterior, Posterior
from vaekit.models.vae import VAE
from vaekit.objectives import elbo, kl_decomposition, log_importance_weights
from vaekit.progress import progress_bar
from vaekit.randomness import derive_seed, seeded_generator


@dataclass(frozen=True)
class ElboSummary:
    """Means over a split, in nats per datapoint: elbo = reconstruction - kl."""

    elbo: float
    reconstruction: float
    kl: float
    count: int
    per_image: torch.Tensor | None = None  # (N,) float64: each image's ELBO estimate, where asked for

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        return {f"{prefix}elbo": self.elbo, f"{prefix}reconstruction": self.reconstruction, f"{prefix}kl": self.kl}


def _my_rows(n: int, ctx: Context | None) -> slice:
    """This rank's contiguous share of n rows (all of them in a world of one)."""
    if ctx is None or not ctx.distributed:
        return slice(0, n)
    bounds = [n * r // ctx.world_size for r in range(ctx.world_size + 1)]
    return slice(bounds[ctx.rank], bounds[ctx.rank + 1])


@torch.no_grad()
def evaluate_elbo(
    model: VAE,
    x: torch.Tensor,
    batch_size: int = 1000,
    num_samples: int = 1,
    generator: torch.Generator | None = None,
    ctx: Context | None = None,
    per_image: bool = False,
) -> ElboSummary:
    """The ELBO estimator averaged over the images x (N, C, H, W), accumulated in float64; with per_image,
    each image's estimate too (what paired_elbo compares).

    The noise of each batch is drawn for the whole batch and each rank of a distributed run
    evaluates its share of the rows, so a sharded evaluation equals a single-process one.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    totals = torch.zeros(3, dtype=torch.float64, device=device)
    images: list[torch.Tensor] = []
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size]
        eps = torch.randn((len(xb), num_samples, model.latent_dim), generator=generator)
        mine = _my_rows(len(xb), ctx)
        bound = torch.zeros(0, dtype=torch.float64, device=device)
        if mine.stop > mine.start:
            terms = elbo(model, xb[mine].to(device), num_samples, eps=eps[mine])
            totals += torch.stack([terms.elbo.sum(), terms.reconstruction.sum(), terms.kl.sum()]).double()
            bound = terms.elbo.double()
        if per_image:  # each batch's rows in rank order are the batch's rows in order
            images.append(gather_rows(bound, ctx) if ctx is not None else bound)
    if ctx is not None:
        all_reduce_sum(totals, ctx)
    model.train(was_training)
    mean = (totals / max(len(x), 1)).tolist()
    each = torch.cat(images).cpu() if per_image and images else None
    return ElboSummary(elbo=mean[0], reconstruction=mean[1], kl=mean[2], count=len(x), per_image=each)


@torch.no_grad()
def evaluate_kl_decomposition(
    model: VAE, x: torch.Tensor, batch_size: int, sampling: str, generator: torch.Generator
) -> dict[str, float]:
    """beta-TCVAE's three terms (objectives.kl_decomposition) averaged over the images x (N, C, H, W), in
    minibatches of batch_size in x's order, the aggregate posterior being that of x's N images: keys
    mutual_information, total_correlation, dimension_kl (nats). For a model with a Gaussian posterior and
    the N(0, I) prior."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    sums = torch.zeros(3, dtype=torch.float64)
    for start in range(0, len(x), batch_size):
        posterior = model.posterior(x[start : start + batch_size].to(device)).as_gaussian()
        assert posterior is not None  # the config allows beta-TCVAE with one Gaussian layer
        z, _ = posterior.rsample(1, generator)
        parts = kl_decomposition(posterior, z[:, 0], model.prior, len(x), sampling)
        terms = (parts.mutual_information, parts.total_correlation, parts.dimension_kl)
        sums += torch.stack([t.sum() for t in terms]).double().cpu()
    model.train(was_training)
    means = (sums / max(len(x), 1)).tolist()
    return dict(zip(("mutual_information", "total_correlation", "dimension_kl"), means))


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
    rows_per_call: int | None = None,
    seed: int = 0,
    progress: bool = False,
    ctx: Context | None = None,
    precision: str = "float32",
    compile: str = "auto",
    log: Callable[[str], None] = lambda line: None,
) -> LogLikelihood:
    """Estimate log p(x) by importance sampling with q(z|x) as the proposal.

    log p(x) ~= log (1/K) sum_k p(x | z_k) p(z_k) / q(z_k | x),  z_k ~ q(z | x)
    (Kingma & Welling 2013, Appendix D uses another estimator; this is the one of Burda et al.
    2016, Section 5, the standard for reported figures with K = 5000.)
    Image i draws its noise from its own generator, seeded by (seed, i), so the estimate of an
    image does not depend on batching or on which rank of a distributed run computes it. Memory is
    bounded by decoding at most `rows_per_call` (image, sample) pairs at a time: by default 1,000 on
    the CPU (the decoder's output stays in cache; fastest on 2 cores, benchmarks/), 100,000 on a GPU.
    The K samples are taken in chunks, and each chunk's log-sum-exp is folded into a
    running float64 log-sum-exp per datapoint, because summing 5,000 weights spanning hundreds
    of nats in float32 loses the small ones. Shapes: x (N, C, H, W) -> per_datapoint (N,).
    The estimate is a stochastic lower bound on log p(x) that rises towards it as K grows.
    precision "bf16" computes the weights under bf16 autocast (the log-sum-exp stays float64): on
    CPUs and GPUs with bf16 matrix units it is 2-4x faster, at an error of the mean of about 0.001
    nats per image and up to 0.1 nats on single images (benchmarks/run.py measures both).
    compile: through torch.compile ("on"; "auto": `_weights_function`) or not ("off"); `log` hears of a fallback.
    """
    device = next(model.parameters()).device
    weights = _weights_function(compile, device, len(x) * num_importance_samples, log)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    if rows_per_call is None:
        rows_per_call = 1000 if device.type == "cpu" else 100_000
    sample_chunk = max(1, min(num_importance_samples, rows_per_call))
    batch_size = max(1, rows_per_call // sample_chunk)
    was_training = model.training
    model.eval()
    mine = _my_rows(len(x), ctx)
    indices = range(mine.start, mine.stop)
    # One buffer for every image's estimate, written in place: a small tensor kept per image would
    # sit between the large temporaries that the allocator frees and reuses, so that the heap could
    # not be reused or trimmed and grew by about a decoder output per image (8.6 GB over 10,000).
    local = torch.empty(len(indices), dtype=torch.float64)
    bar = progress_bar(len(indices), progress, desc=f"log p(x), K={num_importance_samples}", unit="img")
    for start in range(0, len(indices), batch_size):
        rows = indices[start : start + batch_size]
        xb = x[rows.start : rows.stop].to(device)
        generators = [seeded_generator(seed, "importance", i) for i in rows]
        log_sum = _log_sum_of_weights(weights, model, xb, generators, num_importance_samples, sample_chunk, autocast)
        local[start : start + len(xb)] = log_sum - math.log(num_importance_samples)
        bar.update(len(xb))
    bar.close()
    model.train(was_training)
    per_datapoint = gather_rows(local, ctx) if ctx is not None else local
    n = len(per_datapoint)
    stderr = per_datapoint.std().item() / math.sqrt(n) if n > 1 else float("nan")
    return LogLikelihood(per_datapoint.mean().item(), stderr, per_datapoint, num_importance_samples)


# Decodes (images x K) from which compile="auto" compiles the evaluator's weights on a CPU (K = 5000 on
# 4,000 images): about 100 s of eager work for the paper's MLP on 2 cores, where compiling costs 8-16 s
# once (no cache) and then saves 10% (the paper's MLP) to 35% (the VampPrior) of the time
# (benchmarks/run.py measures it). Below it, and on a GPU until measured there, "auto" stays eager.
COMPILE_FROM_DECODES = 20_000_000


def _weights_function(
    compile: str, device: torch.device, decodes: int, log: Callable[[str], None] = lambda line: None
) -> Callable[..., torch.Tensor]:
    """log_importance_weights, under torch.compile (one static-shape graph per model) when compile is
    "on", or "auto" on a CPU for at least COMPILE_FROM_DECODES decodes; eager otherwise."""
    if compile == "off" or (compile == "auto" and (device.type != "cpu" or decodes < COMPILE_FROM_DECODES)):
        return log_importance_weights
    torch._dynamo.reset()  # each evaluation compiles afresh: a series of models never hits dynamo's recompile limit
    return CompiledOrEager(log_importance_weights, log, "evaluation", dynamic=False)


def _log_sum_of_weights(
    weights: Callable[..., torch.Tensor],
    model: VAE,
    x: torch.Tensor,
    generators: list[torch.Generator],
    k: int,
    chunk: int,
    autocast: torch.autocast,
) -> torch.Tensor:
    """log sum_k w_k (batch,) in float64 for images x (batch, C, H, W), image i drawing its k samples
    from generators[i], `chunk` at a time, each chunk's log-sum-exp folded into a running one;
    `weights` is log_importance_weights, compiled or not."""
    encoded = model.encoder(x)  # one encoder pass reused by every chunk of samples
    acc = torch.full((len(x),), -math.inf, dtype=torch.float64, device=x.device)
    for done in range(0, k, chunk):
        n = min(chunk, k - done)
        eps = torch.stack([torch.randn((n, model.latent_dim), generator=g) for g in generators])
        with autocast:
            log_w = weights(model, x, n, encoded=encoded, eps=eps)
        acc = torch.logaddexp(acc, torch.logsumexp(log_w.double(), dim=1))
    return acc


# Samples per image of the Monte-Carlo KL per layer, where there is no closed form.
KL_SAMPLES = 4
VARIANCE_SAMPLES = 8  # draws per image behind E_x Var_q(z_j|x) of the active-unit rule (latent_diagnostics)


@dataclass(frozen=True)
class LayerKL:
    """KL(q || p) of one stochastic layer z_i, averaged over images, in nats: against its own prior
    p(z_i | z_{i+1}) (p(z_L) for the top), E_q[log q(z_i | ...) - log p(z_i | z_{i+1})], so that the
    layers' KLs add up to the model's KL. kl_per_dim (J_i,) splits it by coordinate where both densities
    factorise over the layer's coordinates (given the layer above), else None (a mixture prior, a flow).
    estimate: "closed form" (Appendix B) or "Monte Carlo" (KL_SAMPLES draws per image), with the
    standard error of the mean over images (0 for the closed form)."""

    name: str
    size: int
    kl: float
    kl_stderr: float
    kl_per_dim: torch.Tensor | None
    estimate: str


@dataclass(frozen=True)
class LatentDiagnostics:
    """How the latent space is used, over a set of images.

    layers: each stochastic layer's KL (LayerKL), bottom first.
    activity: Var_x(mean of q(z_j|x)), (latent_dim,), how much the unit's code moves with the image.
    posterior_variance: E_x Var_q(z_j|x), (latent_dim,), the unit's own noise (None: taken as 1, the
    variance of a N(0, I) prior).
    A unit is active when its activity exceeds `threshold` (0.01) times its posterior variance, and
    collapsed otherwise. A collapsed unit of a N(0, I) prior has a posterior variance near 1, so this is
    Burda et al.'s rule (2016, Section 5.2: activity above 0.01); measured against the unit's own noise
    it also counts a unit whose code moves little but whose posterior is narrower still (a Gaussian channel
    carries I = 1/2 log(1 + activity / variance) nats, about 0.005 at the threshold). Not the unit's KL:
    a posterior that is narrow everywhere has a large KL and tells nothing about x if its mean never moves.
    posterior_means: the posterior's mean for every image, (N, latent_dim).
    """

    layers: list[LayerKL]
    activity: torch.Tensor
    posterior_means: torch.Tensor
    threshold: float = 0.01
    posterior_variance: torch.Tensor | None = None

    @property
    def kl_per_dim(self) -> torch.Tensor | None:
        """Every layer's KL per dimension, concatenated (latent_dim,); None where a layer has none."""
        parts = [layer.kl_per_dim for layer in self.layers]
        return None if any(p is None for p in parts) else torch.cat(parts)  # type: ignore[arg-type]

    @property
    def active(self) -> torch.Tensor:
        noise = 1.0 if self.posterior_variance is None else self.posterior_variance
        return self.activity > self.threshold * noise

    @property
    def active_units(self) -> int:
        return int(self.active.sum())

    @property
    def collapsed_units(self) -> int:
        return int((~self.active).sum())

    def active_by_layer(self) -> list[int]:
        return [int(part.sum()) for part in self.active.split([layer.size for layer in self.layers])]


def _kl_contributions(model: VAE, posterior: Posterior, generator: torch.Generator) -> tuple[list[torch.Tensor], bool]:
    """Per image and layer, the KL's estimate: (batch, J_i) per coordinate where it splits so, else
    (batch,); and whether it is the closed form, which it is where the posterior has one against the
    prior. Otherwise the mean over KL_SAMPLES draws of log q - log p, layer by layer."""
    closed = posterior.closed_form_kl(model.prior)
    if closed is not None:
        return [closed], True
    z, log_q = posterior.rsample(KL_SAMPLES, generator)  # (batch, S, J), (batch, S)
    log_p = model.prior.log_prob_by_layer(z)
    # a flow has one layer, scored by rsample's log q
    log_q_layers = posterior.at_samples().log_prob_by_layer(z) if posterior.has_density else [log_q]
    out = []
    for q_i, p_i in zip(log_q_layers, log_p):
        if q_i.dim() != z.dim() or p_i.dim() != z.dim():
            q_i, p_i = (t.sum(-1) if t.dim() == z.dim() else t for t in (q_i, p_i))
        out.append((q_i - p_i).mean(1))
    return out, False


@torch.no_grad()
def latent_diagnostics(
    model: VAE, x: torch.Tensor, batch_size: int = 1000, threshold: float = 0.01, seed: int = 0
) -> LatentDiagnostics:
    """Active units, and the KL of each stochastic layer (per dimension where it splits so), over the
    images x (N, C, H, W). The posterior's mean is exact without a flow, a stand-in with one."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator(device).manual_seed(derive_seed(seed, "eval", 1))
    means, kls, noise, closed = [], [], [], True
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size].to(device)
        posterior = model.posterior(xb)
        means.append(posterior.mean.double().cpu())  # latents are small: gathered on the CPU
        contributions, closed = _kl_contributions(model, posterior, generator)
        kls.append([t.double().cpu() for t in contributions])
        z, _ = posterior.rsample(VARIANCE_SAMPLES, generator)  # (batch, S, J): after the KL's draws, which stay
        noise.append(z.double().var(1).sum(0).cpu())
    model.train(was_training)
    mu = torch.cat(means)
    posterior_variance = torch.stack(noise).sum(0) / len(x)
    activity = mu.var(0, unbiased=True) if len(mu) > 1 else torch.zeros(mu.shape[1], dtype=torch.float64)
    layers = []
    for i, size in enumerate(model.latent_sizes):
        per_image = torch.cat([batch[i] for batch in kls])  # (N, J_i) or (N,)
        total = per_image.sum(-1) if per_image.dim() == 2 else per_image
        stderr = 0.0 if closed or len(total) < 2 else total.std().item() / math.sqrt(len(total))
        per_dim = per_image.mean(0) if per_image.dim() == 2 else None
        estimate = "closed form" if closed else "Monte Carlo"
        layers.append(LayerKL(f"z{i + 1}", size, total.mean().item(), stderr, per_dim, estimate))
    return LatentDiagnostics(layers, activity, mu.float(), threshold, posterior_variance)


def latent_figures(latents: LatentDiagnostics) -> dict[str, Any]:
    """active_units, collapsed_units, kl_per_dim (null where a layer's KL does not split by coordinate)
    and layers (each stochastic layer's figures, bottom first), JSON-ready."""
    per_dim = latents.kl_per_dim
    layers = [
        {
            "name": layer.name,
            "latent_dim": layer.size,
            "kl": layer.kl,
            "kl_stderr": layer.kl_stderr,
            "kl_estimate": layer.estimate,
            "kl_per_dim": None if layer.kl_per_dim is None else [round(v, 6) for v in layer.kl_per_dim.tolist()],
            "active_units": active,
        }
        for layer, active in zip(latents.layers, latents.active_by_layer())
    ]
    return {
        "active_units": latents.active_units,
        "collapsed_units": latents.collapsed_units,
        "kl_per_dim": None if per_dim is None else [round(v, 6) for v in per_dim.tolist()],
        "layers": layers,
    }


def bits_per_dim(nats_per_datapoint: float, dims: int, levels: int = 0) -> float:
    """A log-likelihood (or bound) in nats per datapoint as bits per dimension, -value / (D ln 2).

    With `levels` L > 0 the value is a density's log p(x~) at dequantized x~ = (k + u)/L on [0, 1]^D, and
    the bits/dim of the levels it induces are (-log p(x~) + D log L) / (D ln 2) (Theis et al. 2016,
    Section 3.1: the change of variables from the bins of width 1/L to levels); this bounds the discrete
    model's own bits/dim from above (Jensen's inequality), so it is labelled "dequantized".
    """
    return (-nats_per_datapoint + (dims * math.log(levels) if levels else 0.0)) / (dims * math.log(2.0))


# How a run's log-likelihoods are stated (`measure`): nats for binary pixels (the MNIST literature's unit);
# bits/dim for grey levels under a likelihood over levels; bits/dim of a density after dequantization.
MEASURES = ("nats", "bits/dim", "dequantized bits/dim")


def paired_bits(paired: dict[str, Any], dims: int) -> tuple[float, float]:
    """A paired log p(x) difference (paired_log_likelihood) in bits/dim, with its standard error: -d / (D ln 2),
    s.e. / (D ln 2). Both runs must state bits/dim alike (the same measure and levels), so that a dequantized
    density's offset D log L cancels."""
    scale = dims * math.log(2.0)
    return -paired["paired_difference"] / scale, paired["paired_stderr"] / scale


def measure(config: Any) -> tuple[str, int]:
    """(one of MEASURES, grey levels 2^data.bits) for a RunConfig: binarized data are in nats."""
    levels, likelihood = 2**config.data.bits, config.model.likelihood
    if config.data.binarization != "none":
        return "nats", levels
    if likelihood in DISCRETE_LIKELIHOOD_NAMES:
        return "bits/dim", levels
    return ("dequantized bits/dim" if likelihood in DENSITY_LIKELIHOOD_NAMES else "nats"), levels


def dequantize(x: torch.Tensor, levels: int, generator: torch.Generator) -> torch.Tensor:
    """Uniform dequantization x~ = (k + u)/L, u ~ U(0, 1) per pixel, of images x at levels k (level_of)."""
    u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=generator.device).to(x.device)
    return (level_of(x, levels).to(x.dtype) + u) / levels


def _bits_figures(out: dict[str, Any], dims: int, unit: str, levels: int) -> dict[str, Any]:
    """The bits/dim forms of the figures in `out`: ELBO, log p(x) with its standard error, each image's."""
    offset = levels if unit == "dequantized bits/dim" else 0
    figures: dict[str, Any] = {"measure": unit, "levels": levels}
    figures["elbo_bits_per_dim"] = bits_per_dim(out["elbo"], dims, offset)
    if "log_likelihood" in out:
        figures["log_likelihood_bits_per_dim"] = bits_per_dim(out["log_likelihood"], dims, offset)
        figures["log_likelihood_bits_per_dim_stderr"] = out["log_likelihood_stderr"] / (dims * math.log(2.0))
    return figures


def evaluate_split(
    model: VAE,
    x: torch.Tensor,
    num_importance_samples: int = 5000,
    iwae_num_importance_samples: int = 0,
    batch_size: int = 1000,
    seed: int = 0,
    measure: tuple[str, int] = ("nats", 256),
    progress: bool = False,
    ctx: Context | None = None,
    precision: str = "float32",
    compile: str = "auto",
    log: Callable[[str], None] = lambda line: None,
) -> dict[str, Any]:
    """Every figure of a model on observations x (N, C, H, W), as a JSON-ready dict.

    Keys: elbo, reconstruction, kl (nats per datapoint), elbo_per_image; with num_importance_samples > 0 also
    log_likelihood, log_likelihood_stderr, gap = log_likelihood - elbo and log_likelihood_per_image
    (what paired_log_likelihood compares); with iwae_num_importance_samples = k > 0 the IWAE bound for
    that k (iwae_bound); active_units, collapsed_units, kl_per_dim (null where a layer's KL does not
    split by coordinate), layers (each stochastic layer's KL and active units). `measure` (see `measure`):
    for grey levels also the bits/dim forms of the ELBO and log p(x) with its standard error (`_bits_figures`);
    for a density every figure is taken at the dequantized images (one seeded u per pixel).
    """
    start = time.perf_counter()
    unit, levels = measure
    if unit == "dequantized bits/dim":
        x = dequantize(x, levels, seeded_generator(seed, "dequantize"))
    bound = evaluate_elbo(model, x, batch_size, 1, seeded_generator(seed, "eval"), ctx, per_image=True)
    out: dict[str, Any] = {"images": len(x), **bound.as_dict()}
    out["elbo_per_image"] = [round(v, 6) for v in bound.per_image.tolist()] if bound.per_image is not None else []
    if num_importance_samples > 0:
        options = dict(seed=seed, progress=progress, ctx=ctx, precision=precision, compile=compile, log=log)
        ll = importance_sampled_log_likelihood(model, x, num_importance_samples, **options)  # type: ignore[arg-type]
        out.update(
            precision=precision,
            log_likelihood=ll.mean,
            log_likelihood_stderr=ll.stderr,
            num_importance_samples=num_importance_samples,
            gap=ll.mean - bound.elbo,
            log_likelihood_per_image=[round(v, 6) for v in ll.per_datapoint.tolist()],
        )
    if iwae_num_importance_samples > 0:
        # One draw of log (1/k) sum_k w_k per image is an unbiased estimate of the IWAE bound L_k.
        iwae = importance_sampled_log_likelihood(
            model, x, iwae_num_importance_samples, seed=seed + 1, ctx=ctx, compile=compile, log=log
        )
        out.update(iwae_num_importance_samples=iwae_num_importance_samples, iwae_bound=iwae.mean)
    out.update(latent_figures(latent_diagnostics(model, x, batch_size, seed=seed)))
    if unit != "nats":
        out.update(_bits_figures(out, math.prod(x.shape[1:]), unit, levels))
    out["seconds"] = time.perf_counter() - start
    return out


def evaluate_run(
    run_dir: str | Path,
    split: str = "test",
    num_importance_samples: int = 5000,
    iwae_num_importance_samples: int = 0,
    limit: int = 0,
    batch_size: int = 1000,
    progress: bool = False,
    precision: str = "float32",
    compile: str = "auto",
    log: Callable[[str], None] = lambda line: None,
    disentanglement: bool = False,
    grid_classes: int = 10,
    weights: str = "last",
    score_points: int | None = None,
) -> tuple[dict[str, Any], Path]:
    """Evaluate a run folder's model on a split (its first `limit` images, 0: all) with
    `evaluate_split`, and save the result in the run folder; returns it and the file's path.
    precision "bf16": log p(x) under bf16 autocast; compile: whether log p(x) runs through torch.compile
    (see importance_sampled_log_likelihood for both); disentanglement: also every metric of
    vaekit.disentanglement, for data with known factors (`disentanglement_figures`, with `grid_classes` and
    `score_points`);
    weights: "last" (model.safetensors) or "best" (model-best.safetensors, the best validation ELBO's epoch)."""
    start = time.perf_counter()
    model, config = rundir.load_run(run_dir, weights=weights)
    summary = rundir.read_summary(run_dir) or {}
    data = load_dataset(config.data, config.model.image_shape, log)
    factors = _known_factors(data, split, config.data.dataset) if disentanglement else None
    x = data.evaluation_observations(split)
    x = x[:limit] if limit else x
    result = {
        "split": split,
        "limit": limit,
        "epochs": summary.get("best_epoch" if weights == "best" else "epochs"),  # which trained state was measured
        "weights": weights,
        **evaluate_split(
            model,
            x,
            num_importance_samples,
            iwae_num_importance_samples,
            batch_size,
            config.train.seed,
            measure=measure(config),
            progress=progress,
            precision=precision,
            compile=compile,
            log=log,
        ),
    }
    if factors is not None:
        seed = config.train.seed
        result["disentanglement"] = disentanglement_figures(
            model, data, x, factors[: len(x)], seed, grid_classes, score_points, progress
        )
    result["seconds"] = time.perf_counter() - start  # the whole evaluation, loading and every metric included
    return result, rundir.write_evaluation(run_dir, result)


def _known_factors(data: Dataset, split: str, dataset: str) -> torch.Tensor:
    """The factor classes of a split's images, (N, F); one sentence for data without known factors."""
    factors = data.split(split).factors
    if factors is None:
        raise DataError(
            f"dataset '{dataset}' has no known factors: --disentanglement needs dsprites, or an array file with a "
            "'factors' array."
        )
    return factors


# Images per encoder call of the disentanglement metrics: a 64 x 64 conv encoder runs 1.5 to 2 times faster on a
# CPU in batches of 64 to 128 than of 1000 (the activations stay in cache).
ENCODE_BATCH = 128


def disentanglement_figures(
    model: VAE,
    data: Dataset,
    x: torch.Tensor,
    factors: torch.Tensor,
    seed: int = 0,
    grid_classes: int = 10,
    score_points: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """The disentanglement metrics of a model's codes, the posterior means, on observations x (N, C, H, W)
    with their factor classes (N, F), with their standard errors and chance levels
    (vaekit.disentanglement.scores); where the data can show any factor combination (dSprites, or an array
    file holding every combination) the intervention scores (on `score_points` training points, None:
    vaekit.disentanglement.SCORE_POINTS) and Chen et al.'s MIG too (`posterior_mig`). For a hierarchy the
    codes are the top layer's. `setting` says what the figures depend on (pairs, score points, grid
    classes): the evaluation's file is named after it."""
    top = model.latent_sizes[-1]

    @torch.no_grad()
    def encode(images: np.ndarray | torch.Tensor) -> np.ndarray:
        images = torch.as_tensor(images, dtype=torch.float32)
        device = next(model.parameters()).device
        batches = range(0, len(images), ENCODE_BATCH)
        means = [model.posterior(images[i : i + ENCODE_BATCH].to(device)).mean[:, -top:] for i in batches]
        return torch.cat(means).double().cpu().numpy()

    start, was_training = time.perf_counter(), model.training
    model.eval()
    grid = metrics.FactorGrid(data.factor_sizes, data.observe) if data.observe is not None else None
    with progress_bar(8 if grid is not None else 5, progress, desc="disentanglement", unit="stage") as bar:
        started: list[str] = []  # each stage ticks the bar as the next one starts, the last one at the end
        step = lambda stage: (bar.update(len(started[:1])), bar.set_postfix_str(stage), started.append(stage))  # noqa: E731
        out = metrics.scores(encode(x), factors.numpy(), grid, encode if grid else None, seed, score_points, step)
        if grid is not None:
            step("Chen et al.'s MIG")
            out = _with_posterior_mig(out, posterior_mig(model, grid, data.factor_names, grid_classes, seed))
        bar.update()
    model.train(was_training)
    setting = {"pairs": out["pairs"], "score_points": out.get("score_points", {}).get("train"),
               "grid_classes": out.get("mig_posterior_setting", {}).get("grid_classes")}  # fmt: skip
    return {"factor_names": list(data.factor_names), **out, "setting": setting, "seconds": time.perf_counter() - start}


def _with_posterior_mig(out: dict[str, Any], figures: dict[str, Any]) -> dict[str, Any]:
    """The pair and intervention scores with Chen et al.'s MIG and its standard error added."""
    stderr = figures.pop("mig_posterior_stderr", None)
    return {**out, **figures, "stderr": {**out["stderr"], **({"mig_posterior": stderr} if figures else {})}}


@torch.no_grad()
def posterior_mig(
    model: VAE, grid: metrics.FactorGrid, names: tuple[str, ...], grid_classes: int, seed: int
) -> dict[str, Any]:
    """Chen et al.'s MIG (vaekit.disentanglement.mig_posterior) from q(z|x) of every factor combination,
    each factor thinned to `grid_classes` evenly spaced classes (0: the whole grid, 737,280 dSprites
    images, 41 times the work of 10 classes' 18,000: for a GPU), without dSprites' shape as Chen et al.
    score it; {} where q(z|x) is not one factorized Gaussian (a flow, or a hierarchy, whose q(z_L|x) has
    no closed form)."""
    combinations = grid.combinations(grid_classes or None)
    device = next(model.parameters()).device

    def posterior(i: int) -> GaussianPosterior | None:
        images = grid.observations(combinations[i : i + ENCODE_BATCH])
        return model.posterior(torch.as_tensor(images, dtype=torch.float32).to(device)).as_gaussian()

    first = posterior(0)
    if first is None:
        return {}
    posteriors = [first] + [posterior(i) for i in range(ENCODE_BATCH, len(combinations), ENCODE_BATCH)]
    left_out = ("shape",) if tuple(names) == dsprites.FACTOR_NAMES else ()  # Chen et al. score dSprites without it
    kept = [k for k, name in enumerate(names) if name not in left_out]
    mean, std = torch.cat([q.mu for q in posteriors]), torch.cat([(0.5 * q.logvar).exp() for q in posteriors])
    figure, stderr, _ = metrics.mig_posterior_estimate(
        mean, std, combinations[:, kept], metrics.POSTERIOR_SAMPLES, seed
    )
    setting = {"images": len(combinations), "grid_classes": grid_classes, "samples": metrics.POSTERIOR_SAMPLES}
    return {"mig_posterior": figure, "mig_posterior_stderr": stderr,
            "mig_posterior_setting": {**setting, "factors": [names[k] for k in kept]}}  # fmt: skip


def over_seeds(rows: list[dict[str, Any]], names: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Each figure's median, minimum and maximum over the rows (runs of one config, in seed order), with the
    values; a figure no row has is left out."""
    out = {}
    for name in names:
        values = [r[name] for r in rows if r.get(name) is not None]
        if values:
            out[name] = {"median": statistics.median(values), "min": min(values), "max": max(values), "values": values}
    return out


def paired_log_likelihood(
    first: str | Path, other: str | Path, weights: tuple[str, str] = ("last", "last")
) -> dict[str, Any]:
    """Run `other`'s log p(x) minus run `first`'s, image by image on the test images both evaluated (the
    first n of the split) with the same K and precision, with the standard error of the differences,
    from the pair of saved evaluations with the most images in common (then the largest K); {} where
    none compares: other data, no common K, or no per-image figures (evaluations saved before them).
    Most of log p(x)'s spread is between images, so this standard error is several times smaller than
    the two runs' own: it is the one that says whether one model is ahead of another. weights: which
    weights' evaluations of each run ("last" or "best")."""
    setting = lambda r: (r.get("num_importance_samples"), r.get("precision", "float32"))  # noqa: E731
    found = _paired(first, other, "log_likelihood_per_image", setting, weights)
    if not found:
        return {}
    d, (k, _) = found
    return {"paired_difference": statistics.fmean(d), "paired_stderr": statistics.stdev(d) / math.sqrt(len(d)),
            "paired_images": len(d), "paired_importance_samples": k}  # fmt: skip


def paired_elbo(first: str | Path, other: str | Path, weights: tuple[str, str] = ("last", "last")) -> dict[str, Any]:
    """The same for the test ELBO (each image's one-sample estimate with the evaluation's noise): `other`'s
    minus `first`'s on the images both evaluated, with the standard error of the differences; {} where none."""
    found = _paired(first, other, "elbo_per_image", lambda r: 0, weights)
    if not found:
        return {}
    d, _ = found
    n = len(d)
    return {"paired_elbo_difference": statistics.fmean(d), "paired_elbo_stderr": statistics.stdev(d) / math.sqrt(n),
            "paired_elbo_images": n}  # fmt: skip


def _paired(
    first: str | Path,
    other: str | Path,
    key: str,
    setting: Callable[[dict[str, Any]], Any],
    weights: tuple[str, str] = ("last", "last"),
) -> tuple[list[float], Any] | None:
    """The per-image differences (other - first) of `key` from the two runs' test evaluations of these
    weights that agree in `setting` and share the most images (then the largest setting), with that setting;
    None where none do."""
    data_a, data_b = (
        dataclasses.replace(rundir.read_config(p).data, train_limit=0, eval_limit=0) for p in (first, other)
    )
    if data_a != data_b:
        return None
    pairs = [
        (min(len(a[key]), len(b[key])), setting(a), a, b)
        for a in rundir.evaluations(first, "test")
        if a.get("weights", "last") == weights[0]
        for b in rundir.evaluations(other, "test")
        if b.get("weights", "last") == weights[1] and setting(a) == setting(b) and key in a and key in b
    ]
    n, chosen, a, b = max(pairs, key=lambda p: p[:2], default=(0, 0, {}, {}))
    if n < 2:
        return None
    return [y - x for x, y in zip(a[key][:n], b[key][:n])], chosen
