"""The HTML report of a run folder: one self-contained page (images embedded), no server needed."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from vaekit import checkpoint, rundir
from vaekit.config import LIKELIHOOD_KINDS
from vaekit.disentanglement import METRICS

# Pictures in reading order, with the caption a reader needs.
CAPTIONS = {
    "curves.png": "Training curves: train and validation ELBO against images seen (log axis).",
    "reconstructions.png": "Test images (input rows) and their reconstructions at the posterior mean.",
    "samples.png": "Decoded means of draws from the model's prior p(z).",
    "interpolations.png": "Linear (lerp) and spherical (slerp) paths between posterior means of test images.",
    "traversals.png": "The active latent dimensions of each layer swept from -3 to 3, most informative first.",
    "factors.png": "For data with known factors: the share of each factor's entropy that each latent carries.",
    "pseudo-inputs.png": "The VampPrior's learned pseudo-inputs: the prior is the mixture of the posteriors at them.",
    "layer-samples.png": "Two stochastic layers: each row fixes a draw of the top layer and redraws the lower one.",
    "manifold.png": "The learned manifold of the 2-D latent space on a grid of prior quantiles.",
    "latents.png": "Posterior means of test images coloured by class.",
    "prior-samples.png": "A VQ-VAE's decoded code maps drawn from the uniform prior (top) and the PixelCNN (bottom).",
    "codes.png": "A VQ-VAE's code maps of test images and how often each code of the codebook is used.",
    "classes.png": "A model of labels: a row per label y, a column per draw of z, the same z down each column.",
    "analogies.png": "A model of labels: a test image (left) and its z decoded at every label.",
}

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 1.6em; }
table { border-collapse: collapse; font-size: .9em; margin: .5em 0; }
td, th { border: 1px solid #ccc; padding: .25em .6em; text-align: right; }
th { background: #f4f4f4; } td.key, th.key { text-align: left; }
figure { margin: 1em 0; } figcaption { color: #555; font-size: .9em; }
img { max-width: 100%; image-rendering: pixelated; border: 1px solid #eee; }
.note { color: #555; font-size: .9em; } .scroll { overflow-x: auto; }
"""


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e-2 or abs(value) >= 1e5 else f"{value:.3f}"
    if isinstance(value, list):
        return ", ".join(_fmt(v) for v in value)
    return html.escape(str(value))


def _key_value_table(rows: dict[str, Any]) -> str:
    shown = {k: f"{len(v)} values (in the JSON file)" if k.endswith("_per_image") else v for k, v in rows.items()}
    body = "".join(f"<tr><td class='key'>{html.escape(k)}</td><td>{_fmt(v)}</td></tr>" for k, v in shown.items())
    return f"<table>{body}</table>"


def table(rows: list[dict[str, Any]]) -> str:
    """An HTML table with one row per dict and the first dict's keys as columns."""
    columns = list(rows[0])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(m.get(c, ''))}</td>" for c in columns) + "</tr>" for m in rows)
    return f"<div class='scroll'><table><tr>{head}</tr>{body}</table></div>"


def figure(png: bytes, name: str, caption: str) -> str:
    """A PNG embedded in the page (base64), with its caption."""
    data = base64.b64encode(png).decode("ascii")
    return (
        f"<figure><img alt='{html.escape(name)}' src='data:image/png;base64,{data}'>"
        f"<figcaption>{html.escape(name)}: {html.escape(caption)}</figcaption></figure>"
    )


def page(title: str, parts: list[str]) -> str:
    """One self-contained HTML page."""
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body>{''.join(parts)}</body></html>\n"
    )


def _layers(result: dict[str, Any]) -> list[str]:
    """The evaluation's figures per stochastic layer: KL against the layer's own prior, active units,
    and the KL of each dimension where it splits so."""
    layers = result.get("layers")
    if not layers:  # an evaluation saved before the per-layer figures
        return []
    rows = [
        {
            "layer": layer["name"],
            "dimensions": layer["latent_dim"],
            "KL (nats)": layer["kl"],
            "s.e.": layer["kl_stderr"] if layer["kl_estimate"] != "closed form" else "exact",
            "estimate": layer["kl_estimate"],
            "active units": layer["active_units"],
            "KL per dimension": layer["kl_per_dim"] if layer["kl_per_dim"] is not None else "(does not split)",
        }
        for layer in layers
    ]
    return ["<h3>Stochastic layers</h3>", table(rows)]


def _likelihood_note(config: Any) -> list[str]:
    """What the run's bounds mean: nats of binary pixels, probabilities of grey levels (also in bits/dim),
    or a density's values (in bits/dim after dequantization)."""
    name = html.escape(config.model.likelihood)
    kind = LIKELIHOOD_KINDS[config.model.likelihood]
    if kind == "binary":
        return []
    if config.data.dataset == "features":
        return [
            f"<p class='note'>This run models features, another model's posterior means, with the {name} density: "
            "its bounds and log p(x) are in nats per feature vector, not comparable with any model of the images.</p>"
        ]
    if kind == "levels":
        return [
            f"<p class='note'>The {name} likelihood is a probability over the {2**config.data.bits} grey levels, so "
            "log p(x) is at most 0; evaluations also state it in bits per dimension, -log p(x) / (D ln 2), lower "
            "is better.</p>"
        ]
    return [
        f"<p class='note'>The {name} likelihood is a density over grey levels, not a probability, so log p(x|z) "
        "and the ELBO can be positive; they compare between models of the same data, not with Bernoulli figures "
        "on binarized images. Evaluations on grey levels take it at uniformly dequantized images and state "
        '"dequantized bits/dim", an upper bound on the bits/dim of the levels it induces.</p>'
    ]


