"""The gated PixelCNN (van den Oord et al. 2016, arXiv 1606.05328v2): an autoregressive density over a map of
discrete codes, the learned prior of a VQ-VAE (van den Oord et al. 2017, Section 3.3).

The joint factorises in raster order, p(z) = prod_i p(z_i | z_1 .. z_{i-1}) (2016, Eq. 1), all conditionals
from one forward pass. Causality comes from padding and shifting ordinary convolutions, not from masked
weights: a convolution only ever sees the rows above and the pixels to the left because the input is padded
on those sides alone, and a one-step shift (down, or right) excludes the current row or pixel. Each layer
has two stacks (2016, Section 2.2, Figure 2):
  vertical stack    v at (r, c) sees rows r - l p .. r, columns c - l p .. c + l p after l layers (p = k // 2);
                    it never reaches the horizontal stack unshifted, so it may include its own row
  horizontal stack  h at (r, c) sees its own row to the left of c, and, through a 1x1 link from v shifted
                    down one row, the rectangle above, including the part up and to the right that a plain
                    stack of masked convolutions misses (the "blind spot")
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vaekit.errors import ConfigError, DataError


def shifted_down(x: torch.Tensor) -> torch.Tensor:
    """x moved down one row, zeros in the top row: out[..., r, c] = x[..., r - 1, c]. (B, C, h, w) -> same."""
    return F.pad(x, (0, 0, 1, 0))[..., :-1, :]


def shifted_right(x: torch.Tensor) -> torch.Tensor:
    """x moved right one column, zeros in the first column: out[..., r, c] = x[..., r, c - 1]. Same shapes."""
    return F.pad(x, (1, 0, 0, 0))[..., :, :-1]


def gated(x: torch.Tensor) -> torch.Tensor:
    """The gated activation unit, y = tanh(a) * sigmoid(b), a and b the two halves of the channels
    (van den Oord et al. 2016, Eq. 2). Shapes: (B, 2C, h, w) -> (B, C, h, w)."""
    a, b = x.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class GatedLayer(nn.Module):
    """One layer of the gated PixelCNN, both stacks (van den Oord et al. 2016, Section 2.2, Figure 2).

    v_pre = W_v * pad_above(v)                               kernel (p + 1, k): rows r - p .. r, cols c +- p
    h_pre = W_h * pad_left(h) + W_link shift_down(v_pre)     kernel (1, p + 1): cols c - p .. c
    v' = gated(v_pre);  h' = h + W_out gated(h_pre)
    The first layer is type A: its horizontal input is shifted right one column, so that (r, c) sees
    columns c - p - 1 .. c - 1 but not its own code, and it has no residual (h would carry the code itself).
    Later layers are type B: they include the centre, which by then holds only the past.
    Shapes: v, h (B, C, h, w) -> v', h' (B, C, h, w).
    """

    def __init__(self, channels: int, kernel_size: int, first: bool) -> None:
        super().__init__()
        self.p, self.first = kernel_size // 2, first
        self.vertical = nn.Conv2d(channels, 2 * channels, (self.p + 1, kernel_size))  # W_v
        self.horizontal = nn.Conv2d(channels, 2 * channels, (1, self.p + 1))  # W_h
        self.link = nn.Conv2d(2 * channels, 2 * channels, 1)  # W_link: vertical -> horizontal
        self.out = nn.Conv2d(channels, channels, 1)  # W_out

    def forward(self, v: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.p
        v_pre = self.vertical(F.pad(v, (p, p, p, 0)))  # (B, 2C, h, w); padded left, right and above only
        h_in = shifted_right(h) if self.first else h
        # the link reads the row above: v_pre at row r has seen row r itself, which h at (r, c) must not
        h_pre = self.horizontal(F.pad(h_in, (p, 0, 0, 0))) + self.link(shifted_down(v_pre))
        h_out = self.out(gated(h_pre))
        return gated(v_pre), h_out if self.first else h + h_out


class GatedPixelCNN(nn.Module):
    """The gated PixelCNN over a map of K codes (van den Oord et al. 2016), the VQ-VAE's prior (van den Oord et
    al. 2017, Section 3.3).

    e = Embed(z);  (v, h) = (e, e);  (v, h) = GatedLayer_l(v, h) for l = 1 .. layers (the first type A)
    logits = W_2 ReLU(W_1 ReLU(h) + b_1) + b_2;  p(z_i | z_<i) = softmax(logits[:, :, i])
    With kernel k = 2p + 1 and L layers, every position of an h x w map sees every earlier one when
    L p >= max(h - 2, w - 1): the last layer's link reaches L p columns either side and L p + 1 rows up.
    Shapes: codes (B, h, w) int64 in [0, K) -> logits (B, K, h, w).
    """

    def __init__(self, codebook_size: int, channels: int = 64, layers: int = 8, kernel_size: int = 3) -> None:
        super().__init__()
        if kernel_size < 3 or kernel_size % 2 == 0 or layers < 1:
            raise ConfigError(
                f"A gated PixelCNN needs an odd kernel_size >= 3 and layers >= 1, not {kernel_size} and {layers}."
            )
        self.codebook_size = codebook_size
        self.embedding = nn.Embedding(codebook_size, channels)
        self.layers = nn.ModuleList(GatedLayer(channels, kernel_size, first=i == 0) for i in range(layers))
        self.head = nn.Sequential(
            nn.ReLU(), nn.Conv2d(channels, channels, 1), nn.ReLU(), nn.Conv2d(channels, codebook_size, 1)
        )

    def embedded_logits(self, e: torch.Tensor) -> torch.Tensor:
        """The logits of every conditional from embedded codes. Shapes: e (B, C, h, w) -> (B, K, h, w)."""
        v, h = e, e
        for layer in self.layers:
            v, h = layer(v, h)
        return self.head(h)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """logits[:, k, r, c] = log p(z_rc = k | the codes before (r, c)) + const. (B, h, w) -> (B, K, h, w)."""
        return self._logits(self.checked(codes))

    def _logits(self, codes: torch.Tensor) -> torch.Tensor:
        """forward for codes already checked (int64, (B, h, w), in [0, K))."""
        e = self.embedding(codes).permute(0, 3, 1, 2)  # (B, h, w, C) -> (B, C, h, w)
        return self.embedded_logits(e)

    def log_prob(self, codes: torch.Tensor) -> torch.Tensor:
        """log p(z) = sum_i log p(z_i | z_<i) in nats, over raster order (van den Oord et al. 2016, Eq. 1).
        Shapes: codes (B, h, w) -> (B,)."""
        codes = self.checked(codes)
        log_p = torch.log_softmax(self._logits(codes), dim=1)  # (B, K, h, w)
        return log_p.gather(1, codes.unsqueeze(1)).sum(dim=(1, 2, 3))

    @torch.no_grad()
    def sample(self, n: int, shape: tuple[int, int], generator: torch.Generator | None = None) -> torch.Tensor:
        """Ancestral sampling in raster order, z_i ~ p(z_i | z_<i), one forward pass per position. The draws
        come from a CPU generator (the global one without it), so that a seed gives the same codes on every
        device. Returns (n, h, w) int64 on the parameters' device."""
        device = self.embedding.weight.device
        codes = torch.zeros((n, *shape), dtype=torch.int64, device=device)
        for r in range(shape[0]):
            for c in range(shape[1]):
                probs = torch.softmax(self._logits(codes)[:, :, r, c], dim=1)  # (n, K)
                draw = torch.multinomial(probs.cpu(), 1, generator=generator)  # (n, 1)
                codes[:, r, c] = draw[:, 0].to(device)
        return codes

    def checked(self, codes: torch.Tensor) -> torch.Tensor:
        """codes as int64 after checking, from metadata and one min/max, that they are a (B, h, w) integer
        map in [0, K); DataError otherwise."""
        if codes.dtype.is_floating_point or codes.dtype.is_complex or codes.dtype == torch.bool:
            raise DataError(f"PixelCNN codes must be an integer tensor, not {codes.dtype}.")
        if codes.dim() != 3:
            raise DataError(f"PixelCNN codes must be 3-D (batch, height, width), not of shape {tuple(codes.shape)}.")
        if codes.numel():
            low, high = torch.stack(torch.aminmax(codes)).tolist()  # one pass, one device-to-host copy
            if low < 0 or high >= self.codebook_size:
                raise DataError(
                    f"PixelCNN codes must lie in [0, {self.codebook_size}), but they range over [{low}, {high}]."
                )
        return codes.long()
