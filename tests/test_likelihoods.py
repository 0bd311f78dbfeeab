"""The distributions against torch.distributions and against Monte Carlo."""

import math

import pytest
import torch
from torch.distributions import Bernoulli, Independent, Normal

from vaekit.config import LIKELIHOOD_NAMES
from vaekit.likelihoods import (
    LIKELIHOOD_BUILDERS,
    BernoulliLikelihood,
    ContinuousBernoulliLikelihood,
    DiagonalGaussian,
    GaussianLikelihood,
    bounded_logvar,
    standard_normal_log_prob,
)


def _gaussian(batch=5, dim=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, dim, generator=g) * 1.5, torch.randn(batch, dim, generator=g)


def test_closed_form_kl_matches_monte_carlo_within_standard_error():
    mu, logvar = _gaussian()
    q = DiagonalGaussian(mu, logvar)
    z = q.rsample(200_000, torch.Generator().manual_seed(1))  # (batch, S, J)
    log_ratio = DiagonalGaussian(mu.unsqueeze(1), logvar.unsqueeze(1)).log_prob(z) - standard_normal_log_prob(z)
    mc, se = log_ratio.mean(1), log_ratio.std(1) / math.sqrt(z.shape[1])
    closed = q.kl_to_standard_normal()
    assert torch.all((closed - mc).abs() < 4 * se), (closed, mc, se)


def test_kl_matches_torch_distributions_and_is_zero_at_the_prior():
    mu, logvar = _gaussian()
    ours = DiagonalGaussian(mu, logvar).kl_to_standard_normal()
    ref = torch.distributions.kl_divergence(
        Independent(Normal(mu, torch.exp(0.5 * logvar)), 1), Independent(Normal(0.0, torch.ones_like(mu)), 1)
    )
    torch.testing.assert_close(ours, ref)
    zero = DiagonalGaussian(torch.zeros(3, 2), torch.zeros(3, 2)).kl_to_standard_normal()
    assert torch.equal(zero, torch.zeros(3))


def test_gaussian_log_prob_matches_torch_distributions():
    mu, logvar = _gaussian()
    z = torch.randn(5, 4)
    ref = Independent(Normal(mu, torch.exp(0.5 * logvar)), 1).log_prob(z)
    torch.testing.assert_close(DiagonalGaussian(mu, logvar).log_prob(z), ref)
    torch.testing.assert_close(standard_normal_log_prob(z), Independent(Normal(0.0, torch.ones(5, 4)), 1).log_prob(z))
    x = torch.rand(5, 1, 2, 2)
    lik = GaussianLikelihood(mu.view(5, 1, 2, 2), logvar.view(5, 1, 2, 2), event_dims=3)
    ref = Independent(Normal(mu.view(5, 1, 2, 2), torch.exp(0.5 * logvar).view(5, 1, 2, 2)), 3).log_prob(x)
    torch.testing.assert_close(lik.log_prob(x), ref)


def test_bernoulli_log_prob_matches_torch_distributions_even_for_extreme_logits():
    logits = torch.tensor([[[[-50.0, -2.0], [0.0, 3.0]]], [[[80.0, 1.0], [-1.0, 20.0]]]])
    x = torch.tensor([[[[0.0, 1.0], [1.0, 0.0]]], [[[1.0, 1.0], [0.0, 0.0]]]])
    ours = BernoulliLikelihood(logits, event_dims=3).log_prob(x)
    ref = Independent(Bernoulli(logits=logits), 3).log_prob(x)
    torch.testing.assert_close(ours, ref)
    assert torch.isfinite(ours).all()


