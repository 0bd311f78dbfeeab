"""The README's Python examples run verbatim, in a fresh interpreter."""

import re
import subprocess
import sys
from pathlib import Path

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
