"""The training loop, top to bottom: set up, loop over minibatches, evaluate, checkpoint.

Randomness is a pure function of the seed and the position in training: the data order of
epoch e comes from a generator seeded by (seed, "order", e) and the noise of step t (the
binarization and eps) from one seeded by (seed, "noise", t). A checkpoint therefore needs no
RNG state, and a run resumed from any checkpoint repeats an uninterrupted one bit for bit on CPU.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from vaekit import checkpoint
from vaekit.config import RunConfig, TrainConfig
from vaekit.data import Dataset, load_dataset
from vaekit.errors import CheckpointError, ConfigError, TrainingDivergedError
from vaekit.evaluation import evaluate_elbo
from vaekit.models.vae import VAE, build_model
from vaekit.objectives import training_loss
from vaekit.randomness import derive_seed, seeded_generator

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adagrad": torch.optim.Adagrad,
}


def make_optimizer(name: str, params: Any, lr: float) -> torch.optim.Optimizer:
    """The optimiser with its fused kernel where this torch build has one, else the foreach one.

    Why: on CPU, torch's default for Adam is a per-parameter Python loop of about eight kernels
    each; for the paper's MLP that was 35-40% of a training step (torch.profiler, benchmarks/).
    The fused kernel does the same update in one pass; results differ only in rounding.
    """
    params = list(params)
    try:
        return OPTIMIZERS[name](params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return OPTIMIZERS[name](params, lr=lr, foreach=True)
@dataclass
class TrainResult:
    model: VAE
    config: RunConfig
    run_dir: Path
    metrics: list[dict[str, Any]]
    test: dict[str, float]


def _flat(config: RunConfig) -> dict[str, Any]:
    return {f"{s}.{k}": v for s, section in config.to_dict().items() for k, v in section.items()}


def prepare_run_dir(run_dir: Path, config: RunConfig, resume: bool, overwrite: bool) -> RunConfig:
    """Create the run folder, or reopen it to resume; refuse to clobber an existing run."""
    has_run = (run_dir / checkpoint.CONFIG_FILE).exists()
    if resume:
        if not has_run:
            raise CheckpointError(f"cannot resume: {run_dir} holds no run (no {checkpoint.CONFIG_FILE}).")
        saved = checkpoint.load_config(run_dir)
        # Only the length of training may change on resume; anything else would be another run.
        if dataclasses.replace(saved.train, epochs=config.train.epochs) != config.train or \
                (saved.model, saved.data) != (config.model, config.data):
            changed = [k for k, v in _flat(config).items() if _flat(saved)[k] != v and k != "train.epochs"]
            raise ConfigError(f"cannot resume {run_dir} with a different config ({', '.join(changed)} changed); "
                              "only train.epochs may change.")
        checkpoint.save_config(run_dir, config)
        return config
    if has_run and not overwrite:
        raise CheckpointError(
            f"{run_dir} already holds a run; pass --resume to continue it or --overwrite to replace it."
        )
    if has_run and overwrite:
        checkpoint.load_config(run_dir)  # delete only what is recognisably a vaekit run
        checkpoint.remove_run_files(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    checkpoint.save_config(run_dir, config)
    return config


def train(
    config: RunConfig,
    run_dir: str | Path,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    dataset: Dataset | None = None,
    log: Callable[[str], None] = lambda s: None,
) -> TrainResult:
    """Train a VAE by stochastic gradient ascent on the ELBO (Kingma & Welling 2013, Algorithm 1).

    Holds an exclusive lock on the run folder for the whole run, so a second process cannot
    write into it at the same time.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with checkpoint.lock_run_dir(run_dir):
        config = prepare_run_dir(run_dir, config, resume, overwrite)
        return _train_locked(config, run_dir, resume, progress, dataset, log)


