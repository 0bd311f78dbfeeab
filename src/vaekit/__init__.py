"""vaekit: variational autoencoders as Kingma & Welling (2013) derive them, in PyTorch."""

from vaekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from vaekit.errors import VaekitError
from vaekit.models.vae import VAE, build_model
from vaekit.objectives import elbo, iwae_bound
from vaekit.rundir import load_run

__all__ = [
    "DataConfig",
    "ModelConfig",
    "RunConfig",
    "TrainConfig",
    "VAE",
    "VaekitError",
    "build_model",
    "elbo",
    "iwae_bound",
    "load_run",
]
__version__ = "0.1.0"
