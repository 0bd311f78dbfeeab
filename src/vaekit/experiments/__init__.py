"""Paper reproductions: grids of runs composed from training and evaluation, with a summary.

`run_experiment(name, out_dir, budget)` trains every run of an experiment into its own folder
under out_dir, skips runs that are already complete, resumes interrupted or shorter ones (so a
long budget can be reached over several invocations), estimates log p(x) for each, and writes
summary.json, summary.md and bound_vs_images.png into out_dir. A budget is epochs per run, and
optionally minutes of training per run and invocation. With jobs > 1 the runs are shared among
that many independent worker processes (one GPU each, round robin, where there are several).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from vaekit import checkpoint
from vaekit.config import DataConfig, RunConfig
from vaekit.data import Dataset, load_dataset
from vaekit.errors import ConfigError, VaekitError
from vaekit.evaluation import evaluate_split
from vaekit.experiments import beta_sweep, burda2015, kingma2013
from vaekit.plots import write_pictures
from vaekit.training import train

EXPERIMENTS = {"kingma2013-mnist": kingma2013, "burda2015-mnist": burda2015, "beta-sweep": beta_sweep}
EVALUATION_FILE = "evaluation-test.json"


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


def _read(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def _evaluated(run_dir: Path, samples: int) -> bool:
    """True when the run's test evaluation is of its latest trained state, with K = samples."""
    summary, evaluation = _read(run_dir / checkpoint.SUMMARY_FILE), _read(run_dir / EVALUATION_FILE)
    return summary is not None and evaluation is not None and \
        evaluation.get("num_importance_samples") == samples and evaluation.get("epochs") == summary["epochs"]


def _complete(run_dir: Path, epochs: int, samples: int) -> bool:
    return _evaluated(run_dir, samples) and _read(run_dir / checkpoint.SUMMARY_FILE)["epochs"] == epochs


def _grid(name: str, budget: str, epochs: int | None, only: Sequence[str] | None, device: str,
          data_config: DataConfig) -> list[tuple[str, RunConfig]]:
    """The experiment's runs (those named in `only`, if given), set to run on `device` in float32."""
    grid = [(run, dataclasses.replace(config, train=dataclasses.replace(config.train, device=device,
                                                                         precision="float32")))
            for run, config in EXPERIMENTS[name].runs(epochs or BUDGETS[budget].epochs, data_config)]
    if only:
        unknown = sorted(set(only) - {run for run, _ in grid})
        if unknown:
            raise ConfigError(f"{name} has no run {', '.join(unknown)}: its runs are "
                              f"{', '.join(run for run, _ in grid)}.")
        grid = [(run, config) for run, config in grid if run in only]
    return grid


