"""TensorBoard event files for a run, written by a training callback.

    vaekit train --tensorboard          ->  RUN_DIR/tensorboard/events.out.tfevents.*
    tensorboard --logdir RUN_DIR/tensorboard

Steps are epochs. Per epoch: the train and validation ELBO, reconstruction and KL (the rows of
metrics.jsonl), the KL per latent dimension and the active units over the validation images, the
learning rate and images per second; every `images_every` epochs and at the last one, the grids of
validation reconstructions and prior samples; at the end the run's hyperparameters with its test
figures (TensorBoard's HParams tab); later, each `vaekit evaluate` of the run (or an experiment's
evaluation) adds its log p(x) and disentanglement metrics at the evaluated epoch. Runs on grey levels
under a likelihood over levels also get their ELBO per epoch in bits/dim. A resumed run
continues the same curves: epochs already in the event files are not written again, and epochs that
the checkpoint holds but the events miss (a run killed between the two) are filled in from
metrics.jsonl.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vaekit import rundir
from vaekit.callbacks import Callback, TrainingLoop
from vaekit.diagnostics import latent_diagnostics
from vaekit.disentanglement import METRICS
from vaekit.errors import ConfigError
from vaekit.evaluation import bits_per_dim, measure
from vaekit.plots import make_grid

# Tag of each metrics.jsonl column: quantities grouped so that train and valid share a chart.
METRIC_TAGS = {
    "train_elbo": "elbo/train",
    "valid_elbo": "elbo/valid",
    "train_reconstruction": "reconstruction/train",
    "valid_reconstruction": "reconstruction/valid",
    "train_kl": "kl/train",
    "valid_kl": "kl/valid",
    "images_per_second": "speed/images_per_second",
    # the schedules at each epoch's end: the KL weight (beta with its warm-up), or the capacity's target in nats
    "kl_weight": "schedule/kl_weight",
    "tc_weight": "schedule/tc_weight",  # beta-TCVAE's weight of the total correlation, with its warm-up
    "kl_target": "schedule/kl_target",
    # beta-TCVAE's decomposition of the KL on the validation images
    "valid_mutual_information": "kl_decomposition/mutual_information",
    "valid_total_correlation": "kl_decomposition/total_correlation",
    "valid_dimension_kl": "kl_decomposition/dimension_kl",
    # a VQ-VAE's codebook use on the validation images
    "valid_perplexity": "codebook/perplexity",
    "valid_codes_used": "codebook/codes_used",
}
LEARNING_RATE_TAG = "optimizer/learning_rate"
ACTIVE_UNITS_TAG = "latent/active_units"
KL_PER_DIM_TAG = "kl_per_dim/z{:03d}"  # one chart per latent dimension, where the KL splits by dimension
KL_PER_LAYER_TAG = "kl_per_layer/{}"  # one chart per stochastic layer: z1, z2, ...
DISENTANGLEMENT_TAG = "disentanglement/{}"  # one chart per metric of vaekit.disentanglement.METRICS
# For runs on grey levels under a likelihood over levels: the train and validation ELBO per epoch in bits/dim
# (an upper bound, lower is better), and an evaluation's log p(x) and ELBO in bits/dim (dequantized for a density).
BITS_TAGS = {"train_elbo": "bits_per_dim/train_elbo", "valid_elbo": "bits_per_dim/valid_elbo"}
EVALUATION_TAGS = {
    "log_likelihood": "evaluation/log_likelihood",
    "log_likelihood_bits_per_dim": "evaluation/log_likelihood_bits_per_dim",
    "elbo_bits_per_dim": "evaluation/elbo_bits_per_dim",
}
TEST_TAGS = {"test_elbo": "test/elbo", "test_reconstruction": "test/reconstruction", "test_kl": "test/kl"}
INSTALL_HINT = "TensorBoard logging needs the tensorboard package: pip install 'vaekit[tensorboard]'."


def summary_writer_class() -> Any:
    """torch's SummaryWriter, or a ConfigError saying which extra to install."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return SummaryWriter


def check_log_dir(log_dir: Path) -> None:
    """A ConfigError naming log_dir where something other than a folder is in the way of the events."""
    if log_dir.exists() and not log_dir.is_dir():
        raise ConfigError(f"{log_dir} is a file: TensorBoard writes its events into a folder of that name. Move it.")


