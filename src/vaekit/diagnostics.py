"""How the latent space is used: KL per layer, active units, and the codes the disentanglement metrics read."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vaekit import disentanglement as metrics
from vaekit.data import Dataset, dsprites
from vaekit.errors import DataError
from vaekit.models.posteriors import GaussianPosterior, Posterior
from vaekit.models.vae import VAE
from vaekit.progress import progress_bar
from vaekit.randomness import derive_seed

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
    variance of a N(0, I) prior; so for a point posterior, an autoencoder's code, which has no noise).
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
    model: VAE,
    x: torch.Tensor,
    batch_size: int = 1000,
    threshold: float = 0.01,
    seed: int = 0,
    labels: torch.Tensor | None = None,
) -> LatentDiagnostics:
    """Active units, and the KL of each stochastic layer (per dimension where it splits so), over the
    images x (N, C, H, W) (a conditional VAE's at their labels (N,)). The posterior's mean is exact without a
    flow, a stand-in with one. A model of labels is described by its z alone: the KL of q(z|x, y), not of the
    label's part."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator(device).manual_seed(derive_seed(seed, "eval", 1))
    means, kls, noise, closed = [], [], [], True
    skip = int(getattr(model.prior, "label_dims", 0))  # a model of labels: y's one-hot coordinates are not units
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size].to(device)
        given = () if labels is None else (labels[start : start + batch_size].to(device),)
        posterior = model.posterior(xb, *given)
        means.append(posterior.mean[..., skip:].double().cpu())  # latents are small: gathered on the CPU
        contributions, closed = _kl_contributions(model, posterior, generator)
        kls.append([t[..., skip:].double().cpu() if t.dim() == 2 else t.double().cpu() for t in contributions])
        z, _ = posterior.rsample(VARIANCE_SAMPLES, generator)  # (batch, S, J): after the KL's draws, which stay
        noise.append(z[..., skip:].double().var(1).sum(0).cpu())
    model.train(was_training)
    mu = torch.cat(means)
    posterior_variance = torch.stack(noise).sum(0) / len(x)
    if not posterior_variance.any():  # a point posterior (an autoencoder's code): no noise and no KL, so
        # Burda et al.'s absolute rule, and no KL per dimension: the units rank by how much their codes move
        posterior_variance, kls = None, [[torch.zeros(len(batch[0]))] for batch in kls]
    activity = mu.var(0, unbiased=True) if len(mu) > 1 else torch.zeros(mu.shape[1], dtype=torch.float64)
    layers = []
    for i, size in enumerate(model.latent_sizes):
        size -= skip if i == 0 else 0
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


def known_factors(data: Dataset, split: str, dataset: str) -> torch.Tensor:
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
