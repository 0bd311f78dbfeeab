"""Pictures of a trained model: image grids (torch + Pillow) and training curves (matplotlib)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from vaekit import disentanglement as metrics
from vaekit import rundir
from vaekit.data import load_dataset
from vaekit.diagnostics import LatentDiagnostics, latent_diagnostics
from vaekit.models.vae import VAE

TITLE_HEIGHT = 18


def make_grid(images: torch.Tensor, nrow: int, padding: int = 2, pad_value: float = 1.0) -> torch.Tensor:
    """Tile images (N, C, H, W) into one (C, rows*(H+p)+p, nrow*(W+p)+p) tensor, row by row."""
    n, c, h, w = images.shape
    rows = math.ceil(n / nrow)
    grid = torch.full((c, rows * (h + padding) + padding, nrow * (w + padding) + padding), pad_value)
    for i in range(n):
        r, col = divmod(i, nrow)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        grid[:, top : top + h, left : left + w] = images[i]
    return grid


def grid_image(
    images: torch.Tensor, nrow: int, title: str | None = None, zoom: int = 2, row_labels: list[str] | None = None
) -> Image.Image:
    """A Pillow image of a grid of images in [0, 1], enlarged `zoom` times, with a title strip
    above and optional labels left of each row, so a reader knows what they are looking at."""
    grid = make_grid(images.detach().float().cpu().clamp(0, 1), nrow)
    array = (grid * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    picture = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
    picture = picture.convert("RGB").resize((picture.width * zoom, picture.height * zoom), Image.NEAREST)
    font = ImageFont.load_default()
    label_width = 8 + 7 * max((len(s) for s in row_labels), default=0) if row_labels else 0
    top = TITLE_HEIGHT if title else 0
    canvas = Image.new("RGB", (picture.width + label_width, picture.height + top), "white")
    canvas.paste(picture, (label_width, top))
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((4, 3), title, fill="black", font=font)
    if row_labels:
        cell = (images.shape[2] + 2) * zoom
        for r, label in enumerate(row_labels):
            draw.text((4, top + 2 * zoom + r * cell + cell // 2 - 6), label, fill="black", font=font)
    return canvas


def save_picture(picture: Image.Image, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path)
    return path


@torch.no_grad()
def reconstructions(
    model: VAE, x: torch.Tensor, path: str | Path, per_row: int = 10, labels: torch.Tensor | None = None
) -> Path:
    """Inputs and their reconstructions E[x | z = mu(x)] in alternating rows (a conditional VAE's at the labels)."""
    x = x[: (len(x) // per_row) * per_row or len(x)]
    recon = model.reconstruct(x, None if labels is None else labels[: len(x)])
    rows = []
    for start in range(0, len(x), per_row):
        rows += [x[start : start + per_row], recon[start : start + per_row]]
    labels = ["input", "recon"] * (len(rows) // 2)
    picture = grid_image(torch.cat(rows), per_row, "test images (input) and reconstructions (recon)", row_labels=labels)
    return save_picture(picture, path)


@torch.no_grad()
def prior_samples(model: VAE, path: str | Path, n: int = 100, seed: int = 0, label: int | None = None) -> Path:
    """Decoded means of n draws from the model's prior p(z) (a model of labels: at one label, where given)."""
    labels = None if label is None else torch.full((n,), label)
    images = model.sample(n, generator=torch.Generator().manual_seed(seed), labels=labels)
    at = "" if label is None else f" at label {label}"
    title = f"decoded means of {n} samples z ~ p(z){at}, {model.prior.label}, seed {seed}"
    return save_picture(grid_image(images, max(1, int(math.sqrt(n))), title), path)


@torch.no_grad()
def class_samples(model: VAE, path: str | Path, draws: int = 10, seed: int = 0, names: Sequence[str] = ()) -> Path:
    """A model of labels' p(x|y, z): one row per class y, one column per draw z_j ~ N(0, I), the same z_j down each
    column, so that a row shows one label in many styles and a column one style at every label (Kingma et al.
    2014, Figure 1)."""
    classes = model.prior.classes
    z = model.prior.split(model.sample_prior(draws, torch.Generator().manual_seed(seed)))[1]
    labels = torch.arange(classes).repeat_interleave(draws)
    images = model.decode(model.prior.join(labels, z.repeat(classes, 1))).mean
    rows = [str(names[c]) if c < len(names) else str(c) for c in range(classes)]
    title = f"p(x|y, z): a row per label y, a column per z ~ N(0, I) (seed {seed})"
    return save_picture(grid_image(images, draws, title, row_labels=rows), path)


@torch.no_grad()
def analogies(model: VAE, x: torch.Tensor, labels: torch.Tensor, path: str | Path, names: Sequence[str] = ()) -> Path:
    """Kingma et al. 2014's analogies (Figure 1b): each test image (first column) kept at the z of its posterior
    mean, q(z|x, y) at its label (its most probable one under M2's q(y|x)), and decoded at every label y."""
    posterior = model.posterior(x, labels if model.needs_labels else None)
    held, z = model.prior.split(posterior.mean)
    classes = model.prior.classes
    every = torch.arange(classes).repeat(len(x))
    images = model.decode(model.prior.join(every, z.repeat_interleave(classes, 0))).mean.view(
        len(x), classes, *x.shape[1:]
    )
    grid = torch.cat([x.unsqueeze(1).to(images), images], 1).flatten(0, 1)
    rows = [f"{names[int(y)] if int(y) < len(names) else int(y)}" for y in held]
    title = "analogies: an image (left), then its z decoded at each label " + ", ".join(
        str(names[c]) if c < len(names) else str(c) for c in range(classes)
    )
    return save_picture(grid_image(grid, classes + 1, title, row_labels=rows), path)


def _save_figure(fig: Any, path: str | Path) -> Path:
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def slerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation: z(t) = sin((1-t) w) / sin w * z0 + sin(t w) / sin w * z1,
    w the angle between z0 and z1 (White 2016, "Sampling Generative Networks"); linear when w ~ 0.
    Shapes: z0, z1 (J,), t (T,) -> (T, J)."""
    cos = torch.dot(z0, z1) / (z0.norm() * z1.norm()).clamp_min(1e-12)
    omega = torch.arccos(cos.clamp(-1.0, 1.0))
    t = t.unsqueeze(1)
    if omega.abs() < 1e-4:
        return (1 - t) * z0 + t * z1
    return (torch.sin((1 - t) * omega) * z0 + torch.sin(t * omega) * z1) / torch.sin(omega)


@torch.no_grad()
def interpolations(model: VAE, x0: torch.Tensor, x1: torch.Tensor, path: str | Path, steps: int = 10) -> Path:
    """For each pair (x0[i], x1[i]): a linear and a spherical path between their posterior means,
    decoded, with the two inputs at the ends of each row. x0, x1: (pairs, C, H, W)."""
    mu0, mu1 = model.posterior(x0).mean, model.posterior(x1).mean
    t = torch.linspace(0, 1, steps)
    rows, labels = [], []
    for i in range(len(x0)):
        for name, path_z in (
            ("lerp", (1 - t).unsqueeze(1) * mu0[i] + t.unsqueeze(1) * mu1[i]),
            ("slerp", slerp(mu0[i], mu1[i], t)),
        ):
            decoded = model.decode(path_z).mean
            rows.append(torch.cat([x0[i : i + 1], decoded, x1[i : i + 1]]))
            labels.append(name)
    picture = grid_image(
        torch.cat(rows), steps + 2, "interpolations between posterior means (inputs at both ends)", row_labels=labels
    )
    return save_picture(picture, path)


def traversal_rows(diagnostics: LatentDiagnostics, max_dims: int = 32) -> list[tuple[int, int, str]]:
    """The coordinates a traversal shows, as (layer, index in z, label): the active units of each layer,
    most informative first (by KL per dimension where the layer's KL splits so, else by activity), layers
    with none left out; at most max_dims in all, each layer first given an equal share and the rest
    filled in layer order. Where no unit is active anywhere, the top-ranked few of every layer."""
    ranked, start = [], 0
    for i, layer in enumerate(diagnostics.layers):
        span = slice(start, start + layer.size)
        score = layer.kl_per_dim if layer.kl_per_dim is not None else diagnostics.activity[span]
        order = torch.argsort(score, descending=True).tolist()
        ranked.append([(i, start + j, _row_label(diagnostics, i, j, score[j].item())) for j in order])
        start += layer.size
    active = [[row for row in rows if diagnostics.active[row[1]]] for rows in ranked]
    candidates = active if any(active) else ranked
    used = [rows for rows in candidates if rows]
    share = max(1, max_dims // len(used))
    chosen = [rows[:share] for rows in used]
    for rows, taken in zip(used, chosen):
        room = max_dims - sum(map(len, chosen))
        taken += rows[len(taken) : len(taken) + max(0, room)]
    return [row for rows in chosen for row in rows][:max_dims]


def _row_label(diagnostics: LatentDiagnostics, layer: int, j: int, score: float) -> str:
    name = f"z{j}" if len(diagnostics.layers) == 1 else f"{diagnostics.layers[layer].name}.{j}"
    return f"{name} {score:.2f}" if diagnostics.layers[layer].kl_per_dim is not None else f"{name} var {score:.2f}"


@torch.no_grad()
def traversals(
    model: VAE,
    x: torch.Tensor,
    diagnostics: LatentDiagnostics,
    path: str | Path,
    steps: int = 11,
    span: float = 3.0,
    max_dims: int = 32,
    factor_of: dict[int, str] | None = None,
) -> Path:
    """One row per latent coordinate that the model uses (traversal_rows): z_j swept over [-span, span]
    with the other coordinates at the posterior mean of image x (1, C, H, W), and, in a hierarchy, the
    layers below z_j's at their conditional means given it (prior.fill_below). factor_of (index in z ->
    factor name), for data with known factors, adds to each row the factor its latent tells most about."""
    mu = model.posterior(x[:1]).mean
    values = torch.linspace(-span, span, steps)
    codes = diagnostics.posterior_means  # a model with no prior: each code swept over its own spread
    centre, scale = (0.0, 1.0) if model.has_bound else (codes.mean(0), codes.std(0).clamp_min(1e-6))
    rows, labels = [], []
    for layer, j, label in traversal_rows(diagnostics, max_dims):
        z = mu.repeat(steps, 1)
        z[:, j] = values if model.has_bound else centre[j] + scale[j] * values
        rows.append(model.decode(model.prior.fill_below(z, layer)).mean)
        labels.append(label if factor_of is None else f"{label} {factor_of[j]}")
    kind = "KL (nats)" if diagnostics.kl_per_dim is not None else "KL, else variance of the means"
    kind = kind if model.has_bound else "the variance of the codes"
    sweep = f"[-{span:g}, {span:g}]" if model.has_bound else f"mean +- {span:g} std of the codes"
    title = f"latent traversals z_j in {sweep}; active units by {kind}"
    return save_picture(grid_image(torch.cat(rows), steps, title, row_labels=labels), path)


@torch.no_grad()
def prior_quantile_grid(n: int) -> torch.Tensor:
    """z = Phi^-1(u) on an n x n grid, u evenly spaced in (0, 1): (n*n, 2), row by row from the
    top (z1 falling) and left to right within a row (z0 rising), as the picture is laid out."""
    u = torch.linspace(0.5 / n, 1 - 0.5 / n, n)
    q = torch.distributions.Normal(0.0, 1.0).icdf(u)
    return torch.stack(torch.meshgrid(q, q.flip(0), indexing="xy"), -1).reshape(-1, 2)


def project_2d(posterior_means: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, tuple[str, str], float]:
    """A 2-D view of posterior means (N, J): the coordinates for J = 2, the coordinate against the
    label for J = 1, else the first two principal components. Returns (N, 2) float64 points,
    the axis names, and the share of the variance the view shows."""
    mu = posterior_means.double()
    if mu.shape[1] == 2:
        return mu, ("z0", "z1"), 1.0
    if mu.shape[1] == 1:
        return torch.cat([mu, labels.double().unsqueeze(1)], 1), ("z0", "label"), 1.0
    centred = mu - mu.mean(0)
    _, s, v = torch.linalg.svd(centred, full_matrices=False)
    points = centred @ v[:2].T  # (N, 2), or (1, 1) for a single point, which has one component
    points = torch.cat([points, points.new_zeros(len(mu), 2 - points.shape[1])], 1)
    total = float((s**2).sum())
    return points, ("PC 1", "PC 2"), float((s[:2] ** 2).sum()) / total if total > 0 else 1.0


def manifold(model: VAE, path: str | Path, n: int = 20) -> Path:
    """The learned data manifold of a 2-D latent space (Kingma & Welling 2013, Figure 4):
    decoded means on an n x n grid of prior quantiles, z = Phi^-1(u) for u evenly spaced in (0, 1)."""
    if model.latent_dim != 2:
        raise ValueError("the manifold picture needs a 2-D latent space")
    z = prior_quantile_grid(n)
    picture = grid_image(model.decode(z).mean, n, "learned manifold: z on a grid of N(0, I) quantiles", zoom=1)
    return save_picture(picture, path)


def latent_scatter(
    posterior_means: torch.Tensor, labels: torch.Tensor, path: str | Path, class_names: Sequence[str] = ()
) -> Path:
    """Posterior means of a split coloured by class, saved as PNG (see latent_scatter_figure)."""
    return _save_figure(latent_scatter_figure(posterior_means, labels, class_names), path)


def latent_scatter_figure(posterior_means: torch.Tensor, labels: torch.Tensor, class_names: Sequence[str] = ()) -> Any:
    """Posterior means (N, J) of a split coloured by class: the two coordinates for a 2-D latent space,
    the first two principal components otherwise (a single coordinate against the label for 1-D).
    Up to 20 classes get a legend with their names (class_names[label]); more get a colour bar."""
    from matplotlib.figure import Figure

    xy, axes, share = project_2d(posterior_means, labels)
    title = (
        "posterior means E[z|x]"
        if posterior_means.shape[1] <= 2
        else f"posterior means E[z|x], first two principal\ncomponents ({share:.0%} of the variance)"
    )
    fig = Figure(figsize=(6, 5.2), dpi=100)
    ax = fig.subplots()
    present = sorted(set(labels.tolist()))
    names = [class_names[c] if c < len(class_names) else str(c) for c in present]
    if len(present) <= 20:
        for i, (c, name) in enumerate(zip(present, names)):
            mine = labels == c
            marker = "o" if i < 10 else "^"  # ten colours, then the same colours as triangles
            ax.scatter(xy[mine, 0].numpy(), xy[mine, 1].numpy(), s=3, color=f"C{i % 10}", marker=marker, label=name)
        ax.legend(title="class", markerscale=3, fontsize=8, loc="best")
    else:
        points = ax.scatter(xy[:, 0].numpy(), xy[:, 1].numpy(), c=labels.numpy(), cmap="viridis", s=3)
        fig.colorbar(points, ax=ax, label="class")
    ax.set(xlabel=axes[0], ylabel=axes[1], title=title)
    return fig


# Each metrics.jsonl curve elbo_curves can draw: line style, and its legend text for a single run.
CURVE_STYLES = {"train_elbo": ("o-", "train (running mean over the epoch)"), "valid_elbo": ("s--", "validation")}
CURVE_STYLES |= {"train_reconstruction": CURVE_STYLES["train_elbo"], "valid_reconstruction": CURVE_STYLES["valid_elbo"]}


def elbo_curves(
    runs: dict[str, Sequence[dict[str, Any]]],
    path: str | Path,
    title: str,
    panel_of: dict[str, str] | None = None,
    keys: Sequence[str] = ("train_elbo", "valid_elbo"),
) -> Path:
    """Train (solid) and validation (dashed) ELBO, or the curves `keys` names, against training images
    seen, on a log axis like Kingma & Welling's Figure 2: one colour per run (label -> its metrics rows),
    one panel per distinct value of `panel_of` (label -> panel name). The y axis leaves out the first
    epoch's transient when there are later epochs, so that the curves' ends can be told apart."""
    from matplotlib.figure import Figure

    runs = {label: rows for label, rows in runs.items() if rows}
    panels = sorted(set(panel_of.values())) if panel_of else [""]
    fig = Figure(figsize=(6, 4) if len(panels) == 1 else (5.5 * len(panels), 4.5), dpi=100)
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    solo = len(runs) == 1
    for ax, panel in zip(axes, panels):
        for i, (label, rows) in enumerate(runs.items()):
            if panel_of and panel_of[label] != panel:
                continue
            seen = [m["images_seen"] for m in rows]
            for j, key in enumerate(keys):
                style, text = CURVE_STYLES[key]
                colour, legend = (i + j, text) if solo else (i, label if j == 0 else None)
                ax.plot(seen, [m[key] for m in rows], style, ms=3, color=f"C{colour % 10}", label=legend)
        ax.set_xscale("log")
        ax.set(xlabel="training images seen", title=panel or None)
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # a panel whose runs have no epochs yet stays empty
            ax.legend(fontsize=None if solo else 7, loc="lower right")
    later = [m[k] for rows in runs.values() for m in (rows[1:] or rows) for k in keys]
    if later:
        low, high = min(later), max(later)
        axes[0].set_ylim(low - 0.05 * (high - low) - 1e-3, high + 0.05 * (high - low) + 1e-3)
    what = "log p(x|z)" if keys[0].endswith("reconstruction") else "ELBO"  # an autoencoder's curves have no bound
    axes[0].set_ylabel(f"{what} (nats per image)")
    fig.suptitle(title)
    return _save_figure(fig, path)


class PictureSkipped(Exception):
    """A picture that cannot be drawn from what is at hand; the message says why."""


@dataclass
class PictureInputs:
    """What the pictures are drawn from: a model, a split's images (N, C, H, W) in [0, 1] and their
    labels (N,), the run's metrics rows, and the seed of random picks and samples."""

    model: VAE
    images: torch.Tensor
    labels: torch.Tensor
    metrics: Sequence[dict[str, Any]]
    seed: int = 0
    class_names: Sequence[str] = ()  # the name of each label
    factors: torch.Tensor | None = None  # (N, F) factor classes of the images, for data with known factors
    factor_names: Sequence[str] = ()

    @cached_property
    def diagnostics(self) -> LatentDiagnostics:
        return latent_diagnostics(self.model, self.images, labels=self.labels if self.model.needs_labels else None)

    @cached_property
    def factor_information(self) -> torch.Tensor | None:
        """I(z_j; v_k) / H(v_k) (J, F): the share of each factor's entropy that each latent's posterior mean
        carries (20-bin histograms, as MIG's), for data with known factors; None otherwise."""
        if self.factors is None:
            return None
        factors = self.factors.numpy()
        codes = metrics.histogram_discretize(self.diagnostics.posterior_means.double().numpy())
        shares = metrics.mutual_information_matrix(codes, factors) / metrics.factor_entropies(factors)
        return torch.from_numpy(shares)


def _reconstructions(p: PictureInputs, folder: Path) -> Path:
    labels = p.labels[:50] if p.model.needs_labels else None
    return reconstructions(p.model, p.images[:50], folder / "reconstructions.png", labels=labels)


def _classes(p: PictureInputs, folder: Path) -> Path | None:
    if not hasattr(p.model.prior, "join"):
        return None  # a model of labels' picture
    return class_samples(p.model, folder / "classes.png", seed=p.seed, names=p.class_names)


def _analogies(p: PictureInputs, folder: Path) -> Path | None:
    if not hasattr(p.model.prior, "join"):
        return None
    return analogies(p.model, p.images[:8], p.labels[:8], folder / "analogies.png", p.class_names)


def _samples(p: PictureInputs, folder: Path) -> Path:
    return prior_samples(p.model, folder / "samples.png", n=100, seed=p.seed)


def _interpolations(p: PictureInputs, folder: Path) -> Path:
    pairs = min(4, len(p.images) // 2)
    if pairs < 1:
        raise PictureSkipped(f"interpolations need 2 images and the split has {len(p.images)}")
    pick = torch.randperm(len(p.images), generator=torch.Generator().manual_seed(p.seed))[: 2 * pairs]
    return interpolations(p.model, p.images[pick[:pairs]], p.images[pick[pairs:]], folder / "interpolations.png")


def _traversals(p: PictureInputs, folder: Path) -> Path:
    shares = p.factor_information
    factor_of = None
    if shares is not None:  # each latent labelled with the factor it carries most information about
        factor_of = {j: p.factor_names[int(k)] for j, k in enumerate(shares.argmax(1))}
    return traversals(p.model, p.images[:1], p.diagnostics, folder / "traversals.png", factor_of=factor_of)


def _factor_information(p: PictureInputs, folder: Path) -> Path | None:
    shares = p.factor_information
    if shares is None or p.factors is None:
        return None
    d = p.diagnostics
    shown = [j for _, j, _ in traversal_rows(d, d.activity.numel()) if d.active[j]]  # the traversals' order
    order = shown + [j for j in range(len(shares)) if j not in shown]
    labels = [f"z{j}" if d.active[j] else f"z{j} (inactive)" for j in order]
    factors = p.factors.numpy()
    floor = metrics.information_floor(factors) / metrics.factor_entropies(factors)
    point_codes = d.posterior_variance is None  # an autoencoder's codes: the absolute rule decides activity
    figure = factor_information_figure(shares[order], p.factor_names, labels, floor, len(factors), point_codes)
    return _save_figure(figure, folder / "factors.png")


def factor_information_figure(
    shares: torch.Tensor,
    factor_names: Sequence[str],
    row_labels: Sequence[str] | None = None,
    floor: np.ndarray | None = None,
    points: int = 0,
    point_codes: bool = False,
) -> Any:
    """A latents x factors heatmap of I(z_j; v_k) / H(v_k), each cell annotated (a disentangled code has one
    bright cell per row and per column); rows labelled row_labels (z0, z1, ...: None); floor (F,), the share
    that the plug-in estimate gives a code that carries nothing with these `points`, said under each factor;
    point_codes: the codes are an autoencoder's, whose activity has no posterior noise to be measured against."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1.6 + 0.9 * shares.shape[1], 1.3 + 0.35 * shares.shape[0]), dpi=100)
    ax = fig.subplots()
    image = ax.imshow(shares.numpy(), cmap="viridis", vmin=0, vmax=1, aspect="auto")
    for (j, k), value in np.ndenumerate(shares.numpy()):
        ax.text(k, j, f"{value:.2f}", ha="center", va="center", fontsize=7, color="white" if value < 0.6 else "black")
    names = list(factor_names) if floor is None else [f"{n}\nfloor {f:.3f}" for n, f in zip(factor_names, floor)]
    ax.set_xticks(range(shares.shape[1]), names, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(shares.shape[0]), list(row_labels or [f"z{j}" for j in range(shares.shape[0])]), fontsize=8)
    title = "I(z_j; factor) / H(factor) of the posterior means"
    if floor is not None:
        title += f"\n20-bin plug-in estimate on {points} images: about 'floor' for a code that carries nothing;" + (
            "\ninactive: the code's std over the data is below 0.1 (Burda et al.'s rule: it has no posterior noise)"
            if point_codes
            else "\ninactive: the mean moves by less than 1/10 of the posterior's std, so z carries little of it"
        )
    ax.set_title(title, fontsize=8)
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    return fig


@torch.no_grad()
def prior_comparison(model: VAE, path: str | Path, rows: int = 3, per_row: int = 10, seed: int = 0) -> Path:
    """A VQ-VAE's decoded code maps drawn from the uniform prior (the prior of training, top rows) and from the
    fitted PixelCNN (ancestrally, bottom rows): a code map of independent codes decodes to no digit, which is
    why the second stage is needed (van den Oord et al. 2017, Section 3.3)."""
    prior, n = model.prior, rows * per_row
    drawn = [prior.sample_codes(n, torch.Generator().manual_seed(seed), uniform=u) for u in (True, False)]
    images = torch.cat([model.decode(prior.quantiser.embed(codes).flatten(1)).mean for codes in drawn])
    labels = ["uniform"] * rows + ["PixelCNN"] * rows
    title = f"decoded code maps from the uniform prior and the PixelCNN prior, seed {seed}"
    return save_picture(grid_image(images, per_row, title, row_labels=labels), path)


@torch.no_grad()
def code_usage(model: VAE, images: torch.Tensor, path: str | Path, shown: int = 8, batch_size: int = 500) -> Path:
    """A VQ-VAE's codes on a split: the first `shown` images above their code maps (each position's code index,
    coloured by index), and how often each of the K codes is used over all the images, most used first, with the
    perplexity (the codebook-collapse figure: K at even use, 1 when one code takes all)."""
    from matplotlib.figure import Figure

    from vaekit.models.quantiser import encode_codes, perplexity

    quantiser = model.prior.quantiser
    codes = encode_codes(model, images, batch_size)
    counts = quantiser.counts(codes.to(quantiser.usage.device)).cpu()
    fig = Figure(figsize=(1.3 * shown, 5.2), dpi=100)
    grid = fig.add_gridspec(3, shown, height_ratios=(1, 1, 1.4))
    for i in range(min(shown, len(images))):
        top, middle = fig.add_subplot(grid[0, i]), fig.add_subplot(grid[1, i])
        top.imshow(images[i].permute(1, 2, 0).squeeze(-1).cpu().numpy(), cmap="gray", vmin=0, vmax=1)
        middle.imshow(codes[i].numpy(), cmap="nipy_spectral", vmin=0, vmax=quantiser.codebook_size - 1)
        for ax in (top, middle):
            ax.set_xticks([]), ax.set_yticks([])
    bars = fig.add_subplot(grid[2, :])
    ranked = counts.sort(descending=True).values.numpy()
    bars.bar(range(len(ranked)), ranked, width=1.0, color="C0")
    bars.set_yscale("log")
    used = int((counts > 0).sum())
    bars.set(xlabel="codes, most used first", ylabel="assignments")
    bars.set_title(
        f"{len(images)} images, {codes[0].numel()} positions each: {used} of {quantiser.codebook_size} codes used, "
        f"perplexity {perplexity(counts):.1f}",
        fontsize=9,
    )
    fig.suptitle("images (top) and their code maps (middle, colour = code index); the codebook's use (bottom)")
    return _save_figure(fig, path)


def _prior_comparison(p: PictureInputs, folder: Path) -> Path | None:
    prior = p.model.prior
    if getattr(prior, "quantiser", None) is None:
        return None
    if prior.pixelcnn is None:
        raise PictureSkipped(
            "no PixelCNN prior is fitted to these weights (vaekit train-prior RUN fits one; --overwrite after the run "
            "trained on)"
        )
    return prior_comparison(p.model, folder / "prior-samples.png", seed=p.seed)


def _code_usage(p: PictureInputs, folder: Path) -> Path | None:
    if getattr(p.model.prior, "quantiser", None) is None:
        return None
    return code_usage(p.model, p.images, folder / "codes.png")


def _manifold(p: PictureInputs, folder: Path) -> Path | None:
    return manifold(p.model, folder / "manifold.png") if p.model.latent_dim == 2 else None


def _latents(p: PictureInputs, folder: Path) -> Path:
    if len(p.images) < 2:
        raise PictureSkipped(f"the latent scatter needs 2 images and the split has {len(p.images)}")
    return latent_scatter(p.diagnostics.posterior_means, p.labels, folder / "latents.png", p.class_names)


def _curves(p: PictureInputs, folder: Path) -> Path | None:
    if not p.metrics:
        return None
    if p.model.has_bound:
        return elbo_curves({"run": p.metrics}, folder / "curves.png", "variational lower bound")
    keys, title = ("train_reconstruction", "valid_reconstruction"), "log p(x|z) at the code (no bound)"
    return elbo_curves({"run": p.metrics}, folder / "curves.png", title, keys=keys)


def _pseudo_inputs(p: PictureInputs, folder: Path) -> Path | None:
    """The VampPrior's learned pseudo-inputs u_k, the images whose posteriors make up the prior."""
    inputs = p.model.prior.learned_inputs()
    if inputs is None:
        return None
    u = inputs[:100].detach()
    title = f"the VampPrior's first {len(u)} of {len(inputs)} pseudo-inputs"
    return save_picture(grid_image(u, max(1, int(math.sqrt(len(u)))), title), folder / "pseudo-inputs.png")


@torch.no_grad()
def _layer_samples(p: PictureInputs, folder: Path) -> Path | None:
    """For a hierarchy: each row fixes one draw of the top layer z_L ~ p(z_L) and redraws the layers
    below from p(z_i|z_{i+1}), so a row shows what the top layer decides and the lower ones vary."""
    prior = p.model.prior
    if len(p.model.latent_sizes) == 1:
        return None
    g = torch.Generator().manual_seed(p.seed)
    top = prior.top.sample(8, g).repeat_interleave(10, dim=0)  # (80, J_L)
    images = p.model.decode(prior.below(top, g)).mean
    title = "rows: one top-layer draw ~ p(z_L), the layers below redrawn along the row"
    return save_picture(grid_image(images, 10, title), folder / "layer-samples.png")


# picture name -> what draws it into a folder; None where it does not apply (the manifold of a
# latent space that is not 2-D, the curves of a run without metrics)
PICTURES: dict[str, Callable[[PictureInputs, Path], Path | None]] = {
    "reconstructions": _reconstructions,
    "samples": _samples,
    "classes": _classes,
    "analogies": _analogies,
    "prior-samples": _prior_comparison,
    "codes": _code_usage,
    "interpolations": _interpolations,
    "traversals": _traversals,
    "factors": _factor_information,
    "pseudo-inputs": _pseudo_inputs,
    "layer-samples": _layer_samples,
    "manifold": _manifold,
    "latents": _latents,
    "curves": _curves,
}


@torch.no_grad()
def write_pictures(
    inputs: PictureInputs,
    folder: str | Path,
    which: Sequence[str] = tuple(PICTURES),
    log: Callable[[str], None] = lambda s: None,
) -> list[Path]:
    """The named pictures of a model into `folder`.

    A picture that does not apply is left out; one that cannot be drawn from the data at hand
    (interpolations from a split of one image) is left out with one line to `log` saying why,
    and the others are still drawn.
    """
    inputs.model.eval()
    written = []
    for name in which:
        if name in inputs.model.pictures_without:  # what the model's family declares it cannot show
            log(f"no {name} picture: {inputs.model.pictures_without[name]}")
            continue
        try:
            path = PICTURES[name](inputs, Path(folder))
        except PictureSkipped as why:
            log(f"no {name} picture: {why}")
            continue
        if path is not None:
            written.append(path)
    return written


def write_run_pictures(
    run_dir: str | Path,
    which: Sequence[str] = tuple(PICTURES),
    seed: int = 0,
    folder: str | Path | None = None,
    log: Callable[[str], None] = lambda s: None,
) -> list[Path]:
    """The pictures of a run folder, from its model, its test split and its metrics (into RUN_DIR/images)."""
    model, config = rundir.load_run(run_dir)
    if config.data.dataset == "features":  # vectors, not images: only the curves picture applies
        log("pictures of images do not apply to features (a model's posterior means): only the curves")
        which = [name for name in which if name == "curves"]
    data = load_dataset(config.data, config.model.image_shape, log)
    inputs = PictureInputs(
        model,
        data.test.images,
        data.test.labels,
        rundir.read_metrics(run_dir),
        seed,
        data.class_names,
        data.test.factors,
        data.factor_names,
    )
    return write_pictures(inputs, folder or Path(run_dir) / rundir.IMAGES_DIR, which, log)
