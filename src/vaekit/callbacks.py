"""Hooks into the training loop, for loggers such as TensorBoard, Weights & Biases or MLflow.

A callback is any object with some of the methods of `Callback`; the loop calls them on rank 0
only, after the files they describe are written (so a hook that fails or is killed never costs
a checkpoint). `loop` is the run in progress (`vaekit.training.Loop`), of which a callback may
read what `TrainingLoop` lists. The model is in training mode when a hook is called; a hook that
evaluates it switches it to eval() and back, as tensorboard.py does.
"""

from __future__ import annotations

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
    state: Any  # vaekit.checkpoint.TrainState: epoch, step, metrics (the rows of metrics.jsonl so far)


class Callback:
    """Override what you need; each default does nothing."""

    def on_train_start(self, loop: TrainingLoop) -> None:
        """Before the first step of this call: loop.state.epoch > 0 when a run resumes."""

    def on_epoch_end(self, loop: TrainingLoop, metrics: dict[str, Any]) -> None:
        """After an epoch's checkpoint: `metrics` is the row just added to metrics.jsonl."""

    def on_train_end(self, loop: TrainingLoop, test: dict[str, Any]) -> None:
        """After the test figures (test_elbo, test_reconstruction, test_kl, seconds_total) are in summary.json."""


def call(callbacks: list[Any], hook: str, *args: Any) -> None:
    """Call `hook` on every callback that has it, in order."""
    for callback in callbacks:
        method = getattr(callback, hook, None)
        if method is not None:
            method(*args)
