"""The summary of an experiment: one row per run read back from its folder, a Markdown table
beside the published figures, and the bound-against-images figure (drawn by `vaekit.plots`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from vaekit import checkpoint, plots, rundir
from vaekit.compare import over_seeds, paired_bits, paired_bound, paired_log_likelihood
from vaekit.config import RunConfig
from vaekit.disentanglement import METRICS
from vaekit.experiments.plan import EXPERIMENTS, ExperimentPlan, base_run, seed_suffix

SUMMARY_JSON, SUMMARY_MARKDOWN, SUMMARY_FIGURE = "summary.json", "summary.md", "bound_vs_images.png"


def run_row(plan: ExperimentPlan, run: str, config: RunConfig, run_dir: Path) -> dict[str, Any]:
    """One run's figures, as its folder holds them: the training summary, the test evaluation, the metrics."""
    summary, evaluation = (
        rundir.read_summary(run_dir),
        rundir.find_evaluation(run_dir, "test", plan.spec.num_importance_samples),
    )
    assert summary is not None and evaluation is not None  # only evaluated runs are summarised
    metrics = rundir.read_metrics(run_dir)
    last = metrics[-1] if metrics else {}
    baseline = getattr(EXPERIMENTS[plan.name], "BASELINES", {}).get(base_run(run))
    baseline = baseline + seed_suffix(run) if baseline else None  # each seed against the same seed
    paired = paired_log_likelihood(run_dir.parent / baseline, run_dir) if baseline else {}
    return {
        "run": run,
        "base_run": base_run(run),
        "seed": config.train.seed,
        "latent_dim": "+".join(map(str, config.model.latent_sizes)),  # bottom layer first
        "optimizer": config.train.optimizer,
        "objective": config.train.objective,
        "num_samples": config.train.num_samples,
        "beta": config.train.beta,
        "epochs": summary["epochs"],
        "epochs_planned": config.train.epochs,
        "images_seen": last.get("images_seen", 0),
        "train_elbo": last.get("train_elbo"),
        "test_elbo": summary["test_elbo"],
        "test_reconstruction": summary["test_reconstruction"],
        "test_kl": summary["test_kl"],
        "log_likelihood": evaluation.get("log_likelihood"),
        "log_likelihood_stderr": evaluation.get("log_likelihood_stderr"),
        "num_importance_samples": plan.spec.num_importance_samples,
        "active_units": evaluation.get("active_units"),  # none for a VQ-VAE: its codebook's use instead
        "error": evaluation.get("error"),  # M2's classifier q(y|x): its test error and that share's standard error
        "error_stderr": evaluation.get("error_stderr"),
        "training_minutes": summary["seconds_total"] / 60,
        # log p(x), the ELBO and latents, and the disentanglement metrics where the data has factors
        "evaluation_minutes": (evaluation["seconds"] + (evaluation.get("disentanglement") or {}).get("seconds", 0))
        / 60,
        "published_nll": EXPERIMENTS[plan.name].PUBLISHED.get(run),
        "paired_against": baseline if paired else None,  # log p(x) minus the baseline's, image by image
        **paired,
        "curve": [(m["images_seen"], m["train_elbo"], m["valid_elbo"]) for m in metrics],
        **{name: (evaluation.get("disentanglement") or {}).get(name) for name in METRICS},
        "published_metrics": getattr(EXPERIMENTS[plan.name], "PUBLISHED_METRICS", {}).get(base_run(run), {}),
        **_bits(evaluation, paired, math.prod(config.model.image_shape)),
        **_code_bounds(evaluation, run_dir, run_dir.parent / baseline if baseline else None, config),
        "published_bits_per_dim": getattr(EXPERIMENTS[plan.name], "PUBLISHED_BITS", {}).get(base_run(run)),
    }


