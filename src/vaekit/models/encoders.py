"""Encoders: networks that map an image x to the parameters (mu, logvar) of q(z|x)."""

from __future__ import annotations

import math

import torch
from torch import nn

# Why: exp(logvar) must stay finite in float32 for the KL and the reparameterization even when
# a bad step sends the head's output far out; e^20 ~ 5e8 and e^-30 ~ 1e-13 are far beyond any
# posterior a trained model uses, so the clamp never binds in normal training.
ENCODER_LOGVAR_MIN, ENCODER_LOGVAR_MAX = -30.0, 20.0


class GatedDense(nn.Module):
    """A gated dense layer, h = (W x + b) * sigmoid(V x + c) (Dauphin et al. 2017), the hidden layer of
    Tomczak & Welling 2018's networks. Shapes: (*batch, in_dim) -> (*batch, out_dim)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.value, self.gate = nn.Linear(in_dim, out_dim), nn.Linear(in_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.value(x) * torch.sigmoid(self.gate(x))


def dense(in_dim: int, out_dim: int, activation: str) -> nn.Module:
    """A hidden layer's affine map: a GatedDense layer for the "gated" activation, which gates itself."""
    return GatedDense(in_dim, out_dim) if activation == "gated" else nn.Linear(in_dim, out_dim)


# applied after each hidden layer's `dense` map; a gated layer needs nothing after it
ACTIVATION_FUNCTIONS = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "softplus": nn.functional.softplus,  # Kingma et al. 2014's networks
    "gated": lambda h: h,
}


def with_every_label(h: torch.Tensor, label: nn.Linear | None) -> torch.Tensor:
    """A first hidden layer's pre-activation W [v; onehot(y)] + b at every label y at once, as W_v v + b + W_y[:, y]:
    h (batch, H) -> (batch, classes, H), `label` holding W_y (H, classes) without a bias; h itself without one.
    The one-hot label concatenated to the layer's input (Kingma et al. 2014, Section 3.1.2; Sohn et al. 2015),
    with the product W_v v taken once for all labels."""
    return h if label is None else h.unsqueeze(-2) + label.weight.T


def gaussian_parameters(heads: nn.Linear, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mu, logvar) of a diagonal Gaussian from a hidden layer h (*batch, H): heads is the stacked
    [W_mu; W_logvar] layer (2J, H); logvar is kept within the guard above. Returns (*batch, J) each."""
    mu, logvar = heads(h).chunk(2, dim=-1)
    return mu, logvar.clamp(ENCODER_LOGVAR_MIN, ENCODER_LOGVAR_MAX)


class MLPEncoder(nn.Module):
    """Gaussian MLP encoder (Kingma & Welling 2013, Appendix C.2).

    h = ReLU(W1 x + b1);  mu = W2 h + b2;  log sigma^2 = W3 h + b3
    W2 and W3 are stored stacked as one (2J, H) layer: the same maps, one matrix product.
    With hidden_layers > 1, further layers h = act(W h + b) follow the first (Burda et al. 2016
    use two tanh layers); the paper's MLP has one, with tanh in the original, ReLU here by default.
    Shapes: x (batch, C, H, W) -> mu, logvar (batch, latent_dim). With `classes` > 0 it is q(z|x, y) of a model of
    labels: the one-hot y joins x at the first layer (`with_every_label`), and mu, logvar are given at every label,
    (batch, classes, latent_dim).
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        hidden_dim: int,
        latent_dim: int,
        hidden_layers: int = 1,
        activation: str = "relu",
        classes: int = 0,
    ) -> None:
        super().__init__()
        self.hidden = dense(math.prod(image_shape), hidden_dim, activation)  # W1, b1
        self.label = nn.Linear(classes, hidden_dim, bias=False) if classes else None  # W1's columns for y
        self.deeper = nn.ModuleList(dense(hidden_dim, hidden_dim, activation) for _ in range(hidden_layers - 1))
        self.heads = nn.Linear(hidden_dim, 2 * latent_dim)  # [W2; W3], [b2; b3]
        self.act = ACTIVATION_FUNCTIONS[activation]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.act(with_every_label(self.hidden(x.flatten(1)), self.label))  # (batch, [classes,] hidden_dim)
        for layer in self.deeper:
            h = self.act(layer(h))
        return gaussian_parameters(self.heads, h)  # (batch, latent_dim) each


