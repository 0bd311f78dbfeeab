"""Pictures: grids have the expected sizes and content."""

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
