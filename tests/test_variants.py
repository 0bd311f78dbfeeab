"""Every architecture x likelihood x objective: shapes, learning, and normalised likelihoods."""

import math

import pytest
import torch

from vaekit.config import ARCHITECTURES, LIKELIHOODS, ModelConfig, TrainConfig
from vaekit.likelihoods import LIKELIHOODS as LIKELIHOOD_REGISTRY
from vaekit.likelihoods import BernoulliLikelihood, ContinuousBernoulliLikelihood, GaussianLikelihood
from vaekit.models.vae import build_model
from vaekit.objectives import beta_at, capacity_at, training_loss

OBJECTIVES = {
    "elbo": TrainConfig(),
    "elbo-L3": TrainConfig(num_samples=3),
    "iwae-k5": TrainConfig(objective="iwae", num_samples=5),
    "beta4-warmup": TrainConfig(beta=4.0, warmup_steps=20),
    "capacity": TrainConfig(capacity_max=10.0, capacity_steps=30, capacity_gamma=10.0),
    "free-bits": TrainConfig(free_bits=0.5),
}


def test_likelihood_registry_matches_config():
    assert set(LIKELIHOOD_REGISTRY) == set(LIKELIHOODS)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("likelihood", LIKELIHOODS)
@pytest.mark.parametrize("objective", OBJECTIVES)
def test_every_combination_learns(architecture, likelihood, objective, tiny_data):
    torch.manual_seed(0)
    model = build_model(ModelConfig(architecture=architecture, likelihood=likelihood, hidden_dim=64, latent_dim=4,
                                    conv_channels=(8, 16)))
    x = tiny_data.train.images[:64]
    if likelihood == "bernoulli":
        x = torch.bernoulli(x, generator=torch.Generator().manual_seed(0))
    train = OBJECTIVES[objective]
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(40):
        loss, terms = training_loss(model, x, train, step, torch.Generator().manual_seed(step))
        assert terms.elbo.shape == (64,) and torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < first - 0.05 * abs(first), (first, last)


@pytest.mark.parametrize("shape,channels", [((1, 28, 28), (32, 64)), ((3, 32, 32), (32, 32, 64)),
                                            ((3, 64, 64), (32, 32, 64, 64)), ((1, 16, 24), (8, 8))])
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_shapes_round_trip_for_every_image_size(shape, channels, architecture):
    model = build_model(ModelConfig(architecture=architecture, image_shape=shape, hidden_dim=32, latent_dim=5,
                                    conv_channels=channels, likelihood="gaussian"))
    x = torch.rand(3, *shape)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (3, 5)
    lik = model.decode(mu)
    assert lik.mean.shape == x.shape and lik.logvar.shape == x.shape
    assert model.sample(2).shape == (2, *shape)


def test_conv_rejects_sizes_it_cannot_halve():
    with pytest.raises(ValueError, match="divisible by 8"):
        ModelConfig(architecture="conv", image_shape=(3, 30, 30), conv_channels=(8, 8, 8))


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
    samples = ContinuousBernoulliLikelihood(torch.full((100_000, 1, 1, 1), eta), 3).sample(torch.Generator().manual_seed(0))
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


def test_fixed_variance_gaussian_uses_the_configured_std():
    model = build_model(ModelConfig(likelihood="gaussian-fixed", decoder_fixed_std=0.2, hidden_dim=8, latent_dim=2))
    lik = model.decode(torch.zeros(1, 2))
    assert torch.allclose(lik.logvar, torch.full_like(lik.logvar, 2 * math.log(0.2)))


def test_schedules_are_pure_functions_of_the_step():
    assert [beta_at(s, 4.0, 100) for s in (0, 50, 100, 500)] == [0.0, 2.0, 4.0, 4.0]
    assert beta_at(7, 2.0, 0) == 2.0
    assert [capacity_at(s, 25.0, 1000) for s in (0, 400, 1000, 5000)] == [0.0, 10.0, 25.0, 25.0]


def test_free_bits_stop_pushing_small_kls_down():
    """Below the free-bits floor the KL gets no gradient; above it, it does."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(hidden_dim=16, latent_dim=3, image_shape=(1, 4, 4)))
    x = torch.bernoulli(torch.full((32, 1, 4, 4), 0.5))
    with torch.no_grad():
        model.encoder.heads.weight.zero_()
        model.encoder.heads.bias.zero_()  # q = N(0, I): KL is 0 in every dimension
    loss, _ = training_loss(model, x, TrainConfig(free_bits=1.0), 0, torch.Generator().manual_seed(0))
    loss_plain, _ = training_loss(model, x, TrainConfig(), 0, torch.Generator().manual_seed(0))
    assert loss.item() == pytest.approx(loss_plain.item() + 3.0, abs=1e-4)  # the floor: 3 dims x 1 nat


def test_iwae_objective_with_beta_is_rejected():
    with pytest.raises(ValueError, match="apply to the elbo objective only"):
        TrainConfig(objective="iwae", beta=2.0)


def test_shaped_objectives_have_the_stated_values():
    """loss = -rec + beta_t * KL (warm-up) and -rec + gamma * |KL - C_t| (capacity), batch-averaged."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(hidden_dim=16, latent_dim=3, image_shape=(1, 4, 4)))
    x = torch.bernoulli(torch.full((8, 1, 4, 4), 0.4), generator=torch.Generator().manual_seed(1))

    def value(train, step):
        loss, terms = training_loss(model, x, train, step, torch.Generator().manual_seed(2))
        return loss.item(), terms.reconstruction.mean().item(), terms.kl.mean().item()

    loss, rec, kl = value(TrainConfig(beta=4.0, warmup_steps=100), 25)
    assert loss == pytest.approx(-rec + 1.0 * kl, rel=1e-5)
    loss, rec, kl = value(TrainConfig(capacity_max=10.0, capacity_steps=100, capacity_gamma=7.0), 50)
    assert loss == pytest.approx(-rec + 7.0 * abs(kl - 5.0), rel=1e-5)
    loss, rec, kl = value(TrainConfig(), 0)
    assert loss == pytest.approx(-(rec - kl), rel=1e-5)
