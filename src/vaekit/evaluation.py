"""A model's figures on images: the ELBO over a split, the importance-sampled log p(x) (nats, bits/dim) with
its standard error; evaluate_run, a run folder's evaluation."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vaekit import rundir
from vaekit.compiling import CompiledOrEager
from vaekit.config import LIKELIHOOD_KINDS
from vaekit.data import load_dataset
from vaekit.diagnostics import disentanglement_figures, known_factors, latent_diagnostics, latent_figures
from vaekit.distributed import Context, all_reduce_sum, gather_rows
from vaekit.errors import DataError
from vaekit.likelihoods import level_of
from vaekit.models.quantiser import encode_codes, perplexity
from vaekit.models.vae import VAE
from vaekit.objectives import classification_error, elbo, log_importance_weights
from vaekit.progress import progress_bar
from vaekit.randomness import seeded_generator


@dataclass(frozen=True)
class ElboSummary:
    """Means over a split, in nats per datapoint: elbo = reconstruction - kl."""

    elbo: float
    reconstruction: float
    kl: float
    count: int
    per_image: torch.Tensor | None = None  # (N,) float64: each image's ELBO estimate, where asked for
    reconstruction_per_image: torch.Tensor | None = None  # (N,) float64: its reconstruction term, where asked for

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
    labels: torch.Tensor | None = None,
) -> ElboSummary:
    """The ELBO estimator averaged over the images x (N, C, H, W), accumulated in float64; with per_image,
    each image's estimate too (what paired_elbo compares); with labels (N,), a conditional VAE's at them.

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
        bound = torch.zeros(0, 2, dtype=torch.float64, device=device)
        if mine.stop > mine.start:
            given = None if labels is None else labels[start : start + batch_size][mine].to(device)
            terms = elbo(model, xb[mine].to(device), num_samples, eps=eps[mine], labels=given)
            totals += torch.stack([terms.elbo.sum(), terms.reconstruction.sum(), terms.kl.sum()]).double()
            bound = torch.stack([terms.elbo, terms.reconstruction], 1).double()
        if per_image:  # each batch's rows in rank order are the batch's rows in order
            images.append(gather_rows(bound, ctx) if ctx is not None else bound)
    if ctx is not None:
        all_reduce_sum(totals, ctx)
    model.train(was_training)
    mean = (totals / max(len(x), 1)).tolist()
    each = torch.cat(images).cpu() if per_image and images else torch.zeros(0, 2, dtype=torch.float64)
    return ElboSummary(
        elbo=mean[0],
        reconstruction=mean[1],
        kl=mean[2],
        count=len(x),
        per_image=each[:, 0] if per_image else None,
        reconstruction_per_image=each[:, 1] if per_image else None,
    )


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
    labels: torch.Tensor | None = None,
) -> LogLikelihood:
    """Estimate log p(x) by importance sampling with q(z|x) as the proposal (M2's draws y ~ q(y|x) with z, summing y
    out); with labels (N,), a conditional VAE's log p(x|y) with q(z|x, y).

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
    sample_chunk, batch_size = _chunk_sizes(num_importance_samples, rows_per_call, device)
    was_training = model.training
    model.eval()
    mine = _my_rows(len(x), ctx)
    indices = range(mine.start, mine.stop)
    # One buffer written in place: small tensors kept per image fragmented the heap (8.6 GB over 10,000 images).
    local = torch.empty(len(indices), dtype=torch.float64)
    bar = progress_bar(len(indices), progress, desc=f"log p(x), K={num_importance_samples}", unit="img")
    for start in range(0, len(indices), batch_size):
        rows = indices[start : start + batch_size]
        xb = x[rows.start : rows.stop].to(device)
        generators, given = [seeded_generator(seed, "importance", i) for i in rows], _rows_of(labels, rows, device)
        log_sum = _log_sum_of_weights(
            weights, model, xb, generators, num_importance_samples, sample_chunk, autocast, given
        )
        local[start : start + len(xb)] = log_sum - math.log(num_importance_samples)
        bar.update(len(xb))
    bar.close()
    model.train(was_training)
    per_datapoint = gather_rows(local, ctx) if ctx is not None else local
    n = len(per_datapoint)
    stderr = per_datapoint.std().item() / math.sqrt(n) if n > 1 else float("nan")
    return LogLikelihood(per_datapoint.mean().item(), stderr, per_datapoint, num_importance_samples)


def _rows_of(labels: torch.Tensor | None, rows: range, device: torch.device) -> torch.Tensor | None:
    return None if labels is None else labels[rows.start : rows.stop].to(device)


def _chunk_sizes(num_importance_samples: int, rows_per_call: int | None, device: torch.device) -> tuple[int, int]:
    """(samples per chunk, images per batch) so that a call decodes at most rows_per_call (image, sample) pairs:
    by default 1,000 on the CPU, 100,000 on a GPU (see importance_sampled_log_likelihood)."""
    rows = rows_per_call if rows_per_call is not None else (1000 if device.type == "cpu" else 100_000)
    sample_chunk = max(1, min(num_importance_samples, rows))
    return sample_chunk, max(1, rows // sample_chunk)


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
    labels: torch.Tensor | None = None,
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
            log_w = weights(model, x, n, encoded=encoded, eps=eps, labels=labels)
        acc = torch.logaddexp(acc, torch.logsumexp(log_w.double(), dim=1))
    return acc


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


# a likelihood's kind (config.LIKELIHOOD_KINDS) -> the measure its log p(x) is stated in
MEASURE_OF_KIND = {"binary": "nats", "density": "dequantized bits/dim", "levels": "bits/dim"}


def measure(config: Any) -> tuple[str, int]:
    """(one of MEASURES, grey levels 2^data.bits) for a RunConfig: binarized data and features (real vectors, not
    levels) are in nats."""
    levels, kind = 2**config.data.bits, LIKELIHOOD_KINDS[config.model.likelihood]
    if config.data.binarization != "none" or config.data.dataset == "features":
        return "nats", levels
    return MEASURE_OF_KIND[kind], levels


def dequantize(x: torch.Tensor, levels: int, generator: torch.Generator) -> torch.Tensor:
    """Uniform dequantization x~ = (k + u)/L, u ~ U(0, 1) per pixel, of images x at levels k (level_of)."""
    u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=generator.device).to(x.device)
    return (level_of(x, levels).to(x.dtype) + u) / levels


def _bits_figures(out: dict[str, Any], dims: int, unit: str, levels: int) -> dict[str, Any]:
    """The bits/dim forms of the figures in `out`: ELBO, log p(x) with its standard error, each image's."""
    offset = levels if unit == "dequantized bits/dim" else 0
    figures: dict[str, Any] = {"measure": unit, "levels": levels}
    figures["elbo_bits_per_dim"] = bits_per_dim(out["elbo"], dims, offset)
    for key in ("elbo_stderr", "elbo_uniform_prior_stderr"):  # a VQ-VAE's bounds, each with its s.e.
        if key in out:
            name = key.removesuffix("_stderr")
            figures[f"{name}_bits_per_dim"] = bits_per_dim(out[name], dims, offset)
            figures[f"{name}_bits_per_dim_stderr"] = out[key] / (dims * math.log(2.0))
    if "log_likelihood" in out:
        figures["log_likelihood_bits_per_dim"] = bits_per_dim(out["log_likelihood"], dims, offset)
        figures["log_likelihood_bits_per_dim_stderr"] = out["log_likelihood_stderr"] / (dims * math.log(2.0))
    return figures


