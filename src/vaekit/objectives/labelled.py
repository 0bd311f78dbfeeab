"""The bounds of a model of labels (Kingma et al. 2014, Section 3.1.2), over v = [onehot(y), z]
(models.posteriors.LabelledPosterior), in nats per image, higher is better:

  L(x, y) = E_q(z|x,y)[log p(x|y, z)] + log p(y) - KL(q(z|x, y) || p(z))       labelled (Eq. 6, negated)
  U(x)    = sum_y q(y|x) L(x, y) + H(q(y|x))                                   unlabelled (Eq. 7, negated)
  log q(y|x)                                                                   the classification term (Eq. 9)

A conditional VAE's bound is L(x, y) with log p(y) = 0: a bound on log p(x|y) (Sohn et al. 2015, Eq. 4).
"""

from __future__ import annotations

import torch

from vaekit.models.posteriors import LabelledPosterior
from vaekit.models.vae import VAE
from vaekit.objectives.bounds import ElboTerms, elbo_at


def labelled_bound(
    model: VAE,
    x: torch.Tensor,
    labels: torch.Tensor,
    generator: torch.Generator | None = None,
    eps: torch.Tensor | None = None,
    posterior: LabelledPosterior | None = None,
) -> ElboTerms:
    """L(x, y) at one z ~ q(z|x, y) per image: the ELBO with the label observed, whose KL is -log p(y) +
    KL(q(z|x, y) || N(0, I)) in closed form. `posterior`, model.posterior(x) where already computed.
    Shapes: x (B, C, H, W), labels (B,) -> terms (B,)."""
    posterior = posterior if posterior is not None else model.posterior(x)
    return elbo_at(model, x, posterior.given(labels), 1, generator, eps)


def unlabelled_bound(
    model: VAE, x: torch.Tensor, posterior: LabelledPosterior, generator: torch.Generator | None = None
) -> ElboTerms:
    """U(x) = sum_y q(y|x) L(x, y) + H(q(y|x)), summing over the C labels exactly (as Kingma et al. do, rather
    than sampling y), one z ~ q(z|x, y) per image and label. Written as
        U(x) = sum_y q(y|x) E_q(z|x,y)[log p(x|y, z)] - KL(q(y|x) q(z|x, y) || p(y) p(z)),
    the same sum regrouped (the label's -log p(y) and q's entropy are the KL's label part), so that its terms
    are the ELBO's: reconstruction (the decoder's term under q(y|x)) and the closed-form KL.
    Shapes: x (B, C, H, W), posterior = model.posterior(x) -> terms (B,); the decoder runs on C * B images."""
    every = posterior.every_label()  # (C * B) rows, label by label
    classes = posterior.classes
    at_every = elbo_at(model, x.repeat(classes, *([1] * (x.ndim - 1))), every, 1, generator)
    q = posterior.label_log_probs.exp()  # (B, C)
    reconstruction = (q * at_every.reconstruction.view(classes, -1).T).sum(-1)
    kl_per_dim = posterior.closed_form_kl(model.prior)  # (B, C + J)
    assert kl_per_dim is not None
    kl = kl_per_dim.sum(-1)
    return ElboTerms(reconstruction - kl, reconstruction, kl, kl_per_dim)


def classification_log_prob(posterior: LabelledPosterior, labels: torch.Tensor) -> torch.Tensor:
    """log q(y|x) at the true labels: posterior = model.posterior(x) (B, ...), labels (B,) -> (B,)."""
    return posterior.label_log_probs.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
