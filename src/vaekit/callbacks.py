"""Hooks into the training loop, for loggers such as TensorBoard, Weights & Biases or MLflow.

A callback is any object with some of the methods of `Callback`; the loop calls them on rank 0
only, after the files they describe are written (so a hook that fails or is killed never costs
a checkpoint). `loop` is the run in progress (`vaekit.training.Loop`): `loop.config`,
`loop.run_dir`, `loop.model`, `loop.optimizer`, `loop.data`, `loop.valid_x` and `loop.state`
(epoch, step, metrics: the rows of metrics.jsonl so far).
"""

from __future__ import annotations

from typing import Any


class Callback:
    """Override what you need; each default does nothing."""

    def on_train_start(self, loop: Any) -> None:
        """Before the first step of this call: loop.state.epoch > 0 when a run resumes."""

    def on_epoch_end(self, loop: Any, metrics: dict[str, Any]) -> None:
        """After an epoch's checkpoint: `metrics` is the row just added to metrics.jsonl."""

    def on_train_end(self, loop: Any, test: dict[str, Any]) -> None:
        """After the test figures (test_elbo, test_reconstruction, test_kl, seconds_total) are in summary.json."""


def call(callbacks: list[Any], hook: str, *args: Any) -> None:
    """Call `hook` on every callback that has it, in order."""
    for callback in callbacks:
        method = getattr(callback, hook, None)
        if method is not None:
            method(*args)
