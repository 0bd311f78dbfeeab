"""Networks of the VAE: encoders, decoders and the model that joins them."""

from vaekit.models.vae import ARCHITECTURE_BUILDERS, VAE, build_model

__all__ = ["ARCHITECTURE_BUILDERS", "VAE", "build_model"]