# A VQ-VAE's bounds in bits/dim (its evaluation's per-image key) paired with its baseline's figures (their keys)
CODE_BOUNDS = {"bound": "elbo_per_image", "uniform_bound": "elbo_uniform_prior_per_image"}
BASELINE_FIGURES = {"log_likelihood": "log_likelihood_per_image", "elbo": "elbo_per_image"}


def _code_bounds(evaluation: dict[str, Any], run_dir: Path, baseline: Path | None, config: RunConfig) -> dict[str, Any]:
    """A VQ-VAE's figures (where its evaluation has them, `codes_used`): its prior, codebook use, and each bound in
    bits/dim, bound_bits_per_dim (under its prior: the PixelCNN once fitted) and uniform_bound_bits_per_dim, with
    its standard error over the images; each paired with the baseline's log p(x) and ELBO, image by image."""
    if "codes_used" not in evaluation:
        return {}
    scale = math.prod(config.model.image_shape) * math.log(2.0)
    out: dict[str, Any] = {key: evaluation[key] for key in ("prior", "codes_used", "codebook_size", "perplexity")}
    for name, key in CODE_BOUNDS.items():
        values = evaluation[key]
        mean = sum(values) / len(values)
        stderr = (
            (sum((v - mean) ** 2 for v in values) / (len(values) - 1) / len(values)) ** 0.5 if len(values) > 1 else 0
        )
        out[f"{name}_bits_per_dim"], out[f"{name}_bits_per_dim_stderr"] = -mean / scale, stderr / scale
        for figure, baseline_key in BASELINE_FIGURES.items() if baseline else ():
            paired = paired_bound(baseline, baseline_key, run_dir, key)
            if paired:
                out[f"{name}_against_{figure}"] = -paired["paired_difference"] / scale
                out[f"{name}_against_{figure}_stderr"] = paired["paired_stderr"] / scale
    return out


def _bits(evaluation: dict[str, Any], paired: dict[str, Any], dims: int) -> dict[str, Any]:
    """A run's log p(x) and ELBO in bits/dim with the standard error, and its paired difference in bits/dim
    (-d / (D ln 2), the same measure on both sides), where its evaluation states them (grey levels)."""
    if evaluation.get("log_likelihood_bits_per_dim") is None:
        return {}
    out = {key: evaluation[key] for key in ("log_likelihood_bits_per_dim", "log_likelihood_bits_per_dim_stderr",
                                             "elbo_bits_per_dim", "measure", "levels")}  # fmt: skip
    if paired:
        out["paired_bits"], out["paired_bits_stderr"] = paired_bits(paired, dims)
    return out


def summarise(
    plan: ExperimentPlan, rows: list[dict[str, Any]], missing: list[str], train_images: int, test_images: int
) -> dict[str, Any]:
    return {
        "experiment": plan.name,
        "title": EXPERIMENTS[plan.name].TITLE,
        "budget": plan.budget,
        "epochs_per_run": plan.epochs_per_run,
        "minutes_per_run": plan.minutes,
        "train_images": train_images,
        "test_images": test_images,
        "num_importance_samples": plan.spec.num_importance_samples,
        "seeds": plan.seeds,
        "runs": rows,
        "over_seeds": seed_groups(rows) if plan.seeds > 1 else [],
        "missing": missing,
        # where the published figures beside the metrics come from, as the experiment's module states it
        "published_sources": list(getattr(EXPERIMENTS[plan.name], "PUBLISHED_SOURCES", ())),
    }


# A row carries every disentanglement metric (None where the data has no known factors): vaekit.disentanglement.METRICS
# The figures summarised over seeds: each run's median, range and per-seed values.
SEED_FIGURES = (
    "test_elbo",
    "test_kl",
    "log_likelihood",
    "paired_difference",
    "active_units",
    "log_likelihood_bits_per_dim",
    "paired_bits",
    "error",
    *METRICS,
)