def _train_locked(config: RunConfig, run_dir: Path, resume: bool, progress: bool, dataset: Dataset | None,
                  log: Callable[[str], None]) -> TrainResult:
    tc = config.train
    if tc.num_threads:
        torch.set_num_threads(tc.num_threads)

    # --- set up: data, model, optimiser, and where a resumed run left off -------------------
    data = dataset if dataset is not None else load_dataset(config.data, config.model.image_shape)
    if data.image_shape != config.model.image_shape:
        raise ConfigError(f"model.image_shape = {config.model.image_shape} but the data's images are {data.image_shape}.")
    train_x = data.train.images
    n, batch = len(train_x), tc.batch_size
    if batch > n:
        raise ConfigError(f"train.batch_size = {batch} is larger than the {n} training images.")
    torch.manual_seed(derive_seed(tc.seed, "init"))
    model = build_model(config.model)
    optimizer = make_optimizer(tc.optimizer, model.parameters(), tc.learning_rate)
    state: dict[str, Any] = {"epoch": 0, "step": 0, "batch_in_epoch": 0, "sums": [0.0, 0.0, 0.0, 0.0],
                             "seconds": 0.0, "skipped": 0, "metrics": []}
    if resume and (run_dir / checkpoint.CHECKPOINT_FILE).exists():
        loaded = checkpoint.load_checkpoint(run_dir, model, optimizer)
        if set(loaded) != set(state):
            raise CheckpointError(f"{run_dir / checkpoint.CHECKPOINT_FILE} holds a train state with keys "
                                  f"{sorted(loaded)}, expected {sorted(state)}; it is from another vaekit version.")
        state = loaded
        # The checkpoint is the one source of truth: files written after it by a run that died
        # before its next checkpoint are rewritten from it.
        checkpoint.write_metrics(run_dir, state["metrics"])
        if state["batch_in_epoch"] == 0:
            checkpoint.save_model(run_dir, model)
        log(f"resuming {run_dir} at epoch {state['epoch'] + 1}, step {state['step']}")
    batches_per_epoch = -(-n // batch)
    valid_x = data.evaluation_observations("valid")
    last_save = time.monotonic()

    # --- the loop ------------------------------------------------------------------------------
    model.train()
    while state["epoch"] < tc.epochs:
        epoch = state["epoch"]
        order = torch.randperm(n, generator=seeded_generator(tc.seed, "order", epoch))
        sums = torch.tensor(state["sums"], dtype=torch.float64)  # elbo, reconstruction, kl, images
        consecutive_skips = 0
        t0 = time.perf_counter()
        bar = tqdm(total=batches_per_epoch, initial=state["batch_in_epoch"], disable=not progress,
                   desc=f"epoch {epoch + 1}/{tc.epochs}", unit="batch", leave=False)
        for b in range(state["batch_in_epoch"], batches_per_epoch):
            noise = seeded_generator(tc.seed, "noise", state["step"])
            x = data.training_observations(train_x[order[b * batch : (b + 1) * batch]], noise)
            loss, terms = training_loss(model, x, tc, state["step"], noise)  # minimised; the bound is maximised
            optimizer.zero_grad(set_to_none=True)
            bad = None if torch.isfinite(loss) else "loss"
            if bad is None:
                loss.backward()
                bad = None if _gradients_finite(model) else "gradient"
            if bad is None:
                optimizer.step()
                consecutive_skips = 0
                with torch.no_grad():
                    sums += torch.stack([terms.elbo.sum(), terms.reconstruction.sum(), terms.kl.sum(),
                                         torch.tensor(float(len(x)))]).double()
            elif tc.skip_nonfinite and consecutive_skips < MAX_CONSECUTIVE_SKIPS:
                optimizer.zero_grad(set_to_none=True)
                state["skipped"] += 1
                consecutive_skips += 1
            else:
                raise TrainingDivergedError(_diverged_message(bad, loss, x, model, state["step"], epoch, run_dir, tc))
            state["step"] += 1
            state["batch_in_epoch"] = b + 1
            if progress and b % 25 == 0:
                bar.set_postfix(elbo=f"{sums[0].item() / max(sums[3].item(), 1):.2f}", refresh=False)
            bar.update(1)
            due = (tc.checkpoint_every_steps and state["step"] % tc.checkpoint_every_steps == 0) or \
                time.monotonic() - last_save > 60 * tc.checkpoint_minutes
            if due and b + 1 < batches_per_epoch:
                state["sums"] = sums.tolist()
                state["seconds"] += time.perf_counter() - t0
                t0 = time.perf_counter()
                _save_checkpoint(run_dir, model, optimizer, state)
                last_save = time.monotonic()
        bar.close()
        seconds = state["seconds"] + time.perf_counter() - t0

        # --- evaluate and save at the end of each epoch ------------------------------------
        train_mean = (sums[:3] / max(sums[3].item(), 1)).tolist()
        valid = evaluate_elbo(model, valid_x, tc.eval_batch_size, 1, seeded_generator(tc.seed, "eval"))
        row = {
            "epoch": epoch + 1, "step": state["step"], "images_seen": (epoch + 1) * n,
            "train_elbo": train_mean[0], "train_reconstruction": train_mean[1], "train_kl": train_mean[2],
            **valid.as_dict("valid_"), "seconds": seconds, "images_per_second": n / max(seconds, 1e-9),
            "skipped_steps": state["skipped"],
        }
        state.update(epoch=epoch + 1, batch_in_epoch=0, sums=[0.0] * 4, seconds=0.0,
                     metrics=state["metrics"] + [row])
        # Order matters for a crash between writes: the checkpoint (which holds the metrics) first.
        _save_checkpoint(run_dir, model, optimizer, state)
        checkpoint.save_model(run_dir, model)
        checkpoint.write_metrics(run_dir, state["metrics"])
        last_save = time.monotonic()
        log(f"epoch {epoch + 1:3d}  train elbo {row['train_elbo']:9.3f}  valid elbo {row['valid_elbo']:9.3f}  "
            f"(rec {row['valid_reconstruction']:.2f}, kl {row['valid_kl']:.2f})  "
            f"{row['seconds']:.1f}s  {row['images_per_second']:.0f} img/s"
            + (f"  ({state['skipped']} non-finite steps skipped so far)" if state["skipped"] else ""))

    # --- final test figures ------------------------------------------------------------------
    metrics = state["metrics"]
    test = evaluate_elbo(model, data.evaluation_observations("test"), tc.eval_batch_size, 1,
                         seeded_generator(tc.seed, "eval")).as_dict("test_")
    test["seconds_total"] = sum(m["seconds"] for m in metrics)
    checkpoint.write_json(run_dir / checkpoint.SUMMARY_FILE, {"epochs": len(metrics), **test})
    model.eval()
    return TrainResult(model, config, run_dir, metrics, test)


# With train.skip_nonfinite, this many non-finite steps in a row still stop the run: by then
# the weights themselves are broken and skipping only hides it.
MAX_CONSECUTIVE_SKIPS = 50


def _gradients_finite(model: VAE) -> bool:
    """True when every gradient is finite (one reduction per parameter, one sync)."""
    norms = [torch.linalg.vector_norm(p.grad) for p in model.parameters() if p.grad is not None]
    return bool(torch.isfinite(torch.stack(norms)).all()) if norms else True


def _diverged_message(what: str, loss: torch.Tensor, x: torch.Tensor, model: VAE, step: int, epoch: int,
                      run_dir: Path, tc: TrainConfig) -> str:
    """One sentence: what became non-finite, where, the likely cause and what to do."""
    if not torch.isfinite(x).all():
        cause = "the input batch holds NaN or infinite pixels: check the dataset"
    elif any(not torch.isfinite(p).all() for p in model.parameters()):
        cause = "the weights are already non-finite"
    else:
        cause = f"the step size is likely too large: lower train.learning_rate (now {tc.learning_rate})"
    value = f" ({loss.item()})" if what == "loss" else ""
    kept = (f"the last good checkpoint in {run_dir} is kept" if (run_dir / checkpoint.CHECKPOINT_FILE).exists()
            else "no checkpoint had been written yet")
    return (f"the {what} became non-finite{value} at step {step} (epoch {epoch + 1}); {cause}. The weights were "
            f"not updated and {kept}; --set train.skip_nonfinite=true skips such steps instead.")


def _save_checkpoint(run_dir: Path, model: VAE, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    try:
        checkpoint.save_checkpoint(run_dir, model, optimizer, state)
    except OSError as err:
        raise CheckpointError(
            f"could not write the checkpoint in {run_dir}: {err.strerror or err}; the previous checkpoint is intact. "
            "Free disk space or fix the folder's permissions, then continue with --resume."
        ) from None