def run_experiment(name: str, out_dir: str | Path, budget: str = "short", epochs: int | None = None,
                   progress: bool = False, dataset: Dataset | None = None,
                   log: Callable[[str], None] = lambda s: None, only: Sequence[str] | None = None,
                   minutes: float | None = None, device: str = "auto", jobs: int = 1,
                   summary: bool = True) -> dict[str, Any]:
    """Run (or continue) the runs of an experiment; return its summary, and write it unless told not.

    only: names of the runs to run (default: all). minutes: stop each run's training at the first
    epoch end past this many minutes in this invocation (it resumes on the next). jobs: share the
    runs among this many worker processes (`python -m vaekit experiment ... --runs ...`), then
    summarise what they left. Every figure in the summary is read back from the run folders.
    """
    if name not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment '{name}': choose one of {', '.join(EXPERIMENTS)}.")
    if budget not in BUDGETS:
        raise ConfigError(f"unknown budget '{budget}': choose one of {', '.join(BUDGETS)}.")
    if epochs is not None and not 1 <= epochs <= 100_000:
        raise ConfigError(f"--epochs {epochs} is invalid: use 1 to 100000.")
    if minutes is not None and not 0 < minutes <= 10**6:
        raise ConfigError(f"--minutes {minutes} is invalid: use a positive number of minutes.")
    if not 1 <= jobs <= 1024:
        raise ConfigError(f"--jobs {jobs} is invalid: use 1 to 1024.")
    b = BUDGETS[budget]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data_config = DataConfig(train_limit=b.train_limit, eval_limit=b.eval_limit)
    grid = _grid(name, budget, epochs, only, device, data_config)
    todo = [run for run, config in grid if not _complete(out_dir / run, config.train.epochs, b.importance_samples)]
    failed: list[str] = []
    if jobs > 1 and len(todo) > 1:
        failed = _run_workers(name, out_dir, budget, epochs, todo, minutes, device, jobs, log)
    data = dataset if dataset is not None else load_dataset(data_config)
    test = data.evaluation_observations("test")  # one fixed binarization, shared by every run
    rows = []
    for run_name, config in grid:
        run_dir = out_dir / run_name
        start = time.perf_counter()
        if run_name not in todo:
            log(f"{run_name}: complete, skipped")
        elif jobs > 1 and len(todo) > 1:
            pass  # a worker ran it; its folder holds what it reached
        else:
            trained = _read(run_dir / checkpoint.SUMMARY_FILE) or {}
            if trained.get("epochs") == config.train.epochs:
                log(f"{run_name}: trained to {config.train.epochs} epochs; evaluating")
            else:
                resume = (run_dir / checkpoint.CONFIG_FILE).exists()
                log(f"{run_name}: {'resuming' if resume else 'training'} to {config.train.epochs} epochs"
                    + (f", at most {minutes:g} minutes" if minutes else ""))
                train(config, run_dir, resume=resume, progress=progress, dataset=data,
                      max_seconds=None if minutes is None else 60 * minutes)
            model, _ = checkpoint.load_run(run_dir, device=_device(config))
            result = evaluate_split(model, test, b.importance_samples, seed=config.train.seed)
            reached = _read(run_dir / checkpoint.SUMMARY_FILE)["epochs"]
            checkpoint.write_json(run_dir / EVALUATION_FILE, {"split": "test", "epochs": reached, **result})
            write_pictures(model.cpu(), data.test.images, data.test.labels, [], run_dir / checkpoint.IMAGES_DIR,
                           config.train.seed, which=("traversals", "samples"))
        if _evaluated(run_dir, b.importance_samples):
            rows.append(_row(run_name, config, run_dir, b, name, time.perf_counter() - start))
    missing = [run for run, _ in grid if run not in {r["run"] for r in rows}]
    result = {"experiment": name, "title": EXPERIMENTS[name].TITLE, "budget": budget,
              "epochs_per_run": epochs or b.epochs, "minutes_per_run": minutes,
              "train_images": len(data.train), "test_images": len(test),
              "importance_samples": b.importance_samples, "runs": rows, "missing": missing}
    if summary:
        checkpoint.write_json(out_dir / "summary.json", result)
        checkpoint.atomic_write_text(out_dir / "summary.md", summary_markdown(result))
        _plot_curves(result, out_dir / "bound_vs_images.png")
    if failed:
        raise VaekitError(f"run(s) {', '.join(failed)} of {name} failed (see their messages above); the summary "
                          f"holds the others. Run the same command again to resume them.")
    return result


def _device(config: RunConfig) -> str:
    from vaekit.distributed import select_device

    return str(select_device(config.train.device))


def _run_workers(name: str, out_dir: Path, budget: str, epochs: int | None, todo: list[str],
                 minutes: float | None, device: str, jobs: int, log: Callable[[str], None]) -> list[str]:
    """Run `todo` as min(jobs, len(todo)) worker processes, round robin; return the failed runs."""
    import torch

    gpus = torch.cuda.device_count() if device in ("auto", "cuda") else 0
    shares = [todo[i::jobs] for i in range(min(jobs, len(todo)))]
    workers = []
    for i, share in enumerate(shares):
        command = [sys.executable, "-m", "vaekit", "experiment", name, "--budget", budget, "--out", str(out_dir),
                   "--runs", ",".join(share), "--device", device, "--no-summary", "--no-progress"]
        command += ["--epochs", str(epochs)] if epochs else []
        command += ["--minutes", str(minutes)] if minutes else []
        env = dict(os.environ, **({"CUDA_VISIBLE_DEVICES": str(i % gpus)} if gpus > 1 else {}))
        # The workers share the CPU cores: without this each would start a thread per core.
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // len(shares))))
        log(f"worker {i + 1}/{len(shares)}: {', '.join(share)}" + (f" on GPU {i % gpus}" if gpus > 1 else ""))
        workers.append((share, subprocess.Popen(command, env=env)))
    failed = []
    for share, worker in workers:
        if worker.wait() != 0:
            failed += share
    return failed


