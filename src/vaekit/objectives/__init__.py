"""Training objectives: the bounds every model family shares (bounds.py), the terms the disentangling
objectives add (disentangling.py), and each objective as an object in the registry OBJECTIVES (losses.py).

Sign convention: every bound is a log-likelihood bound in nats per datapoint, summed over pixels and latent
dimensions; higher is better. The optimiser minimises `loss = -elbo`, and that negation appears only in an
objective's loss.
"""

from vaekit.objectives.bounds import (
    ElboTerms,
    elbo,
    elbo_at,
    iwae_bound,
    iwae_training_terms,
    log_importance_weights,
    log_mean_exp,
)
from vaekit.objectives.disentangling import (
    KLDecomposition,
    dip_penalty,
    discriminator_loss,
    evaluate_kl_decomposition,
    kl_decomposition,
    log_minibatch_weights,
)
from vaekit.objectives.losses import (
    OBJECTIVES,
    Objective,
    build_objective,
    classification_error,
    dip_weights,
    factor_vae_loss,
    shaped_kl_penalty,
    training_loss,
)

__all__ = [
    "OBJECTIVES",
    "ElboTerms",
    "KLDecomposition",
    "Objective",
    "build_objective",
    "classification_error",
    "dip_penalty",
    "dip_weights",
    "discriminator_loss",
    "elbo",
    "elbo_at",
    "evaluate_kl_decomposition",
    "factor_vae_loss",
    "iwae_bound",
    "iwae_training_terms",
    "kl_decomposition",
    "log_importance_weights",
    "log_mean_exp",
    "log_minibatch_weights",
    "shaped_kl_penalty",
    "training_loss",
]
