"""The run folder: the names of its files, its lock, and what --resume and --overwrite mean.

Layout of a run folder:
    config.json              the resolved RunConfig (rebuilds the model with no other input)
    model.safetensors        weights of the last completed epoch (what evaluation and pictures use)
    checkpoint.safetensors   everything to resume: weights, optimiser tensors and the TrainState
    metrics.jsonl            one JSON line per completed epoch
    summary.json             the final test figures of the training run
    evaluation-SPLIT-kK[-iwaeI][-firstN][-bf16][-disentanglement-nP[-pS][-gG]][-best].json
                             what `vaekit evaluate` measured, one file per setting (split, K of
                             log p(x), k of the IWAE bound, first N images, precision, the
                             disentanglement metrics' pairs, score points and grid classes, the
                             weights), so that a quick check never replaces an expensive result
    prior.safetensors        a VQ-VAE's PixelCNN prior, fitted by `vaekit train-prior` to the codes of
                             model.safetensors (whose digest it keeps: load_run ignores it for other weights)
    prior-checkpoint.safetensors, prior-metrics.jsonl
                             what resumes that fit, and one JSON line per epoch of it
    report.html              the one-page report
    images/                  PNG pictures
    .lock                    held by the process writing into the folder
Every reader and writer of these files, in training, evaluation, the CLI, the report, the
playground and the experiments, takes the names from here.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; runs are then not protected from each other
    fcntl = None  # type: ignore[assignment]

import torch

from vaekit import checkpoint
from vaekit.checkpoint import TrainState
from vaekit.config import RunConfig, load_config
from vaekit.errors import CheckpointError, ConfigError
from vaekit.models.pixelcnn import GatedPixelCNN
from vaekit.models.vae import VAE, build_model

CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"
BEST_MODEL_FILE = "model-best.safetensors"  # the weights of the epoch with the best validation ELBO
WEIGHTS = {"last": MODEL_FILE, "best": BEST_MODEL_FILE}  # evaluate --weights
CHECKPOINT_FILE = "checkpoint.safetensors"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.html"
IMAGES_DIR = "images"
TENSORBOARD_DIR = "tensorboard"  # event files of `vaekit train --tensorboard`
LOCK_FILE = ".lock"
EVALUATION_GLOB = "evaluation-*.json"
FEATURES_FILE = "features.npz"  # the posterior means of a run's images (vaekit features): M1's features for M2
PRIOR_FILE = "prior.safetensors"  # a VQ-VAE's fitted PixelCNN prior (vaekit train-prior)
PRIOR_CHECKPOINT_FILE = "prior-checkpoint.safetensors"
PRIOR_METRICS_FILE = "prior-metrics.jsonl"

# What a resumed run may change: how long it trains, and where (not what it computes).
RESUMABLE_KEYS = (
    "train.epochs",
    "train.device",
    "train.num_threads",
    "train.compile",
    "train.sync_every_steps",
)


def evaluation_file(
    split: str,
    num_importance_samples: int,
    iwae_num_importance_samples: int = 0,
    limit: int = 0,
    precision: str = "float32",
    disentanglement: dict[str, Any] | None = None,
    weights: str = "last",
) -> str:
    """The file of one evaluation setting, e.g. evaluation-test-k5000.json, evaluation-valid-k0-first200.json,
    evaluation-test-k5000-bf16.json, evaluation-test-k0-disentanglement-n10000-p2000-g10.json or
    evaluation-test-k5000-best.json; disentanglement: the metrics' setting (pairs, score_points, grid_classes)."""
    iwae = f"-iwae{iwae_num_importance_samples}" if iwae_num_importance_samples else ""
    first = f"-first{limit}" if limit else ""
    lower = "" if precision == "float32" else f"-{precision}"
    metrics = ""
    if disentanglement is not None:
        parts = zip(("n", "p", "g"), (disentanglement.get(k) for k in ("pairs", "score_points", "grid_classes")))
        metrics = "-disentanglement" + "".join(f"-{letter}{value}" for letter, value in parts if value is not None)
    best = "-best" if weights == "best" else ""
    return f"evaluation-{split}-k{num_importance_samples}{iwae}{first}{lower}{metrics}{best}.json"


def holds_run(run_dir: str | Path) -> bool:
    return (Path(run_dir) / CONFIG_FILE).exists()


