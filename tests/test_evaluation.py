"""Importance-sampled log p(x) against exact integration, and against the ELBO."""

import math

import torch

from vaekit.config import ModelConfig
from vaekit.evaluation import evaluate_elbo, importance_sampled_log_likelihood
from vaekit.models.vae import build_model
from vaekit.objectives import elbo


def _exact_log_likelihood(model, x, lo=-12.0, hi=12.0, points=24001):
    """log p(x) = log integral p(x|z) N(z; 0, 1) dz on a fine grid, for a 1-D latent space."""
    z = torch.linspace(lo, hi, points).unsqueeze(1)  # (points, 1)
    log_prior = -0.5 * (math.log(2 * math.pi) + z.squeeze(1) ** 2)
    with torch.no_grad():
        lik = model.decode(z)
        rows = [lik.log_prob(xi.expand(points, *xi.shape)) + log_prior for xi in x]
    dz = (hi - lo) / (points - 1)
    return torch.stack([torch.logsumexp(r.double(), 0) + math.log(dz) for r in rows])


def test_importance_sampling_agrees_with_numerical_integration_and_the_elbo_sits_below():
    torch.manual_seed(0)
    model = build_model(ModelConfig(hidden_dim=16, latent_dim=1, image_shape=(1, 3, 3)))
    x = torch.bernoulli(torch.full((6, 1, 3, 3), 0.4), generator=torch.Generator().manual_seed(1))
    exact = _exact_log_likelihood(model, x)
    est = importance_sampled_log_likelihood(model, x, num_importance_samples=5000, batch_size=4,
                                            sample_chunk=700, generator=torch.Generator().manual_seed(2))
    assert est.per_datapoint.dtype == torch.float64
    torch.testing.assert_close(est.per_datapoint, exact, atol=0.02, rtol=0)
    # The ELBO's expectation (many samples) is a lower bound on the exact log p(x).
    bound = elbo(model, x, num_samples=20000, generator=torch.Generator().manual_seed(3)).elbo.double()
    assert torch.all(bound <= exact + 1e-3)
    assert torch.any(bound < exact - 1e-2)  # and not a tight one for an untrained encoder


def test_elbo_is_below_log_likelihood_on_a_trained_model(mnist_small):
    from vaekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from vaekit.training import train

    config = RunConfig(ModelConfig(hidden_dim=128, latent_dim=8), DataConfig(train_limit=3000, eval_limit=1000),
                       TrainConfig(epochs=3, batch_size=100))
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        model = train(config, tmp, progress=False, dataset=mnist_small).model
    x = mnist_small.evaluation_observations("test")[:200]
    ll = importance_sampled_log_likelihood(model, x, 500, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        bound = elbo(model, x, num_samples=50, generator=torch.Generator().manual_seed(1)).elbo.double()
    gap = ll.per_datapoint - bound  # log p(x) - ELBO >= 0 per datapoint, up to estimator noise
    assert gap.mean() > 3 * gap.std() / math.sqrt(len(gap))
    assert (gap > -0.5).float().mean() > 0.95
    summary = evaluate_elbo(model, x, num_samples=50, generator=torch.Generator().manual_seed(1))
    assert summary.elbo < ll.mean
