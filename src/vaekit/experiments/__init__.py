"""Paper reproductions: grids of runs composed from training and evaluation, with a summary.

`run_experiment(name, out_dir, budget)` trains every run of an experiment into its own folder
under out_dir, skips runs that are already complete, resumes interrupted or shorter ones (so a
long budget can be reached over several invocations), estimates log p(x) for each, and writes
summary.json, summary.md and bound_vs_images.png into out_dir.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from vaekit import checkpoint
from vaekit.config import DataConfig
from vaekit.data import Dataset, load_dataset
from vaekit.errors import ConfigError
from vaekit.evaluation import evaluate_split
from vaekit.experiments import beta_sweep, burda2015, kingma2013
from vaekit.plots import write_pictures
from vaekit.training import train

EXPERIMENTS = {"kingma2013-mnist": kingma2013, "burda2015-mnist": burda2015, "beta-sweep": beta_sweep}


@dataclass(frozen=True)
class Budget:
    """How much each run of an experiment gets: epochs, data, and K for log p(x)."""

    epochs: int
    train_limit: int  # 0: all 50,000 training images
    eval_limit: int  # 0: all 10,000 test images
    importance_samples: int


BUDGETS = {
    "smoke": Budget(epochs=1, train_limit=500, eval_limit=100, importance_samples=10),
    "short": Budget(epochs=10, train_limit=0, eval_limit=1000, importance_samples=500),
    "long": Budget(epochs=200, train_limit=0, eval_limit=0, importance_samples=5000),
}


def _complete(run_dir: Path, epochs: int, samples: int) -> bool:
    summary, evaluation = run_dir / checkpoint.SUMMARY_FILE, run_dir / "evaluation-test.json"
    if not (summary.exists() and evaluation.exists()):
        return False
    return json.loads(summary.read_text())["epochs"] == epochs and \
        json.loads(evaluation.read_text()).get("num_importance_samples") == samples


def run_experiment(name: str, out_dir: str | Path, budget: str = "short", epochs: int | None = None,
                   progress: bool = False, dataset: Dataset | None = None,
                   log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Run (or continue) every run of an experiment; return and write its summary."""
    if name not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment '{name}': choose one of {', '.join(EXPERIMENTS)}.")
    if budget not in BUDGETS:
        raise ConfigError(f"unknown budget '{budget}': choose one of {', '.join(BUDGETS)}.")
    if epochs is not None and not 1 <= epochs <= 100_000:
        raise ConfigError(f"--epochs {epochs} is invalid: use 1 to 100000.")
    module, b = EXPERIMENTS[name], BUDGETS[budget]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data_config = DataConfig(train_limit=b.train_limit, eval_limit=b.eval_limit)
    data = dataset if dataset is not None else load_dataset(data_config)
    test = data.evaluation_observations("test")
    rows = []
    for run_name, config in module.runs(epochs or b.epochs, data_config):
        run_dir = out_dir / run_name
        start = time.perf_counter()
        if _complete(run_dir, config.train.epochs, b.importance_samples):
            log(f"{run_name}: complete, skipped")
        else:
            resume = (run_dir / checkpoint.CONFIG_FILE).exists()
            log(f"{run_name}: {'resuming' if resume else 'training'} to {config.train.epochs} epochs")
            train(config, run_dir, resume=resume, progress=progress, dataset=data)
            model, _ = checkpoint.load_run(run_dir)
            result = evaluate_split(model, test, b.importance_samples, seed=config.train.seed)
            checkpoint.write_json(run_dir / "evaluation-test.json", {"split": "test", **result})
            write_pictures(model, data.test.images, data.test.labels, [], run_dir / checkpoint.IMAGES_DIR,
                           config.train.seed, which=("traversals", "samples"))
        summary = json.loads((run_dir / checkpoint.SUMMARY_FILE).read_text())
        evaluation = json.loads((run_dir / "evaluation-test.json").read_text())
        metrics = checkpoint.read_metrics(run_dir)
        rows.append({
            "run": run_name, "latent_dim": config.model.latent_dim, "optimizer": config.train.optimizer,
            "objective": config.train.objective, "k": config.train.num_samples, "beta": config.train.beta,
            "epochs": summary["epochs"], "images_seen": metrics[-1]["images_seen"] if metrics else 0,
            "train_elbo": metrics[-1]["train_elbo"] if metrics else None, "test_elbo": summary["test_elbo"],
            "test_reconstruction": summary["test_reconstruction"], "test_kl": summary["test_kl"],
            "log_likelihood": evaluation.get("log_likelihood"), "log_likelihood_stderr": evaluation.get("log_likelihood_stderr"),
            "importance_samples": b.importance_samples, "active_units": evaluation["active_units"],
            "training_minutes": summary["seconds_total"] / 60, "published_nll": module.PUBLISHED.get(run_name),
            "curve": [(m["images_seen"], m["train_elbo"], m["valid_elbo"]) for m in metrics],
            "invocation_seconds": time.perf_counter() - start,
        })
    result = {"experiment": name, "title": module.TITLE, "budget": budget, "epochs_per_run": epochs or b.epochs,
              "train_images": len(data.train), "test_images": len(test), "runs": rows}
    checkpoint.write_json(out_dir / "summary.json", result)
    checkpoint.atomic_write_text(out_dir / "summary.md", summary_markdown(result))
    _plot_curves(result, out_dir / "bound_vs_images.png")
    return result


def summary_markdown(result: dict[str, Any]) -> str:
    """The summary as a Markdown table, bounds in nats per image (higher is better)."""
    lines = [f"# {result['title']}", "",
             f"Budget `{result['budget']}`: {result['epochs_per_run']} epochs per run on {result['train_images']} "
             f"training images; log p(x) on {result['test_images']} test images.", "",
             "| run | latent | optimizer | objective | k | beta | images seen | train ELBO | test ELBO | "
             "test KL | log p(x) (K) | active units | published -log p(x) | minutes |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["runs"]:
        ll = f"{r['log_likelihood']:.2f} ± {r['log_likelihood_stderr']:.2f} ({r['importance_samples']})" \
            if r["log_likelihood"] is not None else "-"
        published = f"{r['published_nll']:.2f}" if r["published_nll"] is not None else "-"
        lines.append(f"| {r['run']} | {r['latent_dim']} | {r['optimizer']} | {r['objective']} | {r['k']} | "
                     f"{r['beta']:g} | {r['images_seen']:,} | {r['train_elbo']:.2f} | {r['test_elbo']:.2f} | "
                     f"{r['test_kl']:.2f} | {ll} | {r['active_units']} | {published} | "
                     f"{r['training_minutes']:.1f} |")
    return "\n".join(lines) + "\n"


def _plot_curves(result: dict[str, Any], path: Path) -> None:
    """Train (solid) and held-out (dashed) ELBO against training images seen, one colour per run."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), dpi=100)
    ax = fig.subplots()
    for i, r in enumerate(result["runs"]):
        if not r["curve"]:
            continue
        seen, train_elbo, valid_elbo = zip(*r["curve"])
        colour = f"C{i % 10}"
        ax.plot(seen, train_elbo, "-", color=colour, label=r["run"])
        ax.plot(seen, valid_elbo, "--", color=colour)
    ax.set_xscale("log")
    ax.set(xlabel="training images seen", ylabel="ELBO (nats per image)",
           title=f"{result['experiment']} ({result['budget']} budget): train solid, validation dashed")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
