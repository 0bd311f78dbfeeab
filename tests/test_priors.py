"""Priors: the mixture's density against a direct computation, the VampPrior against its definition."""

import math

import pytest
import torch
from torch import distributions as D

from vaekit.config import PRIOR_NAMES, ModelConfig
from vaekit.likelihoods import DiagonalGaussian, standard_normal_log_prob
from vaekit.models.priors import MixturePrior, StandardNormalPrior
from vaekit.models.vae import PRIOR_BUILDERS, build_model


def test_prior_registry_matches_config():
    assert set(PRIOR_BUILDERS) == set(PRIOR_NAMES)


def _random_mixture(latent_dim=3, components=4, seed=0):
    torch.manual_seed(seed)
    prior = MixturePrior(latent_dim, components)
    with torch.no_grad():
        prior.logvar.normal_(0, 0.7)
        prior.logits.normal_(0, 1.0)
    return prior


def test_mixture_log_density_equals_torch_distributions():
    prior = _random_mixture()
    reference = D.MixtureSameFamily(
        D.Categorical(logits=prior.logits),
        D.Independent(D.Normal(prior.mu, torch.exp(0.5 * prior.logvar)), 1),
    )
    z = torch.randn(5, 7, 3) * 2
    torch.testing.assert_close(prior.log_prob(z), reference.log_prob(z), rtol=1e-5, atol=1e-5)


def test_a_one_dimensional_mixture_integrates_to_one():
    prior = _random_mixture(latent_dim=1, components=3)
    grid = torch.linspace(-25, 25, 200_001)
    density = prior.log_prob(grid.unsqueeze(-1)).double().exp()
    assert torch.trapezoid(density, grid.double()).item() == pytest.approx(1.0, abs=1e-5)


def test_mixture_samples_have_the_mixtures_mean():
    prior = _random_mixture()
    z = prior.sample(200_000, torch.Generator().manual_seed(0))
    weights = torch.softmax(prior.logits, 0)
    mean = (weights.unsqueeze(1) * prior.mu).sum(0)
    second = (weights.unsqueeze(1) * (prior.mu**2 + prior.logvar.exp())).sum(0)
    stderr = ((second - mean**2) / len(z)).sqrt()
    assert ((z.mean(0) - mean).abs() < 5 * stderr).all()


def test_the_vampprior_with_one_pseudo_input_is_the_posterior_at_that_input():
    torch.manual_seed(0)
    model = build_model(ModelConfig(hidden_dim=16, latent_dim=3, prior="vampprior", prior_components=1))
    z = torch.randn(6, 2, 3)
    expected = DiagonalGaussian(*model.encoder(model.prior.pseudo_inputs())).log_prob(z)  # mu (1, J) broadcasts
    torch.testing.assert_close(model.prior.log_prob(z), expected)


def test_the_vampprior_is_the_uniform_mixture_of_the_posteriors_at_its_pseudo_inputs():
    torch.manual_seed(0)
    model = build_model(ModelConfig(hidden_dim=16, latent_dim=2, prior="vampprior", prior_components=5))
    u = model.prior.pseudo_inputs()
    assert u.shape == (5, 1, 28, 28) and u.min() >= 0 and u.max() <= 1
    z = torch.randn(4, 2)
    by_hand = torch.stack([DiagonalGaussian(*model.encoder(u[k : k + 1])).log_prob(z) for k in range(5)], -1)
    torch.testing.assert_close(model.prior.log_prob(z), torch.logsumexp(by_hand, -1) - math.log(5))
    samples = model.sample_prior(3, torch.Generator().manual_seed(1))
    assert samples.shape == (3, 2) and torch.isfinite(model.prior.log_prob(samples)).all()


def test_the_standard_prior_is_n01_and_has_no_parameters():
    prior = StandardNormalPrior(4)
    z = torch.randn(3, 4)
    assert torch.equal(prior.log_prob(z), standard_normal_log_prob(z)) and not list(prior.parameters())
    x = torch.rand(3, 1, 28, 28)
    standard = build_model(ModelConfig(hidden_dim=8, latent_dim=2))
    assert prior.closed_form_kl and standard.posterior(x).closed_form_kl(standard.prior).shape == (3, 2)
    mixture = build_model(ModelConfig(hidden_dim=8, latent_dim=2, prior="mixture", prior_components=3))
    assert not mixture.prior.closed_form_kl and mixture.posterior(x).closed_form_kl(mixture.prior) is None
