"""Binarization of grey-level images into the binary observations a Bernoulli decoder models."""

from __future__ import annotations

import torch


def dynamic_binarize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A fresh Bernoulli draw per pixel, x_bin ~ Bernoulli(x): call it each time an image is seen."""
    return torch.bernoulli(x, generator=generator)


def static_binarize(x: torch.Tensor, seed: int) -> torch.Tensor:
    """One fixed Bernoulli draw per pixel from a seeded generator; the same seed gives the same images."""
    generator = torch.Generator(device=x.device).manual_seed(seed)
    return torch.bernoulli(x, generator=generator)
