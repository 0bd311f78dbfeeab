"""dSprites: its factor grid and order, the rendering against a direct full-frame computation of the stated
shapes, the pinned checksum, splits with factors, DeepMind's file refused cleanly, arrays with factors."""

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from vaekit.config import DataConfig
from vaekit.data import dsprites as d
from vaekit.data import load_dataset
from vaekit.errors import DataError

# images_digest of np.packbits(render(np.arange(0, 737280, 997)), axis=-1): every 997th image of the grid
SAMPLE_DIGEST = "5b5cf04b2b2582e9f3773dfced467b5a5c3e25750c44059b6cd537599e338f4f"


def test_the_grid_is_dsprites_in_row_major_order_with_posy_fastest():
    assert d.IMAGES == 737_280 == 3 * 6 * 40 * 32 * 32
    classes = d.factor_classes(np.array([0, 1, 32, 1024, 40 * 1024, 6 * 40 * 1024, d.IMAGES - 1]))
    assert classes.tolist() == [
        [0, 0, 0, 0, 0],
        [0, 0, 0, 0, 1],
        [0, 0, 0, 1, 0],
        [0, 0, 1, 0, 0],
        [0, 1, 0, 0, 0],
        [1, 0, 0, 0, 0],
        [2, 5, 39, 31, 31],
    ]
    np.testing.assert_allclose(d.FACTOR_VALUES[1], [0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    assert d.FACTOR_VALUES[2][0] == 0.0 and d.FACTOR_VALUES[2][-1] == pytest.approx(2 * math.pi)  # both ends
    assert d.FACTOR_VALUES[3][-1] == 1.0 and len(d.FACTOR_VALUES[4]) == 32


def _by_hand(index: int, canvas: int = 96, offset: int = 16) -> np.ndarray:
    """The stated rendering on a canvas larger than the frame (the frame at [offset, offset + 64)), every
    pixel tested: the shape's inequalities written out again."""
    shape, scale_k, theta_k, px, py = d.factor_classes(np.array([index]))[0]
    scale, theta = 0.5 + 0.1 * scale_k, 2 * math.pi * theta_k / 39
    cx, cy = 10.5 + 43 * px / 31 + offset, 10.5 + 43 * py / 31 + offset
    y, x = np.mgrid[0:canvas, 0:canvas] + 0.5
    dx, dy = x - cx, y - cy
    u = (math.cos(theta) * dx + math.sin(theta) * dy) / (10 * scale)
    v = (-math.sin(theta) * dx + math.cos(theta) * dy) / (10 * scale)
    if shape == 0:
        return (np.abs(u) <= 2**-0.5) & (np.abs(v) <= 2**-0.5)
    if shape == 1:
        return u**2 + 4 * v**2 <= 1
    a, b = 1.33 * u, 1.33 * (0.118 - v)
    return (a**2 + b**2 - 1) ** 3 <= a**2 * b**3


def test_the_rendering_is_the_stated_shapes_and_no_pixel_leaves_the_frame():
    rng = np.random.default_rng(0)
    corners = [np.ravel_multi_index((s, 5, o, x, y), d.FACTOR_SIZES) for s in range(3) for o in (0, 7, 13, 29)
               for x in (0, 31) for y in (0, 31)]  # fmt: skip
    indices = np.concatenate([corners, rng.integers(0, d.IMAGES, 300)])
    images = d.render(indices)
    assert images.dtype == np.uint8 and set(np.unique(images)) <= {0, 1}
    for index, image in zip(indices, images):
        full = _by_hand(int(index))
        assert not full.sum() - full[16:80, 16:80].sum(), index  # nothing outside the 64 x 64 frame
        np.testing.assert_array_equal(image, full[16:80, 16:80], err_msg=str(index))


def test_pixels_grow_with_scale_and_orientation_two_pi_is_orientation_zero():
    base = np.array([np.ravel_multi_index((s, k, 5, 16, 16), d.FACTOR_SIZES) for s in range(3) for k in range(6)])
    areas = d.render(base).sum((1, 2)).reshape(3, 6)
    assert (np.diff(areas, axis=1) > 0).all(), areas
    ends = [np.ravel_multi_index((s, 3, o, 9, 20), d.FACTOR_SIZES) for s in range(3) for o in (0, 39)]
    images = d.render(np.array(ends))
    for s in range(3):
        np.testing.assert_array_equal(images[2 * s], images[2 * s + 1])


def test_the_rendered_images_match_their_pinned_checksum():
    sample = d.render(np.arange(0, d.IMAGES, 997))
    assert d.images_digest(np.packbits(sample, axis=-1)) == SAMPLE_DIGEST


def test_a_limited_load_renders_only_its_images_and_keeps_their_factors(monkeypatch):
    monkeypatch.setattr(d, "load_dsprites", lambda *a, **k: pytest.fail("a limited load renders all images"))
    data = load_dataset(DataConfig(dataset="dsprites", train_limit=300, eval_limit=100), (1, 64, 64))
    assert (len(data.train), len(data.valid), len(data.test)) == (300, 100, 100)
    assert data.factor_names == ("shape", "scale", "orientation", "posX", "posY")
    assert data.factor_sizes == (3, 6, 40, 32, 32) and data.class_names == ("square", "ellipse", "heart")
    assert data.factor_values[1] == pytest.approx(tuple(np.linspace(0.5, 1, 6)))
    for split in (data.train, data.test):
        assert split.factors.shape == (len(split), 5) and torch.equal(split.labels, split.factors[:, 0])
        indices = np.ravel_multi_index(tuple(split.factors.numpy().T), d.FACTOR_SIZES)
        np.testing.assert_array_equal(split.images[:, 0].numpy(), d.render(indices).astype(np.float32))
    everything = np.concatenate([np.ravel_multi_index(tuple(s.factors.numpy().T), d.FACTOR_SIZES)
                                 for s in (data.train, data.valid, data.test)])  # fmt: skip
    assert len(np.unique(everything)) == 500  # the splits do not overlap
    with pytest.raises(DataError, match="pass --image-shape 1,64,64"):
        load_dataset(DataConfig(dataset="dsprites", train_limit=3, eval_limit=3), (1, 28, 28))


def test_deepminds_file_is_checked_and_a_wrong_file_gets_one_sentence(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        d.read_official_file(tmp_path / "missing.npz")
    (tmp_path / "damaged.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(DataError, match="damaged.npz is not DeepMind's dSprites file"):
        d.read_official_file(tmp_path / "damaged.npz")
    np.savez(tmp_path / "small.npz", imgs=np.zeros((5, 64, 64), np.uint8), latents_classes=np.zeros((5, 6), np.int64))
    with pytest.raises(DataError, match=r"small.npz holds images \(5, 64, 64\).*dSprites has \(737280, 64, 64\)"):
        d.read_official_file(tmp_path / "small.npz")
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(DataConfig(dataset="dsprites", source="file", path=str(tmp_path / "missing.npz")), (1, 64, 64))


def test_an_array_file_with_named_factors_on_a_full_grid_gets_the_intervention_scores(tmp_path, monkeypatch):
    """An .npz holding every combination of its factors (as Shapes3D and MPI3D do) names them with
    factor_names, finds the image of any combination, and gets the beta-VAE and FactorVAE scores and Chen et
    al.'s MIG beside the pair metrics; without every combination it gets the pair metrics alone."""
    from vaekit import disentanglement
    from vaekit.config import ModelConfig, RunConfig, TrainConfig
    from vaekit.evaluation import EvaluationSetting, evaluate_run
    from vaekit.training import train

    rng = np.random.default_rng(0)
    factors = np.stack(np.meshgrid(np.arange(3), np.arange(4), indexing="ij"), -1).reshape(-1, 2).repeat(20, 0)
    x = rng.integers(0, 256, (len(factors), 8, 8), dtype=np.uint8)
    x[:, 0, 0] = factors[:, 0] * 4 + factors[:, 1]
    names = np.array(["hue", "size"])
    np.savez(tmp_path / "grid.npz", x=x, factors=factors, factor_names=names)
    config = DataConfig(dataset="array", path=str(tmp_path / "grid.npz"), binarization="none")
    data = load_dataset(config, (1, 8, 8))
    assert data.factor_names == ("hue", "size") and data.observe is not None
    wanted = np.array([[2, 3], [0, 1], [1, 0]])
    np.testing.assert_array_equal((data.observe(wanted)[:, 0, 0, 0] * 255).round(), wanted[:, 0] * 4 + wanted[:, 1])
    np.savez(tmp_path / "holes.npz", x=x[1:], factors=factors[1:] * [1, 2])  # size never takes its odd classes
    assert load_dataset(dataclasses.replace(config, path=str(tmp_path / "holes.npz")), (1, 8, 8)).observe is None
    np.savez(tmp_path / "badnames.npz", x=x, factors=factors, factor_names=np.array(["hue"]))
    with pytest.raises(DataError, match="factor_names must be 2 distinct strings, one per column of 'factors'"):
        load_dataset(dataclasses.replace(config, path=str(tmp_path / "badnames.npz")), (1, 8, 8))
    run = RunConfig(ModelConfig(image_shape=(1, 8, 8), hidden_dim=16, latent_dim=2, likelihood="gaussian-fixed"),
                    config, TrainConfig(epochs=1, batch_size=40))  # fmt: skip
    train(run, tmp_path / "run", progress=False)
    monkeypatch.setattr(
        disentanglement, "SCORE_POINTS", {"train": 40, "test": 20, "batch_size": 8, "variance_points": 100}
    )
    monkeypatch.setattr(disentanglement, "POSTERIOR_SAMPLES", 200)
    monkeypatch.setattr(disentanglement, "DCI_TREES", 5)
    setting = EvaluationSetting(num_importance_samples=0, disentanglement=True, grid_classes=0)
    result, path = evaluate_run(tmp_path / "run", setting=setting)
    figures = result["disentanglement"]
    assert figures["factor_names"] == ["hue", "size"] and figures["mig_posterior_setting"]["images"] == 12
    assert all(0 <= figures[m] <= 1 for m in disentanglement.METRICS) and path.name.endswith("-p40-g0.json")
    assert figures["mig_posterior_setting"]["factors"] == ["hue", "size"]  # only dSprites' shape is left out
    from vaekit.cli import _disentanglement_lines

    pairs_only = {k: v for k, v in figures.items() if k not in ("beta_vae_score", "factor_vae_score", "mig_posterior")}
    said = "\n".join(_disentanglement_lines(pairs_only))
    assert "no beta-VAE or FactorVAE score and no mig_posterior: the data does not hold every combination" in said
    assert "factor_vae_score is 0: no code" in "\n".join(
        _disentanglement_lines({**figures, "factor_vae_voting_codes": 0})
    )


def test_an_array_file_with_factors_carries_them_into_every_split(tmp_path):
    rng = np.random.default_rng(0)
    factors = np.stack(np.meshgrid(np.arange(4), np.arange(5), indexing="ij"), -1).reshape(-1, 2).repeat(3, 0)
    x = rng.integers(0, 256, (len(factors), 8, 8), dtype=np.uint8)
    x[:, 0, 0] = factors[:, 0] * 5 + factors[:, 1]  # each image names its factors in one pixel
    np.savez(tmp_path / "data.npz", x=x, factors=factors)
    config = DataConfig(dataset="array", path=str(tmp_path / "data.npz"), binarization="none")
    data = load_dataset(config, (1, 8, 8))
    assert data.factor_names == ("f0", "f1") and data.factor_sizes == (4, 5)
    for split in (data.train, data.valid, data.test):
        code = (split.images[:, 0, 0, 0] * 255).round().long()
        assert torch.equal(code, split.factors[:, 0] * 5 + split.factors[:, 1])
    np.savez(tmp_path / "bad.npz", x=x, factors=factors[:-1])
    with pytest.raises(DataError, match=r"bad.npz: factors of shape \(59, 2\) do not match 60 images"):
        load_dataset(DataConfig(dataset="array", path=str(tmp_path / "bad.npz")), (1, 8, 8))


def test_evaluate_reports_every_disentanglement_metric_of_a_dsprites_run(tmp_path, capsys, monkeypatch):
    """... in the saved evaluation, the table, and the run's TensorBoard events."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from vaekit import disentanglement
    from vaekit.cli import main
    from vaekit.config import ModelConfig, RunConfig, TrainConfig
    from vaekit.tensorboard import TensorBoard
    from vaekit.training import train

    config = RunConfig(
        ModelConfig(image_shape=(1, 64, 64), hidden_dim=32, latent_dim=4),
        DataConfig(dataset="dsprites", train_limit=300, eval_limit=200),
        TrainConfig(epochs=1, batch_size=50),
    )
    train(config, tmp_path / "run", progress=False, callbacks=[TensorBoard()])
    monkeypatch.setattr(
        disentanglement, "SCORE_POINTS", {"train": 60, "test": 40, "batch_size": 8, "variance_points": 500}
    )
    monkeypatch.setattr(disentanglement, "POSTERIOR_SAMPLES", 300)
    run = str(tmp_path / "run")
    assert (
        main(["evaluate", run, "--samples", "0", "--disentanglement", "--grid-classes", "3", "--score-points", "60"])
        == 0
    )
    out = capsys.readouterr().out
    assert "factor_vae_score" in out and "mig_posterior" in out
    assert "+- " in out and "chance 0.200" in out  # standard errors, and the scores' chance level 1/F
    assert "mig_posterior leaves out shape, as Chen et al. score dSprites" in out
    saved = tmp_path / "run" / "evaluation-test-k0-disentanglement-n200-p60-g3.json"
    figures = json.loads(saved.read_text())["disentanglement"]
    assert figures["setting"] == {"pairs": 200, "score_points": 60, "grid_classes": 3}
    assert set(figures["stderr"]) == set(disentanglement.METRICS) and figures["chance"]["beta_vae_score"] == 0.2
    assert np.array(figures["mutual_information"]).shape == (4, 5)
    assert figures["factor_names"] == ["shape", "scale", "orientation", "posX", "posY"] and figures["pairs"] == 200
    assert all(0 <= figures[name] <= 1 for name in disentanglement.METRICS), figures
    assert figures["score_points"] == {"train": 60, "test": 30, "batch_size": 8, "variance_points": 500}
    # Chen et al.'s MIG: 3 classes of each factor but shape, which they leave out
    setting = {"images": 3**5, "grid_classes": 3, "samples": 300, "factors": ["scale", "orientation", "posX", "posY"]}
    assert figures["mig_posterior_setting"] == setting
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    for name in disentanglement.METRICS:  # TensorBoard has each metric at the evaluated epoch
        assert [(e.step, e.value) for e in events.Scalars(f"disentanglement/{name}")] == [
            (1, pytest.approx(figures[name], abs=1e-6))
        ]
    # a quicker check with other settings leaves the first file as it was, beside its own
    before = saved.read_text()
    assert (
        main(["evaluate", run, "--samples", "0", "--disentanglement", "--grid-classes", "2", "--score-points", "20"])
        == 0
    )
    assert (
        saved.read_text() == before and (saved.parent / "evaluation-test-k0-disentanglement-n200-p20-g2.json").exists()
    )
    assert main(["evaluate", run, "--samples", "0", "--disentanglement", "--grid-classes", "-1"]) != 0
    assert "--grid-classes -1 is invalid" in capsys.readouterr().err
    assert main(["evaluate", run, "--samples", "0", "--disentanglement", "--score-points", "1"]) != 0
    assert "--score-points 1 is invalid" in capsys.readouterr().err


def test_disentanglement_on_data_without_factors_is_one_sentence(trained_run_2d, capsys):
    from vaekit.cli import main

    assert main(["evaluate", str(trained_run_2d), "--samples", "0", "--disentanglement"]) != 0
    assert "has no known factors: --disentanglement needs dsprites" in capsys.readouterr().err


def test_the_dsprites_presets_are_locatellos_network_and_one_trains_end_to_end(tmp_path):
    from vaekit.cli import main
    from vaekit.config import load_config, preset_names
    from vaekit.models.vae import build_model
    from vaekit.rundir import read_summary

    names = [n for n in preset_names() if n.startswith("dsprites-")]
    assert len(names) == 9  # seven VAEs and the two autoencoder baselines
    for name in names:
        config = load_config(name)
        assert config.data.dataset == "dsprites" and config.model.image_shape == (1, 64, 64)
        assert config.model.conv_channels == (32, 32, 64, 64) and config.model.latent_dim == 10
        steps = config.train.epochs * -(-round(737_280 * 0.8) // config.train.batch_size)
        assert 295_000 <= steps <= 310_000  # Locatello et al.'s 300,000 steps of 64 images
    model = build_model(load_config("dsprites-vae").model)
    convs = [m for m in model.encoder.conv if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [(n, (4, 4), (2, 2)) for n in (32, 32, 64, 64)]
    run = tmp_path / "run"
    args = ["train", "--config", "dsprites-beta-tcvae", "--epochs", "1", "--set", "data.train_limit=256",
            "--set", "data.eval_limit=64", "--run-dir", str(run), "--no-progress"]  # fmt: skip
    assert main(args) == 0
    assert read_summary(run)["epochs"] == 1


def test_the_factor_pictures_label_each_latent_with_the_factor_it_carries(tmp_path):
    """A 'model' whose posterior mean is the factors themselves (latent j = factor j): the heatmap's diagonal
    is 1 and each traversal row names its own factor."""
    from vaekit import plots

    data = load_dataset(DataConfig(dataset="dsprites", train_limit=10, eval_limit=400), (1, 64, 64))
    inputs = plots.PictureInputs(
        model=None, images=data.test.images, labels=data.test.labels, metrics=[], factors=data.test.factors,
        factor_names=data.factor_names,
    )  # fmt: skip
    from vaekit.diagnostics import LatentDiagnostics, LayerKL

    means = data.test.factors.double()
    inputs.__dict__["diagnostics"] = LatentDiagnostics(
        [LayerKL("z1", 5, 1.0, 0.0, torch.ones(5), "closed form")], means.var(0), means.float()
    )
    shares = inputs.factor_information
    assert shares.shape == (5, 5)
    # shape and scale (3 and 6 classes) pass the 20 histogram bins whole; orientation and position (40 and 32
    # classes) lose a little of their entropy to the binning, as in MIG
    torch.testing.assert_close(shares.diagonal()[:2], torch.ones(2, dtype=torch.float64))
    assert (shares.diagonal()[2:] > 0.8).all() and torch.equal(shares.argmax(1), torch.arange(5))
    # other factors: only the plug-in estimate's small-sample bias, about (20 - 1)(40 - 1) / (2 * 400) nats at most
    assert (shares - torch.diag(shares.diagonal())).abs().max() < 0.3
    path = plots._factor_information(inputs, tmp_path)
    assert path.name == "factors.png" and path.stat().st_size > 5000


def test_the_report_shows_a_runs_disentanglement_metrics(tmp_path):
    from vaekit import rundir
    from vaekit.config import RunConfig
    from vaekit.report import build_report

    rundir.write_config(tmp_path, RunConfig())
    metrics = {"factor_names": ["shape"], "pairs": 10, "mig": 0.4321, "score_points": {"train": 1}}
    rundir.write_evaluation(tmp_path, {"split": "test", "images": 10, "elbo": -1.0, "disentanglement": metrics})
    page = build_report(tmp_path)
    assert "Disentanglement (test split, 10 images)" in page and "0.432" in page and "score_points" not in page