def _reconstruction_figures(
    model: VAE, x: torch.Tensor, batch_size: int, seed: int, ctx: Context | None
) -> dict[str, Any]:
    """The figures of a model with no bound (an autoencoder): reconstruction = mean log p(x|z) at each image's
    code, in nats per image, with reconstruction_per_image; no_bound, the model's sentence saying why no ELBO
    or log p(x) is given; the active units of its codes."""
    figures = evaluate_elbo(model, x, batch_size, 1, seeded_generator(seed, "eval"), ctx, per_image=True)
    per_image = figures.per_image.tolist() if figures.per_image is not None else []
    out = {"images": len(x), "reconstruction": figures.reconstruction, "no_bound": model.no_bound}
    out["reconstruction_per_image"] = [round(v, 6) for v in per_image]  # = the per-image ELBO: its KL is 0
    latents = latent_figures(latent_diagnostics(model, x, batch_size, seed=seed))
    return {**out, "active_units": latents["active_units"], "collapsed_units": latents["collapsed_units"]}


@torch.no_grad()
def classification_figures(
    model: VAE, x: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000, prefix: str = ""
) -> dict[str, Any]:
    """M2's classifier q(y|x) on images x (N, C, H, W) with labels (N,): `error`, the share whose most probable
    label is not theirs, and `error_stderr`, sqrt(e (1 - e) / N) (each prefixed)."""
    error, stderr = classification_error(model, x, labels, batch_size)
    return {f"{prefix}error": error, f"{prefix}error_stderr": stderr}


def _stderr(values: torch.Tensor | None) -> float:
    """The standard error of the mean of per-image values (N,), s / sqrt(N); 0 for fewer than two."""
    if values is None or len(values) < 2:
        return 0.0
    return values.double().std().item() / math.sqrt(len(values))


