"""The summary of an experiment: one row per run read back from its folder, a Markdown table
beside the published figures, and the bound-against-images figure (drawn by `vaekit.plots`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vaekit import checkpoint, plots, rundir
from vaekit.config import RunConfig
from vaekit.evaluation import paired_log_likelihood
from vaekit.experiments.plan import EXPERIMENTS, ExperimentPlan

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
    baseline = getattr(EXPERIMENTS[plan.name], "BASELINES", {}).get(run)
    paired = paired_log_likelihood(run_dir.parent / baseline, run_dir) if baseline else {}
    return {
        "run": run,
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
        "active_units": evaluation["active_units"],
        "training_minutes": summary["seconds_total"] / 60,
        "evaluation_minutes": evaluation["seconds"] / 60,
        "published_nll": EXPERIMENTS[plan.name].PUBLISHED.get(run),
        "paired_against": baseline if paired else None,  # log p(x) minus the baseline's, image by image
        **paired,
        "curve": [(m["images_seen"], m["train_elbo"], m["valid_elbo"]) for m in metrics],
    }


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
        "runs": rows,
        "missing": missing,
    }


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
    if result.get("missing"):
        lines += ["", f"Not run yet (or failed): {', '.join(result['missing'])}."]
    return "\n".join(lines) + "\n"


def _markdown_row(r: dict[str, Any]) -> str:
    ll = f"{r['log_likelihood']:.2f} ± {r['log_likelihood_stderr']:.2f}" if r["log_likelihood"] is not None else "-"
    published = f"{r['published_nll']:.2f}" if r["published_nll"] is not None else "-"
    epochs = str(r["epochs"]) if r["epochs"] == r["epochs_planned"] else f"{r['epochs']} of {r['epochs_planned']}"
    train_elbo = f"{r['train_elbo']:.2f}" if r["train_elbo"] is not None else "-"
    against = "-"
    if r.get("paired_against"):
        against = f"{r['paired_against']}: {r['paired_difference']:+.2f} ± {r['paired_stderr']:.2f}"
    return (
        f"| {r['run']} | {r['latent_dim']} | {r['optimizer']} | {r['objective']} | {r['num_samples']} | "
        f"{r['beta']:g} | {epochs} | {r['images_seen']:,} | {train_elbo} | {r['test_elbo']:.2f} | "
        f"{r['test_reconstruction']:.2f} | {r['test_kl']:.2f} | {ll} | {against} | {r['active_units']} | {published} | "
        f"{r['training_minutes']:.1f} + {r['evaluation_minutes']:.1f} |"
    )
