"""The training loop, top to bottom: set up, train an epoch, end the epoch, final test figures.

    train(config, run_dir)
      set_up       data on the device, model, optimiser, and where a resumed run left off
      train_epoch  minibatches: noise, the objective's gradient, the update (Algorithm 1)
      end_epoch    validation ELBO, checkpoint, model, metrics line, one log line
      test_figures the test ELBO, into summary.json

Randomness is a pure function of the seed and the position in training: the data order of
epoch e comes from a generator seeded by (seed, "order", e) and the noise of step t (the
binarization and eps) from one on the device seeded by (seed, "noise", t). A checkpoint therefore
needs no RNG state, and a run resumed from any checkpoint repeats an uninterrupted one bit for bit
on CPU. Between host syncs (every train.sync_every_steps steps) the loop never waits for the
device: non-finite steps are skipped there and counted (NonFiniteSteps), progress is counted on
the host. train.compile runs the objective through torch.compile (compile_step).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from vaekit import callbacks as hooks
from vaekit import checkpoint, distributed, rundir
from vaekit.batch import Batch
from vaekit.checkpoint import EpochTotals, TrainState
from vaekit.compiling import CompiledOrEager
from vaekit.config import LABELLED_FAMILY_NAMES, OBJECTIVE_NEEDS, RunConfig, TrainConfig
from vaekit.data import Dataset, load_dataset
from vaekit.diagnostics import latent_diagnostics
from vaekit.errors import CheckpointError, ConfigError, TrainingDivergedError, TrainingStopped
from vaekit.evaluation import classification_figures, evaluate_elbo
from vaekit.models.vae import VAE, build_model
from vaekit.objectives import ElboTerms, Objective, build_objective
from vaekit.progress import progress_bar
from vaekit.randomness import derive_seed, seeded_generator
from vaekit.schedules import beta_at, capacity_at, lr_factor

# optimiser name (config.OPTIMIZER_NAMES) -> its torch class
OPTIMIZER_CLASSES: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adagrad": torch.optim.Adagrad,
    "adamax": torch.optim.Adamax,
}

# Where torch has a fused kernel for each (Adagrad's is CPU-only: on CUDA it fails at the first step).
FUSED_DEVICES = {"adam": ("cpu", "cuda", "mps"), "adagrad": ("cpu",), "adamax": ()}

# With train.skip_nonfinite, this many non-finite steps in a row still stop the run: by then
# the weights themselves are broken and skipping only hides it.
MAX_CONSECUTIVE_SKIPS = 50

# Steps between host syncs on a GPU when train.sync_every_steps is 0. On the CPU a sync costs
# nothing, so it syncs every step and a non-finite step stops the run at that very step.
GPU_SYNC_EVERY_STEPS = 100


def make_optimizer(tc: TrainConfig, params: Any) -> torch.optim.Optimizer:
    """The configured optimiser with its fused kernel where this torch build has one, else the foreach one.

    Why: on CPU, torch's default for Adam is a per-parameter Python loop of about eight kernels
    each; for the paper's MLP that was 35-40% of a training step (torch.profiler, benchmarks/).
    The fused kernel does the same update in one pass; results differ only in rounding. With a learning-rate
    schedule, each group keeps its own rate as "base_lr", which the schedule multiplies (schedules.py).
    """
    params = list(params)  # tensors, or parameter groups (dicts with "params") with their own settings
    tensors = [p for group in params for p in (group["params"] if isinstance(group, dict) else [group])]
    settings: dict[str, Any] = {"lr": tc.learning_rate, "weight_decay": tc.weight_decay}
    if tc.optimizer in ("adam", "adamax"):
        settings.update(betas=(tc.adam_beta1, tc.adam_beta2), eps=tc.adam_eps)
    optimizer = None
    if all(p.device.type in FUSED_DEVICES[tc.optimizer] for p in tensors):
        with contextlib.suppress(RuntimeError, TypeError, ValueError):  # no fused kernel in this build
            optimizer = OPTIMIZER_CLASSES[tc.optimizer](params, **settings, fused=True)
    optimizer = optimizer or OPTIMIZER_CLASSES[tc.optimizer](params, **settings, foreach=True)
    if tc.lr_schedule != "constant":  # the schedule multiplies each group's own rate (saved with the optimiser)
        for group in optimizer.param_groups:
            group["base_lr"] = group["lr"]
    return optimizer


@dataclass
class TrainResult:
    model: VAE
    config: RunConfig
    run_dir: Path
    metrics: list[dict[str, Any]]
    test: dict[str, Any]


def train(
    config: RunConfig,
    run_dir: str | Path,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    dataset: Dataset | None = None,
    log: Callable[[str], None] = lambda s: None,
    max_seconds: float | None = None,
    callbacks: Sequence[Any] = (),
) -> TrainResult:
    """Train a VAE by stochastic gradient ascent on the ELBO (Kingma & Welling 2013, Algorithm 1).

    max_seconds caps the training time of this call: the first epoch that ends past it is the
    last, the run is checkpointed there and the test figures are computed for it, and resuming
    continues towards train.epochs (the summary's `epochs` says how many were reached).

    callbacks (vaekit.callbacks.Callback, e.g. vaekit.tensorboard.TensorBoard) are called on rank 0
    at the start, after each epoch's checkpoint and after the test figures.

    Launched by torchrun, every process runs this function as one rank of a data-parallel run
    (DistributedDataParallel): rank r takes rows [r*M, (r+1)*M) of each global minibatch of
    M * world_size images, gradients are averaged, and only rank 0 touches the run folder. Rank 0
    holds an exclusive lock on the folder for the whole run, so no other run can write into it.
    """
    run_dir, started = Path(run_dir), time.monotonic()
    ctx = distributed.init(config.train.device)
    # Data first, and checked against the config: a run that cannot start leaves no run folder.
    data = dataset if dataset is not None else load_dataset(config.data, config.model.image_shape, log)
    check_data(config, data, ctx.world_size)
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    with rundir.lock(run_dir) if ctx.is_main else contextlib.nullcontext(), StopRequests() as stop:
        _prepare_on_every_rank(run_dir, config, resume, overwrite, ctx)
        loop = set_up(config, run_dir, data, ctx, resume, log if ctx.is_main else (lambda s: None), progress)
        loop.stop = stop
        callbacks = list(callbacks) if ctx.is_main else []
        _warn_if_short(loop)
        _warn_if_schedule_outlasts(loop)
        loop.callbacks = callbacks
        hooks.call(callbacks, "on_train_start", loop, log=loop.log)
        while loop.state.epoch < config.train.epochs:
            if _stop_early(loop):
                break
            totals, seconds, images_per_second = train_epoch(loop)
            row = end_epoch(loop, totals, seconds, images_per_second)
            hooks.call(callbacks, "on_epoch_end", loop, row, log=loop.log)
            _stop_if_asked(loop)
            if _out_of_time(loop, started, max_seconds):
                break
        test = test_figures(loop)
        _warn_if_collapsed(loop)
        hooks.call(callbacks, "on_train_end", loop, test, log=loop.log)
    loop.model.eval()
    return TrainResult(loop.model, config, run_dir, loop.state.metrics, test)


def _out_of_time(loop: Loop, started: float, max_seconds: float | None) -> bool:
    """True, said, when the time limit of this call (max_seconds since `started`) is reached before the last epoch."""
    out_of_time = max_seconds is not None and time.monotonic() - started >= max_seconds
    epochs = loop.config.train.epochs
    if not distributed.any_rank(out_of_time, loop.ctx) or loop.state.epoch >= epochs:
        return False
    assert max_seconds is not None
    loop.log(
        f"stopping after epoch {loop.state.epoch} of {epochs}: the time limit of {max_seconds / 60:g} minutes is "
        "reached; --resume continues"
    )
    return True


def _patience_spent(loop: Loop) -> bool:
    """Early stopping: train.early_stopping_patience epochs since the best validation ELBO, before the last."""
    patience, state = loop.config.train.early_stopping_patience, loop.state
    since = state.epoch - state.best_epoch
    return bool(patience and state.best_epoch and since >= patience and state.epoch < loop.config.train.epochs)


def _stop_early(loop: Loop) -> bool:
    """True, said with the best epoch, when the patience is spent (at the start of an epoch)."""
    if not _patience_spent(loop):
        return False
    state = loop.state
    loop.log(
        f"stopping early after epoch {state.epoch}: the validation {'ELBO' if loop.model.has_bound else 'log p(x|z)'} "
        "has not improved for "
        f"{state.epoch - state.best_epoch} epochs since epoch {state.best_epoch} "
        f"({state.metrics[state.best_epoch - 1]['valid_elbo']:.3f}), kept in {rundir.BEST_MODEL_FILE}"
    )
    return True


# Fewer optimisation steps than this in a whole run rarely get past the mean image.
MIN_USEFUL_STEPS = 1000


def _warn_if_short(loop: Loop) -> None:
    """A run of too few optimisation steps (a small image folder, a large batch) ends with blurry grey
    reconstructions; say so at the start, with the epochs that would give MIN_USEFUL_STEPS."""
    tc, per_epoch = loop.config.train, loop.batches_per_epoch
    if loop.state.step == 0 and tc.epochs * per_epoch < MIN_USEFUL_STEPS:
        loop.log(
            f"warning: this run takes only {tc.epochs * per_epoch} optimisation steps ({tc.epochs} "
            f"epoch{'s' * (tc.epochs != 1)} of {per_epoch} batches); a model needs about {MIN_USEFUL_STEPS} or more "
            "to learn more than the mean image: "
            f"raise --epochs to about {-(-MIN_USEFUL_STEPS // per_epoch)} or lower --batch-size."
        )


def _warn_if_schedule_outlasts(loop: Loop) -> None:
    """A KL warm-up or capacity schedule longer than the run ends short of its target unannounced (a preset's
    10,000 warm-up steps in a 150-step run leave the KL weight at 0.015): say where it will end."""
    tc, steps = loop.config.train, loop.config.train.epochs * loop.batches_per_epoch
    if loop.state.step > 0:
        return
    if tc.warmup_steps > steps:  # beta weighs the KL, or beta-TCVAE's total correlation (ObjectiveNeeds)
        loop.log(
            f"warning: the warm-up (train.warmup_steps = {tc.warmup_steps}) outlasts this run's {steps} steps: "
            f"{loop.objective.needs.beta_weighs} weight will end at {beta_at(steps - 1, tc.beta, tc.warmup_steps):.3g} "
            f"of beta = {tc.beta:g}."
        )
    if tc.capacity_steps > steps:
        loop.log(
            f"warning: the capacity schedule (train.capacity_steps = {tc.capacity_steps}) outlasts this run's {steps} "
            f"steps: the KL target will end at {capacity_at(steps - 1, tc.capacity_max, tc.capacity_steps):.3g} of "
            f"{tc.capacity_max:g} nats."
        )


def _warn_if_collapsed(loop: Loop) -> None:
    """Posterior collapse, said at the end: most latent units inactive on the validation images
    (diagnostics.latent_diagnostics), with each layer's KL, and what usually helps."""
    if not loop.ctx.is_main or len(loop.valid_x) < 2 or not loop.objective.latent_units_apply:
        return
    labels = loop.valid_labels if loop.model.needs_labels else None
    latents = latent_diagnostics(loop.model, loop.valid_x, loop.config.train.eval_batch_size, labels=labels)
    latent_dim = latents.active_units + latents.collapsed_units
    if latents.collapsed_units * 2 <= latent_dim:
        return
    layers = ", ".join(f"{layer.name} {layer.kl:.2f}" for layer in latents.layers)
    loop.log(
        f"warning: {latents.collapsed_units} of {latent_dim} latent units collapsed (over the validation images the "
        f"posterior mean's variance is below {latents.threshold} of the posterior's own, the rule of vaekit evaluate; "
        f"KL per layer in nats: {layers}): the decoder "
        "ignores most of z. A KL warm-up (--warmup-steps), free bits (--free-bits) or more epochs usually help."
    )


def check_data(config: RunConfig, data: Dataset, world_size: int = 1) -> None:
    """Refuse data that does not fit the config, before anything is written."""
    if data.image_shape != config.model.image_shape:
        raise ConfigError(
            f"model.image_shape = {config.model.image_shape} but the data's images are {data.image_shape}."
        )
    _check_labels(config, data, world_size)
    batch, n = config.train.batch_size, len(data.train)
    if batch * world_size > n:
        per = f" x {world_size} processes = {batch * world_size}" if world_size > 1 else ""
        raise ConfigError(f"train.batch_size = {batch}{per} is larger than the {n} training images.")


def _check_labels(config: RunConfig, data: Dataset, world_size: int) -> None:
    """A model of labels needs labels within its classes, and M2's labelled minibatch one process."""
    if config.model.family not in LABELLED_FAMILY_NAMES:
        return
    classes = config.model.classes
    most = max(int(split.labels.max()) if len(split.labels) else -1 for split in (data.train, data.test))
    if most >= classes:
        raise ConfigError(
            f"model.classes = {classes}, but the data has labels up to {most}: pass --classes {most + 1}."
        )
    if OBJECTIVE_NEEDS[config.train.objective].labelled_batch and world_size > 1:
        raise ConfigError(f"{config.train.objective} trains on one process: launch it without torchrun.")


def _prepare_on_every_rank(
    run_dir: Path, config: RunConfig, resume: bool, overwrite: bool, ctx: distributed.Context
) -> None:
    """Rank 0 prepares the run folder; every rank learns if it failed, or the others would wait forever."""
    error: Exception | None = None
    if ctx.is_main:
        try:
            rundir.prepare(run_dir, config, resume, overwrite)
        except Exception as err:
            error = err
    if distributed.any_rank(error is not None, ctx):
        raise error or CheckpointError(f"rank 0 could not prepare {run_dir}; see its message.")


class StopRequests:
    """Ctrl-C (SIGINT) and SIGTERM ask the loop to stop at the end of the current step, after a
    checkpoint there, rather than kill it mid-update; a second signal interrupts at once. Signal
    handlers exist in the main thread only; elsewhere this does nothing."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self.previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)


@dataclass
class Loop:
    """What `set_up` builds and every later stage reads; `state` is what a checkpoint saves."""

    config: RunConfig
    run_dir: Path
    ctx: distributed.Context
    data: Dataset
    train_x: torch.Tensor  # (N, C, H, W) pixels on the device; batches are gathered there
    train_labels: torch.Tensor  # (N,) on the device, -1 where hidden
    labelled_rows: torch.Tensor  # (N_l,) on the device: the rows of train_x whose labels are known
    valid_x: torch.Tensor  # (N_valid, C, H, W) fixed validation observations
    valid_labels: torch.Tensor  # (N_valid,)
    model: VAE
    optimizer: torch.optim.Optimizer
    objective: Objective  # the loss, what it trains, logs and saves (vaekit.objectives)
    step_loss: nn.Module  # the objective as each step calls it: under DDP and torch.compile where they apply
    autocast: torch.autocast
    state: TrainState
    log: Callable[[str], None]
    progress: bool
    last_save: float = 0.0  # time.monotonic() of the last checkpoint
    stop: StopRequests = field(default_factory=StopRequests)  # signals asking the loop to stop
    noise: torch.Generator = field(default_factory=torch.Generator)  # on the device, reseeded every step
    sync_every: int = 1  # steps between host syncs
    nonfinite: NonFiniteSteps | None = None  # device-side count of skipped steps since the last sync
    last_save_step: int = 0  # state.step at the last checkpoint
    callbacks: list[Any] = field(default_factory=list)  # vaekit.callbacks hooks, on rank 0
    parameters: list[nn.Parameter] = field(init=False)  # the model's, whose gradients each step checks

    def __post_init__(self) -> None:
        self.parameters = list(self.model.parameters())  # listed once: walking the modules each step costs

    @property
    def global_batch(self) -> int:
        """The minibatch of one optimisation step, over all ranks."""
        return self.config.train.batch_size * self.ctx.world_size

    @property
    def batches_per_epoch(self) -> int:
        return steps_per_epoch(self.config, self.data, self.ctx)


def steps_per_epoch(config: RunConfig, data: Dataset, ctx: distributed.Context) -> int:
    """Optimisation steps in an epoch of the training images: a distributed run drops an epoch's incomplete
    last global batch (batch_size x world size), so that every rank gets a full share. Under an objective that
    measures across the minibatch (ObjectiveNeeds.minibatch: beta-TCVAE's q(z), FactorVAE's permutations,
    DIP-VAE's covariance) a last batch of a single image, which gives it nothing to measure, joins the batch
    before it (`minibatch`), so that every image is still seen once an epoch."""
    n, batch = len(data.train), config.train.batch_size * ctx.world_size
    if ctx.distributed or (OBJECTIVE_NEEDS[config.train.objective].minibatch and n % batch == 1):
        return n // batch
    return -(-n // batch)


def with_warmup_share(train: TrainConfig, steps_per_epoch: int) -> TrainConfig:
    """train with a warm-up given as a share of the run turned into steps, round(share x epochs x steps per
    epoch) (at least 1): what the loss, the metrics and the warnings read; config.json keeps the share."""
    if not train.warmup_share:
        return train
    steps = max(1, round(train.warmup_share * train.epochs * steps_per_epoch))
    return dataclasses.replace(train, warmup_steps=steps, warmup_share=0.0)


def _use_bf16(precision: str, device: torch.device) -> bool:
    """bf16 autocast: asked for, or 'auto' on a CUDA GPU that supports it; float32 otherwise."""
    if precision == "bf16":
        return True
    return precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()


def set_up(
    config: RunConfig,
    run_dir: Path,
    data: Dataset,
    ctx: distributed.Context,
    resume: bool,
    log: Callable[[str], None],
    progress: bool,
) -> Loop:
    """Data on the device, the model initialised from the seed, its optimiser, and the train state:
    fresh, or read back from the checkpoint of a resumed run."""
    config = dataclasses.replace(config, train=with_warmup_share(config.train, steps_per_epoch(config, data, ctx)))
    tc, device = config.train, ctx.device
    if tc.num_threads:
        torch.set_num_threads(tc.num_threads)
    torch.manual_seed(derive_seed(tc.seed, "init"))
    model = build_model(config.model, 2**config.data.bits).to(device)
    labelled_rows = (data.train.labels >= 0).nonzero()[:, 0]
    objective = build_objective(model, tc, len(data.train), len(labelled_rows))  # after the model: its weights
    optimizer = make_optimizer(tc, objective.parameter_groups())
    state = _starting_state(run_dir, objective, optimizer, ctx, resume, log)
    step_loss: nn.Module = objective
    if ctx.distributed:
        step_loss = DistributedDataParallel(objective, device_ids=[device.index] if device.type == "cuda" else None)
        log(
            f"{ctx.world_size} processes x batch {tc.batch_size} = effective batch {tc.batch_size * ctx.world_size}, "
            f"learning rate {tc.learning_rate} (not rescaled)"
        )
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=_use_bf16(tc.precision, device))
    return Loop(
        config=config,
        run_dir=run_dir,
        ctx=ctx,
        data=data,
        train_x=data.train.images.to(device),
        train_labels=data.train.labels.to(device),
        labelled_rows=labelled_rows.to(device),
        valid_x=data.evaluation_observations("valid"),
        valid_labels=data.valid.labels,
        model=model,
        optimizer=optimizer,
        objective=objective,
        step_loss=compile_step(step_loss, tc.compile, device, log),
        autocast=autocast,
        state=state,
        log=log,
        progress=progress,
        last_save=time.monotonic(),
        noise=torch.Generator(device=device),
        sync_every=tc.sync_every_steps or (1 if device.type == "cpu" else GPU_SYNC_EVERY_STEPS),
        nonfinite=NonFiniteSteps(device, state.step),
        last_save_step=state.step,
    )


def _starting_state(
    run_dir: Path,
    objective: Objective,
    optimizer: torch.optim.Optimizer,
    ctx: distributed.Context,
    resume: bool,
    log: Callable[[str], None],
) -> TrainState:
    """A fresh train state, or a resumed run's from its checkpoint (which also loads the weights and the
    optimiser's state)."""
    if not (resume and rundir.has_checkpoint(run_dir)):
        log(f"training into {run_dir}")
        return TrainState()
    state = rundir.load_checkpoint(run_dir, objective.checkpointed(), optimizer)
    if ctx.is_main:
        # The checkpoint is the one source of truth: files written after it by a run that died
        # before its next checkpoint are rewritten from it.
        rundir.write_metrics(run_dir, state.metrics)
        if state.batch_in_epoch == 0:
            rundir.save_model(run_dir, objective.model)
    log(f"resuming {run_dir} at epoch {state.epoch + 1}, step {state.step}")
    return state


def compile_step(objective: nn.Module, mode: str, device: torch.device, log: Callable[[str], None]) -> nn.Module:
    """The objective (forward and, through AOTAutograd, backward) under torch.compile when train.compile
    is "on", or "auto" on a CUDA device; the optimiser's step is already one fused kernel."""
    if mode == "off" or (mode == "auto" and device.type != "cuda"):
        return objective
    torch._dynamo.reset()  # a new run: no compiled code of an earlier model takes up the cache
    return CompiledOrEager(objective, log)


class NonFiniteSteps:
    """Steps whose loss or gradient was NaN or infinite, counted on the device between host syncs.

    Such a step is never applied: the fused optimisers skip it on the device (`found_inf`, as
    GradScaler uses), so the loop need not ask the host each step. `read` (one .tolist()) returns
    the bad steps since the last read, how many of them had a bad loss, and the longest run in a row.
    """

    def __init__(self, device: torch.device, step: int) -> None:
        # float32 counts exactly up to 2^24 steps between reads; a run stops after 50 skips in a row
        self.counts = torch.zeros(2, device=device)  # bad steps, bad losses
        self.streak = torch.zeros(1, device=device)  # bad steps in a row, now
        self.longest = torch.zeros(1, device=device)
        self.since = step  # state.step at the last read

    def record(self, bad: torch.Tensor) -> None:
        """bad: (2,) float32 0/1 flags of this step, [loss or gradient non-finite, loss non-finite]."""
        self.counts += bad
        self.streak = (self.streak + 1) * bad[:1]
        self.longest = torch.maximum(self.longest, self.streak)

    def read(self, step: int) -> tuple[int, int, int, int]:
        """(bad steps, bad losses, longest run) since the last read, and the step of that read."""
        steps, losses, longest = torch.cat([self.counts, self.longest]).tolist()
        self.counts.zero_()
        self.longest = self.streak.clone()
        since, self.since = self.since, step
        return int(steps), int(losses), int(longest), since


class EpochProgress:
    """The running totals and clock of the epoch in progress.

    `carried` holds the totals over all ranks up to the last checkpoint, `mine` this rank's since
    then (elbo, reconstruction, kl, images; float64 on the device, so adding to them never syncs).
    """

    def __init__(self, state: TrainState, device: torch.device) -> None:
        self.carried = state.totals.as_tensor(device)
        self.mine = torch.zeros(4, dtype=torch.float64, device=device)
        self.seconds_before = state.seconds
        self.t0 = time.perf_counter()
        self.images_this_process = 0  # images trained on (all ranks) since this process began the epoch
        self.warm: tuple[float, int] | None = None  # clock and images after this process's first step

    def step_done(self, images: int) -> None:
        self.images_this_process += images
        if self.warm is None:
            self.warm = (time.perf_counter(), self.images_this_process)

    def images_per_second(self) -> float:
        """Training speed after this process's first step, which pays for one-off start-up (allocations,
        the optimiser's state); over the whole epoch when it had a single step."""
        if self.warm is None or self.images_this_process == self.warm[1]:
            return self.images_this_process / max(self.seconds(), 1e-9)
        return (self.images_this_process - self.warm[1]) / max(time.perf_counter() - self.warm[0], 1e-9)

    def add(self, terms: ElboTerms, images: int, skipped: torch.Tensor) -> None:
        """Add a step's sums, unless `skipped` (a float32 0/1 device flag) says it was not applied."""
        with torch.no_grad():
            kept = 1 - skipped
            sums = torch.stack([terms.elbo.sum(), terms.reconstruction.sum(), terms.kl.sum(), images * kept])
            self.mine += torch.where(kept > 0, sums.double(), 0.0)  # a skipped step's sums may be NaN

    def mean_elbo(self) -> float:
        done = self.carried + self.mine
        return done[0].item() / max(done[3].item(), 1)

    def seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self.t0

    def fold(self, ctx: distributed.Context) -> tuple[EpochTotals, float]:
        """Sum this rank's totals over all ranks into `carried` (a checkpoint's view); restart the clock."""
        self.carried += distributed.all_reduce_sum(self.mine, ctx)
        self.mine = torch.zeros_like(self.mine)
        self.seconds_before, self.t0 = self.seconds(), time.perf_counter()
        return EpochTotals.from_tensor(self.carried), self.seconds_before


def train_epoch(loop: Loop) -> tuple[EpochTotals, float, float]:
    """Minibatch steps from where the state stands to the end of the epoch (Kingma & Welling 2013,
    Algorithm 1: draw a minibatch and the noise eps, take the gradient of the estimator, update).
    The host waits for the device only every loop.sync_every steps and at the epoch's end.
    Returns the epoch's totals over all ranks, its training seconds and images per second."""
    state, tc, ctx = loop.state, loop.config.train, loop.ctx
    order = torch.randperm(len(loop.train_x), generator=seeded_generator(tc.seed, "order", state.epoch))
    order = order.to(ctx.device)
    epoch = EpochProgress(state, ctx.device)
    total = loop.batches_per_epoch
    bar = progress_bar(
        total=total,
        initial=state.batch_in_epoch,
        enabled=loop.progress,
        unit="batch",
        desc=f"epoch {state.epoch + 1}/{tc.epochs}",
        leave=False,
    )
    for b in range(state.batch_in_epoch, total):
        batch, eps = minibatch(loop, order, b)
        loss = train_step(loop, batch, eps, epoch)
        state.step, state.batch_in_epoch = state.step + 1, b + 1
        epoch.step_done(len(batch) * ctx.world_size)  # host-side counters: no sync
        bar.update(1)
        if loop.callbacks:
            hooks.step_end(loop.callbacks, loop, loss, loop.log)
        if b + 1 < total and state.step % loop.sync_every > 0:
            continue
        check_nonfinite(loop, loss, batch.x)
        if loop.progress and b % 25 < loop.sync_every:
            bar.set_postfix(elbo=f"{epoch.mean_elbo():.2f}", refresh=False)
        if b + 1 < total and _checkpoint_due(loop):
            state.totals, state.seconds = epoch.fold(ctx)
            save_checkpoint(loop)
            _stop_if_asked(loop)
    bar.close()
    return (*epoch.fold(ctx), epoch.images_per_second())


def minibatch(loop: Loop, order: torch.Tensor, b: int) -> tuple[Batch, torch.Tensor]:
    """The batch (observations x (M, C, H, W)) and noise eps (M, L, latent_dim) of batch b of the epoch, for
    this rank.

    Both are drawn on the device from loop.noise, seeded by (seed, "noise", step): a CPU generator
    on the CPU, a counter-based Philox one on a GPU, so randomness stays a function of the step
    and nothing is copied from the host. The noise of the whole global batch is drawn
    identically on every rank, then each rank keeps its rows: a run on W processes repeats a
    single process with batch W*M.
    """
    tc, ctx = loop.config.train, loop.ctx
    noise = loop.noise.manual_seed(derive_seed(tc.seed, "noise", loop.state.step))
    end = (b + 1) * loop.global_batch
    if b + 1 == loop.batches_per_epoch and not ctx.distributed:
        end = len(order)  # the epoch's last batch takes every image left (one more under a minibatch objective)
    rows = order[b * loop.global_batch : end]
    x = loop.data.training_observations(loop.train_x[rows], noise)
    shape = (len(rows), tc.num_samples, loop.model.latent_dim)  # all layers' noise
    eps = torch.randn(shape, generator=noise, device=noise.device)
    labels = loop.train_labels[rows]
    if ctx.distributed:
        mine = slice(ctx.rank * tc.batch_size, (ctx.rank + 1) * tc.batch_size)
        x, eps, labels = x[mine], eps[mine], labels[mine]
    if OBJECTIVE_NEEDS[tc.objective].labelled_batch:  # M2: a minibatch of the labelled images besides
        known = loop.labelled_rows
        picked = known[torch.randperm(len(known), generator=noise, device=noise.device)[: tc.batch_size]]
        x = torch.cat([x, loop.data.training_observations(loop.train_x[picked], noise)])
        labels = torch.cat([labels, loop.train_labels[picked]])
    return Batch(x, labels), eps.to(ctx.device)


def train_step(loop: Loop, batch: Batch, eps: torch.Tensor, epoch: EpochProgress) -> torch.Tensor:
    """One gradient step on -ELBO (or the configured objective); returns the loss.

    A step whose loss or gradient is NaN or infinite is not applied: a fused optimiser skips it on
    the device, any other after asking the host. `check_nonfinite` reports such steps at the next
    sync: it stops the run with a message, or with train.skip_nonfinite counts them.
    """
    with loop.autocast:
        loss, terms = loop.step_loss(batch, loop.state.step, eps)  # minimised; the bound is maximised
    loop.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    bad = _nonfinite(loss, loop.parameters, loop.ctx)
    tc = loop.config.train
    if tc.grad_clip_norm:  # after the check: a non-finite norm is a skipped step, not a clipped one
        params = [p for group in loop.optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, tc.grad_clip_norm, foreach=True)
    if tc.lr_schedule != "constant":
        factor = lr_factor(loop.state.step, tc, loop.batches_per_epoch)
        for group in loop.optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
    if loop.optimizer.defaults.get("fused"):
        loop.optimizer.found_inf = bad[0]  # read by the fused kernel, as GradScaler passes it
        loop.optimizer.step()
        del loop.optimizer.found_inf
    elif not bad[0].item():  # no fused kernel: one host sync per step
        loop.optimizer.step()
    loop.nonfinite.record(bad)
    epoch.add(terms, len(terms.elbo), bad[0])
    return loss


def check_nonfinite(loop: Loop, loss: torch.Tensor, x: torch.Tensor) -> None:
    """At a host sync: count the steps skipped since the last, and stop the run if it must stop."""
    steps, losses, longest, since = loop.nonfinite.read(loop.state.step)
    loop.state.skipped_steps += steps
    tc = loop.config.train
    if steps and (not tc.skip_nonfinite or longest > MAX_CONSECUTIVE_SKIPS):
        what = "loss" if losses else "gradient"
        raise TrainingDivergedError(_diverged_message(what, loss, x, loop, since))


def _checkpoint_due(loop: Loop) -> bool:
    """A checkpoint inside the epoch: every train.checkpoint_every_steps steps, or train.checkpoint_minutes."""
    tc, state = loop.config.train, loop.state
    every = tc.checkpoint_every_steps
    due = bool(every and state.step // every > loop.last_save_step // every)
    due = due or time.monotonic() - loop.last_save > 60 * tc.checkpoint_minutes or loop.stop.signum is not None
    return distributed.any_rank(due, loop.ctx)


def _stop_if_asked(loop: Loop) -> None:
    """After a checkpoint: end the run here if a signal asked for it (on any rank)."""
    if distributed.any_rank(loop.stop.signum is not None, loop.ctx):
        state, name = loop.state, signal.Signals(loop.stop.signum or signal.SIGTERM).name
        raise TrainingStopped(
            f"stopped by {name} at step {state.step} (epoch {state.epoch + (state.batch_in_epoch > 0)}); a checkpoint "
            f"was saved there and --resume continues from it.",
            loop.stop.signum or signal.SIGTERM,
        )


def save_checkpoint(loop: Loop) -> None:
    if loop.ctx.is_main:
        rundir.save_checkpoint(loop.run_dir, loop.objective.checkpointed(), loop.optimizer, loop.state)
    loop.last_save, loop.last_save_step = time.monotonic(), loop.state.step


def end_epoch(loop: Loop, totals: EpochTotals, seconds: float, images_per_second: float) -> dict[str, Any]:
    """Validate, then save the checkpoint, the model and the metrics line, and log one line."""
    state, tc, ctx = loop.state, loop.config.train, loop.ctx
    n = len(loop.train_x)
    labels = loop.valid_labels if loop.model.needs_labels else None
    generator = seeded_generator(tc.seed, "eval")
    valid = evaluate_elbo(loop.model, loop.valid_x, tc.eval_batch_size, 1, generator, ctx, labels=labels)
    train_elbo, train_reconstruction, train_kl = totals.means()
    row = {
        "epoch": state.epoch + 1,
        "step": state.step,
        "images_seen": (state.epoch + 1) * n,
        "train_elbo": train_elbo,
        "train_reconstruction": train_reconstruction,
        "train_kl": train_kl,
        **valid.as_dict("valid_"),
        "seconds": seconds,
        "images_per_second": images_per_second,
        "skipped_steps": state.skipped_steps,
    }
    if ctx.distributed:
        row.update(processes=ctx.world_size, effective_batch=loop.global_batch)
    last = state.step - 1  # the epoch's last step (steps count from 0): where the schedules stood
    if tc.lr_schedule != "constant":
        row["learning_rate"] = loop.optimizer.param_groups[0]["lr"]
    row.update(loop.objective.logged_weights(last))
    row.update(loop.objective.epoch_figures(loop.valid_x, loop.valid_labels))
    best = state.metrics[state.best_epoch - 1]["valid_elbo"] if state.best_epoch else -math.inf
    state.epoch, state.batch_in_epoch, state.totals, state.seconds = state.epoch + 1, 0, EpochTotals(), 0.0
    state.metrics = state.metrics + [row]
    if row["valid_elbo"] > best:  # before the checkpoint that names it: a crash between leaves it rewritten
        state.best_epoch = state.epoch
        if ctx.is_main:
            rundir.save_model(loop.run_dir, loop.model, "best")
    save_checkpoint(loop)  # first: it holds the metrics, so a crash between these writes loses nothing
    if ctx.is_main:
        rundir.save_model(loop.run_dir, loop.model)
        rundir.write_metrics(loop.run_dir, state.metrics)
    loop.log(_epoch_line(row, state.skipped_steps, loop.model.has_bound))
    if warning := loop.objective.epoch_warning(row):
        loop.log(warning)
    return row


def _epoch_line(row: dict[str, Any], skipped_steps: int, has_bound: bool) -> str:
    """The log line of an epoch: the ELBO and its terms, or for a model with no bound (an autoencoder, whose
    terms are its reconstruction log-likelihood alone) that reconstruction term, named as what it is."""
    skipped = f"  ({skipped_steps} non-finite steps skipped so far)" if skipped_steps else ""
    speed = f"{row['seconds']:.1f}s  {row['images_per_second']:.0f} img/s{skipped}"
    if not has_bound:
        return (
            f"epoch {row['epoch']:3d}  train log p(x|z) {row['train_reconstruction']:9.3f}  valid log p(x|z) "
            f"{row['valid_reconstruction']:9.3f}  (reconstruction at the code; no bound)  {speed}"
        )
    return (
        f"epoch {row['epoch']:3d}  train elbo {row['train_elbo']:9.3f}  valid elbo {row['valid_elbo']:9.3f}  "
        f"(rec {row['valid_reconstruction']:.2f}, kl {row['valid_kl']:.2f})  {speed}"
    )


def test_figures(loop: Loop) -> dict[str, Any]:
    """The test ELBO and its terms of the model as trained, written to summary.json; where the best
    validation ELBO's epoch is not the last, those of its weights (model-best.safetensors) too, under
    best_weights, so that a table of best weights never borrows the last weights' figures."""
    test = _test_elbo(loop, loop.model)
    test["seconds_total"] = sum(m["seconds"] for m in loop.state.metrics)
    test["test_images"] = len(loop.data.test)  # what the test figures cover (vaekit compare says it)
    stopped = {"stopped_early": True} if _patience_spent(loop) else {}
    best = {}
    if loop.state.best_epoch and loop.state.best_epoch != len(loop.state.metrics):
        best_model = copy.deepcopy(loop.model)
        checkpoint.load_weights(loop.run_dir / rundir.BEST_MODEL_FILE, best_model)
        best = {"best_weights": {"epoch": loop.state.best_epoch, **_test_elbo(loop, best_model.eval())}}
    if loop.ctx.is_main:
        summary = {"epochs": len(loop.state.metrics), "best_epoch": loop.state.best_epoch, **stopped, **test, **best}
        rundir.write_summary(loop.run_dir, summary)
    return test


def _test_elbo(loop: Loop, model: VAE) -> dict[str, Any]:
    """The test ELBO and its terms (test_elbo, test_reconstruction, test_kl) of a model, with the evaluation's noise;
    for a model with no bound, test_reconstruction and no_bound (why, in one sentence); for one with a bound but
    no importance-sampled log p(x) (a VQ-VAE), no_marginal (why)."""
    tc = loop.config.train
    observations = loop.data.evaluation_observations("test")
    generator = seeded_generator(tc.seed, "eval")
    labels = loop.data.test.labels
    given = labels if model.needs_labels else None
    figures = evaluate_elbo(model, observations, tc.eval_batch_size, 1, generator, loop.ctx, labels=given).as_dict(
        "test_"
    )
    if model.classifies:  # M2's q(y|x): its test error and the standard error of that share
        figures.update(classification_figures(model, observations, labels, tc.eval_batch_size, "test_"))
    if not model.has_bound:  # an autoencoder: its reconstruction term alone, and why there is no bound
        return {"test_reconstruction": figures["test_reconstruction"], "no_bound": model.no_bound}
    return {**figures, "no_marginal": model.no_marginal} if model.no_marginal else figures


def _nonfinite(loss: torch.Tensor, parameters: Sequence[nn.Parameter], ctx: distributed.Context) -> torch.Tensor:
    """Flags (2,) float32 on the device, no host sync: [loss or gradient non-finite, loss non-finite],
    1.0 where true on any rank.

    The gradients are checked through their total norm, in float32 (after DDP's averaging they agree
    across ranks). It is finite exactly when every gradient is and it does not overflow, as it does
    when an absurd learning rate has blown the weights up. On a CPU the squared norm as one BLAS dot
    product per tensor is the cheapest (benchmarks/run.py, bench_step_parts); on a GPU, where a step is
    bound by kernel launches, torch's foreach norm over all tensors at once. v * 0 is 0 for a finite v
    and NaN otherwise: two operations where isfinite takes five.
    """
    grads = [p.grad.reshape(-1) for p in parameters if p.grad is not None]
    loss = loss.detach().float()
    size = _gradient_size(grads, dots=loss.device.type == "cpu") if grads else loss.new_zeros(())
    flags = (torch.stack([loss + size, loss]) * 0 != 0).float()
    return distributed.all_reduce_sum(flags, ctx).clamp_(max=1.0)


def _gradient_size(grads: list[torch.Tensor], dots: bool) -> torch.Tensor:
    """The squared total norm of flat gradients by float32 dot products (dots), else the total norm."""
    if dots:
        return torch.stack([torch.dot(g, g) for g in grads]).sum()
    return torch.nn.utils.get_total_norm(grads).float()


def _diverged_message(what: str, loss: torch.Tensor, x: torch.Tensor, loop: Loop, since: int) -> str:
    """One sentence: what became non-finite, where (the last step; a step after `since`, the last sync,
    when several steps ran between syncs), the likely cause and what to do."""
    tc, state = loop.config.train, loop.state
    first, last = since, state.step - 1
    exact = first >= last  # x and loss are the non-finite step's own
    step_size = f"the step size is likely too large: lower train.learning_rate (now {tc.learning_rate})"
    if exact and not torch.isfinite(x).all():
        cause = "the input batch holds NaN or infinite pixels: check the dataset"
    elif any(not torch.isfinite(p).all() for p in loop.model.parameters()):
        cause = "the weights are already non-finite"
    else:
        cause = step_size if exact else f"an input batch holds NaN or infinite pixels, or {step_size}"
    value = f" ({loss.item()})" if what == "loss" and exact else ""
    where = f"step {last}" if exact else f"a step from {first} to {last}"
    kept = (
        f"the last good checkpoint in {loop.run_dir} is kept"
        if rundir.has_checkpoint(loop.run_dir)
        else "no checkpoint had been written yet"
    )
    return (
        f"the {what} became non-finite{value} at {where} (epoch {state.epoch + 1}); {cause}. The "
        f"non-finite steps were not applied and {kept}; --set train.skip_nonfinite=true skips such steps instead."
    )