def test_reparameterized_samples_have_the_right_moments_and_gradients():
    mu = torch.tensor([[1.0, -2.0]], requires_grad=True)
    logvar = torch.tensor([[0.5, -1.0]], requires_grad=True)
    z = DiagonalGaussian(mu, logvar).rsample(100_000, torch.Generator().manual_seed(0))
    assert z.shape == (1, 100_000, 2)
    torch.testing.assert_close(z.mean(1), mu.detach(), atol=0.02, rtol=0)
    torch.testing.assert_close(z.var(1), logvar.detach().exp(), atol=0.02, rtol=0.02)
    # d E[z^2] / d mu = 2 mu and d E[z^2] / d logvar = sigma^2, through the reparameterization
    (z**2).mean(1).sum().backward()
    torch.testing.assert_close(mu.grad, 2 * mu.detach(), atol=0.03, rtol=0)
    torch.testing.assert_close(logvar.grad, logvar.detach().exp(), atol=0.03, rtol=0.02)


@pytest.mark.parametrize("raw", [-1e6, -5.0, 0.0, 5.0, 1e6])
def test_bounded_logvar_stays_inside_its_bounds(raw):
    out = bounded_logvar(torch.tensor(raw), -6.0, 2.0)
    assert -6.0 <= out.item() <= 2.0


def test_likelihood_registry_matches_config():
    assert set(LIKELIHOOD_BUILDERS) == set(LIKELIHOOD_NAMES)


@pytest.mark.parametrize("name", sorted(LIKELIHOOD_BUILDERS))
def test_each_likelihood_declares_the_kind_the_config_gives_its_name(name):
    """The kind decides a run's unit (nats, dequantized bits/dim, bits/dim): the class a name builds declares the
    kind config.LIKELIHOOD_KINDS gives that name, so no tuple's order can change what a run reports."""
    from vaekit.config import LIKELIHOOD_KINDS
    from vaekit.likelihoods import LikelihoodOptions

    options = LikelihoodOptions(levels=16, components=2)
    maps, build = LIKELIHOOD_BUILDERS[name]
    likelihood = build(torch.zeros(1, maps(options), 2, 2), 3, options)
    assert type(likelihood).kind == LIKELIHOOD_KINDS[name]


def _single_pixel(values):
    return torch.tensor(values, dtype=torch.float32).view(-1, 1, 1, 1)


@pytest.mark.parametrize("eta", [-30.0, -4.0, -0.5, -1e-3, 0.0, 2e-3, 0.7, 5.0, 25.0])
def test_continuous_bernoulli_integrates_to_one_and_its_mean_is_right(eta):
    grid = torch.linspace(0, 1, 200_001)
    lik = ContinuousBernoulliLikelihood(torch.full((len(grid), 1, 1, 1), eta), event_dims=3)
    density = lik.log_prob(grid.view(-1, 1, 1, 1)).double().exp()
    assert torch.trapezoid(density, grid.double()).item() == pytest.approx(1.0, abs=2e-3)
    mean = torch.trapezoid(density * grid.double(), grid.double()).item()
    assert lik.mean[0].item() == pytest.approx(mean, abs=2e-3)
    samples = ContinuousBernoulliLikelihood(torch.full((100_000, 1, 1, 1), eta), 3).sample(
        torch.Generator().manual_seed(0)
    )
    assert samples.min() >= 0 and samples.max() <= 1
    assert samples.mean().item() == pytest.approx(mean, abs=0.01)


@pytest.mark.parametrize("mu,logvar", [(0.3, -6.0), (0.5, 0.0), (-1.0, 2.0)])
def test_gaussian_likelihood_integrates_to_one(mu, logvar):
    sd = math.exp(0.5 * logvar)
    grid = torch.linspace(mu - 12 * sd, mu + 12 * sd, 100_001)
    lik = GaussianLikelihood(torch.full((len(grid), 1, 1, 1), mu), torch.full((len(grid), 1, 1, 1), logvar), 3)
    density = lik.log_prob(grid.view(-1, 1, 1, 1)).double().exp()
    assert torch.trapezoid(density, grid.double()).item() == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("logit", [-20.0, -1.0, 0.0, 3.0])
def test_bernoulli_sums_to_one(logit):
    lik = BernoulliLikelihood(torch.full((2, 1, 1, 1), logit), 3)
    total = lik.log_prob(_single_pixel([0.0, 1.0])).exp().sum().item()
    assert total == pytest.approx(1.0, abs=1e-6)
