"""What a minibatch carries: the images x, and the labels and factors where the data has them."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Batch:
    """One minibatch as the objectives receive it, so that a model that reads more than x (a conditional
    model's labels, the factors of a synthetic dataset) takes it from here rather than from a new argument
    threaded through every signature. Shapes: x (M, C, H, W) as the model sees it (binarized or dequantized
    as the data config says); labels (M,) class indices; factors (M, F) factor classes; None where absent."""

    x: torch.Tensor
    labels: torch.Tensor | None = None
    factors: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.x)
