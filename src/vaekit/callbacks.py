"""Hooks into the training loop, for loggers such as TensorBoard, Weights & Biases or MLflow.

A callback is any object with some of the methods of `Callback`; the loop calls them on rank 0
only, after the files they describe are written (so a hook that fails or is killed never costs
a checkpoint). `loop` is the run in progress (`vaekit.training.Loop`), of which a callback may
read what `TrainingLoop` lists. The model is in training mode when a hook is called; a hook that
evaluates it switches it to eval() and back, as tensorboard.py does.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch

from vaekit.config import RunConfig


class TrainingLoop(Protocol):
    """What a callback may read of the loop (vaekit.training.Loop has more; these stay)."""

    config: RunConfig  # the resolved run config, as in config.json
    run_dir: Path
    model: torch.nn.Module  # the VAE (vaekit.models.VAE), in training mode
    optimizer: torch.optim.Optimizer
    data: Any  # vaekit.data.Dataset: the splits as tensors
    valid_x: torch.Tensor  # (N_valid, C, H, W): the fixed validation observations
    valid_labels: torch.Tensor  # (N_valid,): their labels (what a conditional VAE is evaluated at)
    state: Any  # vaekit.checkpoint.TrainState: epoch, step, metrics (the rows of metrics.jsonl so far)


class Callback:
    """Override what you need; each default does nothing. `step_every`: steps between on_step_end calls (0:
    never). `on_error`: "raise" (an exception in a hook ends the run, its last checkpoint kept) or "warn"
    (it is logged as a warning and the run goes on), for a logger whose service may be down."""

    step_every: int = 0
    on_error: str = "raise"

    def on_train_start(self, loop: TrainingLoop) -> None:
        """Before the first step of this call: loop.state.epoch > 0 when a run resumes. Training mode."""

    def on_step_end(self, loop: TrainingLoop, step: dict[str, Any]) -> None:
        """After every `step_every`-th optimisation step: step = {"step": steps done, "loss": that step's loss
        (what is minimised: the negative ELBO, or the objective's)}. Reading the loss makes the host wait for
        the device, once per call. Training mode; no checkpoint is written for it."""

    def on_epoch_end(self, loop: TrainingLoop, metrics: dict[str, Any]) -> None:
        """After an epoch's checkpoint: `metrics` is the row just added to metrics.jsonl. Training mode."""

    def on_train_end(self, loop: TrainingLoop, test: dict[str, Any]) -> None:
        """After the test figures (test_elbo, test_reconstruction, test_kl, seconds_total) are in summary.json.
        Training mode, as the model was trained."""


def call(callbacks: list[Any], hook: str, *args: Any, log: Callable[[str], None] = lambda s: None) -> None:
    """Call `hook` on every callback that has it, in order; one whose on_error is "warn" fails with a warning."""
    for callback in callbacks:
        method = getattr(callback, hook, None)
        if method is None:
            continue
        try:
            method(*args)
        except Exception as err:
            if getattr(callback, "on_error", "raise") != "warn":
                raise
            log(f"warning: {type(callback).__name__}.{hook} failed ({type(err).__name__}: {err}); training goes on")


def step_end(callbacks: list[Any], loop: TrainingLoop, loss: torch.Tensor, log: Callable[[str], None]) -> None:
    """on_step_end of the callbacks whose `step_every` divides the steps done."""
    due = [c for c in callbacks if getattr(c, "step_every", 0) and loop.state.step % c.step_every == 0]
    if due:
        call(due, "on_step_end", loop, {"step": loop.state.step, "loss": loss.item()}, log=log)