@torch.no_grad()
def _code_figures(model: VAE, x: torch.Tensor, bound: ElboSummary, batch_size: int) -> dict[str, Any]:
    """A VQ-VAE's figures beside its ELBO (which is under the model's prior: the PixelCNN once fitted, else the
    uniform one): prior, that prior's label; elbo_uniform_prior = reconstruction - N ln K, the bound under the
    uniform prior of training, with elbo_uniform_prior_per_image; the standard errors of both over the images
    (elbo_stderr, elbo_uniform_prior_stderr); no_marginal, why no log p(x) is estimated; the codebook's use on the
    images: codebook_size, codes_used and perplexity (exp of the entropy of the shares)."""
    quantiser = model.prior.quantiser
    prior_kl = math.prod(model.prior.code_shape[1:]) * math.log(quantiser.codebook_size)
    reconstruction = bound.reconstruction_per_image
    per_image = [] if reconstruction is None else (reconstruction - prior_kl).tolist()
    counts = quantiser.counts(encode_codes(model, x, batch_size).to(quantiser.usage.device)).cpu()
    return {
        "prior": model.prior.label,
        "no_marginal": model.no_marginal,
        "elbo_stderr": _stderr(bound.per_image),
        "elbo_uniform_prior": bound.reconstruction - prior_kl,
        "elbo_uniform_prior_stderr": _stderr(reconstruction),
        "elbo_uniform_prior_per_image": [round(v, 6) for v in per_image],
        "codebook_size": quantiser.codebook_size,
        "codes_used": int((counts > 0).sum()),
        "perplexity": perplexity(counts),
    }


def _log_likelihood_figures(ll: LogLikelihood, elbo: float, precision: str) -> dict[str, Any]:
    """The importance-sampled log p(x), its standard error, its gap to the ELBO and each image's estimate."""
    return {
        "precision": precision,
        "log_likelihood": ll.mean,
        "log_likelihood_stderr": ll.stderr,
        "num_importance_samples": ll.num_importance_samples,
        "gap": ll.mean - elbo,
        "log_likelihood_per_image": [round(v, 6) for v in ll.per_datapoint.tolist()],
    }


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
    labels: torch.Tensor | None = None,
) -> dict[str, Any]:
    """Every figure of a model on observations x (N, C, H, W), as a JSON-ready dict; with their labels (N,), a
    conditional VAE's at them (its bounds are on log p(x|y)) and M2's classification error (`error`).

    For a model with no bound (an autoencoder) only `_reconstruction_figures`. Otherwise:
    keys: elbo, reconstruction, kl (nats per datapoint), elbo_per_image; with num_importance_samples > 0 also
    log_likelihood, log_likelihood_stderr, gap = log_likelihood - elbo and log_likelihood_per_image
    (what paired_log_likelihood compares); with iwae_num_importance_samples = k > 0 the IWAE bound for
    that k (iwae_bound); active_units, collapsed_units, kl_per_dim (null where a layer's KL does not
    split by coordinate), layers (each stochastic layer's KL and active units). `measure` (see `measure`):
    for grey levels also the bits/dim forms of the ELBO and log p(x) with its standard error (`_bits_figures`);
    for a density every figure is taken at the dequantized images (one seeded u per pixel).
    """
    start = time.perf_counter()
    unit, levels = measure
    if not model.has_bound:
        if num_importance_samples or iwae_num_importance_samples:
            log(f"no log p(x) and no IWAE bound: {model.no_bound}")
        return {**_reconstruction_figures(model, x, batch_size, seed, ctx), "seconds": time.perf_counter() - start}
    if unit == "dequantized bits/dim":
        x = dequantize(x, levels, seeded_generator(seed, "dequantize"))
    given = labels if model.needs_labels else None
    bound, out = _bound_figures(model, x, labels, batch_size, seed, ctx)
    if model.no_marginal:  # a bound, but nothing to importance-sample (a VQ-VAE's point mass on codes)
        if num_importance_samples or iwae_num_importance_samples:
            log("--samples and --iwae-k do not apply: this model has no importance-sampled log p(x) (see below)")
        out.update(_code_figures(model, x, bound, batch_size))
        return _with_bits(out, x, unit, levels, start)
    if num_importance_samples > 0:
        options = dict(
            seed=seed, progress=progress, ctx=ctx, precision=precision, compile=compile, log=log, labels=given
        )
        ll = importance_sampled_log_likelihood(model, x, num_importance_samples, **options)  # type: ignore[arg-type]
        out.update(_log_likelihood_figures(ll, bound.elbo, precision))
    if iwae_num_importance_samples > 0:
        # One draw of log (1/k) sum_k w_k per image is an unbiased estimate of the IWAE bound L_k.
        iwae = importance_sampled_log_likelihood(
            model, x, iwae_num_importance_samples, seed=seed + 1, ctx=ctx, compile=compile, log=log, labels=given
        )
        out.update(iwae_num_importance_samples=iwae_num_importance_samples, iwae_bound=iwae.mean)
    out.update(latent_figures(latent_diagnostics(model, x, batch_size, seed=seed, labels=given)))
    return _with_bits(out, x, unit, levels, start)


