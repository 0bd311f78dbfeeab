"""Running an experiment's plan: skip complete runs, resume shorter ones, evaluate, share among workers.

A run is complete when its test evaluation is of its latest trained state, with the budget's K,
and it reached the planned epochs. Everything the summary shows is read back from the run
folders, so a summary written after worker processes or several invocations is the same as one
written after a single uninterrupted invocation.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vaekit import rundir
from vaekit.config import RunConfig
from vaekit.data import Dataset, load_dataset
from vaekit.diagnostics import disentanglement_figures
from vaekit.distributed import select_device
from vaekit.errors import ConfigError, VaekitError
from vaekit.evaluation import evaluate_split, measure
from vaekit.experiments.plan import EXPERIMENTS, ExperimentPlan, base_run, seed_suffix
from vaekit.experiments.summary import run_row, summarise, write_summary
from vaekit.features import feature_shape, write_features
from vaekit.plots import PictureInputs, write_pictures
from vaekit.prior_training import PriorTraining, prior_due, train_prior
from vaekit.tensorboard import TensorBoard, add_evaluation
from vaekit.training import train


def evaluated(run_dir: Path, num_importance_samples: int) -> bool:
    """True when the run's test evaluation is of its latest trained state, with this K."""
    summary = rundir.read_summary(run_dir)
    evaluation = rundir.find_evaluation(run_dir, "test", num_importance_samples)
    return summary is not None and evaluation is not None and evaluation.get("epochs") == summary["epochs"]


def complete(run_dir: Path, config: RunConfig, num_importance_samples: int, prior_epochs: int = 0) -> bool:
    """Trained to its planned epochs, its code prior fitted where it has one, and evaluated since."""
    summary = rundir.read_summary(run_dir)
    done = evaluated(run_dir, num_importance_samples) and summary is not None and trained(summary, config)
    return done and not prior_due(run_dir, config, prior_epochs)


def trained(summary: dict[str, Any], config: RunConfig) -> bool:
    """The run reached its planned epochs, or stopped early (train.early_stopping_patience)."""
    return summary.get("epochs") == config.train.epochs or bool(summary.get("stopped_early"))