def remove_run_files(run_dir: Path) -> None:
    """Delete the files vaekit writes in a run folder (for --overwrite), and nothing else."""
    run_dir = Path(run_dir)
    written = [CONFIG_FILE, MODEL_FILE, BEST_MODEL_FILE, CHECKPOINT_FILE, METRICS_FILE, SUMMARY_FILE, REPORT_FILE]
    written += [PRIOR_FILE, PRIOR_CHECKPOINT_FILE, PRIOR_METRICS_FILE]
    for path in [run_dir / name for name in written] + list(run_dir.glob(EVALUATION_GLOB)):
        path.unlink(missing_ok=True)
    for folder in (IMAGES_DIR, TENSORBOARD_DIR):
        shutil.rmtree(run_dir / folder, ignore_errors=True)


@contextlib.contextmanager
def lock(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on a run folder, or refuse at once if another process holds it.

    An advisory flock on RUN_DIR/.lock: the operating system drops it when the holder exits,
    however it exits (kill -9 included), so a crashed run never leaves the folder locked.
    Stale temporary files of a writer that died mid-write are removed once the lock is held.
    """
    path = Path(run_dir) / LOCK_FILE
    with open(path, "a+") as handle:
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                raise CheckpointError(
                    f"{run_dir} is in use by {holder}; wait for that run to finish or stop it first."
                ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} on {socket.gethostname()}")
        handle.flush()
        for stale in Path(run_dir).glob(".*.tmp"):
            stale.unlink(missing_ok=True)
        try:
            yield
        finally:
            handle.truncate(0)


# --- config and weights ----------------------------------------------------------------------


def write_config(run_dir: Path, config: RunConfig) -> None:
    checkpoint.atomic_write_text(Path(run_dir) / CONFIG_FILE, config.to_json())


def read_config(run_dir: str | Path) -> RunConfig:
    if not holds_run(run_dir):
        raise CheckpointError(f"{run_dir} is not a vaekit run folder: it has no {CONFIG_FILE}.")
    try:
        return RunConfig.load(Path(run_dir) / CONFIG_FILE)
    except ConfigError as err:
        raise CheckpointError(f"the run's config is invalid: {err}") from None


def save_model(run_dir: Path, model: VAE, weights: str = "last") -> None:
    checkpoint.save_weights(Path(run_dir) / WEIGHTS[weights], model)


def load_run(run_dir: str | Path, device: str | torch.device = "cpu", weights: str = "last") -> tuple[VAE, RunConfig]:
    """Rebuild a trained model from its run folder (config.json + model.safetensors, or with weights="best"
    model-best.safetensors), in eval mode; another `weights` name is one sentence."""
    run_dir = Path(run_dir)
    if weights not in WEIGHTS:
        raise ConfigError(
            f"unknown weights {weights!r}: choose 'last' (the last epoch's, {MODEL_FILE}) or 'best' (the best "
            f"validation ELBO's, {BEST_MODEL_FILE})."
        )
    if not run_dir.is_dir():
        raise CheckpointError(f"run folder {run_dir} does not exist.")
    config = read_config(run_dir)
    model = build_model(config.model, 2**config.data.bits)
    path = run_dir / WEIGHTS[weights]
    if weights == "best" and not path.exists():
        raise CheckpointError(f"{run_dir} has no {BEST_MODEL_FILE}: it was trained before vaekit kept the best model.")
    checkpoint.load_weights(path, model)
    attach_prior(run_dir, model, config, path)
    return model.to(device).eval(), config


def prior_network(config: RunConfig) -> torch.nn.Module:
    """A fresh PixelCNN prior over a VQ-VAE's codes, as model.pixelcnn_* configure it."""
    m = config.model
    return GatedPixelCNN(m.codebook_size, m.pixelcnn_channels, m.pixelcnn_layers)


def fitted_prior_digest(weights: Path) -> str:
    """The digest of a weights file (its stored sha256), which prior.safetensors records as the codes it fits."""
    return checkpoint.read_tensors(weights)[1].get("sha256", "")


def attach_prior(run_dir: Path, model: VAE, config: RunConfig, weights: Path) -> bool:
    """Make a VQ-VAE's fitted PixelCNN (prior.safetensors) its prior, where the folder has one fitted to these
    weights' codes; whether it did. A prior fitted to other weights (a run trained on since) is left aside."""
    path = run_dir / PRIOR_FILE
    if config.model.family != "vq-vae" or not path.exists():
        return False
    tensors, metadata = checkpoint.read_tensors(path)
    if metadata.get("model_sha256") != fitted_prior_digest(weights):
        return False
    network = prior_network(config)
    checkpoint.load_weights_into(network, tensors, path)
    model.prior.attach(network.eval())
    return True


def save_checkpoint(run_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: TrainState) -> None:
    """Write the resume checkpoint; a full disk or a read-only folder is one sentence, the old checkpoint intact."""
    try:
        checkpoint.save_checkpoint(Path(run_dir) / CHECKPOINT_FILE, model, optimizer, state)
    except OSError as err:
        raise CheckpointError(
            f"could not write the checkpoint in {run_dir}: {err.strerror or err}; the previous checkpoint is intact. "
            "Free disk space or fix the folder's permissions, then continue with --resume."
        ) from None


def load_checkpoint(run_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> TrainState:
    return checkpoint.load_checkpoint(Path(run_dir) / CHECKPOINT_FILE, model, optimizer)


def has_checkpoint(run_dir: Path) -> bool:
    return (Path(run_dir) / CHECKPOINT_FILE).exists()


# --- metrics, summary, evaluations -----------------------------------------------------------


# What every line of metrics.jsonl holds (readers such as compare and the report rely on them).
METRIC_KEYS = ("epoch", "images_seen", "seconds", "train_elbo", "valid_elbo")


def read_metrics(run_dir: str | Path, problems: list[str] | None = None) -> list[dict[str, Any]]:
    """The per-epoch metric lines of a run. A line that is not a JSON object with every METRIC_KEYS key is
    skipped; with `problems`, each such line is said there by file and number (except a trailing partial
    line, which a crash leaves and the checkpoint does not hold)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    rows, lines = [], path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        missing = [k for k in METRIC_KEYS if k not in row] if isinstance(row, dict) else None
        if missing == []:
            rows.append(row)
        elif problems is not None and (number < len(lines) or isinstance(row, dict)):
            what = f"lacks {', '.join(missing)}" if missing else "is not a JSON object"
            problems.append(f"{path} line {number} {what}; it was skipped")
    return rows


def write_metrics(run_dir: Path, rows: list[dict[str, Any]], name: str = METRICS_FILE) -> None:
    """One JSON line per row into the run's metrics file (or another jsonl file of the folder, `name`)."""
    checkpoint.atomic_write_text(Path(run_dir) / name, "".join(json.dumps(r) + "\n" for r in rows))


def write_features(run_dir: str | Path, arrays: dict[str, Any]) -> Path:
    """A run's features (data.features_file's arrays), written whole or not at all; returns the path."""
    import os

    import numpy as np

    path = Path(run_dir) / FEATURES_FILE
    partial = path.with_name(FEATURES_FILE + ".partial.npz")
    np.savez(partial, **arrays)
    os.replace(partial, path)
    return path


def read_summary(run_dir: str | Path) -> dict[str, Any] | None:
    return checkpoint.read_json(Path(run_dir) / SUMMARY_FILE)


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    checkpoint.write_json(Path(run_dir) / SUMMARY_FILE, summary)


def write_evaluation(run_dir: str | Path, result: dict[str, Any]) -> Path:
    """Save an evaluation result under the name of its setting (its split, num_importance_samples,
    iwae_num_importance_samples, limit and precision keys); return the file's path."""
    name = evaluation_file(
        result["split"],
        result.get("num_importance_samples", 0),
        result.get("iwae_num_importance_samples", 0),
        result.get("limit", 0),
        result.get("precision", "float32"),
        (result["disentanglement"].get("setting") or {}) if "disentanglement" in result else None,
        result.get("weights", "last"),
    )
    path = Path(run_dir) / name
    checkpoint.write_json(path, result)
    return path


def evaluations(run_dir: str | Path, split: str | None = None) -> list[dict[str, Any]]:
    """Every saved evaluation of a run (of one split, if given), whatever vaekit version named the file."""
    found = [_checked_evaluation(path) for path in sorted(Path(run_dir).glob(EVALUATION_GLOB))]
    return [r for r in found if r is not None and (split is None or r.get("split") == split)]


def _checked_evaluation(path: Path) -> dict[str, Any] | None:
    """A saved evaluation, with a CheckpointError naming the file where its per-image figures are not numbers."""
    result = checkpoint.read_json(path)
    per_image = (result or {}).get("log_likelihood_per_image", [])
    number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
    bad = next((i for i, v in enumerate(per_image) if not number(v)), None) if isinstance(per_image, list) else -1
    if bad is not None:
        where = f"holds {per_image[bad]!r} at image {bad}" if bad >= 0 else "is not a list"
        raise CheckpointError(
            f"{path} is damaged: its log_likelihood_per_image {where}, not a number. Delete the file and evaluate "
            "the run again (vaekit evaluate)."
        )
    return result


def _completeness(result: dict[str, Any]) -> tuple[int, int, int, bool, bool]:
    return (
        result.get("images", 0),
        result.get("num_importance_samples", 0),
        result.get("iwae_num_importance_samples", 0),
        result.get("precision", "float32") == "float32",
        result.get("weights", "last") == "last",
    )


def best_evaluation(run_dir: str | Path, split: str) -> dict[str, Any] | None:
    """The most complete evaluation of a split: the most images, then the largest K, then the IWAE bound,
    then float32 over a lower precision, then the last weights over the best."""
    return max(evaluations(run_dir, split), key=_completeness, default=None)


def disentanglement_evaluations(run_dir: str | Path, split: str, weights: str = "last") -> list[dict[str, Any]]:
    """The disentanglement figures of a split (vaekit evaluate --disentanglement) of these weights, one per
    saved setting (see evaluation_file), each with its `setting` (derived for files saved before it was)."""
    scored = []
    for result in evaluations(run_dir, split):
        figures = result.get("disentanglement")
        if figures and result.get("weights", "last") == weights:
            points, grid = figures.get("score_points") or {}, figures.get("mig_posterior_setting") or {}
            pairs = figures.get("pairs", result.get("images"))
            setting = {"pairs": pairs, "score_points": points.get("train"), "grid_classes": grid.get("grid_classes")}
            scored.append({**figures, "setting": figures.get("setting", setting)})
    return scored


def test_figures(summary: dict[str, Any], weights: str) -> dict[str, Any]:
    """The test ELBO and its terms in summary.json of these weights: the last's, or the best's where they were
    kept apart (best_weights) or are the last; {} where the summary has none of these weights."""
    if weights == "best" and summary.get("best_epoch") != summary.get("epochs"):
        return summary.get("best_weights", {})
    return summary


def find_evaluation(run_dir: str | Path, split: str, num_importance_samples: int) -> dict[str, Any] | None:
    """The evaluation of a split with this K over the whole split (no --limit), if one was saved; for a model with
    no importance-sampled log p(x) (no_marginal: a VQ-VAE), its evaluation of the split, whatever K was asked."""
    matches = [
        r
        for r in evaluations(run_dir, split)
        if (r.get("num_importance_samples", 0) == num_importance_samples or r.get("no_marginal")) and not r.get("limit")
    ]
    return max(matches, key=_completeness, default=None)


# --- what --resume and --overwrite mean ------------------------------------------------------


def flat(config: RunConfig) -> dict[str, Any]:
    """The config as {"model.latent_dim": 16, ...}."""
    return {f"{s}.{k}": v for s, section in config.to_dict().items() for k, v in section.items()}


def check_resumable(run_dir: Path, saved: RunConfig, config: RunConfig) -> None:
    """Refuse a resume whose config differs from the saved one outside RESUMABLE_KEYS, naming
    each key with its saved value and the one given: anything else would be another run."""
    before, after = flat(saved), flat(config)
    changed = [k for k in after if after[k] != before[k] and k not in RESUMABLE_KEYS]
    if changed:
        details = "; ".join(f"{k} is {before[k]!r} in the saved run, {after[k]!r} was given" for k in changed)
        raise ConfigError(
            f"cannot resume {run_dir} with a different config: {details}. Only {', '.join(RESUMABLE_KEYS)} "
            "may change on resume; train into a new --run-dir for anything else."
        )


def resume_config(run_dir: Path, given: dict[str, Any], source: str | None = None) -> RunConfig:
    """The saved config of a run with what the user gave on resuming applied: dotted keys, and
    with `source` (a preset or config file, as --config) every key of that config.

    A value equal to the saved one is accepted (the same command line with --resume added
    works); a value that differs is refused unless its key is in RESUMABLE_KEYS.
    """
    if source is not None:
        given = flat(load_config(source, given))
    saved = read_config(run_dir)
    config = saved.with_overrides(given)
    check_resumable(run_dir, saved, config)
    return config


def prepare(run_dir: Path, config: RunConfig, resume: bool, overwrite: bool) -> None:
    """Create the run folder's config, or reopen it to resume; refuse to clobber an existing run."""
    if resume:
        if not holds_run(run_dir):
            raise CheckpointError(f"cannot resume: {run_dir} holds no run (no {CONFIG_FILE}).")
        check_resumable(run_dir, read_config(run_dir), config)
    elif holds_run(run_dir):
        if not overwrite:
            raise CheckpointError(
                f"{run_dir} already holds a run; pass --resume to continue it or --overwrite to replace it."
            )
        read_config(run_dir)  # delete only what is recognisably a vaekit run
        remove_run_files(run_dir)
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    write_config(run_dir, config)
