"""The second stage of a VQ-VAE (van den Oord et al. 2017, Section 3.3): a gated PixelCNN fitted by maximum
likelihood to the code maps that the trained, frozen encoder gives the training images, into the same run folder
(`vaekit train-prior RUN`). Its files (rundir): prior.safetensors, the network with the digest of the
model.safetensors whose codes it fits; prior-checkpoint.safetensors, what --resume continues from (each epoch);
prior-metrics.jsonl, one line per epoch. Once written, `rundir.load_run` makes it the model's prior, so that
`vaekit evaluate`, the pictures and the report use it.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vaekit import checkpoint, rundir
from vaekit.checkpoint import TrainState
from vaekit.config import RunConfig
from vaekit.data import Dataset, load_dataset
from vaekit.errors import CheckpointError, ConfigError
from vaekit.models.quantiser import encode_codes
from vaekit.models.vae import VAE
from vaekit.progress import progress_bar
from vaekit.randomness import derive_seed, seeded_generator


@dataclass(frozen=True)
class PriorTraining:
    """How the PixelCNN prior is fitted: Adam at learning_rate over `epochs` passes in batches of code maps."""

    epochs: int = 10
    batch_size: int = 128
    learning_rate: float = 1e-3

    def __post_init__(self) -> None:
        for name, value, top in (("epochs", self.epochs, 100_000), ("batch_size", self.batch_size, 1_000_000)):
            if not 1 <= value <= top:
                raise ConfigError(f"train-prior --{name.replace('_', '-')} {value} is invalid: use 1 to {top}.")
        if not (math.isfinite(self.learning_rate) and 0 < self.learning_rate <= 1):
            raise ConfigError(f"train-prior --learning-rate {self.learning_rate} is invalid: use a value in (0, 1].")


@torch.no_grad()
def code_nll(network: nn.Module, codes: torch.Tensor, batch_size: int = 1000) -> float:
    """The mean of -log p(c) over code maps codes (N, h, w), in nats per map, accumulated in float64."""
    was_training = network.training
    network.eval()
    device = next(network.parameters()).device
    total = sum(
        -network.log_prob(codes[i : i + batch_size].to(device)).double().sum().item()
        for i in range(0, len(codes), batch_size)
    )
    network.train(was_training)
    return total / max(len(codes), 1)


def train_prior(
    run_dir: str | Path,
    setting: PriorTraining = PriorTraining(),
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = lambda s: None,
    max_seconds: float | None = None,
    dataset: Dataset | None = None,
) -> list[dict[str, Any]]:
    """Fit the PixelCNN prior of the VQ-VAE in run_dir (see the module docstring) for setting.epochs, or until an
    epoch ends past max_seconds (resume continues); returns the metrics, one row per epoch. The order of the code
    maps is a function of (seed, epoch) and the network's initial weights of the seed, so a CPU fit repeats.
    dataset: the run's data already loaded (else loaded from its config)."""
    run_dir, started = Path(run_dir), time.monotonic()
    rundir.read_config(run_dir)  # a missing or foreign folder is one sentence, before the lock writes into it
    with rundir.lock(run_dir):
        model, config = rundir.load_run(run_dir)
        if config.model.family != "vq-vae":
            raise ConfigError(
                f"{run_dir} holds a {config.model.family} run: train-prior fits the code prior of a VQ-VAE "
                "(model.family vq-vae)."
            )
        digest = rundir.fitted_prior_digest(run_dir / rundir.MODEL_FILE)
        _check_prior_files(run_dir, digest, resume, overwrite)
        data = dataset if dataset is not None else load_dataset(config.data, config.model.image_shape, log)
        batch = config.train.eval_batch_size
        train_codes = encode_codes(model, data.evaluation_observations("train"), batch)
        valid_codes = encode_codes(model, data.evaluation_observations("valid"), batch)
        torch.manual_seed(derive_seed(config.train.seed, "init", 1))
        network = rundir.prior_network(config)
        optimizer = torch.optim.Adam(network.parameters(), lr=setting.learning_rate)
        state = TrainState()
        if resume and (run_dir / rundir.PRIOR_CHECKPOINT_FILE).exists():
            state = checkpoint.load_checkpoint(run_dir / rundir.PRIOR_CHECKPOINT_FILE, network, optimizer)
            log(f"resuming the prior's fit after epoch {state.epoch}")
        pixels = math.prod(config.model.image_shape)
        while state.epoch < setting.epochs:
            seconds, train_nll = _prior_epoch(
                network, optimizer, train_codes, state, setting, config.train.seed, progress
            )
            row = _prior_row(network, train_nll, valid_codes, state, seconds, pixels, batch)
            _save_prior(run_dir, network, optimizer, state, row, digest)
            log(_prior_line(row, model))
            if max_seconds is not None and time.monotonic() - started > max_seconds and state.epoch < setting.epochs:
                log(f"stopping after epoch {state.epoch}, past the time given; --resume continues the fit")
                break
        return state.metrics


def has_code_prior(model: VAE) -> bool:
    """Whether the model's prior is over discrete codes (a VQ-VAE's), which train_prior fits."""
    return getattr(model.prior, "quantiser", None) is not None


