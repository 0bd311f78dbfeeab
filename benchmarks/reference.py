"""The plain reference: the VAE training loop most PyTorch tutorials write, kept deliberately simple.

DataLoader over a TensorDataset (shuffled), a fresh Bernoulli binarization per batch, separate
linear layers for mu and log sigma^2, BCE-with-logits summed over pixels plus the closed-form
KL, Adam. Same architecture, batch size and data as vaekit's default; used only to measure
vaekit against in the same process. `train_epoch_lean` runs the same model as fast as we can make
a float32 loop go, to show how much room the plain loop leaves.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class ReferenceVAE(nn.Module):
    def __init__(self, pixels: int = 784, hidden: int = 512, latent: int = 16) -> None:
        super().__init__()
        self.enc = nn.Linear(pixels, hidden)
        self.enc_mu = nn.Linear(hidden, latent)
        self.enc_logvar = nn.Linear(hidden, latent)
        self.dec = nn.Linear(latent, hidden)
        self.dec_out = nn.Linear(hidden, pixels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = F.relu(self.enc(x))
        mu, logvar = self.enc_mu(h), self.enc_logvar(h)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        return self.dec_out(F.relu(self.dec(z))), mu, logvar


def reference_loss(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Negative ELBO per datapoint (nats), averaged over the batch."""
    if isinstance(model, ReferenceVAE):
        logits, mu, logvar = model(x)
    else:  # a vaekit network (used for the conv comparison, where no tutorial model is standard)
        posterior = model.posterior(x)  # one Gaussian layer: its parameters are read directly
        mu, logvar = posterior.mu, posterior.logvar
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        logits = model.decode(z).logits
    rec = F.binary_cross_entropy_with_logits(logits, x.view_as(logits), reduction="sum")
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return (rec + kl) / x.shape[0]


def make_loader(images: torch.Tensor, batch_size: int = 100, flatten: bool = True) -> DataLoader:
    data = images.flatten(1) if flatten else images
    return DataLoader(TensorDataset(data), batch_size=batch_size, shuffle=True)


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader, device: str = "cpu") -> float:
    """One epoch; returns the mean loss. On a GPU each batch is copied over, as tutorials do."""
    model.train()
    total, count = 0.0, 0
    for (x,) in loader:
        x = torch.bernoulli(x.to(device))
        loss = reference_loss(model, x)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item() * len(x)
        count += len(x)
    return total / count


def train_epoch_lean(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    batch_size: int = 100,
    flatten: bool = True,
) -> None:
    """The same model and loss in the fastest float32 epoch we know how to write, a practical ceiling
    for float32 loops on the machine at hand: images already on the device, a batch gathered by
    index, no DataLoader, no per-step host sync (the loss is read once at the end) and no checks.
    Pass an optimizer built with fused=True."""
    model.train()
    data = images.flatten(1) if flatten else images
    order = torch.randperm(len(data), device=data.device)
    for start in range(0, len(data), batch_size):
        x = torch.bernoulli(data[order[start : start + batch_size]])
        loss = reference_loss(model, x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    loss.item()


@torch.no_grad()
def test_elbo(model: nn.Module, x_binary: torch.Tensor, flatten: bool = True) -> float:
    """ELBO (one sample) on fixed binarized images, nats per image."""
    model.eval()
    data = (x_binary.flatten(1) if flatten else x_binary).to(next(model.parameters()).device)
    return -sum(
        reference_loss(model, data[i : i + 1000]).item() * len(data[i : i + 1000]) for i in range(0, len(data), 1000)
    ) / len(data)
