"""The ELBO estimator, the importance-weighted bound, and the shaped training objectives."""

import math

import pytest
import torch

from vaekit.config import ARCHITECTURE_NAMES, DISCRETE_LIKELIHOOD_NAMES, LIKELIHOOD_NAMES, ModelConfig, TrainConfig
from vaekit.models.vae import build_model
from vaekit.objectives import elbo, iwae_bound, log_importance_weights, training_loss
from vaekit.schedules import beta_at, capacity_at


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
    z, _ = model.posterior(x).rsample(4, g)  # the same noise
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


# Every objective with every likelihood of pixels on the MLP and conv networks; the likelihoods over grey
# levels and the resnet, which share the objectives' code, with the ELBO (levels: 32, for 256 would make the
# categorical's decoder 8 times larger).
COMBINATIONS = [
    (architecture, likelihood, objective)
    for architecture in ARCHITECTURE_NAMES
    for likelihood in LIKELIHOOD_NAMES
    for objective in OBJECTIVES
    if (likelihood not in DISCRETE_LIKELIHOOD_NAMES and architecture != "resnet") or objective == "elbo"
]


@pytest.mark.parametrize("architecture,likelihood,objective", COMBINATIONS)
def test_every_combination_learns(architecture, likelihood, objective, tiny_data):
    torch.manual_seed(0)
    model = build_model(
        ModelConfig(
            architecture=architecture,
            likelihood=likelihood,
            hidden_dim=64,
            latent_dim=49 if architecture == "resnet" else 4,  # the resnet's: one channel on its 7 x 7 map
            conv_channels=(8, 16),
        ),
        levels=32,
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


LATENT_MODELS = {
    "standard": {},
    "mixture": {"prior": "mixture", "prior_components": 5},
    "vampprior": {"prior": "vampprior", "prior_components": 5},
    "planar": {"posterior_flow": "planar", "flow_steps": 3},
    "iaf": {"posterior_flow": "iaf", "flow_steps": 2, "flow_hidden_dim": 16},
    "two-layer": {"hierarchy": "two-layer", "top_latent_dim": 2, "top_hidden_dim": 16},
    "ladder": {"hierarchy": "ladder", "ladder_latent_dims": (3, 2), "ladder_hidden_dims": (32, 16)},
}


def _latent_model(name, seed=0):
    torch.manual_seed(seed)
    return build_model(ModelConfig(hidden_dim=32, latent_dim=3, **LATENT_MODELS[name]))


def test_the_monte_carlo_kl_agrees_with_the_closed_form_within_its_standard_error():
    model = _latent_model("standard")
    x = torch.bernoulli(torch.full((4, 1, 28, 28), 0.3), generator=torch.Generator().manual_seed(0))
    exact = elbo(model, x).kl  # closed form
    mc = elbo(model, x, num_samples=20_000, generator=torch.Generator().manual_seed(1), estimator="stl")
    z, log_q = model.posterior(x).rsample(20_000, torch.Generator().manual_seed(1))
    per_sample = log_q - model.prior.log_prob(z)
    stderr = per_sample.std(1) / math.sqrt(20_000)
    torch.testing.assert_close(mc.kl, per_sample.mean(1))
    assert ((mc.kl - exact).abs() < 4 * stderr).all(), (mc.kl, exact, stderr)


@pytest.mark.parametrize("name", [n for n in LATENT_MODELS if n != "standard"])
def test_the_iwae_bound_with_one_sample_is_the_elbo_for_every_model(name):
    """With k = 1 and the same noise, log w = log p(x|z) + log p(z) - log q(z|x) is the ELBO's estimate."""
    from vaekit.objectives import iwae_training_terms

    model = _latent_model(name)
    x = torch.bernoulli(torch.full((6, 1, 28, 28), 0.3), generator=torch.Generator().manual_seed(0))
    eps = torch.randn(6, 1, model.latent_dim, generator=torch.Generator().manual_seed(1))
    bound, _ = iwae_training_terms(model, x, 1, eps=eps)
    torch.testing.assert_close(bound, elbo(model, x, 1, eps=eps).elbo)


@pytest.mark.parametrize("name", list(LATENT_MODELS))
def test_log_likelihood_is_above_the_elbo_and_the_iwae_bound_between_them(name):
    from vaekit.evaluation import importance_sampled_log_likelihood

    model = _latent_model(name)
    x = torch.bernoulli(torch.full((8, 1, 28, 28), 0.3), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        lower = elbo(model, x, 200, torch.Generator().manual_seed(2)).elbo.mean().item()  # E over q of the ELBO
        iwae = iwae_bound(model, x, 20, torch.Generator().manual_seed(3)).mean().item()
    ll = importance_sampled_log_likelihood(model, x, 2000, seed=4)
    assert lower < iwae < ll.mean + 3 * ll.stderr


def _grads(model, loss):
    model.zero_grad()
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_dreg_gradients_are_the_doubly_reparameterized_formula():
    """Tucker et al. (2019), Eq. 5: the encoder gets sum_k w~_k^2 d log w_k / dz_k dz_k/dphi (log q at
    stopped parameters); the decoder gets the IWAE gradient sum_k w~_k d log w_k / dtheta."""
    from vaekit.objectives.bounds import _log_weights, iwae_training_terms

    model = _latent_model("standard")
    x = torch.bernoulli(torch.full((5, 1, 28, 28), 0.3), generator=torch.Generator().manual_seed(0))
    eps = torch.randn(5, 7, 3, generator=torch.Generator().manual_seed(1))
    dreg = _grads(model, -iwae_training_terms(model, x, 7, eps=eps, estimator="dreg")[0].sum())
    log_w, _, _ = _log_weights(model, x, 7, model.posterior(x), None, eps, "stl")
    weights = torch.softmax(log_w.detach(), 1)
    encoder = _grads(model, -(weights**2 * log_w).sum())
    log_w, _, _ = _log_weights(model, x, 7, model.posterior(x), None, eps)
    iwae = _grads(model, -(torch.logsumexp(log_w, 1)).sum())
    for name, grad in dreg.items():
        expected = encoder[name] if name.startswith("encoder") else iwae[name]
        scale = expected.abs().max().item()  # float32 sums in another order: compare at the tensor's scale
        torch.testing.assert_close(grad, expected, rtol=1e-4, atol=1e-4 * scale, msg=name)
    # and the value it reports is still the IWAE bound
    bound = iwae_training_terms(model, x, 7, eps=eps, estimator="dreg")[0]
    torch.testing.assert_close(bound, torch.logsumexp(log_w, 1) - math.log(7))


def test_stl_has_the_same_value_and_changes_only_the_encoders_gradient():
    """The path derivative (Roeder et al. 2017) drops the score term d log q / d phi, whose
    expectation is zero: the bound's value and the model's gradients stay as they were."""
    model = _latent_model("mixture")  # a Monte-Carlo KL in both cases
    x = torch.bernoulli(torch.full((5, 1, 28, 28), 0.3), generator=torch.Generator().manual_seed(0))
    eps = torch.randn(5, 1, 3, generator=torch.Generator().manual_seed(1))
    plain, stl = elbo(model, x, 1, eps=eps), elbo(model, x, 1, eps=eps, estimator="stl")
    torch.testing.assert_close(plain.elbo, stl.elbo)
    g_plain, g_stl = _grads(model, -plain.elbo.sum()), _grads(model, -stl.elbo.sum())
    for name in g_plain:
        if name.startswith("encoder"):
            assert not torch.allclose(g_plain[name], g_stl[name]), name
        else:  # decoder and prior
            torch.testing.assert_close(g_plain[name], g_stl[name], msg=name)


@pytest.mark.parametrize(
    "name,objective",
    [
        (name, objective)
        for name in LATENT_MODELS
        if name != "standard"
        for objective in ("elbo", "iwae-k5", "iwae-k5-dreg")
        if not (
            objective.endswith("dreg") and name in ("planar", "iaf", "two-layer", "ladder")
        )  # dreg: one layer, no flow
    ],
)
def test_every_latent_model_learns(name, objective, tiny_data):
    model = _latent_model(name)
    x = torch.bernoulli(tiny_data.train.images[:64], generator=torch.Generator().manual_seed(0))
    train = {
        "elbo": TrainConfig(),
        "iwae-k5": TrainConfig(objective="iwae", num_samples=5),
        "iwae-k5-dreg": TrainConfig(objective="iwae", num_samples=5, gradient_estimator="dreg"),
    }[objective]
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(40):
        loss, terms = training_loss(model, x, train, step, torch.Generator().manual_seed(step))
        assert torch.isfinite(loss) and torch.isfinite(terms.kl).all()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.9 * sum(losses[:5]) / 5, (losses[:5], losses[-5:])


def test_the_objective_registry_has_every_objective_the_config_declares_and_each_carries_its_needs():
    from vaekit.config import OBJECTIVE_NEEDS
    from vaekit.objectives import OBJECTIVES, build_objective

    assert tuple(OBJECTIVES) == tuple(OBJECTIVE_NEEDS)
    model, _ = _model_and_data()
    for name, needs in OBJECTIVE_NEEDS.items():
        objective = build_objective(model, TrainConfig(objective=name, batch_size=8))
        assert isinstance(objective, OBJECTIVES[name]) and objective.needs is needs


def test_the_training_loop_names_no_objective():
    """training.py asks the objective object what to train, log and save; it never tests an objective's name."""
    from pathlib import Path

    import vaekit.training
    from vaekit.config import OBJECTIVE_NEEDS

    source = Path(vaekit.training.__file__).read_text()
    assert not [name for name in OBJECTIVE_NEEDS if f'"{name}"' in source or f"'{name}'" in source]


def test_the_elbo_with_a_closed_form_kl_draws_samples_alone_and_gives_the_same_bound_and_gradients(monkeypatch):
    """Where the KL is closed-form, the ELBO asks the posterior for z only (no log q): the same terms and the
    same gradients, bit for bit, as the Monte-Carlo route's samples with the closed form taken afterwards."""
    from vaekit.models.posteriors import GaussianPosterior

    model, x = _model_and_data()
    eps = torch.randn(8, 1, 3, generator=torch.Generator().manual_seed(4))
    calls = []
    original = GaussianPosterior.rsample

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(GaussianPosterior, "rsample", counting)
    fast = elbo(model, x, 1, eps=eps)
    monkeypatch.undo()
    assert not calls  # samples alone
    posterior = model.posterior(x)
    z, _ = posterior.rsample(1, eps=eps)
    assert torch.equal(fast.z, z)
    assert torch.equal(fast.kl, posterior.closed_form_kl(model.prior).sum(-1))
    grads = torch.autograd.grad(fast.elbo.sum(), list(model.parameters()))
    reconstruction = model.decode(z[:, 0]).log_prob(x)
    slow = reconstruction - posterior.closed_form_kl(model.prior).sum(-1)
    assert torch.equal(fast.elbo, slow)
    for a, b in zip(grads, torch.autograd.grad(slow.sum(), list(model.parameters()))):
        assert torch.allclose(a, b, rtol=0, atol=1e-6)
