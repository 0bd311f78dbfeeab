"""Pictures of a trained model: image grids (torch + Pillow) and training curves (matplotlib)."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from vaekit.models.vae import VAE

TITLE_HEIGHT = 18


def make_grid(images: torch.Tensor, nrow: int, padding: int = 2, pad_value: float = 1.0) -> torch.Tensor:
    """Tile images (N, C, H, W) into one (C, rows*(H+p)+p, nrow*(W+p)+p) tensor, row by row."""
    n, c, h, w = images.shape
    rows = math.ceil(n / nrow)
    grid = torch.full((c, rows * (h + padding) + padding, nrow * (w + padding) + padding), pad_value)
    for i in range(n):
        r, col = divmod(i, nrow)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        grid[:, top : top + h, left : left + w] = images[i]
    return grid


def grid_image(images: torch.Tensor, nrow: int, title: str | None = None, zoom: int = 2,
               row_labels: list[str] | None = None) -> Image.Image:
    """A Pillow image of a grid of images in [0, 1], enlarged `zoom` times, with a title strip
    above and optional labels left of each row, so a reader knows what they are looking at."""
    grid = make_grid(images.detach().float().cpu().clamp(0, 1), nrow)
    array = (grid * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    picture = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
    picture = picture.convert("RGB").resize((picture.width * zoom, picture.height * zoom), Image.NEAREST)
    font = ImageFont.load_default()
    label_width = 8 + 7 * max((len(s) for s in row_labels), default=0) if row_labels else 0
    top = TITLE_HEIGHT if title else 0
    canvas = Image.new("RGB", (picture.width + label_width, picture.height + top), "white")
    canvas.paste(picture, (label_width, top))
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((4, 3), title, fill="black", font=font)
    if row_labels:
        cell = (images.shape[2] + 2) * zoom
        for r, label in enumerate(row_labels):
            draw.text((4, top + 2 * zoom + r * cell + cell // 2 - 6), label, fill="black", font=font)
    return canvas


def save_picture(picture: Image.Image, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path)
    return path


@torch.no_grad()
def reconstructions(model: VAE, x: torch.Tensor, path: str | Path, per_row: int = 10) -> Path:
    """Inputs and their reconstructions E[x | z = mu(x)] in alternating rows."""
    x = x[: (len(x) // per_row) * per_row or len(x)]
    recon = model.reconstruct(x)
    rows = []
    for start in range(0, len(x), per_row):
        rows += [x[start : start + per_row], recon[start : start + per_row]]
    labels = ["input", "recon"] * (len(rows) // 2)
    picture = grid_image(torch.cat(rows), per_row, "test images (input) and reconstructions (recon)",
                         row_labels=labels)
    return save_picture(picture, path)


@torch.no_grad()
def prior_samples(model: VAE, path: str | Path, n: int = 100, seed: int = 0) -> Path:
    """Decoded means of n draws from the prior p(z) = N(0, I)."""
    images = model.sample(n, generator=torch.Generator().manual_seed(seed))
    nrow = max(1, int(math.sqrt(n)))
    return save_picture(grid_image(images, nrow, f"decoded means of {n} samples z ~ N(0, I), seed {seed}"), path)
