"""The run folder: what --resume and --overwrite mean, what may change on resume, the file names."""

import json

import pytest

from vaekit import rundir
from vaekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from vaekit.errors import CheckpointError, ConfigError


def _config(**train):
    return RunConfig(
        ModelConfig(hidden_dim=32, latent_dim=4),
        DataConfig(train_limit=600),
        TrainConfig(**{"epochs": 2, "seed": 3, **train}),
    )


def test_resume_accepts_values_equal_to_the_saved_ones(tmp_path):
    rundir.prepare(tmp_path, _config(), resume=False, overwrite=False)
    given = {"model.latent_dim": "4", "train.seed": "3", "train.epochs": "2", "data.train_limit": 600}
    assert rundir.resume_config(tmp_path, given) == _config()
    # the same config given as a file (as --config) is the same run too
    (tmp_path / "same.json").write_text(_config().to_json())
    assert rundir.resume_config(tmp_path, {}, str(tmp_path / "same.json")) == _config()


def test_resume_refuses_a_conflicting_value_naming_key_saved_and_given(tmp_path):
    rundir.prepare(tmp_path, _config(), resume=False, overwrite=False)
    with pytest.raises(
        ConfigError,
        match=r"model.latent_dim is 4 in the saved run, 5 was given; "
        r"train.learning_rate is 0.001 in the saved run, 0.01 was given\. "
        r"Only train.epochs, train.device, train.num_threads may change",
    ):
        rundir.resume_config(tmp_path, {"model.latent_dim": "5", "train.learning_rate": "0.01"})
    with pytest.raises(ConfigError, match="model.hidden_dim is 32 in the saved run, 512 was given"):
        rundir.resume_config(tmp_path, {}, "mnist-mlp")  # a preset that is another model


def test_resume_may_change_epochs_device_and_threads(tmp_path):
    rundir.prepare(tmp_path, _config(), resume=False, overwrite=False)
    config = rundir.resume_config(tmp_path, {"train.epochs": "5", "train.device": "cpu", "train.num_threads": "1"})
    assert (config.train.epochs, config.train.device, config.train.num_threads) == (5, "cpu", 1)
    rundir.prepare(tmp_path, config, resume=True, overwrite=False)
    assert rundir.read_config(tmp_path) == config  # the new length and place are saved


def test_resume_of_an_empty_folder_and_clobbering_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="holds no run"):
        rundir.prepare(tmp_path / "none", _config(), resume=True, overwrite=False)
    rundir.prepare(tmp_path, _config(), resume=False, overwrite=False)
    with pytest.raises(CheckpointError, match="already holds a run; pass --resume"):
        rundir.prepare(tmp_path, _config(), resume=False, overwrite=False)


def test_overwrite_removes_what_vaekit_wrote_and_nothing_else(tmp_path):
    rundir.prepare(tmp_path, _config(), resume=False, overwrite=False)
    rundir.write_evaluation(tmp_path, {"split": "valid", "elbo": -1.0})
    rundir.write_summary(tmp_path, {"epochs": 1})
    (tmp_path / rundir.IMAGES_DIR).mkdir()
    (tmp_path / rundir.IMAGES_DIR / "samples.png").write_bytes(b"png")
    (tmp_path / "notes.txt").write_text("mine")
    rundir.prepare(tmp_path, _config(seed=4), resume=False, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [rundir.CONFIG_FILE, "notes.txt"]
    assert rundir.read_config(tmp_path).train.seed == 4


def test_overwrite_refuses_a_folder_that_is_not_a_vaekit_run(tmp_path):
    (tmp_path / rundir.CONFIG_FILE).write_text('{"something": "else"}')
    with pytest.raises(CheckpointError, match="the run's config is invalid"):
        rundir.prepare(tmp_path, _config(), resume=False, overwrite=True)
    assert json.loads((tmp_path / rundir.CONFIG_FILE).read_text()) == {"something": "else"}


def test_evaluations_are_found_by_split_and_a_damaged_one_is_named(tmp_path):
    rundir.write_evaluation(tmp_path, {"split": "test", "elbo": -90.0})
    rundir.write_evaluation(tmp_path, {"split": "valid", "elbo": -91.0})
    assert rundir.evaluations(tmp_path) == {
        "test": {"split": "test", "elbo": -90.0},
        "valid": {"split": "valid", "elbo": -91.0},
    }
    (tmp_path / rundir.evaluation_file("test")).write_text("{not json")
    with pytest.raises(CheckpointError, match="evaluation-test.json cannot be read as JSON"):
        rundir.read_evaluation(tmp_path, "test")
