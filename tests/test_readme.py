"""The README's Python examples run verbatim, in a fresh interpreter."""

import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).parents[1] / "README.md"


def _library_blocks() -> list[str]:
    section = README.read_text().split("## Library", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_the_library_examples_run_verbatim(tmp_path):
    blocks = [b for b in _library_blocks() if "wandb" not in b]  # the W&B example needs an account
    assert len(blocks) == 2
    outputs = []
    for block in blocks:  # the second reads the run folder the first trains
        done = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        outputs.append(done.stdout)
    assert (tmp_path / "runs/python/images/samples.png").is_file()
    assert "log p(x) >= " in outputs[0] and "epoch   3" in outputs[0]


def _tiny_run(kind: str, tmp_path: Path):
    """The config of a one-epoch run on 64 x 64 dSprites or on a 32 x 32 RGB array file (CIFAR-10's shape)."""
    from vaekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig

    if kind == "dsprites":
        model = ModelConfig(image_shape=(1, 64, 64), hidden_dim=32, latent_dim=4)
        data = DataConfig(dataset="dsprites", train_limit=200, eval_limit=120)
    else:
        rgb = np.random.default_rng(0).integers(0, 256, (300, 32, 32, 3), dtype=np.uint8)  # channels last, uint8
        np.savez(tmp_path / "rgb.npz", x=rgb)
        model = ModelConfig(
            image_shape=(3, 32, 32), hidden_dim=32, latent_dim=4, likelihood="discretized-logistic-mixture"
        )
        data = DataConfig(dataset="array", path=str(tmp_path / "rgb.npz"), binarization="none")
    return RunConfig(model, data, TrainConfig(epochs=1, batch_size=50))


@pytest.mark.parametrize("kind", ["dsprites", "rgb"])
def test_the_loading_example_runs_verbatim_on_a_dsprites_and_an_rgb_run(kind, tmp_path):
    """The second library block, unchanged, on runs whose images are not MNIST's (1, 28, 28): the data comes
    back in the run's own shape, so the posterior, the ELBO and the samples all work."""
    from vaekit.training import train

    train(_tiny_run(kind, tmp_path), tmp_path / "runs/python", progress=False)
    block = next(b for b in _library_blocks() if "vaekit.load_run(" in b)
    done = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    elbo, kl = map(float, done.stdout.split())
    assert math.isfinite(elbo) and kl >= 0


def test_the_callback_example_defines_a_working_callback(tmp_path, monkeypatch, tiny_config, tiny_data):
    """The W&B example with a stand-in `wandb` module: its hooks receive what they log."""
    import types

    import vaekit

    logged = []
    fake = types.SimpleNamespace(
        init=lambda **kw: logged.append(("init", kw["id"])),
        log=lambda metrics, step: logged.append(("log", step)),
        summary={},
        finish=lambda: logged.append(("finish",)),
    )
    monkeypatch.setitem(sys.modules, "wandb", fake)
    block = next(b for b in _library_blocks() if "wandb" in b)
    definition = block.split("vaekit.train(")[0]  # the class, without its full-length training call
    namespace: dict = {}
    exec(definition, namespace)
    config = tiny_config.with_overrides({"train.epochs": 2})
    vaekit.train(config, tmp_path / "w", dataset=tiny_data, progress=False, callbacks=[namespace["WandbLogger"]()])
    assert logged == [("init", "w"), ("log", 1), ("log", 2), ("finish",)]
    assert "test_elbo" in fake.summary