def written_epochs(log_dir: Path) -> set[int]:
    """The epochs whose validation ELBO the event files in log_dir already hold."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    if not log_dir.is_dir():
        return set()
    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    events.Reload()
    return (
        {e.step for e in events.Scalars(METRIC_TAGS["valid_elbo"])}
        if METRIC_TAGS["valid_elbo"] in events.Tags()["scalars"]
        else set()
    )


def add_evaluation(run_dir: str | Path, result: dict[str, Any]) -> bool:
    """Add an evaluation's log p(x) (in nats, and in bits/dim where the run states them) and disentanglement
    metrics to the events of a run trained with TensorBoard, at the epoch it evaluated; False where there is
    nothing to add or the run writes no events."""
    log_dir = Path(run_dir) / rundir.TENSORBOARD_DIR
    figures = result.get("disentanglement") or {}
    scalars = {tag: result[key] for key, tag in EVALUATION_TAGS.items() if result.get(key) is not None}
    scalars |= {DISENTANGLEMENT_TAG.format(name): figures[name] for name in METRICS if figures.get(name) is not None}
    if not scalars or not log_dir.is_dir():
        return False
    try:
        writer = summary_writer_class()(str(log_dir))
    except ConfigError:  # events written where tensorboard was installed, read where it is not
        return False
    for tag, value in scalars.items():
        writer.add_scalar(tag, value, result.get("epochs") or 0)
    writer.close()
    return True


class TensorBoard(Callback):
    """Writes RUN_DIR/tensorboard/ (or log_dir) as the module docstring lists; `images_every` epochs
    between image grids (0: only at the last epoch); `images` how many in each grid."""

    def __init__(self, log_dir: str | Path | None = None, images_every: int = 5, images: int = 64) -> None:
        self.writer_class = summary_writer_class()
        self.log_dir = None if log_dir is None else Path(log_dir)
        self.images_every, self.images = images_every, images
        self.writer: Any = None

    def on_train_start(self, loop: TrainingLoop) -> None:
        log_dir = self.log_dir or Path(loop.run_dir) / rundir.TENSORBOARD_DIR
        check_log_dir(log_dir)
        done = written_epochs(log_dir)
        # purge_step: TensorBoard drops any event of a later epoch left by a run that was killed.
        self.writer = self.writer_class(str(log_dir), purge_step=loop.state.epoch + 1 if loop.state.epoch else None)
        for row in loop.state.metrics:
            if row["epoch"] not in done:
                self._scalars(row)

    def on_epoch_end(self, loop: TrainingLoop, metrics: dict[str, Any]) -> None:
        epoch = metrics["epoch"]
        self._scalars(metrics)
        if measure(loop.config)[0] == "bits/dim":
            dims = loop.valid_x[0].numel()
            for key, tag in BITS_TAGS.items():
                self.writer.add_scalar(tag, bits_per_dim(metrics[key], dims), epoch)
        self.writer.add_scalar(LEARNING_RATE_TAG, loop.optimizer.param_groups[0]["lr"], epoch)
        if loop.objective.latent_units_apply:
            self._latents(loop, epoch)
        last = epoch == loop.config.train.epochs
        if last or (self.images_every and epoch % self.images_every == 0):
            self._grids(loop, epoch)
        self.writer.flush()

    def on_train_end(self, loop: TrainingLoop, test: dict[str, Any]) -> None:
        figures = {tag: test[key] for key, tag in TEST_TAGS.items() if key in test}
        hparams = {
            k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in rundir.flat(loop.config).items()
        }
        # run_name=".": the HParams entry sits beside this run's scalars, not in a folder of its own.
        self.writer.add_hparams(hparams, figures, run_name=".", global_step=len(loop.state.metrics))
        self.writer.close()

    def _scalars(self, row: dict[str, Any]) -> None:
        for key, tag in METRIC_TAGS.items():
            if key in row:
                self.writer.add_scalar(tag, row[key], row["epoch"])

    def _latents(self, loop: TrainingLoop, epoch: int) -> None:
        was_training = loop.model.training
        loop.model.eval()
        labels = loop.valid_labels if loop.model.needs_labels else None  # a conditional VAE's q(z|x, y)
        latents = latent_diagnostics(loop.model, loop.valid_x, loop.config.train.eval_batch_size, labels=labels)
        loop.model.train(was_training)
        self.writer.add_scalar(ACTIVE_UNITS_TAG, latents.active_units, epoch)
        for layer in latents.layers:
            self.writer.add_scalar(KL_PER_LAYER_TAG.format(layer.name), layer.kl, epoch)
        if latents.kl_per_dim is not None:
            for j, kl in enumerate(latents.kl_per_dim.tolist()):
                self.writer.add_scalar(KL_PER_DIM_TAG.format(j), kl, epoch)

    @torch.no_grad()
    def _grids(self, loop: TrainingLoop, epoch: int) -> None:
        model, per_row = loop.model, 8
        was_training = model.training
        model.eval()
        x = loop.valid_x[: self.images // 2].to(next(model.parameters()).device)
        labels = loop.valid_labels[: len(x)] if model.needs_labels else None
        pairs = torch.stack([x, model.reconstruct(x, labels)], 1).flatten(0, 1)  # input, reconstruction, ...
        samples = model.sample(self.images, generator=torch.Generator().manual_seed(loop.config.train.seed))
        model.train(was_training)
        for tag, images in (("images/reconstructions", pairs), ("images/samples", samples)):
            self.writer.add_image(tag, make_grid(images.float().cpu().clamp(0, 1), per_row), epoch)