def _bound_figures(
    model: VAE, x: torch.Tensor, labels: torch.Tensor | None, batch_size: int, seed: int, ctx: Context | None
) -> tuple[ElboSummary, dict[str, Any]]:
    """The ELBO over x with each image's (a conditional VAE's at the labels, which it needs) and, for M2, the
    classification error at the labels."""
    if model.needs_labels and labels is None:
        raise DataError("a conditional VAE is evaluated at its images' labels: pass labels.")
    given = labels if model.needs_labels else None
    bound = evaluate_elbo(model, x, batch_size, 1, seeded_generator(seed, "eval"), ctx, per_image=True, labels=given)
    out: dict[str, Any] = {"images": len(x), **bound.as_dict(), **({"given_labels": True} if given is not None else {})}
    if model.classifies and labels is not None:
        out.update(classification_figures(model, x, labels, batch_size))
    out["elbo_per_image"] = [round(v, 6) for v in bound.per_image.tolist()] if bound.per_image is not None else []
    return bound, out


def _with_bits(out: dict[str, Any], x: torch.Tensor, unit: str, levels: int, start: float) -> dict[str, Any]:
    """`out` with its bits/dim forms (for grey levels) and the seconds since `start`."""
    if unit != "nats":
        out.update(_bits_figures(out, math.prod(x.shape[1:]), unit, levels))
    out["seconds"] = time.perf_counter() - start
    return out


@dataclass(frozen=True)
class EvaluationSetting:
    """What an evaluation of a run folder computes, and how (evaluate_run; `vaekit evaluate`'s options).

    num_importance_samples: K of log p(x) (0: none); iwae_num_importance_samples: k of the IWAE bound (0:
    none); limit: the split's first images (0: all); batch_size: images per ELBO and diagnostics batch;
    precision "bf16": log p(x) under bf16 autocast; compile: whether log p(x) runs through torch.compile
    (see importance_sampled_log_likelihood for both); disentanglement: also every metric of
    vaekit.disentanglement, for data with known factors (`diagnostics.disentanglement_figures`, with
    `grid_classes` and `score_points`); weights: "last" (model.safetensors) or "best" (model-best.safetensors,
    the best validation ELBO's epoch)."""

    num_importance_samples: int = 5000
    iwae_num_importance_samples: int = 0
    limit: int = 0
    batch_size: int = 1000
    precision: str = "float32"
    compile: str = "auto"
    disentanglement: bool = False
    grid_classes: int = 10
    weights: str = "last"
    score_points: int | None = None


def evaluate_run(
    run_dir: str | Path,
    split: str = "test",
    setting: EvaluationSetting = EvaluationSetting(),
    progress: bool = False,
    log: Callable[[str], None] = lambda line: None,
) -> tuple[dict[str, Any], Path]:
    """Evaluate a run folder's model on a split (its first `setting.limit` images, 0: all) with
    `evaluate_split`, and with the disentanglement metrics where the setting asks for them; save the result
    in the run folder and return it with the file's path."""
    start = time.perf_counter()
    model, config = rundir.load_run(run_dir, weights=setting.weights)
    if (Path(run_dir) / rundir.PRIOR_FILE).exists() and getattr(model.prior, "pixelcnn", 0) is None:
        log(
            f"the PixelCNN prior in {rundir.PRIOR_FILE} was fitted to other weights than the {setting.weights} ones "
            "(the run trained on since, or --weights best): the bound is under the uniform prior; vaekit train-prior "
            "RUN --overwrite fits it to these"
        )
    summary = rundir.read_summary(run_dir) or {}
    data = load_dataset(config.data, config.model.image_shape, log)
    factors = known_factors(data, split, config.data.dataset) if setting.disentanglement else None
    x = data.evaluation_observations(split)
    x = x[: setting.limit] if setting.limit else x
    labels = data.split(split).labels[: len(x)]
    epoch_key = "best_epoch" if setting.weights == "best" else "epochs"
    result = {
        "split": split,
        "limit": setting.limit,
        "epochs": summary.get(epoch_key),  # which trained state was measured
        "weights": setting.weights,
        **evaluate_split(
            model,
            x,
            setting.num_importance_samples,
            setting.iwae_num_importance_samples,
            setting.batch_size,
            config.train.seed,
            measure=measure(config),
            progress=progress,
            precision=setting.precision,
            compile=setting.compile,
            log=log,
            labels=labels,
        ),
    }
    if factors is not None:
        seed = config.train.seed
        result["disentanglement"] = disentanglement_figures(
            model, data, x, factors[: len(x)], seed, setting.grid_classes, setting.score_points, progress
        )
    result["seconds"] = time.perf_counter() - start  # the whole evaluation, loading and every metric included
    return result, rundir.write_evaluation(run_dir, result)