def _row(run_name: str, config: RunConfig, run_dir: Path, b: Budget, name: str, seconds: float) -> dict[str, Any]:
    summary = _read(run_dir / checkpoint.SUMMARY_FILE)
    evaluation = _read(run_dir / EVALUATION_FILE)
    metrics = checkpoint.read_metrics(run_dir)
    return {
        "run": run_name, "latent_dim": config.model.latent_dim, "optimizer": config.train.optimizer,
        "objective": config.train.objective, "k": config.train.num_samples, "beta": config.train.beta,
        "epochs": summary["epochs"], "epochs_planned": config.train.epochs,
        "images_seen": metrics[-1]["images_seen"] if metrics else 0,
        "train_elbo": metrics[-1]["train_elbo"] if metrics else None, "test_elbo": summary["test_elbo"],
        "test_reconstruction": summary["test_reconstruction"], "test_kl": summary["test_kl"],
        "log_likelihood": evaluation.get("log_likelihood"), "log_likelihood_stderr": evaluation.get("log_likelihood_stderr"),
        "importance_samples": b.importance_samples, "active_units": evaluation["active_units"],
        "training_minutes": summary["seconds_total"] / 60, "evaluation_minutes": evaluation["seconds"] / 60,
        "published_nll": EXPERIMENTS[name].PUBLISHED.get(run_name),
        "curve": [(m["images_seen"], m["train_elbo"], m["valid_elbo"]) for m in metrics],
        "invocation_seconds": seconds,
    }


def summary_markdown(result: dict[str, Any]) -> str:
    """The summary as a Markdown table, bounds in nats per image (higher is better)."""
    capped = f", at most {result['minutes_per_run']:g} minutes of training per run and invocation" \
        if result.get("minutes_per_run") else ""
    lines = [f"# {result['title']}", "",
             f"Budget `{result['budget']}`: {result['epochs_per_run']} epochs per run{capped}, on "
             f"{result['train_images']:,} training images; log p(x) with K = {result['importance_samples']} on "
             f"{result['test_images']:,} test images. Bounds in nats per image; minutes of training, then of "
             "evaluation.", "",
             "| run | latent | optimizer | objective | k | beta | epochs | images seen | train ELBO | test ELBO | "
             "test KL | log p(x) | active units | published -log p(x) | minutes |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["runs"]:
        ll = f"{r['log_likelihood']:.2f} ± {r['log_likelihood_stderr']:.2f}" if r["log_likelihood"] is not None else "-"
        published = f"{r['published_nll']:.2f}" if r["published_nll"] is not None else "-"
        epochs = str(r["epochs"]) if r["epochs"] == r["epochs_planned"] else f"{r['epochs']} of {r['epochs_planned']}"
        lines.append(f"| {r['run']} | {r['latent_dim']} | {r['optimizer']} | {r['objective']} | {r['k']} | "
                     f"{r['beta']:g} | {epochs} | {r['images_seen']:,} | {r['train_elbo']:.2f} | "
                     f"{r['test_elbo']:.2f} | {r['test_kl']:.2f} | {ll} | {r['active_units']} | {published} | "
                     f"{r['training_minutes']:.1f} + {r['evaluation_minutes']:.1f} |")
    if result.get("missing"):
        lines += ["", f"Not run yet (or failed): {', '.join(result['missing'])}."]
    return "\n".join(lines) + "\n"


def _plot_curves(result: dict[str, Any], path: Path) -> None:
    """Train (solid) and validation (dashed) ELBO against training images seen on a log axis, as
    in Kingma & Welling's Figure 2: one panel per optimiser (or objective) when the grid has
    several, one colour per run. The y axis leaves out the first epoch's transient."""
    from matplotlib.figure import Figure

    runs = [r for r in result["runs"] if r["curve"]]
    key = next((k for k in ("optimizer", "objective") if len({r[k] for r in runs}) > 1), None)
    groups = sorted({r[key] for r in runs}) if key else [None]
    fig = Figure(figsize=(5.5 * len(groups), 4.5), dpi=100)
    axes = fig.subplots(1, len(groups), sharey=True, squeeze=False)[0]
    later = [v for r in runs for point in r["curve"][1:] for v in point[1:]] or \
        [v for r in runs for point in r["curve"] for v in point[1:]]
    for ax, group in zip(axes, groups):
        for i, r in enumerate(runs):
            if key and r[key] != group:
                continue
            seen, train_elbo, valid_elbo = zip(*r["curve"])
            colour = f"C{i % 10}"
            ax.plot(seen, train_elbo, "-", color=colour, label=r["run"])
            ax.plot(seen, valid_elbo, "--", color=colour)
        ax.set_xscale("log")
        ax.set(xlabel="training images seen", title=f"{key} = {group}" if key else None)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    if later:
        low, high = min(later), max(later)
        axes[0].set_ylim(low - 0.05 * (high - low), high + 0.05 * (high - low))
    axes[0].set_ylabel("ELBO (nats per image)")
    fig.suptitle(f"{result['experiment']} ({result['budget']} budget): train solid, validation dashed")
    fig.tight_layout()
    fig.savefig(path)