def seed_groups(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each run of the grid, in order, the median, minimum and maximum over its seeds of each figure
    (SEED_FIGURES), with the per-seed values (seed order); a figure no seed has is left out."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["base_run"], []).append(row)
    out = []
    for run, members in groups.items():
        figures = over_seeds(sorted(members, key=lambda m: m["seed"]), SEED_FIGURES)
        paired = {base_run(m["paired_against"]) for m in members if m.get("paired_against")}
        against = paired.pop() if len(paired) == 1 else None
        published = members[0].get("published_metrics") or {}
        out.append(
            {"run": run, "seeds": len(members), "paired_against": against, "figures": figures}
            | ({"published_metrics": published} if published else {})
        )
    return out


def write_summary(result: dict[str, Any], out_dir: Path) -> None:
    """summary.json, summary.md and bound_vs_images.png into out_dir."""
    checkpoint.write_json(out_dir / SUMMARY_JSON, result)
    checkpoint.atomic_write_text(out_dir / SUMMARY_MARKDOWN, summary_markdown(result))
    runs = {
        r["run"]: [{"images_seen": s, "train_elbo": t, "valid_elbo": v} for s, t, v in r["curve"]]
        for r in result["runs"]
    }
    # One panel per optimiser (Kingma & Welling's Figure 2) or objective, where the grid varies it.
    key = next((k for k in ("optimizer", "objective") if len({r[k] for r in result["runs"]}) > 1), None)
    panels = {r["run"]: f"{key} = {r[key]}" for r in result["runs"]} if key else None
    title = f"{result['experiment']} ({result['budget']} budget): train solid, validation dashed"
    plots.elbo_curves(runs, out_dir / SUMMARY_FIGURE, title, panels)


def _error_table(rows: list[dict[str, Any]], groups: list[dict[str, Any]]) -> list[str]:
    """The classifiers' test error in percent (M2's q(y|x)), each run's with its standard error, then over seeds
    (median, range), beside the published figure (mean +- its spread over runs) where the module gives one."""
    classifying = [r for r in rows if r.get("error") is not None]
    if not classifying:
        return []
    lines = ["", "| run | test error % | ± s.e. | published % |", "|---|---|---|---|"]
    for r in classifying:
        published = r.get("published_metrics") or {}
        cited = f"{published['error']:.2f} ± {published['error_spread']:.2f}" if "error" in published else ""
        lines.append(f"| {r['run']} | {100 * r['error']:.2f} | {100 * r['error_stderr']:.2f} | {cited} |")
    for g in groups:
        figure = g["figures"].get("error")
        if figure:
            values = ", ".join(f"{100 * v:.2f}" for v in figure["values"])
            published = g.get("published_metrics") or {}
            cited = f"{published['error']:.2f} ± {published['error_spread']:.2f}" if "error" in published else ""
            median = 100 * figure["median"]
            lines.append(f"| {g['run']}: median of {g['seeds']} seeds ({values}) | {median:.2f} | | {cited} |")
    return lines


def summary_markdown(result: dict[str, Any]) -> str:
    """The summary as a Markdown table, bounds in nats per image (higher is better)."""
    capped = (
        f", at most {result['minutes_per_run']:g} minutes of training per run and invocation"
        if result.get("minutes_per_run")
        else ""
    )
    lines = [
        f"# {result['title']}",
        "",
        f"Budget `{result['budget']}`: {result['epochs_per_run']} epochs per run{capped}, on "
        f"{result['train_images']:,} training images; log p(x) with K = {result['num_importance_samples']} "
        f"on {result['test_images']:,} test images. Bounds in nats per image; minutes of training, then of "
        'evaluation. "Against, paired": log p(x) minus that run\'s on the same test images, ± the standard '
        "error of the differences.",
        "",
        "| run | latent | optimizer | objective | samples | beta | epochs | images seen | train ELBO | "
        "test ELBO | test rec. | test KL | log p(x) | against, paired | active units | published -log p(x) | minutes |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [_markdown_row(r) for r in result["runs"]]
    lines += _bits_table(result["runs"])
    lines += _code_table(result["runs"])
    lines += _error_table(result["runs"], result.get("over_seeds") or [])
    lines += _metrics_table(result["runs"])
    lines += _seed_table(result.get("over_seeds") or [])
    if result.get("published_sources"):
        lines += ["", "Where the published figures come from:", ""] + [f"- {s}" for s in result["published_sources"]]
    if result.get("missing"):
        lines += ["", f"Not run yet (or failed): {', '.join(result['missing'])}."]
    return "\n".join(lines) + "\n"


def _bits_table(rows: list[dict[str, Any]]) -> list[str]:
    """log p(x) and the ELBO in bits per dimension (lower is better) of each run on grey levels, with the
    paired difference against its baseline and the published figure."""
    rows = [r for r in rows if r.get("log_likelihood_bits_per_dim") is not None]
    if not rows:
        return []
    lines = [
        "",
        f"In bits per dimension ({rows[0]['measure']} over {rows[0]['levels']} levels), lower is better: "
        "-log p(x) / (D ln 2) ± its standard error; the ELBO's, an upper bound; against, paired, in bits/dim.",
        "",
        "| run | bits/dim, log p(x) | bits/dim, ELBO | against, paired | published |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        against = (
            f"{r['paired_against']}: {r['paired_bits']:+.4f} ± {r['paired_bits_stderr']:.4f}"
            if "paired_bits" in r
            else "-"
        )
        published = f"{r['published_bits_per_dim']:.2f}" if r.get("published_bits_per_dim") else "-"
        lines.append(
            f"| {r['run']} | {r['log_likelihood_bits_per_dim']:.4f} ± {r['log_likelihood_bits_per_dim_stderr']:.4f} | "
            f"{r['elbo_bits_per_dim']:.4f} | {against} | {published} |"
        )
    return lines


def _code_table(rows: list[dict[str, Any]]) -> list[str]:
    """Each VQ-VAE's bound in bits/dim under its prior and under the uniform prior of training (lower is better),
    each ± its standard error and paired with its baseline's log p(x) and ELBO; its codebook's use."""
    rows = [r for r in rows if r.get("codes_used") is not None]
    if not rows:
        return []
    lines = [
        "",
        "A VQ-VAE's bound log p(x|z_q) + log p(z_q) in bits/dim (no importance-sampled log p(x): q(z|x) is a point "
        "mass), under its prior and under the uniform prior, ± the standard error over the images; paired: minus "
        "the baseline's log p(x) or ELBO in bits/dim on the same images, ± the standard error of the differences.",
        "",
        "| run | prior | bits/dim, bound | against log p(x) | against ELBO | bits/dim, uniform prior "
        "| against log p(x) | codes used | published |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def paired(r: dict[str, Any], key: str) -> str:
        return f"{r[key]:+.4f} ± {r[key + '_stderr']:.4f}" if key in r else "-"

    for r in rows:
        published = f"{r['published_bits_per_dim']:.2f}" if r.get("published_bits_per_dim") else "-"
        lines.append(
            f"| {r['run']} | {r['prior']} | {r['bound_bits_per_dim']:.4f} ± {r['bound_bits_per_dim_stderr']:.4f} | "
            f"{paired(r, 'bound_against_log_likelihood')} | {paired(r, 'bound_against_elbo')} | "
            f"{r['uniform_bound_bits_per_dim']:.4f} ± {r['uniform_bound_bits_per_dim_stderr']:.4f} | "
            f"{paired(r, 'uniform_bound_against_log_likelihood')} | {r['codes_used']} of {r['codebook_size']} "
            f"(perplexity {r['perplexity']:.1f}) | {published} |"
        )
    return lines


def _metrics_table(rows: list[dict[str, Any]]) -> list[str]:
    """The disentanglement metrics of each run (where the data has known factors), published ones after."""
    rows = [r for r in rows if r.get("mig") is not None]
    if not rows:
        return []
    lines = [
        "",
        "Disentanglement on the test images (vaekit.disentanglement; mig from 20-bin histograms, mig_posterior "
        "Chen et al.'s estimator), published figures in brackets where the experiment lists them.",
        "",
        "| run | " + " | ".join(METRICS) + " |",
        "|---|" + "---|" * len(METRICS),
    ]
    for r in rows:
        published = r.get("published_metrics") or {}
        cells = [f"{r[m]:.3f}" + (f" ({published[m]:.2f})" if m in published else "") if r.get(m) is not None else "-"
                 for m in METRICS]  # fmt: skip
        lines.append(f"| {r['run']} | " + " | ".join(cells) + " |")
    return lines


def _seed_table(groups: list[dict[str, Any]]) -> list[str]:
    """Each run's figures over its seeds: median [min, max]; the paired difference is taken seed by seed."""
    if not groups:
        return []

    def cell(group: dict[str, Any], name: str, digits: int = 2) -> str:
        f = group["figures"].get(name)
        return "-" if f is None else f"{f['median']:.{digits}f} [{f['min']:.{digits}f}, {f['max']:.{digits}f}]"

    lines = [
        "",
        "Over seeds: median [minimum, maximum]; per-seed figures in summary.json (`over_seeds`).",
        "",
        "| run | seeds | test ELBO | test KL | log p(x) | against, paired seed by seed | active units |",
        "|---|---|---|---|---|---|---|",
    ]
    for g in groups:
        against = f"{g['paired_against']}: {cell(g, 'paired_difference')}" if g["paired_against"] else "-"
        lines.append(
            f"| {g['run']} | {g['seeds']} | {cell(g, 'test_elbo')} | {cell(g, 'test_kl')} | "
            f"{cell(g, 'log_likelihood')} | {against} | {cell(g, 'active_units', 0)} |"
        )
    scored = [g for g in groups if "mig" in g["figures"]]
    if scored:  # the disentanglement metrics over seeds, with the published figures
        lines += ["", "| run | seeds | " + " | ".join(METRICS) + " |", "|---|---|" + "---|" * len(METRICS)]
        for g in scored:
            published = g.get("published_metrics") or {}
            cells = [cell(g, m, 3) + (f" ({published[m]:.2f})" if m in published else "") for m in METRICS]
            lines.append(f"| {g['run']} | {g['seeds']} | " + " | ".join(cells) + " |")
    return lines


def _markdown_row(r: dict[str, Any]) -> str:
    ll = f"{r['log_likelihood']:.2f} ± {r['log_likelihood_stderr']:.2f}" if r["log_likelihood"] is not None else "-"
    published = f"{r['published_nll']:.2f}" if r["published_nll"] is not None else "-"
    epochs = str(r["epochs"]) if r["epochs"] == r["epochs_planned"] else f"{r['epochs']} of {r['epochs_planned']}"
    train_elbo = f"{r['train_elbo']:.2f}" if r["train_elbo"] is not None else "-"
    against, units = "-", "-" if r["active_units"] is None else r["active_units"]
    if r.get("paired_against"):
        against = f"{r['paired_against']}: {r['paired_difference']:+.2f} ± {r['paired_stderr']:.2f}"
    return (
        f"| {r['run']} | {r['latent_dim']} | {r['optimizer']} | {r['objective']} | {r['num_samples']} | "
        f"{r['beta']:g} | {epochs} | {r['images_seen']:,} | {train_elbo} | {r['test_elbo']:.2f} | "
        f"{r['test_reconstruction']:.2f} | {r['test_kl']:.2f} | {ll} | {against} | {units} | {published} | "
        f"{r['training_minutes']:.1f} + {r['evaluation_minutes']:.1f} |"
    )
