"""TensorBoard logging through the callback interface, read back with TensorBoard's own reader."""

import sys

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

from vaekit import rundir
from vaekit.callbacks import Callback
from vaekit.diagnostics import latent_diagnostics
from vaekit.errors import ConfigError
from vaekit.tensorboard import METRIC_TAGS, TensorBoard
from vaekit.training import train


def _events(run_dir):
    events = EventAccumulator(str(run_dir / rundir.TENSORBOARD_DIR), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return events


def _raw_steps(run_dir, tag):
    """Every step written for `tag` in every event file, duplicates included (no purging)."""
    steps = []
    for path in sorted((run_dir / rundir.TENSORBOARD_DIR).glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            steps += [event.step for v in event.summary.value if v.tag == tag]
    return sorted(steps)


def test_events_hold_the_metrics_the_latents_the_grids_and_the_hparams(tmp_path, tiny_config, tiny_data):
    config = tiny_config.with_overrides({"train.epochs": 3})
    run = tmp_path / "run"
    result = train(config, run, progress=False, dataset=tiny_data, callbacks=[TensorBoard(images_every=2)])
    plain = train(config, tmp_path / "plain", progress=False, dataset=tiny_data)
    # Logging does not change training: the same figures as a run without it.
    assert [m["valid_elbo"] for m in result.metrics] == [m["valid_elbo"] for m in plain.metrics]

    events, metrics = _events(run), rundir.read_metrics(run)
    for key, tag in METRIC_TAGS.items():
        if tag.startswith(("kl_decomposition/", "codebook/")) or tag in (
            "schedule/kl_target",
            "schedule/tc_weight",
        ):  # beta-TCVAE / capacity / VQ-VAE runs only
            assert tag not in events.Tags()["scalars"]
            continue
        logged = events.Scalars(tag)
        assert [e.step for e in logged] == [1, 2, 3], tag
        assert [e.value for e in logged] == pytest.approx([m[key] for m in metrics], rel=1e-6), tag
    assert events.Scalars("optimizer/learning_rate")[-1].value == pytest.approx(config.train.learning_rate)
    # The last epoch's latent figures are those of the trained model on the validation images.
    latents = latent_diagnostics(result.model, tiny_data.evaluation_observations("valid"))
    assert events.Scalars("latent/active_units")[-1].value == latents.active_units
    kl = [events.Scalars(f"kl_per_dim/z{j:03d}")[-1].value for j in range(config.model.latent_dim)]
    assert kl == pytest.approx(latents.kl_per_dim.tolist(), rel=1e-5)
    assert sum(kl) == pytest.approx(metrics[-1]["valid_kl"], rel=1e-4)  # closed-form KL: the dimensions add up
    assert [e.step for e in events.Images("images/reconstructions")] == [2, 3]  # every 2 epochs and the last
    assert [e.step for e in events.Images("images/samples")] == [2, 3]
    summary = rundir.read_summary(run)
    assert events.Scalars("test/elbo")[-1].value == pytest.approx(summary["test_elbo"])
    assert "_hparams_/session_start_info" in events.PluginTagToContent("hparams")


def test_a_resumed_run_continues_the_curves_without_duplicated_steps(tmp_path, tiny_config, tiny_data):
    run = tmp_path / "run"
    train(
        tiny_config.with_overrides({"train.epochs": 2}),
        run,
        progress=False,
        dataset=tiny_data,
        callbacks=[TensorBoard()],
    )
    config = tiny_config.with_overrides({"train.epochs": 4})
    train(config, run, resume=True, progress=False, dataset=tiny_data, callbacks=[TensorBoard()])
    assert _raw_steps(run, "elbo/valid") == [1, 2, 3, 4]
    # sorted: the accumulator reads the files in name order, and two files of one process in one second are
    # told apart by a process-wide writer counter, whose "10" sorts before "9"
    assert sorted(e.step for e in _events(run).Scalars("elbo/valid")) == [1, 2, 3, 4]


def test_epochs_the_events_missed_are_filled_in_from_the_metrics(tmp_path, tiny_config, tiny_data):
    """A run trained without the flag (or killed between its checkpoint and its events) gets its
    earlier epochs' curves from metrics.jsonl when it resumes with TensorBoard."""
    run = tmp_path / "run"
    train(tiny_config.with_overrides({"train.epochs": 2}), run, progress=False, dataset=tiny_data)
    train(
        tiny_config.with_overrides({"train.epochs": 3}),
        run,
        resume=True,
        progress=False,
        dataset=tiny_data,
        callbacks=[TensorBoard()],
    )
    metrics = rundir.read_metrics(run)
    logged = _events(run).Scalars("elbo/train")
    assert [e.step for e in logged] == [1, 2, 3]
    assert [e.value for e in logged] == pytest.approx([m["train_elbo"] for m in metrics], rel=1e-6)


def test_without_the_package_the_flag_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    with pytest.raises(ConfigError, match=r"vaekit\[tensorboard\]"):
        TensorBoard()


def test_callbacks_see_each_epoch_after_its_checkpoint_and_the_test_figures(tmp_path, tiny_config, tiny_data):
    seen = []

    class Recorder(Callback):
        def on_train_start(self, loop):
            seen.append(("start", loop.state.epoch))

        def on_epoch_end(self, loop, metrics):
            on_disk = rundir.read_metrics(loop.run_dir)[-1]
            seen.append(("epoch", metrics["epoch"], on_disk == metrics))

        def on_train_end(self, loop, test):
            seen.append(("end", test["test_elbo"] == rundir.read_summary(loop.run_dir)["test_elbo"]))

    class OnlyEnd:  # any object with some of the methods will do
        def on_train_end(self, loop, test):
            seen.append(("plain object", torch.isfinite(torch.tensor(test["test_elbo"])).item()))

    train(
        tiny_config.with_overrides({"train.epochs": 2}),
        tmp_path / "r",
        progress=False,
        dataset=tiny_data,
        callbacks=[Recorder(), OnlyEnd()],
    )
    assert seen == [("start", 0), ("epoch", 1, True), ("epoch", 2, True), ("end", True), ("plain object", True)]


def test_a_step_hook_runs_every_n_steps_and_a_failing_logger_can_warn_instead_of_ending_the_run(
    tmp_path, tiny_config, tiny_data
):
    """tiny_data: 600 images, batch 100 are 6 steps per epoch; every 4th of 12 steps is steps 4, 8 and 12,
    each with its loss, which a loss recomputed from the saved model cannot give, so only its sign is checked
    (the negative ELBO of binary images is positive). A logger that raises with on_error = "warn" leaves
    the same trained weights as a run without it."""
    steps = []

    class Every4(Callback):
        step_every = 4

        def on_step_end(self, loop, step):
            steps.append((step["step"], step["loss"] > 0, loop.model.training))

    class Down(Callback):
        on_error = "warn"

        def on_epoch_end(self, loop, metrics):
            raise ConnectionError("the tracking server is down")

    config = tiny_config.with_overrides({"train.epochs": 2, "train.batch_size": 100})
    lines: list[str] = []
    kept = train(
        config, tmp_path / "a", progress=False, dataset=tiny_data, callbacks=[Every4(), Down()], log=lines.append
    )
    assert steps == [(4, True, True), (8, True, True), (12, True, True)]
    said = "warning: Down.on_epoch_end failed (ConnectionError: the tracking server is down); training goes on"
    assert lines.count(said) == 2
    plain = train(config, tmp_path / "b", progress=False, dataset=tiny_data)
    assert all(torch.equal(a, b) for a, b in zip(kept.model.state_dict().values(), plain.model.state_dict().values()))
    Down.on_error = "raise"
    with pytest.raises(ConnectionError):
        train(config, tmp_path / "c", progress=False, dataset=tiny_data, callbacks=[Down()])
    assert rundir.read_metrics(tmp_path / "c")[-1]["epoch"] == 1  # the epoch's files were written first


def test_a_run_on_grey_levels_logs_its_bounds_in_bits_per_dim_and_its_evaluation(tmp_path, tiny_config, tiny_data):
    import dataclasses
    import math

    from vaekit.evaluation import EvaluationSetting, evaluate_run
    from vaekit.tensorboard import add_evaluation

    config = tiny_config.with_overrides(
        {"train.epochs": 2, "data.binarization": "none", "model.likelihood": "discretized-logistic"}
    )
    grey = dataclasses.replace(tiny_data, binarization="none")
    run = tmp_path / "run"
    train(config, run, progress=False, dataset=grey, callbacks=[TensorBoard(images_every=0)])
    events, metrics = _events(run), rundir.read_metrics(run)
    logged = [e.value for e in events.Scalars("bits_per_dim/valid_elbo")]
    assert logged == pytest.approx([-m["valid_elbo"] / (784 * math.log(2)) for m in metrics], rel=1e-6)
    result, _ = evaluate_run(run, "test", EvaluationSetting(num_importance_samples=5, limit=20))
    assert add_evaluation(run, result)
    events = _events(run)
    bits = events.Scalars("evaluation/log_likelihood_bits_per_dim")
    assert [e.step for e in bits] == [2] and bits[0].value == pytest.approx(result["log_likelihood_bits_per_dim"])