def run_experiment(
    plan: ExperimentPlan,
    out_dir: str | Path,
    jobs: int = 1,
    summary: bool = True,
    progress: bool = False,
    dataset: Dataset | None = None,
    log: Callable[[str], None] = lambda s: None,
) -> dict[str, Any]:
    """Run (or continue) the runs of a plan into out_dir/RUN; return the summary, and write it unless told not.

    jobs > 1 shares the runs still to do among that many worker processes (`python -m vaekit
    experiment ... --runs ...`, one GPU each, round robin, where there are several), then
    summarises what they left.
    """
    if not 1 <= jobs <= 1024:
        raise ConfigError(f"--jobs {jobs} is invalid: use 1 to 1024.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    K = plan.spec.num_importance_samples
    todo = [run for run, config in plan.runs() if not complete(out_dir / run, config, K, plan.spec.prior_epochs)]
    in_workers = jobs > 1 and len(todo) > 1
    if in_workers and getattr(EXPERIMENTS[plan.name], "FEATURES_FROM", None):
        raise ConfigError(f"{plan.name} trains on features of its own runs, one after the other: use --jobs 1.")
    failed = run_workers(plan, out_dir, todo, jobs, log) if in_workers else []
    shape = plan.runs()[0][1].model.image_shape  # the grid's runs share their data and image shape
    data = dataset if dataset is not None else load_dataset(plan.data_config, shape, log)
    rows = []
    for run, config in plan.runs():
        if run not in todo:
            log(f"{run}: complete, skipped")
        elif not in_workers:  # a worker ran it otherwise; its folder holds what it reached
            config = on_features(plan, run, config, out_dir, log)
            run_data = data if config.data == plan.data_config else load_dataset(config.data, config.model.image_shape)
            train_and_evaluate(plan, run, config, out_dir / run, run_data, progress, log)
        if evaluated(out_dir / run, K):
            rows.append(run_row(plan, run, config, out_dir / run))
    done = {r["run"] for r in rows}
    result = summarise(plan, rows, [run for run, _ in plan.runs() if run not in done], len(data.train), len(data.test))
    if summary:
        write_summary(result, out_dir)
    if failed:
        raise VaekitError(
            f"run(s) {', '.join(failed)} of {plan.name} failed (see their messages above); the "
            "summary holds the others. Run the same command again to resume them."
        )
    return result


def on_features(
    plan: ExperimentPlan, run: str, config: RunConfig, out_dir: Path, log: Callable[[str], None]
) -> RunConfig:
    """A run that trains on another run's features (the module's FEATURES_FROM: M1 + M2 on M1, the same seed), with
    its data.path and model.image_shape set to them, written first where they are missing; other runs as they are."""
    source = getattr(EXPERIMENTS[plan.name], "FEATURES_FROM", {}).get(base_run(run))
    if source is None:
        return config
    source_dir = out_dir.resolve() / (source + seed_suffix(run))
    path = source_dir / rundir.FEATURES_FILE
    if not path.exists():
        if not evaluated(source_dir, plan.spec.num_importance_samples):
            raise VaekitError(f"{run} trains on the features of {source_dir.name}, which is not trained yet.")
        path = write_features(source_dir, log=log)  # every unit that moves: the same width at every budget
    model = dataclasses.replace(config.model, image_shape=feature_shape(path))
    return dataclasses.replace(config, model=model, data=dataclasses.replace(config.data, path=str(path)))


def train_and_evaluate(
    plan: ExperimentPlan,
    run: str,
    config: RunConfig,
    run_dir: Path,
    data: Dataset,
    progress: bool,
    log: Callable[[str], None],
) -> None:
    """Train a run to its planned epochs (or the plan's minutes), then evaluate it on the test split."""
    summary = rundir.read_summary(run_dir) or {}
    if trained(summary, config):
        log(f"{run}: trained to {config.train.epochs} epochs; evaluating")
    else:
        resume = rundir.holds_run(run_dir)
        log(
            f"{run}: {'resuming' if resume else 'training'} to {config.train.epochs} epochs"
            + (f", at most {plan.minutes:g} minutes" if plan.minutes else "")
        )
        train(
            config,
            run_dir,
            resume=resume,
            progress=progress,
            dataset=data,
            max_seconds=None if plan.minutes is None else 60 * plan.minutes,
            callbacks=[TensorBoard()] if plan.tensorboard else [],
        )
    model, _ = rundir.load_run(run_dir, device=select_device(config.train.device))
    if prior_due(run_dir, config, plan.spec.prior_epochs):
        log(f"{run}: fitting the PixelCNN prior for {plan.spec.prior_epochs} epochs")
        setting = PriorTraining(epochs=plan.spec.prior_epochs)
        train_prior(run_dir, setting, resume=True, progress=progress, log=log, dataset=data)
        model, _ = rundir.load_run(run_dir, device=select_device(config.train.device))
    test = data.evaluation_observations("test")  # one fixed binarization, shared by every run
    result = evaluate_split(
        model,
        test,
        plan.spec.num_importance_samples,
        seed=config.train.seed,
        measure=measure(config),
        labels=data.test.labels,
    )
    if data.test.factors is not None:  # data with known factors: every disentanglement metric too
        result["disentanglement"] = disentanglement_figures(
            model, data, test, data.test.factors, config.train.seed, plan.spec.grid_classes, plan.spec.score_points
        )
    result = {"split": "test", "epochs": (rundir.read_summary(run_dir) or {}).get("epochs"), **result}
    rundir.write_evaluation(run_dir, result)
    add_evaluation(run_dir, result)  # to the run's TensorBoard events, where it writes them
    pictures = PictureInputs(
        model.cpu(), data.test.images, data.test.labels, [], config.train.seed, data.class_names,
        data.test.factors, data.factor_names,
    )  # fmt: skip
    # then a VQ-VAE's, then a model of labels'; none of a model of features, which are not images
    which = ("traversals", "samples", "factors", "prior-samples", "codes", "classes", "analogies")
    which = () if config.data.dataset == "features" else which
    write_pictures(pictures, run_dir / rundir.IMAGES_DIR, which=which)


def run_workers(
    plan: ExperimentPlan, out_dir: Path, todo: list[str], jobs: int, log: Callable[[str], None]
) -> list[str]:
    """Run `todo` as min(jobs, len(todo)) worker processes, round robin; return the runs of failed workers."""
    import torch

    gpus = torch.cuda.device_count() if plan.device in ("auto", "cuda") else 0
    shares = [todo[i::jobs] for i in range(min(jobs, len(todo)))]
    workers = []
    for i, share in enumerate(shares):
        worker_plan = dataclasses.replace(plan, only=tuple(share))
        command = [
            sys.executable,
            "-m",
            "vaekit",
            "experiment",
            *worker_plan.command_line(),
            "--out",
            str(out_dir),
            "--no-summary",
            "--no-progress",
        ]
        env = dict(os.environ, **({"CUDA_VISIBLE_DEVICES": str(i % gpus)} if gpus > 1 else {}))
        # The workers share the CPU cores: without this each would start a thread per core.
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // len(shares))))
        log(f"worker {i + 1}/{len(shares)}: {', '.join(share)}" + (f" on GPU {i % gpus}" if gpus > 1 else ""))
        workers.append((share, subprocess.Popen(command, env=env)))
    return [run for share, worker in workers if worker.wait() != 0 for run in share]
