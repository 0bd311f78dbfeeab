"""Pictures: grids have the expected sizes and content."""

import numpy as np
import pytest
import torch
from PIL import Image

from vaekit import plots


def test_make_grid_places_each_image():
    images = torch.stack([torch.full((1, 2, 3), float(i) / 10) for i in range(5)])
    grid = plots.make_grid(images, nrow=3, padding=1, pad_value=1.0)
    assert grid.shape == (1, 2 * 3 + 1, 3 * 4 + 1)
    assert torch.all(grid[0, 1:3, 1:4] == 0.0) and torch.all(grid[0, 4:6, 5:8] == 0.4)
    assert torch.all(grid[0, 4:6, 9:12] == 1.0)  # the empty sixth cell is padding


def test_reconstruction_and_sample_pictures(tmp_path, tiny_model):
    x = torch.rand(20, 1, 28, 28)
    path = plots.reconstructions(tiny_model, x, tmp_path / "r.png", per_row=10)
    picture = Image.open(path)
    assert picture.height == 2 * (4 * 30 + 2) + plots.TITLE_HEIGHT  # 4 rows: input, recon, input, recon
    path = plots.prior_samples(tiny_model, tmp_path / "s.png", n=9, seed=1)
    a = Image.open(path).tobytes()
    plots.prior_samples(tiny_model, tmp_path / "s2.png", n=9, seed=1)
    assert a == Image.open(tmp_path / "s2.png").tobytes()


def test_slerp_ends_at_its_endpoints_and_keeps_the_norm_between_equal_norm_vectors():
    z0, z1 = torch.tensor([3.0, 0.0]), torch.tensor([0.0, 3.0])
    path = plots.slerp(z0, z1, torch.linspace(0, 1, 5))
    torch.testing.assert_close(path[0], z0)
    torch.testing.assert_close(path[-1], z1)
    torch.testing.assert_close(path.norm(dim=1), torch.full((5,), 3.0))


def test_every_picture_of_a_2d_run_and_the_report(trained_run_2d, capsys):
    import base64
    import json

    from vaekit.cli import main

    assert main(["plot", str(trained_run_2d)]) == 0
    images = trained_run_2d / "images"
    sizes = {p.name: Image.open(p).size for p in images.glob("*.png")}
    assert set(sizes) == {
        f"{n}.png"
        for n in plots.PICTURES
        if n not in ("pseudo-inputs", "layer-samples", "factors", "prior-samples", "codes", "classes", "analogies")
    }  # a VampPrior's, a hierarchy's, data with known factors' and a VQ-VAE's only
    cell = 2 * 30  # 28 pixels + padding, doubled
    assert sizes["samples.png"] == (10 * cell + 4, 10 * cell + 4 + plots.TITLE_HEIGHT)
    assert sizes["manifold.png"][0] == 20 * 30 + 2  # a 20 x 20 grid at zoom 1
    assert sizes["traversals.png"][1] == 2 * cell + 4 + plots.TITLE_HEIGHT  # one row per latent dimension
    assert sizes["interpolations.png"][1] == 8 * cell + 4 + plots.TITLE_HEIGHT  # 4 pairs x (lerp, slerp)
    for name in ("latents.png", "curves.png"):
        assert sizes[name] in ((600, 520), (600, 400))
        assert len(np.unique(np.asarray(Image.open(images / name).convert("L")))) > 10  # drawn, not blank

    assert main(["report", str(trained_run_2d)]) == 0
    page = (trained_run_2d / "report.html").read_text()
    for p in images.glob("*.png"):
        assert base64.b64encode(p.read_bytes()).decode() in page
    metrics = [json.loads(line) for line in (trained_run_2d / "metrics.jsonl").read_text().splitlines()]
    assert f"{metrics[-1]['valid_elbo']:.3f}" in page and "latent_dim" in page
    assert "http" not in page.replace("http-equiv", "")  # self-contained: nothing fetched


def test_plot_rejects_unknown_picture_names(trained_run_2d, capsys):
    from vaekit.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["plot", str(trained_run_2d), "--which", "mandelbrot"])
    assert exit_.value.code == 2 and "invalid choice: 'mandelbrot'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "model,picture",
    [
        ({"prior": "vampprior", "prior_components": 9}, "pseudo-inputs"),
        ({"hierarchy": "two-layer"}, "layer-samples"),
        (
            {
                "hierarchy": "ladder",
                "prior": "vampprior",
                "prior_components": 3,
                "ladder_latent_dims": (4, 2),
                "ladder_hidden_dims": (16, 8),
            },
            "layer-samples",
        ),
    ],
)
def test_the_pictures_of_learned_priors_and_hierarchies(model, picture, tmp_path):
    from vaekit.config import ModelConfig
    from vaekit.models.vae import build_model

    torch.manual_seed(0)
    vae = build_model(ModelConfig(hidden_dim=16, latent_dim=4, top_latent_dim=2, top_hidden_dim=8, **model))
    inputs = plots.PictureInputs(vae, torch.rand(20, 1, 28, 28), torch.zeros(20, dtype=torch.long), [], 0)
    written = plots.write_pictures(inputs, tmp_path, [picture, "samples"])
    assert [p.name for p in written] == [f"{picture}.png", "samples.png"]
    cell = 2 * 30
    rows = 3 if picture == "pseudo-inputs" else 8  # 9 pseudo-inputs in a 3 x 3 grid; 8 rows of 10
    assert Image.open(written[0]).size[1] == rows * cell + 4 + plots.TITLE_HEIGHT


def test_curves_with_a_run_that_has_no_epochs_yet_draw_the_others_without_a_warning(tmp_path):
    import warnings

    from vaekit.plots import elbo_curves

    rows = [{"images_seen": n, "train_elbo": -150.0 + n / 1000, "valid_elbo": -151.0 + n / 1000} for n in (100, 200)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns on a legend with no entries
        path = elbo_curves({"done": rows, "started": []}, tmp_path / "c.png", "t", {"done": "a", "started": "b"})
    assert path.stat().st_size > 0
