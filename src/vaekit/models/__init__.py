"""Networks of the VAE: encoders, decoders and the model that joins them."""

from vaekit.models.vae import MODELS, VAE, build_model

__all__ = ["MODELS", "VAE", "build_model"]
