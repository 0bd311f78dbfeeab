"""vaekit: variational autoencoders as Kingma & Welling (2013) derive them, in PyTorch.

From Python, a run is three calls (the README's "Library" section shows them in full):

    config = vaekit.load_config("mnist-mlp", {"train.epochs": 5})
    result = vaekit.train(config, "runs/python")            # TrainResult: model, metrics, test figures
    figures, path = vaekit.evaluate("runs/python")          # log p(x) with K = 5000, active units, ...
"""

from vaekit.callbacks import Callback
from vaekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig, load_config
from vaekit.errors import VaekitError
from vaekit.evaluation import EvaluationSetting
from vaekit.evaluation import evaluate_run as evaluate
from vaekit.models.vae import VAE, build_model
from vaekit.objectives import elbo, iwae_bound
from vaekit.rundir import load_run
from vaekit.training import train

__all__ = [
    "Callback",
    "DataConfig",
    "EvaluationSetting",
    "ModelConfig",
    "RunConfig",
    "TrainConfig",
    "VAE",
    "VaekitError",
    "build_model",
    "elbo",
    "evaluate",
    "iwae_bound",
    "load_config",
    "load_run",
    "train",
]
__version__ = "0.1.0"
