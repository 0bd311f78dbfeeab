"""Shared fixtures: tiny configs, and a few thousand real MNIST images loaded once per session."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import settings

from vaekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from vaekit.data import Dataset, Split, load_dataset
from vaekit.models.vae import build_model

# CI runs the property tests on a fixed sequence of examples so that a landing never depends on
# luck; locally they explore new examples on every run.
settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(scope="session")
def mnist_small() -> Dataset:
    """3,000 training and 1,000 validation/test images of real MNIST (fetched and cached once)."""
    return load_dataset(DataConfig(train_limit=3000, eval_limit=1000))


@pytest.fixture
def tiny_config() -> RunConfig:
    return RunConfig(
        model=ModelConfig(hidden_dim=64, latent_dim=4),
        data=DataConfig(train_limit=600, eval_limit=200),
        train=TrainConfig(epochs=2, batch_size=50, eval_batch_size=200),
    )


@pytest.fixture
def tiny_model():
    torch.manual_seed(0)
    return build_model(ModelConfig(hidden_dim=32, latent_dim=3))


@pytest.fixture(scope="session")
def tiny_data(mnist_small) -> Dataset:
    """600 training and 200 validation/test images: enough for loop mechanics, fast."""

    def cut(split, n):
        return Split(split.images[:n], split.labels[:n])

    return Dataset(
        cut(mnist_small.train, 600),
        cut(mnist_small.valid, 200),
        cut(mnist_small.test, 200),
        mnist_small.binarization,
        mnist_small.binarization_seed,
        mnist_small.class_names,
    )


@pytest.fixture(scope="session")
def trained_small(mnist_small, tmp_path_factory):
    """A small VAE trained for 3 epochs on 3,000 real MNIST images (shared, read-only)."""
    from vaekit.training import train

    config = RunConfig(
        ModelConfig(hidden_dim=128, latent_dim=8),
        DataConfig(train_limit=3000, eval_limit=1000),
        TrainConfig(epochs=3, batch_size=100),
    )
    result = train(config, tmp_path_factory.mktemp("trained") / "run", progress=False, dataset=mnist_small)
    return result.model, mnist_small


@pytest.fixture(scope="session")
def trained_run_2d(tiny_data, tmp_path_factory):
    """A run folder with a 2-D latent space trained for 2 epochs on 600 images."""
    from vaekit.training import train

    config = RunConfig(
        ModelConfig(hidden_dim=64, latent_dim=2),
        DataConfig(train_limit=600, eval_limit=200),
        TrainConfig(epochs=2, batch_size=50),
    )
    run = tmp_path_factory.mktemp("run2d") / "run"
    train(config, run, progress=False, dataset=tiny_data)
    return run


@pytest.fixture
def resumes_bit_for_bit(tmp_path, tiny_data):
    """A check: train a config for its epochs in one go, and again cut after epoch 1 and resumed; the
    weights must agree bit for bit. Returns the uninterrupted run's result."""
    from vaekit.training import train

    def check(config: RunConfig):
        full = train(config, tmp_path / "full", progress=False, dataset=tiny_data)
        train(config.with_overrides({"train.epochs": 1}), tmp_path / "cut", progress=False, dataset=tiny_data)
        resumed = train(config, tmp_path / "cut", resume=True, progress=False, dataset=tiny_data)
        for (name, p), q in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
            assert torch.equal(p, q), name
        return full

    return check
