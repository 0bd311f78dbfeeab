"""The ELBO estimator and the importance-weighted bound."""

import math

import torch

from vaekit.config import ModelConfig
from vaekit.models.vae import build_model
from vaekit.objectives import elbo, iwae_bound, log_importance_weights


def _model_and_data(likelihood="bernoulli", seed=0):
    torch.manual_seed(seed)
    model = build_model(ModelConfig(hidden_dim=32, latent_dim=3, image_shape=(1, 4, 4), likelihood=likelihood))
    x = torch.bernoulli(torch.full((8, 1, 4, 4), 0.3), generator=torch.Generator().manual_seed(seed))
    return model, x


def test_elbo_is_reconstruction_minus_kl_with_per_datapoint_shapes():
    model, x = _model_and_data()
    for num_samples in (1, 5):
        terms = elbo(model, x, num_samples, torch.Generator().manual_seed(0))
        assert terms.elbo.shape == terms.reconstruction.shape == terms.kl.shape == (8,)
        torch.testing.assert_close(terms.elbo, terms.reconstruction - terms.kl)
        assert torch.all(terms.kl >= 0)


def test_elbo_reconstruction_is_the_mean_over_samples_of_log_likelihoods():
    model, x = _model_and_data()
    g = torch.Generator().manual_seed(3)
    terms = elbo(model, x, 4, g)
    g = torch.Generator().manual_seed(3)
    z = model.posterior(x).rsample(4, g)  # the same noise
    by_hand = torch.stack([model.decode(z[:, l]).log_prob(x) for l in range(4)], 1).mean(1)
    torch.testing.assert_close(terms.reconstruction, by_hand)


def test_iwae_with_one_sample_equals_the_elbo_in_expectation():
    model, x = _model_and_data()
    reps = 4000
    xr = x.repeat(reps, 1, 1, 1)
    iw = iwae_bound(model, xr, 1, torch.Generator().manual_seed(0)).view(reps, -1)
    el = elbo(model, xr, 1, torch.Generator().manual_seed(1)).elbo.view(reps, -1)
    diff = iw.mean(0) - el.mean(0)
    se = torch.sqrt(iw.var(0) / reps + el.var(0) / reps)
    assert torch.all(diff.abs() < 4 * se), (diff, se)


def test_iwae_bound_rises_with_k_on_average():
    model, x = _model_and_data(seed=1)
    means = [iwae_bound(model, x.repeat(300, 1, 1, 1), k, torch.Generator().manual_seed(k)).mean().item()
             for k in (1, 10, 100)]
    assert means[0] < means[1] < means[2]


def test_log_importance_weights_shape_and_gaussian_likelihood():
    model, x = _model_and_data("gaussian")
    log_w = log_importance_weights(model, x, 7, torch.Generator().manual_seed(0))
    assert log_w.shape == (8, 7) and log_w.dtype == torch.float32 and torch.isfinite(log_w).all()
    assert math.isfinite(elbo(model, x).elbo.sum().item())