def prior_due(run_dir: str | Path, config: RunConfig, epochs: int) -> bool:
    """Whether a run of this config still needs its code prior fitted for `epochs` epochs (a VQ-VAE's)."""
    return config.model.family == "vq-vae" and epochs > 0 and not prior_fitted(run_dir, epochs)


def prior_fitted(run_dir: str | Path, epochs: int) -> bool:
    """Whether run_dir's prior has been fitted for `epochs` epochs to the codes of its current weights."""
    run_dir = Path(run_dir)
    path = run_dir / rundir.PRIOR_FILE
    if not path.exists():
        return False
    metadata = checkpoint.read_tensors(path)[1]
    if metadata.get("model_sha256") != rundir.fitted_prior_digest(run_dir / rundir.MODEL_FILE):
        return False
    return int(metadata.get("epochs", 0)) >= epochs


def _check_prior_files(run_dir: Path, digest: str, resume: bool, overwrite: bool) -> None:
    """Refuse to replace a fitted prior unless asked (--overwrite), and to resume one fitted to other weights."""
    files = [rundir.PRIOR_FILE, rundir.PRIOR_CHECKPOINT_FILE, rundir.PRIOR_METRICS_FILE]
    if overwrite:
        for name in files:
            (run_dir / name).unlink(missing_ok=True)
        return
    if not (run_dir / rundir.PRIOR_FILE).exists():
        return
    if not resume:
        raise CheckpointError(
            f"{run_dir} already has a fitted prior ({rundir.PRIOR_FILE}): --resume continues its fit, --overwrite "
            "starts it again."
        )
    if checkpoint.read_tensors(run_dir / rundir.PRIOR_FILE)[1].get("model_sha256") != digest:
        raise CheckpointError(
            f"the prior in {run_dir / rundir.PRIOR_FILE} was fitted to the codes of earlier weights (the run has "
            "trained since): fit it again with --overwrite."
        )


def _prior_epoch(
    network: nn.Module,
    optimizer: torch.optim.Optimizer,
    codes: torch.Tensor,
    state: TrainState,
    setting: PriorTraining,
    seed: int,
    progress: bool,
) -> tuple[float, float]:
    """One pass over the code maps (N, h, w) in a seeded order, minimising the mean -log p(c); its seconds and the
    mean of the steps' losses (the training -log p(c) as the weights moved through the epoch)."""
    start, total = time.monotonic(), torch.zeros((), dtype=torch.float64)
    network.train()
    device = next(network.parameters()).device
    order = torch.randperm(len(codes), generator=seeded_generator(seed, "order", 1_000_000 + state.epoch))
    batches = range(0, len(codes), setting.batch_size)
    bar = progress_bar(total=len(batches), enabled=progress, unit="batch", desc=f"prior epoch {state.epoch + 1}")
    with contextlib.closing(bar):
        for i in batches:
            loss = -network.log_prob(codes[order[i : i + setting.batch_size]].to(device)).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach().double() * len(order[i : i + setting.batch_size])
            state.step += 1
            bar.update(1)
    state.epoch += 1
    return time.monotonic() - start, total.item() / len(codes)


def _prior_row(
    network: nn.Module,
    train_nll: float,
    valid_codes: torch.Tensor,
    state: TrainState,
    seconds: float,
    pixels: int,
    batch_size: int,
) -> dict[str, Any]:
    """The epoch's metrics line: -log p(c) in nats per map on the training codes (the mean over the epoch's steps)
    and the validation codes (at the epoch's end), and the validation figure as its share of the image's bits/dim,
    -log p(c) / (D ln 2) with D the pixels."""
    valid = code_nll(network, valid_codes, batch_size)
    return {
        "epoch": state.epoch,
        "step": state.step,
        "train_code_nll": train_nll,
        "valid_code_nll": valid,
        "valid_code_bits_per_dim": valid / (pixels * math.log(2)),
        "seconds": seconds,
    }


def _save_prior(
    run_dir: Path, network: nn.Module, optimizer: torch.optim.Optimizer, state: TrainState, row: dict, digest: str
) -> None:
    """The epoch's checkpoint first (it holds the metrics), then the prior and the metrics file."""
    state.metrics = state.metrics + [row]
    checkpoint.save_checkpoint(run_dir / rundir.PRIOR_CHECKPOINT_FILE, network, optimizer, state)
    metadata = {"model_sha256": digest, "epochs": str(state.epoch)}
    checkpoint.write_tensors(run_dir / rundir.PRIOR_FILE, checkpoint.model_tensors(network), metadata)
    rundir.write_metrics(run_dir, state.metrics, rundir.PRIOR_METRICS_FILE)


def _prior_line(row: dict[str, Any], model: VAE) -> str:
    quantiser, shape = model.prior.quantiser, model.prior.code_shape
    uniform = shape[1] * shape[2] * math.log(quantiser.codebook_size)
    return (
        f"prior epoch {row['epoch']:3d}  train -log p(c) {row['train_code_nll']:8.2f}  valid -log p(c) "
        f"{row['valid_code_nll']:8.2f} nats ({row['valid_code_bits_per_dim']:.4f} bits/dim; uniform "
        f"{uniform:.2f})  {row['seconds']:.1f}s"
    )