class ConvEncoder(nn.Module):
    """Convolutional Gaussian encoder: n strided convolutions (kernel 4, stride 2, padding 1), each
    halving height and width, then h = ReLU(W h_conv + b) and the same (mu, log sigma^2) heads
    as MLPEncoder. Shapes: x (batch, C, H, W) with H, W divisible by 2^n -> (batch, latent_dim) x 2; with
    `classes` > 0 the one-hot label joins the convolutions' output at the dense layer, and the parameters are
    given at every label, (batch, classes, latent_dim) x 2, as MLPEncoder's.
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        hidden_dim: int,
        latent_dim: int,
        channels: tuple[int, ...],
        classes: int = 0,
    ) -> None:
        super().__init__()
        c, h, w = image_shape
        layers: list[nn.Module] = []
        for cin, cout in zip((c, *channels[:-1]), channels):
            layers += [nn.Conv2d(cin, cout, kernel_size=4, stride=2, padding=1), nn.ReLU()]
        self.conv = nn.Sequential(*layers)
        scale = 2 ** len(channels)
        self.hidden = nn.Linear(channels[-1] * (h // scale) * (w // scale), hidden_dim)
        self.label = nn.Linear(classes, hidden_dim, bias=False) if classes else None
        self.heads = nn.Linear(hidden_dim, 2 * latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.relu(with_every_label(self.hidden(self.conv(x).flatten(1)), self.label))  # (batch, [classes,] hidden)
        return gaussian_parameters(self.heads, h)


class GaussianMLP(nn.Module):
    """A diagonal Gaussian whose parameters are an MLP of a latent layer: h = act(W h + b) `layers`
    times from h = v, then (mu, logvar) = heads(h). The conditionals of a hierarchy, q(z2|z1) and
    p(z_i|z_{i+1}). Shapes: v (*batch, in_dim) -> mu, logvar (*batch, out_dim)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, layers: int, activation: str) -> None:
        super().__init__()
        dims = [in_dim] + [hidden_dim] * layers
        self.hidden = nn.ModuleList(dense(a, b, activation) for a, b in zip(dims[:-1], dims[1:]))
        self.heads = nn.Linear(dims[-1], 2 * out_dim)
        self.act = ACTIVATION_FUNCTIONS[activation]

    def forward(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = v
        for layer in self.hidden:
            h = self.act(layer(h))
        return gaussian_parameters(self.heads, h)


class ResidualBlock(nn.Module):
    """x + conv1x1(ReLU(conv3x3(ReLU(x)))), channels kept (van den Oord et al. 2017, Section 4.1)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(), nn.Conv2d(channels, channels, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def spatial_latent_channels(image_shape: tuple[int, int, int], strides: int, latent_dim: int) -> int:
    """Latent channels per position of a spatial latent map (H/2^n, W/2^n) holding latent_dim values."""
    _, h, w = image_shape
    return latent_dim // ((h >> strides) * (w >> strides))


class ResidualEncoder(nn.Module):
    """The conv VAE of van den Oord et al. 2017, Section 4.1 (the VQ-VAE paper's continuous baseline): n
    strided convolutions (kernel 4, stride 2), then `blocks` residual blocks, all of channels[-1] units at the
    end, and a 1x1 convolution to (mu, log sigma^2) of a spatial latent map with latent_dim / (H/2^n * W/2^n)
    channels per position, flattened. Shapes: x (batch, C, H, W) -> (batch, latent_dim) x 2."""

    def __init__(
        self, image_shape: tuple[int, int, int], latent_dim: int, channels: tuple[int, ...], blocks: int
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i, (cin, cout) in enumerate(zip((image_shape[0], *channels[:-1]), channels)):
            layers += [nn.ReLU()] if i else []
            layers.append(nn.Conv2d(cin, cout, kernel_size=4, stride=2, padding=1))
        layers += [ResidualBlock(channels[-1]) for _ in range(blocks)] + [nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.heads = nn.Conv2d(channels[-1], 2 * spatial_latent_channels(image_shape, len(channels), latent_dim), 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.heads(self.body(x)).chunk(2, dim=1)  # (batch, latent channels, H/2^n, W/2^n) each
        return mu.flatten(1), logvar.flatten(1).clamp(ENCODER_LOGVAR_MIN, ENCODER_LOGVAR_MAX)


class LabelledEncoder(nn.Module):
    """The encoder of a model of labels (a conditional VAE, M2): x -> (logits of q(y|x) (batch, classes), or None
    for a conditional VAE, which has no classifier; mu, logvar of q(z|x, y) at every label (batch, classes, J)).
    `latent` is an MLPEncoder or ConvEncoder built with `classes`; `classifier` an encoder of the same architecture
    with `classes` outputs, whose first head gives the logits (Kingma et al. 2014, Eq. 7: q(y|x) = Cat(pi(x)))."""

    def __init__(self, latent: nn.Module, classifier: nn.Module | None) -> None:
        super().__init__()
        self.latent, self.classifier = latent, classifier

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        mu, logvar = self.latent(x)
        return (None if self.classifier is None else self.classifier(x)[0]), mu, logvar
