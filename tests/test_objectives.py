"""The ELBO estimator, the importance-weighted bound, and the shaped training objectives."""

import math

import pytest
import torch

from vaekit.config import ARCHITECTURE_NAMES, LIKELIHOOD_NAMES, ModelConfig, TrainConfig
from vaekit.models.vae import build_model
from vaekit.objectives import beta_at, capacity_at, elbo, iwae_bound, log_importance_weights, training_loss


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
    by_hand = torch.stack([model.decode(z[:, i]).log_prob(x) for i in range(4)], 1).mean(1)
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
    means = [
        iwae_bound(model, x.repeat(300, 1, 1, 1), k, torch.Generator().manual_seed(k)).mean().item()
        for k in (1, 10, 100)
    ]
    assert means[0] < means[1] < means[2]


def test_log_importance_weights_shape_and_gaussian_likelihood():
    model, x = _model_and_data("gaussian")
    log_w = log_importance_weights(model, x, 7, torch.Generator().manual_seed(0))
    assert log_w.shape == (8, 7) and log_w.dtype == torch.float32 and torch.isfinite(log_w).all()
    assert math.isfinite(elbo(model, x).elbo.sum().item())


OBJECTIVES = {
    "elbo": TrainConfig(),
    "elbo-L3": TrainConfig(num_samples=3),
    "iwae-k5": TrainConfig(objective="iwae", num_samples=5),
    "beta4-warmup": TrainConfig(beta=4.0, warmup_steps=20),
    "capacity": TrainConfig(capacity_max=10.0, capacity_steps=30, capacity_gamma=10.0),
    "free-bits": TrainConfig(free_bits=0.5),
}


@pytest.mark.parametrize("architecture", ARCHITECTURE_NAMES)
@pytest.mark.parametrize("likelihood", LIKELIHOOD_NAMES)
@pytest.mark.parametrize("objective", OBJECTIVES)
def test_every_combination_learns(architecture, likelihood, objective, tiny_data):
    torch.manual_seed(0)
    model = build_model(
        ModelConfig(
            architecture=architecture, likelihood=likelihood, hidden_dim=64, latent_dim=4, conv_channels=(8, 16)
        )
    )
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
