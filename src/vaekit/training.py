"""The training loop, top to bottom: set up, loop over minibatches, evaluate, checkpoint.

Randomness is a pure function of the seed and the position in training: the data order of
epoch e comes from a generator seeded by (seed, "order", e) and the noise of step t (the
binarization and eps) from one seeded by (seed, "noise", t). A checkpoint therefore needs no
RNG state, and a run resumed from any checkpoint repeats an uninterrupted one bit for bit on CPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from vaekit import checkpoint, distributed
from vaekit.config import RunConfig, TrainConfig
from vaekit.data import Dataset, load_dataset
from vaekit.errors import CheckpointError, ConfigError, TrainingDivergedError
from vaekit.evaluation import evaluate_elbo
from vaekit.models.vae import VAE, build_model
from vaekit.objectives import ElboTerms, training_loss
from vaekit.randomness import derive_seed, seeded_generator

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adagrad": torch.optim.Adagrad,
}

# Where torch has a fused kernel for each (Adagrad's is CPU-only: on CUDA it fails at the first step).
FUSED_DEVICES = {"adam": ("cpu", "cuda", "mps"), "adagrad": ("cpu",)}


def make_optimizer(name: str, params: Any, lr: float) -> torch.optim.Optimizer:
    """The optimiser with its fused kernel where this torch build has one, else the foreach one.

    Why: on CPU, torch's default for Adam is a per-parameter Python loop of about eight kernels
    each; for the paper's MLP that was 35-40% of a training step (torch.profiler, benchmarks/).
    The fused kernel does the same update in one pass; results differ only in rounding.
    """
    params = list(params)
    if all(p.device.type in FUSED_DEVICES[name] for p in params):
        try:
            return OPTIMIZERS[name](params, lr=lr, fused=True)
        except (RuntimeError, TypeError, ValueError):
            pass
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


# What a resumed run may change: how long it trains, and where (not what it computes).
RESUMABLE_CHANGES = ("epochs", "device", "num_threads")


def prepare_run_dir(run_dir: Path, config: RunConfig, resume: bool, overwrite: bool) -> RunConfig:
    """Create the run folder, or reopen it to resume; refuse to clobber an existing run."""
    has_run = (run_dir / checkpoint.CONFIG_FILE).exists()
    if resume:
        if not has_run:
            raise CheckpointError(f"cannot resume: {run_dir} holds no run (no {checkpoint.CONFIG_FILE}).")
        saved = checkpoint.load_config(run_dir)
        # Only the length of training and where it runs may change on resume; anything else would
        # be another run.
        free = [f"train.{k}" for k in RESUMABLE_CHANGES]
        if dataclasses.replace(saved.train, **{k: getattr(config.train, k) for k in RESUMABLE_CHANGES}) != \
                config.train or (saved.model, saved.data) != (config.model, config.data):
            changed = [k for k, v in _flat(config).items() if _flat(saved)[k] != v and k not in free]
            raise ConfigError(f"cannot resume {run_dir} with a different config ({', '.join(changed)} changed); "
                              f"only {', '.join(free)} may change.")
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
    max_seconds: float | None = None,
) -> TrainResult:
    """Train a VAE by stochastic gradient ascent on the ELBO (Kingma & Welling 2013, Algorithm 1).

    max_seconds caps the training time of this call: the first epoch that ends past it is the
    last, the run is checkpointed there and the test figures are computed for it, and resuming
    continues towards train.epochs (the summary's `epochs` says how many were reached).

    Launched by torchrun, every process runs this function as one rank of a data-parallel run
    (DistributedDataParallel): rank r takes rows [r*M, (r+1)*M) of each global minibatch of
    M * world_size images, gradients are averaged, and only rank 0 touches the run folder. Rank 0
    holds an exclusive lock on the folder for the whole run, so no other run can write into it.
    """
    run_dir = Path(run_dir)
    ctx = distributed.init(config.train.device)
    # Data first: a dataset that cannot be loaded must not leave a half-made run folder behind.
    data = dataset if dataset is not None else load_dataset(config.data, config.model.image_shape)
    lock = checkpoint.lock_run_dir if ctx.is_main else (lambda _: contextlib.nullcontext())
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    error: Exception | None = None
    with lock(run_dir):
        if ctx.is_main:
            try:
                config = prepare_run_dir(run_dir, config, resume, overwrite)
            except Exception as err:  # every rank must learn of it, or the others would wait forever
                error = err
        if distributed.any_rank(error is not None, ctx):
            raise error or CheckpointError(f"rank 0 could not prepare {run_dir}; see its message.")
        return _train_locked(config, run_dir, resume, progress and ctx.is_main, data,
                             log if ctx.is_main else (lambda s: None), ctx, max_seconds)


class _Objective(nn.Module):
    """The training loss as a module, so that DistributedDataParallel can wrap it: DDP averages
    the gradients of whatever its forward computes. The VAE itself stays unaware of it."""

    def __init__(self, model: VAE, train: TrainConfig) -> None:
        super().__init__()
        self.model = model
        self.train_config = train

    def forward(self, x: torch.Tensor, step: int, eps: torch.Tensor) -> tuple[torch.Tensor, ElboTerms]:
        return training_loss(self.model, x, self.train_config, step, eps=eps)


def _use_bf16(precision: str, device: torch.device) -> bool:
    """bf16 autocast: asked for, or 'auto' on a CUDA GPU that supports it; float32 otherwise."""
    if precision == "bf16":
        return True
    return precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()


def _train_locked(config: RunConfig, run_dir: Path, resume: bool, progress: bool, data: Dataset,
                  log: Callable[[str], None], ctx: distributed.Context,
                  max_seconds: float | None = None) -> TrainResult:
    tc = config.train
    started = time.monotonic()
    if tc.num_threads:
        torch.set_num_threads(tc.num_threads)

    # --- set up: data, model, optimiser, and where a resumed run left off -------------------
    if data.image_shape != config.model.image_shape:
        raise ConfigError(f"model.image_shape = {config.model.image_shape} but the data's images are {data.image_shape}.")
    device, rank, world = ctx.device, ctx.rank, ctx.world_size
    train_x = data.train.images.to(device)  # moved once; batches are gathered on the device
    n, batch = len(train_x), tc.batch_size
    global_batch = batch * world  # the effective minibatch of one optimisation step
    if global_batch > n:
        per = f" x {world} processes = {global_batch}" if world > 1 else ""
        raise ConfigError(f"train.batch_size = {batch}{per} is larger than the {n} training images.")
    torch.manual_seed(derive_seed(tc.seed, "init"))
    model = build_model(config.model).to(device)
    optimizer = make_optimizer(tc.optimizer, model.parameters(), tc.learning_rate)
    state: dict[str, Any] = {"epoch": 0, "step": 0, "batch_in_epoch": 0, "sums": [0.0, 0.0, 0.0, 0.0],
                             "seconds": 0.0, "skipped": 0, "metrics": []}
    if resume and (run_dir / checkpoint.CHECKPOINT_FILE).exists():
        loaded = checkpoint.load_checkpoint(run_dir, model, optimizer)
        if set(loaded) != set(state):
            raise CheckpointError(f"{run_dir / checkpoint.CHECKPOINT_FILE} holds a train state with keys "
                                  f"{sorted(loaded)}, expected {sorted(state)}; it is from another vaekit version.")
        state = loaded
        if ctx.is_main:
            # The checkpoint is the one source of truth: files written after it by a run that died
            # before its next checkpoint are rewritten from it.
            checkpoint.write_metrics(run_dir, state["metrics"])
            if state["batch_in_epoch"] == 0:
                checkpoint.save_model(run_dir, model)
        log(f"resuming {run_dir} at epoch {state['epoch'] + 1}, step {state['step']}")
    if ctx.distributed:
        log(f"{world} processes x batch {batch} = effective batch {global_batch}, learning rate "
            f"{tc.learning_rate} (not rescaled)")
    objective = _Objective(model, tc)
    step_fn = DistributedDataParallel(objective, device_ids=[device.index] if device.type == "cuda" else None) \
        if ctx.distributed else objective
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=_use_bf16(tc.precision, device))
    # A distributed run drops an epoch's incomplete last global batch, so every rank gets a full share.
    batches_per_epoch = n // global_batch if ctx.distributed else -(-n // batch)
    mine = slice(rank * batch, (rank + 1) * batch)
    valid_x = data.evaluation_observations("valid")
    last_save = time.monotonic()

    # --- the loop ------------------------------------------------------------------------------
    model.train()
    while state["epoch"] < tc.epochs:
        epoch = state["epoch"]
        order = torch.randperm(n, generator=seeded_generator(tc.seed, "order", epoch)).to(device)
        carried = torch.tensor(state["sums"], dtype=torch.float64, device=device)  # all ranks, so far
        sums = torch.zeros(4, dtype=torch.float64, device=device)  # this rank: elbo, rec, kl, images
        consecutive_skips = 0
        t0 = time.perf_counter()
        bar = tqdm(total=batches_per_epoch, initial=state["batch_in_epoch"], disable=not progress,
                   desc=f"epoch {epoch + 1}/{tc.epochs}", unit="batch", leave=False)
        for b in range(state["batch_in_epoch"], batches_per_epoch):
            # Noise for the whole global batch, drawn identically on every rank, then each rank
            # keeps its rows: a run on W processes repeats a single process with batch W*M.
            noise = seeded_generator(tc.seed, "noise", state["step"])
            rows = order[b * global_batch : (b + 1) * global_batch]
            x = data.training_observations(train_x[rows], noise)
            eps = torch.randn((len(rows), tc.num_samples, config.model.latent_dim), generator=noise)
            if ctx.distributed:
                x, eps = x[mine], eps[mine]
            with autocast:
                loss, terms = step_fn(x, state["step"], eps.to(device))  # minimised; the bound is maximised
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # a non-finite loss gives non-finite gradients; such a step is not taken
            bad = _nonfinite(loss, model, ctx)
            if bad is None:
                optimizer.step()
                consecutive_skips = 0
                with torch.no_grad():
                    sums[:3] += torch.stack([terms.elbo.sum(), terms.reconstruction.sum(), terms.kl.sum()]).double()
                    sums[3] += len(x)
            elif tc.skip_nonfinite and consecutive_skips < MAX_CONSECUTIVE_SKIPS:
                optimizer.zero_grad(set_to_none=True)
                state["skipped"] += 1
                consecutive_skips += 1
            else:
                raise TrainingDivergedError(_diverged_message(bad, loss, x, model, state["step"], epoch, run_dir, tc))
            state["step"] += 1
            state["batch_in_epoch"] = b + 1
            if progress and b % 25 == 0:
                done = carried + sums
                bar.set_postfix(elbo=f"{done[0].item() / max(done[3].item(), 1):.2f}", refresh=False)
            bar.update(1)
            due = bool(tc.checkpoint_every_steps and state["step"] % tc.checkpoint_every_steps == 0) or \
                time.monotonic() - last_save > 60 * tc.checkpoint_minutes
            if distributed.any_rank(due, ctx) and b + 1 < batches_per_epoch:
                carried += distributed.all_reduce_sum(sums, ctx)
                sums = torch.zeros_like(sums)
                state["sums"] = carried.tolist()
                state["seconds"] += time.perf_counter() - t0
                t0 = time.perf_counter()
                if ctx.is_main:
                    _save_checkpoint(run_dir, model, optimizer, state)
                last_save = time.monotonic()
        bar.close()
        seconds = state["seconds"] + time.perf_counter() - t0
        totals = carried + distributed.all_reduce_sum(sums, ctx)

        # --- evaluate and save at the end of each epoch ------------------------------------
        train_mean = (totals[:3] / max(totals[3].item(), 1)).tolist()
        valid = evaluate_elbo(model, valid_x, tc.eval_batch_size, 1, seeded_generator(tc.seed, "eval"), ctx)
        row = {
            "epoch": epoch + 1, "step": state["step"], "images_seen": (epoch + 1) * n,
            "train_elbo": train_mean[0], "train_reconstruction": train_mean[1], "train_kl": train_mean[2],
            **valid.as_dict("valid_"), "seconds": seconds, "images_per_second": n / max(seconds, 1e-9),
            "skipped_steps": state["skipped"],
        }
        if ctx.distributed:
            row.update(processes=world, effective_batch=global_batch)
        state.update(epoch=epoch + 1, batch_in_epoch=0, sums=[0.0] * 4, seconds=0.0,
                     metrics=state["metrics"] + [row])
        if ctx.is_main:
            # Order matters for a crash between writes: the checkpoint (which holds the metrics) first.
            _save_checkpoint(run_dir, model, optimizer, state)
            checkpoint.save_model(run_dir, model)
            checkpoint.write_metrics(run_dir, state["metrics"])
        last_save = time.monotonic()
        log(f"epoch {epoch + 1:3d}  train elbo {row['train_elbo']:9.3f}  valid elbo {row['valid_elbo']:9.3f}  "
            f"(rec {row['valid_reconstruction']:.2f}, kl {row['valid_kl']:.2f})  "
            f"{row['seconds']:.1f}s  {row['images_per_second']:.0f} img/s"
            + (f"  ({state['skipped']} non-finite steps skipped so far)" if state["skipped"] else ""))
        out_of_time = max_seconds is not None and time.monotonic() - started >= max_seconds
        if distributed.any_rank(out_of_time, ctx) and state["epoch"] < tc.epochs:
            log(f"stopping after epoch {state['epoch']} of {tc.epochs}: the time limit of "
                f"{max_seconds / 60:g} minutes is reached; --resume continues")
            break

    # --- final test figures ------------------------------------------------------------------
    metrics = state["metrics"]
    test = evaluate_elbo(model, data.evaluation_observations("test"), tc.eval_batch_size, 1,
                         seeded_generator(tc.seed, "eval"), ctx).as_dict("test_")
    test["seconds_total"] = sum(m["seconds"] for m in metrics)
    if ctx.is_main:
        checkpoint.write_json(run_dir / checkpoint.SUMMARY_FILE, {"epochs": len(metrics), **test})
    model.eval()
    return TrainResult(model, config, run_dir, metrics, test)


# With train.skip_nonfinite, this many non-finite steps in a row still stop the run: by then
# the weights themselves are broken and skipping only hides it.
MAX_CONSECUTIVE_SKIPS = 50


def _nonfinite(loss: torch.Tensor, model: VAE, ctx: distributed.Context) -> str | None:
    """"loss" or "gradient" when either is NaN or infinite on any rank, else None, with one host sync.

    The gradients are checked through their total norm (one fused reduction), which is finite
    exactly when every gradient is; after DDP's averaging they agree across ranks.
    """
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    norm = torch.nn.utils.get_total_norm(grads) if grads else loss.new_zeros(())
    loss_bad, grad_bad = torch.stack([~torch.isfinite(loss.detach()), ~torch.isfinite(norm)]).tolist()
    if distributed.any_rank(loss_bad, ctx):
        return "loss"
    return "gradient" if grad_bad else None


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
