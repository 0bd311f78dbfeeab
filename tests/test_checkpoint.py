"""The run folder: exact round trips and refusals of corrupt or foreign files."""

import pickle

import pytest
import torch

from vaekit import checkpoint, rundir
from vaekit.checkpoint import EpochTotals, TrainState
from vaekit.config import ModelConfig, RunConfig
from vaekit.errors import CheckpointError
from vaekit.models.vae import build_model


def _saved_run(tmp_path, latent_dim=3):
    config = RunConfig(model=ModelConfig(hidden_dim=16, latent_dim=latent_dim))
    torch.manual_seed(0)
    model = build_model(config.model)
    run = tmp_path / f"run{latent_dim}"
    run.mkdir()
    rundir.write_config(run, config)
    rundir.save_model(run, model)
    return run, model


def test_round_trip_gives_identical_outputs(tmp_path):
    run, model = _saved_run(tmp_path)
    loaded, config = rundir.load_run(run)
    x = torch.rand(4, 1, 28, 28)
    assert config.model.latent_dim == 3
    for a, b in zip(model.encoder(x), loaded.encoder(x)):
        assert torch.equal(a, b)
    assert torch.equal(model.decode(torch.ones(2, 3)).logits, loaded.decode(torch.ones(2, 3)).logits)


def test_checkpoint_round_trip_restores_optimizer_state(tmp_path):
    run, model = _saved_run(tmp_path)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.decode(model.encoder(torch.rand(2, 1, 28, 28))[0]).logits.sum().backward()
    opt.step()
    saved = TrainState(
        epoch=1,
        step=7,
        batch_in_epoch=3,
        totals=EpochTotals(-1234.5, -1200.25, 34.25, 150.0),
        seconds=2.5,
        skipped_steps=1,
        metrics=[{"epoch": 1, "train_elbo": -100.0}],
    )
    rundir.save_checkpoint(run, model, opt, saved)
    torch.manual_seed(5)
    other = build_model(ModelConfig(hidden_dim=16, latent_dim=3))
    other_opt = torch.optim.Adam(other.parameters(), lr=1e-3)
    state = rundir.load_checkpoint(run, other, other_opt)
    assert state == saved
    for p, q in zip(model.parameters(), other.parameters()):
        assert torch.equal(p, q)
        assert torch.equal(opt.state[p]["exp_avg_sq"], other_opt.state[q]["exp_avg_sq"])


def test_truncated_and_bit_flipped_files_are_refused(tmp_path):
    run, _ = _saved_run(tmp_path)
    path = run / rundir.MODEL_FILE
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors is not a valid safetensors file"):
        rundir.load_run(run)
    flipped = bytearray(data)
    flipped[3] ^= 0xFF  # inside the header length
    path.write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        rundir.load_run(run)


def test_a_pickle_with_code_is_never_executed(tmp_path, capsys):
    run, _ = _saved_run(tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (run / rundir.MODEL_FILE).write_bytes(pickle.dumps(Evil()))
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        rundir.load_run(run)
    assert "pwned" not in capsys.readouterr().out


def test_weights_of_another_architecture_are_refused(tmp_path):
    run3, _ = _saved_run(tmp_path, 3)
    run5, _ = _saved_run(tmp_path, 5)
    (run3 / rundir.MODEL_FILE).write_bytes((run5 / rundir.MODEL_FILE).read_bytes())
    with pytest.raises(
        CheckpointError,
        match=r"different model: encoder.heads.weight has shape \(10, 16\) but this config needs \(6, 16\)",
    ):
        rundir.load_run(run3)


def test_missing_folder_and_config_are_named(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        rundir.load_run(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="has no config.json"):
        rundir.load_run(tmp_path / "empty")
    (tmp_path / "empty" / "config.json").write_text('{"model": {"latent_dim": -1}}')
    with pytest.raises(CheckpointError, match="latent_dim = -1"):
        rundir.load_run(tmp_path / "empty")


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "f.txt"
    checkpoint.atomic_write_text(target, "old")

    def boom(*a):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_a_train_state_written_by_vaekit_0_1_still_loads(tmp_path):
    """vaekit 0.1 saved the state as an untyped dict with its running sums as a list."""
    old = (
        '{"epoch": 2, "step": 24, "batch_in_epoch": 5, "sums": [-500.5, -480.25, 20.25, 250.0], '
        '"seconds": 1.5, "skipped": 3, "metrics": [{"epoch": 1}, {"epoch": 2}]}'
    )
    state = TrainState.from_json(old, tmp_path / "checkpoint.safetensors")
    assert state == TrainState(
        2, 24, 5, EpochTotals(-500.5, -480.25, 20.25, 250.0), 1.5, 3, [{"epoch": 1}, {"epoch": 2}]
    )
    assert state.totals.means() == (-500.5 / 250, -480.25 / 250, 20.25 / 250)
    with pytest.raises(CheckpointError, match="checkpoint.safetensors holds a train state this vaekit cannot read"):
        TrainState.from_json('{"epoch": 1, "learning_rate_schedule": 3}', tmp_path / "checkpoint.safetensors")
