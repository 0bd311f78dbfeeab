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
        r"Only train.epochs, train.device, train.num_threads, train.compile, train.sync_every_steps may change",
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


def test_each_evaluation_setting_keeps_its_own_file_and_the_most_complete_one_is_found(tmp_path):
    full = {"split": "test", "images": 10000, "num_importance_samples": 5000, "limit": 0, "elbo": -90.0}
    quick = {"split": "test", "images": 10000, "num_importance_samples": 0, "limit": 0, "elbo": -90.1}
    part = {"split": "test", "images": 200, "num_importance_samples": 5000, "limit": 200, "elbo": -89.0}
    valid = {"split": "valid", "images": 10000, "num_importance_samples": 500, "limit": 0, "elbo": -91.0}
    paths = [rundir.write_evaluation(tmp_path, r) for r in (full, quick, part, valid)]
    assert [p.name for p in paths] == [
        "evaluation-test-k5000.json",
        "evaluation-test-k0.json",
        "evaluation-test-k5000-first200.json",
        "evaluation-valid-k500.json",
    ]
    assert rundir.best_evaluation(tmp_path, "test") == full  # a quick check never hides the expensive result
    assert (
        rundir.find_evaluation(tmp_path, "test", 5000) == full and rundir.find_evaluation(tmp_path, "test", 50) is None
    )
    # a file of an earlier vaekit (evaluation-test.json) is still found by what it holds
    (tmp_path / "evaluation-test.json").write_text(json.dumps({**full, "num_importance_samples": 50}))
    assert rundir.find_evaluation(tmp_path, "test", 50)["num_importance_samples"] == 50
    (tmp_path / "evaluation-test-k0.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="evaluation-test-k0.json cannot be read as JSON"):
        rundir.best_evaluation(tmp_path, "test")


def test_load_run_refuses_an_unknown_weights_name_naming_the_two_there_are(tmp_path):
    from vaekit.models.vae import build_model

    config = _config()
    rundir.write_config(tmp_path, config)
    rundir.save_model(tmp_path, build_model(config.model))
    with pytest.raises(ConfigError, match=r"unknown weights 'final': choose 'last' .*model.safetensors.* or 'best'"):
        rundir.load_run(tmp_path, weights="final")
    model, loaded = rundir.load_run(tmp_path, weights="last")
    assert loaded == config and model.image_shape == config.model.image_shape