def _disentanglement(figures: dict[str, Any], split: str) -> list[str]:
    """One evaluation's disentanglement metrics: each with its standard error and chance level, and the
    setting they were measured in."""
    stderr, chance, setting = figures.get("stderr") or {}, figures.get("chance") or {}, figures.get("setting") or {}
    rows = [
        {
            "metric": name,
            "value": f"{figures[name]:.3f}",
            "s.e.": "-" if stderr.get(name) is None else f"{stderr[name]:.3f}",
            "chance": f"{chance[name]:.3f}" if name in chance else "-",
        }
        for name in METRICS
        if figures.get(name) is not None
    ]
    said = [f"{split} split", f"{figures.get('pairs')} images"]
    said += [f"{setting['score_points']} score points"] if setting.get("score_points") else []
    said += [f"a grid of {setting['grid_classes']} classes a factor"] if setting.get("grid_classes") else []
    return [
        f"<h3>Disentanglement ({html.escape(', '.join(said))})</h3>",
        table(rows),
        "<p class='note'>Each in [0, 1], higher is better; s.e.: bootstrap over points (binomial for the beta-VAE "
        "and FactorVAE scores, Monte Carlo for Chen et al.'s MIG; none for DCI's disentanglement and completeness, "
        "one fit each: compare seeds).</p>",
    ]


# The curves' caption for a model with no bound: its train and validation log p(x|z) at the code.
NO_BOUND_CURVES = "Training curves: train and validation log p(x|z) at the code against images seen (log axis)."


def build_report(run_dir: str | Path) -> str:
    """The report page of a run folder as one HTML string."""
    run_dir = Path(run_dir)
    config = rundir.read_config(run_dir)
    metrics = rundir.read_metrics(run_dir)
    summary = rundir.read_summary(run_dir)
    no_bound = (summary or {}).get("no_bound")  # a model with no ELBO (an autoencoder) says why
    units = "Bounds are" if not no_bound else f"There is no bound: {no_bound}. The log-likelihoods are"
    parts = [
        f"<h1>vaekit run: {html.escape(run_dir.resolve().name)}</h1>",
        f"<p class='note'>{html.escape(units)} in nats per image, summed over pixels; higher is better.</p>",
    ]
    parts += _likelihood_note(config)
    if (summary or {}).get("no_marginal"):  # a bound but no importance-sampled log p(x) (a VQ-VAE)
        parts.append(f"<p class='note'>No importance-sampled log p(x): {html.escape(summary['no_marginal'])}.</p>")
    if summary is not None:
        parts += ["<h2>Test summary</h2>", _key_value_table(summary)]
    for split in ("test", "valid"):  # the most complete evaluation of each split
        result = rundir.best_evaluation(run_dir, split)
        if result is not None:
            figures = {k: v for k, v in result.items() if k not in ("layers", "kl_per_dim", "disentanglement")}
            parts += [f"<h2>Evaluation ({split} split)</h2>", _key_value_table(figures), *_layers(result)]
        for result in rundir.evaluations(run_dir, split):  # each evaluation with disentanglement metrics
            if result.get("disentanglement"):
                parts += _disentanglement(result["disentanglement"], split)
    no_epoch = "<p class='note'>No epoch has completed yet.</p>"
    parts += ["<h2>Metrics per epoch</h2>", table(metrics) if metrics else no_epoch, "<h2>Pictures</h2>"]
    images = run_dir / rundir.IMAGES_DIR
    names = [n for n in CAPTIONS if (images / n).exists()]
    names += sorted(p.name for p in images.glob("*.png") if p.name not in CAPTIONS) if images.exists() else []
    if not names:
        parts.append("<p class='note'>No pictures yet: run <code>vaekit plot RUN_DIR</code>.</p>")
    captions = CAPTIONS if not no_bound else {**CAPTIONS, "curves.png": NO_BOUND_CURVES}
    parts += [figure((images / name).read_bytes(), name, captions.get(name, name)) for name in names]
    sections = {k: v for k, v in config.to_dict().items()}
    parts.append("<h2>Config</h2>")
    for name, values in sections.items():
        parts += [f"<h3>{name}</h3>", _key_value_table(values)]
    return page(f"vaekit report: {run_dir.resolve().name}", parts)


def write_report(run_dir: str | Path) -> Path:
    """Write RUN_DIR/report.html and return its path."""
    path = Path(run_dir) / rundir.REPORT_FILE
    checkpoint.atomic_write_text(path, build_report(run_dir))
    return path
