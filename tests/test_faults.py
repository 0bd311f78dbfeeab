"""Faults done for real: kills, divergence, full disks, concurrent runs, damaged files."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from vaekit import checkpoint, rundir
from vaekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from vaekit.data import Dataset, Split
from vaekit.errors import CheckpointError, TrainingDivergedError
from vaekit.training import train

TINY = [
    "--train-limit",
    "600",
    "--eval-limit",
    "200",
    "--hidden-dim",
    "64",
    "--latent-dim",
    "4",
    "--batch-size",
    "50",
    "--seed",
    "7",
    "--no-progress",
    "--no-pictures",
]


def _vaekit(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "vaekit", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs
    )


def _weights(run: Path) -> dict[str, torch.Tensor]:
    model, _ = rundir.load_run(run)
    return model.state_dict()


def _every_file_reads(run: Path) -> None:
    """No half-written file: everything vaekit left in the folder loads."""
    rundir.read_config(run)
    for name in (rundir.MODEL_FILE, rundir.CHECKPOINT_FILE):
        if (run / name).exists():
            checkpoint.read_tensors(run / name)
    for line in (run / rundir.METRICS_FILE).read_text().splitlines() if (run / rundir.METRICS_FILE).exists() else []:
        json.loads(line)


def _mtime(path: Path) -> float:
    return path.stat().st_mtime_ns if path.exists() else 0


@pytest.mark.slow
@pytest.mark.parametrize("compiled", ["off", "on"])
def test_kill_9_at_random_points_then_resume_equals_an_uninterrupted_run(compiled, tmp_path, mnist_small):
    # Batches of 10 and a checkpoint every 3 steps: 240 short steps, so that kills land both
    # inside batches and inside checkpoint writes. Exact in each mode: uncompiled and compiled.
    config = [*TINY, "--batch-size", "10", "--checkpoint-every-steps", "3", "--compile", compiled]
    reference = tmp_path / "reference"
    done = subprocess.run(
        [sys.executable, "-m", "vaekit", "train", "--run-dir", str(reference), "--epochs", "4", *config],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr

    run = tmp_path / "killed"
    ckpt = run / rundir.CHECKPOINT_FILE
    rng = random.Random(0)
    kills = interrupted_writes = 0
    for _ in range(40):
        if (run / rundir.CONFIG_FILE).exists():
            proc = _vaekit("train", "--run-dir", str(run), "--resume", "--epochs", "4", *TINY[-2:])
        else:
            proc = _vaekit("train", "--run-dir", str(run), "--epochs", "4", *config)
        before, deadline = _mtime(ckpt), time.monotonic() + 120
        while proc.poll() is None and _mtime(ckpt) == before and time.monotonic() < deadline:
            time.sleep(0.005)  # wait for progress: a new checkpoint
        time.sleep(rng.uniform(0.0, 0.25))
        if proc.poll() is not None:
            break
        proc.kill()  # SIGKILL: no handler, no cleanup
        proc.wait()
        kills += 1
        interrupted_writes += bool(list(run.glob(".*.tmp")))  # killed inside an atomic write
        _every_file_reads(run)
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    assert kills >= 3
    print(f"{kills} kills, {interrupted_writes} of them inside a file write")
    resumed = _weights(run)
    for name, p in _weights(reference).items():
        assert torch.equal(p, resumed[name]), name
    assert [r["epoch"] for r in rundir.read_metrics(run)] == [1, 2, 3, 4]
    assert not list(run.glob(".*.tmp"))  # the last resume cleared what killed writers left


def test_an_absurd_learning_rate_stops_with_the_step_and_cause_and_keeps_the_last_good_checkpoint(tmp_path, tiny_data):
    config = RunConfig(
        ModelConfig(hidden_dim=64, latent_dim=4),
        DataConfig(train_limit=600, eval_limit=200),
        TrainConfig(epochs=2, batch_size=50, learning_rate=1e6, checkpoint_every_steps=1),
    )
    with pytest.raises(
        TrainingDivergedError,
        match=r"gradient became non-finite at step 1 \(epoch 1\); the step "
        r"size is likely too large: lower train.learning_rate",
    ):
        train(config, tmp_path / "run", progress=False, dataset=tiny_data)
    fresh = __import__("vaekit").build_model(config.model)
    state = rundir.load_checkpoint(tmp_path / "run", fresh, torch.optim.Adam(fresh.parameters()))
    assert state.step == 1 and all(torch.isfinite(p).all() for p in fresh.parameters())


def test_skip_nonfinite_skips_and_counts_bad_steps(tmp_path, tiny_data):
    images = tiny_data.train.images.clone()
    images[17] = float("nan")  # one poisoned image: one bad batch per epoch
    data = Dataset(Split(images, tiny_data.train.labels), tiny_data.valid, tiny_data.test, "none", 0)
    config = RunConfig(
        ModelConfig(hidden_dim=64, latent_dim=4),
        DataConfig(train_limit=600, eval_limit=200, binarization="none"),
        TrainConfig(epochs=3, batch_size=50, skip_nonfinite=True),
    )
    result = train(config, tmp_path / "run", progress=False, dataset=data)
    assert [m["skipped_steps"] for m in result.metrics] == [1, 2, 3]
    assert all(torch.isfinite(p).all() for p in result.model.parameters())
    assert result.metrics[-1]["valid_elbo"] > result.metrics[0]["valid_elbo"]


def test_a_full_disk_while_checkpointing_is_a_clear_error_and_the_previous_checkpoint_survives(tmp_path, mnist_small):
    run = tmp_path / "run"
    first = subprocess.run(
        [sys.executable, "-m", "vaekit", "train", "--run-dir", str(run), "--epochs", "1", *TINY],
        capture_output=True,
        text=True,
    )
    assert first.returncode == 0, first.stderr
    before = (run / rundir.CHECKPOINT_FILE).read_bytes()
    size = len(before)

    def small_disk():  # the kernel refuses writes past this size: EFBIG, as a full disk gives ENOSPC
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size // 2, size // 2))

    second = subprocess.run(
        [sys.executable, "-m", "vaekit", "train", "--run-dir", str(run), "--epochs", "2", "--resume", *TINY[-2:]],
        capture_output=True,
        text=True,
        preexec_fn=small_disk,
    )
    assert second.returncode == 2
    assert "could not write the checkpoint" in second.stderr and "previous checkpoint is intact" in second.stderr
    assert "Traceback" not in second.stderr
    assert (run / rundir.CHECKPOINT_FILE).read_bytes() == before
    assert not list(run.glob(".*.tmp"))


def test_a_second_run_in_the_same_folder_refuses(tmp_path, tiny_data, tiny_config):
    run = tmp_path / "run"
    train(tiny_config.with_overrides({"train.epochs": 1}), run, progress=False, dataset=tiny_data)
    with rundir.lock(run):  # as a live training process holds it
        with pytest.raises(CheckpointError, match=rf"{run} is in use by process {os.getpid()}"):
            train(tiny_config, run, resume=True, progress=False, dataset=tiny_data)
        with pytest.raises(CheckpointError, match="is in use"):
            train(tiny_config, run, overwrite=True, progress=False, dataset=tiny_data)
    train(tiny_config, run, resume=True, progress=False, dataset=tiny_data)  # free again


def test_a_flipped_weight_byte_is_caught_by_the_checksum(tmp_path, tiny_data, tiny_config):
    run = tmp_path / "run"
    train(tiny_config.with_overrides({"train.epochs": 1}), run, progress=False, dataset=tiny_data)
    for name in (rundir.MODEL_FILE, rundir.CHECKPOINT_FILE):
        data = bytearray((run / name).read_bytes())
        data[-100] ^= 0x01  # inside the tensor data, where safetensors itself checks nothing
        (run / name).write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="model.safetensors fails its checksum"):
        rundir.load_run(run)
    with pytest.raises(CheckpointError, match="checkpoint.safetensors fails its checksum"):
        train(tiny_config, run, resume=True, progress=False, dataset=tiny_data)


def test_a_truncated_or_foreign_checkpoint_refuses_to_resume(tmp_path, tiny_data, tiny_config):
    run = tmp_path / "run"
    train(tiny_config.with_overrides({"train.epochs": 1}), run, progress=False, dataset=tiny_data)
    good = (run / rundir.CHECKPOINT_FILE).read_bytes()
    (run / rundir.CHECKPOINT_FILE).write_bytes(good[:1000])
    with pytest.raises(CheckpointError, match="checkpoint.safetensors is not a valid safetensors file"):
        train(tiny_config, run, resume=True, progress=False, dataset=tiny_data)
    other = tmp_path / "other"
    train(
        tiny_config.with_overrides({"train.epochs": 1, "model.latent_dim": 6}), other, progress=False, dataset=tiny_data
    )
    (run / rundir.CHECKPOINT_FILE).write_bytes((other / rundir.CHECKPOINT_FILE).read_bytes())
    with pytest.raises(CheckpointError, match="written by a different model"):
        train(tiny_config, run, resume=True, progress=False, dataset=tiny_data)


def test_log_likelihood_stays_finite_for_extreme_encoders_and_k_10000():
    from vaekit.evaluation import importance_sampled_log_likelihood

    torch.manual_seed(0)
    model = __import__("vaekit").build_model(ModelConfig(hidden_dim=16, latent_dim=3, image_shape=(1, 4, 4)))
    x = torch.bernoulli(torch.full((3, 1, 4, 4), 0.5))
    for bias in (-1e3, 1e3):
        with torch.no_grad():
            model.encoder.heads.bias.fill_(bias)  # mu = +-1000, logvar at its clamps
        ll = importance_sampled_log_likelihood(model, x, 10_000, seed=0)
        assert torch.isfinite(ll.per_datapoint).all(), bias
