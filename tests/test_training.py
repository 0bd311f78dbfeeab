"""The training loop on real MNIST: it learns, it resumes exactly, it stops cleanly."""

import json
import sys

import pytest
import torch

from vaekit import checkpoint, rundir
from vaekit.callbacks import Callback
from vaekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from vaekit.errors import CheckpointError, ConfigError, TrainingDivergedError
from vaekit.models.vae import build_model
from vaekit.training import train


def test_training_lowers_the_validation_loss_on_real_mnist(tmp_path, mnist_small):
    config = RunConfig(
        ModelConfig(hidden_dim=256, latent_dim=16),
        DataConfig(train_limit=3000, eval_limit=1000),
        TrainConfig(epochs=5, batch_size=100),
    )
    result = train(config, tmp_path / "run", progress=False, dataset=mnist_small)
    first, last = result.metrics[0]["valid_elbo"], result.metrics[-1]["valid_elbo"]
    assert last > first + 25, (first, last)  # nats per image; an untrained model sits near -540
    assert last > -190
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5]
    for key in ("train_elbo", "valid_elbo", "valid_reconstruction", "valid_kl", "seconds", "images_per_second"):
        assert all(key in r for r in rows)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["test_elbo"] == pytest.approx(summary["test_reconstruction"] - summary["test_kl"])


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, tiny_config, tiny_data):
    config = tiny_config.with_overrides({"train.epochs": 3})
    full = train(config, tmp_path / "full", progress=False, dataset=tiny_data).model
    # Interrupted after one epoch, then resumed to three.
    train(tiny_config.with_overrides({"train.epochs": 1}), tmp_path / "cut", progress=False, dataset=tiny_data)
    resumed = train(config, tmp_path / "cut", resume=True, progress=False, dataset=tiny_data)
    for (name, p), q in zip(full.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(p, q), name
    assert [m["epoch"] for m in resumed.metrics] == [1, 2, 3]


def test_resume_from_a_checkpoint_inside_an_epoch(tmp_path, tiny_config, tiny_data, monkeypatch):
    """A checkpoint taken mid-epoch (time-based) resumes to the same weights as no interruption."""
    config = tiny_config.with_overrides({"train.epochs": 1})
    full = train(config, tmp_path / "full", progress=False, dataset=tiny_data).model
    calls = {"n": 0}
    real_save = checkpoint.save_checkpoint

    def save_then_die(path, model, optimizer, state):
        real_save(path, model, optimizer, state)
        calls["n"] += 1
        raise KeyboardInterrupt  # killed right after the first mid-epoch checkpoint

    monkeypatch.setattr(checkpoint, "save_checkpoint", save_then_die)
    cut = config.with_overrides({"train.checkpoint_minutes": 1e-9})
    with pytest.raises(KeyboardInterrupt):
        train(cut, tmp_path / "cut", progress=False, dataset=tiny_data)
    monkeypatch.setattr(checkpoint, "save_checkpoint", real_save)
    fresh = build_model(config.model)
    state = rundir.load_checkpoint(tmp_path / "cut", fresh, torch.optim.Adam(fresh.parameters()))
    assert state.batch_in_epoch == 1 and state.epoch == 0
    resumed = train(cut, tmp_path / "cut", resume=True, progress=False, dataset=tiny_data).model
    for p, q in zip(full.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(p, q)


def test_same_seed_repeats_and_another_seed_differs(tmp_path, tiny_config, tiny_data):
    config = tiny_config.with_overrides({"train.epochs": 1})
    a = train(config, tmp_path / "a", progress=False, dataset=tiny_data).metrics[0]["train_elbo"]
    b = train(config, tmp_path / "b", progress=False, dataset=tiny_data).metrics[0]["train_elbo"]
    c = train(config.with_overrides({"train.seed": 1}), tmp_path / "c", progress=False, dataset=tiny_data).metrics[0][
        "train_elbo"
    ]
    assert a == b and a != c


def test_a_non_finite_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(tmp_path, tiny_config, tiny_data):
    run = tmp_path / "run"
    train(tiny_config.with_overrides({"train.epochs": 1}), run, progress=False, dataset=tiny_data)
    good = (run / rundir.CHECKPOINT_FILE).read_bytes()
    model_bytes = (run / rundir.MODEL_FILE).read_bytes()
    # Poison the data of the next epoch: the loss turns NaN in its first step.
    poisoned = tiny_data.train.images.clone()
    poisoned[:] = float("nan")
    bad = type(tiny_data)(
        type(tiny_data.train)(poisoned, tiny_data.train.labels), tiny_data.valid, tiny_data.test, "none", 0
    )
    with pytest.raises(
        TrainingDivergedError, match=r"loss became non-finite \(nan\) at step 12 \(epoch 2\); the input batch holds NaN"
    ):
        train(
            tiny_config.with_overrides({"data.binarization": "dynamic", "train.epochs": 2}),
            run,
            resume=True,
            progress=False,
            dataset=bad,
        )
    assert (run / rundir.CHECKPOINT_FILE).read_bytes() == good
    assert (run / rundir.MODEL_FILE).read_bytes() == model_bytes


def test_an_existing_run_is_not_clobbered_and_a_changed_config_does_not_resume(tmp_path, tiny_config, tiny_data):
    run = tmp_path / "run"
    train(tiny_config.with_overrides({"train.epochs": 1}), run, progress=False, dataset=tiny_data)
    with pytest.raises(CheckpointError, match="already holds a run; pass --resume"):
        train(tiny_config, run, progress=False, dataset=tiny_data)
    with pytest.raises(ConfigError, match="model.latent_dim is 4 in the saved run, 5 was given"):
        train(tiny_config.with_overrides({"model.latent_dim": 5}), run, resume=True, progress=False, dataset=tiny_data)
    with pytest.raises(CheckpointError, match="holds no run"):
        train(tiny_config, tmp_path / "none", resume=True, progress=False, dataset=tiny_data)
    with pytest.raises(ConfigError, match="batch_size = 5000 is larger than the 600"):
        train(tiny_config.with_overrides({"train.batch_size": 5000}), tmp_path / "b", progress=False, dataset=tiny_data)


def test_a_dataset_that_cannot_load_leaves_no_run_folder(tmp_path):
    from vaekit.errors import DataError

    config = RunConfig(data=DataConfig(dataset="array", path=str(tmp_path / "missing.npz")))
    with pytest.raises(DataError, match="missing.npz does not exist"):
        train(config, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()  # so the same command can simply be run again


def test_sigterm_saves_a_checkpoint_at_the_current_step_and_resume_continues_exactly(
    tmp_path, tiny_config, tiny_data, monkeypatch
):
    import os
    import signal

    from vaekit import training
    from vaekit.errors import TrainingStopped

    config = tiny_config.with_overrides({"train.epochs": 2})
    full = train(config, tmp_path / "full", progress=False, dataset=tiny_data).model
    real_step = training.train_step

    def step_then_signal(loop, *args):
        skips = real_step(loop, *args)
        if loop.state.step == 16:  # the fifth step of epoch 2 (12 steps per epoch)
            os.kill(os.getpid(), signal.SIGTERM)  # what a cluster scheduler or `docker stop` sends
        return skips

    monkeypatch.setattr(training, "train_step", step_then_signal)
    with pytest.raises(TrainingStopped, match=r"stopped by SIGTERM at step 17 \(epoch 2\); a checkpoint was saved"):
        train(config, tmp_path / "cut", progress=False, dataset=tiny_data)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is gone with the loop
    monkeypatch.setattr(training, "train_step", real_step)
    fresh = build_model(config.model)
    state = rundir.load_checkpoint(tmp_path / "cut", fresh, torch.optim.Adam(fresh.parameters()))
    assert (state.step, state.epoch, state.batch_in_epoch) == (17, 1, 5)  # nothing since the epoch end is lost
    resumed = train(config, tmp_path / "cut", resume=True, progress=False, dataset=tiny_data)
    for p, q in zip(full.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(p, q)
    assert [m["epoch"] for m in resumed.metrics] == [1, 2]


def test_images_per_second_leaves_out_the_first_steps_start_up():
    import time

    from vaekit.checkpoint import TrainState
    from vaekit.training import EpochProgress

    epoch = EpochProgress(TrainState(), torch.device("cpu"))
    time.sleep(0.2)  # the first step pays for allocations and the optimiser's state
    epoch.step_done(100)
    for _ in range(9):
        epoch.step_done(100)
    overall = 1000 / epoch.seconds()
    assert overall < 5000 and epoch.images_per_second() > 10 * overall


@pytest.mark.parametrize(
    "model",
    [
        {"prior": "mixture", "prior_components": 3},
        {"prior": "vampprior", "prior_components": 3},
        {"posterior_flow": "planar", "flow_steps": 2},
        {"posterior_flow": "iaf", "flow_steps": 2},
        {"hierarchy": "two-layer", "top_latent_dim": 2},
        {"hierarchy": "ladder", "ladder_latent_dims": (4, 2), "ladder_hidden_dims": (32, 16)},
        {"architecture": "conv", "conv_channels": (8, 16)},  # channels-last conv weights and their Adam moments
    ],
)
def test_learned_priors_and_flows_resume_bit_for_bit(model, tiny_config, resumes_bit_for_bit):
    overrides = {f"model.{k}": v for k, v in model.items()}
    full = resumes_bit_for_bit(tiny_config.with_overrides({**overrides, "train.epochs": 2}))
    assert full.metrics[-1]["valid_elbo"] > full.metrics[0]["valid_elbo"]


def test_a_run_whose_units_collapsed_ends_with_a_warning_and_a_healthy_one_does_not(tmp_path, tiny_config, tiny_data):
    """beta = 100 drives q(z|x) onto the prior within two epochs: every unit collapses."""
    lines: list[str] = []
    collapsed = tiny_config.with_overrides({"train.beta": 100.0})
    train(collapsed, tmp_path / "collapsed", progress=False, dataset=tiny_data, log=lines.append)
    warning = [line for line in lines if "latent units collapsed" in line]
    assert len(warning) == 1 and "of 4 latent units collapsed" in warning[0] and "z1 " in warning[0]
    lines.clear()
    train(tiny_config, tmp_path / "healthy", progress=False, dataset=tiny_data, log=lines.append)
    assert not any("collapsed" in line for line in lines)


@pytest.mark.parametrize(
    "overrides, said",
    [
        ({"train.warmup_steps": 100}, "the KL weight will end at 0.23 of beta = 1"),
        ({"train.beta": 4.0, "train.warmup_steps": 48}, "the KL weight will end at 1.92 of beta = 4"),
        (
            {"train.capacity_max": 25.0, "train.capacity_steps": 1000, "train.capacity_gamma": 10.0},
            "the KL target will end at 0.575 of 25 nats",
        ),
        ({"train.warmup_steps": 24}, None),  # ends with the run: nothing to say
    ],
)
def test_a_schedule_longer_than_the_run_is_said_with_where_it_ends(tmp_path, tiny_config, tiny_data, overrides, said):
    """tiny_data has 600 training images: 2 epochs of batch 50 are steps 0 .. 23; the schedules at step 23.
    metrics.jsonl has where they stood at each epoch's last step (11 and 23)."""
    config = tiny_config.with_overrides({"train.epochs": 2, "train.batch_size": 50, **overrides})
    lines: list[str] = []
    train(config, tmp_path / "run", progress=False, dataset=tiny_data, log=lines.append)
    warned = [line for line in lines if "outlasts this run's 24 steps" in line]
    assert (said in warned[0] and len(warned) == 1) if said else not warned, lines
    rows, tc = rundir.read_metrics(tmp_path / "run"), config.train
    if tc.capacity_max:
        expected = [pytest.approx(tc.capacity_max * s / tc.capacity_steps) for s in (11, 23)]
        assert [r["kl_target"] for r in rows] == expected
    else:
        expected = [pytest.approx(tc.beta * min(1, s / tc.warmup_steps)) for s in (11, 23)]
        assert [r["kl_weight"] for r in rows] == expected and "kl_target" not in rows[0]


def test_beta_tcvae_logs_its_warmed_up_total_correlation_weight_and_dip_its_kl_weight(tmp_path, tiny_config, tiny_data):
    """beta weighs the total correlation alone under beta-TCVAE: metrics.jsonl has it as tc_weight, where it
    stood at each epoch's last step (11 and 23 of a 24-step warm-up to 6); DIP-VAE's beta weighs the KL."""
    for objective, key in (("beta-tcvae", "tc_weight"), ("dip-vae-i", "kl_weight")):
        config = tiny_config.with_overrides({"train.epochs": 2, "train.batch_size": 50, "train.objective": objective,
                                             "train.beta": 6.0, "train.warmup_steps": 24})  # fmt: skip
        train(config, tmp_path / objective, progress=False, dataset=tiny_data)
        rows = rundir.read_metrics(tmp_path / objective)
        assert [r[key] for r in rows] == [pytest.approx(6.0 * s / 24) for s in (11, 23)]
        assert ({"kl_weight", "tc_weight"} - {key}).isdisjoint(rows[0])  # one weight, named for what it weighs


def test_a_warm_up_given_as_a_share_lasts_that_share_of_any_run(tmp_path, tiny_config, tiny_data):
    """warmup_share 0.5 of 2 epochs of 12 steps warms up over 12 steps (the KL weight at step 11 is 11/12);
    of 4 epochs, over 24; the presets' shares give their old step counts at their own length."""
    from vaekit.config import load_config
    from vaekit.training import with_warmup_share

    for epochs, warmup in ((2, 12), (4, 24)):
        config = tiny_config.with_overrides({"train.epochs": epochs, "train.batch_size": 50, "train.warmup_share": 0.5})
        train(config, tmp_path / f"run{epochs}", progress=False, dataset=tiny_data)
        rows = rundir.read_metrics(tmp_path / f"run{epochs}")
        assert [r["kl_weight"] for r in rows] == [
            pytest.approx(min(1, (12 * e - 1) / warmup)) for e in range(1, epochs + 1)
        ]
        assert rundir.read_config(tmp_path / f"run{epochs}").train.warmup_share == 0.5  # the share is what is saved
    for preset, steps in (("mnist-vampprior", 10_000), ("mnist-mog", 10_000), ("mnist-beta4", 5_000)):
        assert with_warmup_share(load_config(preset).train, 500).warmup_steps == steps  # 30 epochs of 500 steps
    with pytest.raises(ConfigError, match="leave train.warmup_steps at 0"):
        tiny_config.with_overrides({"train.warmup_share": 0.5, "train.warmup_steps": 10})


def test_early_stopping_stops_at_the_right_epoch_keeps_the_best_model_and_resumes_with_its_count(
    tmp_path, tiny_config, tiny_data, monkeypatch
):
    """A scripted validation curve -300, -200, -210, -205, -220, ... with patience 2: epoch 2 is the best,
    epochs 3 and 4 do not improve on it, so the run stops before epoch 5 with epoch 2's weights in
    model-best.safetensors. Trained one epoch per call (max_seconds=0) and resumed, it ends the same way."""
    import dataclasses

    from vaekit import evaluation, training

    curve = [-300.0, -200.0, -210.0, -205.0, -220.0, -100.0]
    epochs = []

    def scripted(model, x, *args, **kwargs):
        result = evaluation.evaluate_elbo(model, x, *args, **kwargs)
        if sys._getframe(1).f_code.co_name != "end_epoch":  # the test split's figures stay real
            return result
        epochs.append(len(epochs) + 1)
        return dataclasses.replace(result, elbo=curve[len(epochs) - 1])

    monkeypatch.setattr(training, "evaluate_elbo", scripted)
    config = tiny_config.with_overrides({"train.epochs": 6, "train.early_stopping_patience": 2})
    at_epoch = {}

    class Keep(Callback):
        def on_epoch_end(self, loop, metrics):
            at_epoch[metrics["epoch"]] = {k: v.clone() for k, v in loop.model.state_dict().items()}

    lines: list[str] = []
    train(config, tmp_path / "full", progress=False, dataset=tiny_data, callbacks=[Keep()], log=lines.append)
    assert [r["valid_elbo"] for r in rundir.read_metrics(tmp_path / "full")] == curve[:4]
    summary = rundir.read_summary(tmp_path / "full")
    assert summary["epochs"] == 4 and summary["best_epoch"] == 2 and summary["stopped_early"] is True
    assert any("stopping early after epoch 4: the validation ELBO has not improved for 2 epochs since epoch 2" in line
               for line in lines)  # fmt: skip
    best, _ = rundir.load_run(tmp_path / "full", weights="best")
    assert all(torch.equal(best.state_dict()[k], v) for k, v in at_epoch[2].items())
    last, _ = rundir.load_run(tmp_path / "full")
    assert all(torch.equal(last.state_dict()[k], v) for k, v in at_epoch[4].items())
    # the summary keeps the test figures of both: the last weights' at the top, the best weights' apart
    from vaekit.randomness import seeded_generator

    test_x, tc = tiny_data.evaluation_observations("test"), config.train
    for model, figures in ((last, summary), (best, summary["best_weights"])):
        expected = evaluation.evaluate_elbo(model, test_x, tc.eval_batch_size, 1, seeded_generator(tc.seed, "eval"))
        assert figures["test_elbo"] == pytest.approx(expected.elbo, abs=1e-9)
    assert summary["best_weights"]["epoch"] == 2 and summary["best_weights"]["test_elbo"] != summary["test_elbo"]

    epochs.clear()
    for call in range(6):  # one epoch per call, the same curve again; the last two calls train nothing
        train(config, tmp_path / "cut", resume=call > 0, progress=False, dataset=tiny_data, max_seconds=0)
    assert epochs == [1, 2, 3, 4]
    cut = rundir.read_summary(tmp_path / "cut")
    assert cut == {**summary, "seconds_total": cut["seconds_total"]}
    best_file = rundir.BEST_MODEL_FILE
    assert (tmp_path / "cut" / best_file).read_bytes() == (tmp_path / "full" / best_file).read_bytes()


def test_a_checkpoint_restores_adam_moments_in_the_layout_of_their_channels_last_weights(tmp_path):
    """Contiguous moments beside a channels-last weight would be updated element against the wrong element
    by the fused Adam; after loading they take the weight's layout, and the next step matches a run that
    never stopped."""
    torch.manual_seed(0)
    config = ModelConfig(architecture="conv", conv_channels=(8, 16), hidden_dim=32, latent_dim=3)
    models = [build_model(config) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    weight = models[0].encoder.conv[2].weight
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    optimizers = [torch.optim.Adam(m.parameters(), lr=0.1, fused=True) for m in models]
    x = (torch.rand(4, 1, 28, 28) < 0.3).float()

    def step(model, optimizer):
        optimizer.zero_grad()
        model.posterior(x).mu.square().sum().backward()
        optimizer.step()

    step(models[0], optimizers[0])
    checkpoint.save_checkpoint(tmp_path / "c.safetensors", models[0], optimizers[0], checkpoint.TrainState(step=1))
    restored = build_model(config)
    optimizer = torch.optim.Adam(restored.parameters(), lr=0.1, fused=True)
    checkpoint.load_checkpoint(tmp_path / "c.safetensors", restored, optimizer)
    moment = optimizer.state[restored.encoder.conv[2].weight]["exp_avg"]
    assert moment.stride() == restored.encoder.conv[2].weight.stride()
    step(models[0], optimizers[0])
    step(restored, optimizer)
    for p, q in zip(models[0].parameters(), restored.parameters()):
        assert torch.equal(p, q)


def _first_images(data, n):
    """The dataset with only its first n training images."""
    import dataclasses

    from vaekit.data import Split

    return dataclasses.replace(data, train=Split(data.train.images[:n], data.train.labels[:n]))


def _record_kl_decomposition_calls(monkeypatch) -> list[tuple[int, int]]:
    """(batch size, dataset size N) of every call of kl_decomposition by the training objective from here on."""
    from vaekit.objectives import losses

    seen: list[tuple[int, int]] = []
    real = losses.kl_decomposition

    def recording(posterior, z, prior, dataset_size, sampling="mss"):
        seen.append((len(z), dataset_size))
        return real(posterior, z, prior, dataset_size, sampling)

    monkeypatch.setattr(losses, "kl_decomposition", recording)
    return seen


def test_the_loop_gives_beta_tcvae_the_number_of_training_images(tmp_path, tiny_config, tiny_data, monkeypatch):
    """Catches the loop not passing the dataset size N to beta-TCVAE (whose estimate of the aggregate posterior
    then falls back to N = M, the batch): every training step of a 200-image run in batches of 50 reaches
    objectives.kl_decomposition with N = 200."""
    seen = _record_kl_decomposition_calls(monkeypatch)
    config = tiny_config.with_overrides(
        {"data.train_limit": 200, "train.epochs": 1, "train.batch_size": 50, "train.objective": "beta-tcvae"}
    )
    train(config, tmp_path / "run", progress=False, dataset=_first_images(tiny_data, 200))
    assert seen == [(50, 200)] * 4


def test_beta_tcvaes_last_batch_never_holds_a_single_image(tmp_path, tiny_config, tiny_data, monkeypatch):
    """201 images in batches of 50: beta-TCVAE, which cannot estimate q(z) from one image, trains on 50, 50, 50
    and 51, every image once; the elbo objective keeps its last batch of one (five steps), as before."""
    seen = _record_kl_decomposition_calls(monkeypatch)
    config = tiny_config.with_overrides({"data.train_limit": 201, "train.epochs": 1, "train.batch_size": 50})
    data = _first_images(tiny_data, 201)
    tcvae = train(
        config.with_overrides({"train.objective": "beta-tcvae"}), tmp_path / "tc", progress=False, dataset=data
    )
    assert seen == [(50, 201)] * 3 + [(51, 201)]
    assert tcvae.metrics[0]["step"] == 4 and tcvae.metrics[0]["images_seen"] == 201
    elbo = train(config, tmp_path / "elbo", progress=False, dataset=data)
    assert elbo.metrics[0]["step"] == 5
    dip = train(config.with_overrides({"train.objective": "dip-vae-i"}), tmp_path / "dip", progress=False, dataset=data)
    assert dip.metrics[0]["step"] == 4  # its covariance over one image would be 0: that image joins the batch before
