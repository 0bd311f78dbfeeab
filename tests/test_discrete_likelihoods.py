"""Likelihoods over grey levels against exact tables: normalisation, the categorical built from the same CDF,
the mixture as an explicit sum, extreme scales, and bits/dim of a model whose log p(x) is known."""

import math

import pytest
import torch

from vaekit.evaluation import bits_per_dim, dequantize, evaluate_split
from vaekit.likelihoods import (
    LIKELIHOOD_BUILDERS,
    CategoricalLevels,
    DiscretizedLogisticMixture,
    LikelihoodOptions,
    level_of,
)


def _mixture(levels, components=3, shape=(4, 1, 3, 3), dtype=torch.float32, seed=0, log_scale_range=(-8.0, 7.0)):
    """Random parameters, scales from exp(-8) (all mass in one bin) to exp(7) (flat), means past both ends."""
    g = torch.Generator().manual_seed(seed)
    full = (*shape, components)
    logits = torch.randn(full, generator=g, dtype=dtype) * 3
    mu = torch.rand(full, generator=g, dtype=dtype) * 1.6 - 0.3
    low, high = log_scale_range
    log_scale = low + (high - low) * torch.rand(full, generator=g, dtype=dtype)
    return DiscretizedLogisticMixture(logits, mu, log_scale, levels)


def _at_every_level(dist, levels):
    """log p(x_d = k) of every pixel for every level k: (batch, C, H, W, L), through log_prob's own path."""
    out = []
    for k in range(levels):
        x = torch.full(dist.mu.shape[:-1], k / levels, dtype=dist.mu.dtype)
        out.append(dist.log_prob_per_pixel(x))
    return torch.stack(out, dim=-1)


@pytest.mark.parametrize("levels", [256, 32])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_probabilities_of_all_levels_sum_to_one_even_at_extreme_scales(levels, dtype):
    dist = _mixture(levels, dtype=dtype)
    total = _at_every_level(dist, levels).exp().sum(-1)
    assert torch.allclose(total, torch.ones_like(total), atol=1e-5, rtol=0)
    assert torch.allclose(dist.level_probs().sum(-1), torch.ones_like(total), atol=1e-5, rtol=0)


def _cdf_table(mu, scale, levels):
    """P(k) = F((k+1)/L) - F(k/L) with the tails in the edge bins, in float64 by the plain formula, taken as
    a difference of survival functions above the mean, where the CDFs would cancel."""
    edges = (torch.arange(levels + 1, dtype=torch.float64) / levels - mu.unsqueeze(-1)) / scale.unsqueeze(-1)
    edges[..., 0], edges[..., -1] = -math.inf, math.inf
    below = torch.sigmoid(edges[..., 1:]) - torch.sigmoid(edges[..., :-1])
    above = torch.sigmoid(-edges[..., :-1]) - torch.sigmoid(-edges[..., 1:])
    return torch.where(edges[..., :-1] > 0, above, below)


def test_the_discretized_logistic_equals_the_categorical_of_its_cdf_differences():
    g = torch.Generator().manual_seed(1)
    mu = torch.rand(6, 1, 4, 4, generator=g, dtype=torch.float64) * 1.2 - 0.1
    log_scale = torch.rand(6, 1, 4, 4, generator=g, dtype=torch.float64) * 4 - 5  # moderate: the plain formula holds
    table = _cdf_table(mu, log_scale.exp(), 256)
    reference = CategoricalLevels(table.log())
    logistic = DiscretizedLogisticMixture(torch.zeros_like(mu)[..., None], mu[..., None], log_scale[..., None], 256)
    x = torch.randint(0, 256, (6, 1, 4, 4), generator=g).double() / 256
    assert torch.allclose(logistic.log_prob(x), reference.log_prob(x), rtol=0, atol=1e-9)
    assert torch.allclose(logistic.level_probs(), table, rtol=0, atol=1e-12)
    # in float32, the stable form stays within float32's reach of the float64 table
    single = DiscretizedLogisticMixture(*(t.float()[..., None] for t in (torch.zeros_like(mu), mu, log_scale)), 256)
    assert torch.allclose(single.log_prob(x.float()).double(), reference.log_prob(x), rtol=1e-5, atol=1e-3)


def test_the_mixture_is_the_weighted_sum_of_its_components():
    dist = _mixture(256, components=4, dtype=torch.float64, seed=2, log_scale_range=(-5.0, 1.0))
    weights = torch.softmax(dist.logits, -1)
    by_hand = sum(
        weights[..., j, None] * _cdf_table(dist.mu[..., j], dist.log_scale[..., j].exp(), 256) for j in range(4)
    )
    assert torch.allclose(dist.level_probs(), by_hand, rtol=0, atol=1e-12)
    k = torch.arange(256, dtype=torch.float64)
    assert torch.allclose(dist.mean, (by_hand * k).sum(-1) / 256, rtol=0, atol=1e-12)


def test_a_far_away_level_has_its_asymptotic_log_probability_and_a_finite_gradient():
    """Where the plain formula gives log 0 = -inf, the stable one follows log sigmoid(t) ~ t."""
    mu = torch.tensor([[0.9]], requires_grad=True)
    log_scale = torch.tensor([[-8.0]], requires_grad=True)
    dist = DiscretizedLogisticMixture(torch.zeros(1, 1), mu, log_scale, 256, event_dims=1)
    lp = dist.log_prob(torch.tensor([[0.0]]))  # level 0: F(1/256), with (1/256 - 0.9) / e^-8 = -2659 scales away
    expected = (1 / 256 - 0.9) * math.exp(8)
    assert torch.isfinite(lp).all() and abs(lp.item() - expected) < 1e-3 * abs(expected)
    middle = dist.log_prob(torch.tensor([[100 / 256]]))  # a middle bin as far away: both terms count
    upper = (101 / 256 - 0.9) * math.exp(8)
    assert abs(middle.item() - upper) < 1e-3 * abs(upper)
    (lp + middle).sum().backward()
    assert torch.isfinite(mu.grad).all() and torch.isfinite(log_scale.grad).all()


def test_levels_are_read_from_both_8bit_scales_and_samples_stay_on_them():
    k = torch.arange(256.0)
    assert torch.equal(level_of(k / 256, 256), k.long()) and torch.equal(level_of(k / 255, 256), k.long())
    assert torch.equal(level_of(k / 256, 32), k.long() // 8)
    dist = _mixture(32, seed=3)
    draws = torch.stack([dist.sample(torch.Generator().manual_seed(s)) for s in range(2000)])
    assert torch.equal(draws * 32, (draws * 32).round()) and draws.min() >= 0 and draws.max() <= 31 / 32
    frequency = torch.stack([(draws == j / 32).double().mean(0) for j in range(32)], -1)
    assert (frequency - dist.level_probs().double()).abs().max() < 0.04  # 2,000 draws: s.e. at most 0.011


@pytest.mark.parametrize("name", ["discretized-logistic", "discretized-logistic-mixture", "categorical"])
def test_each_builder_reads_the_decoders_maps(name):
    options = LikelihoodOptions(levels=32, components=3)
    maps, build = LIKELIHOOD_BUILDERS[name]
    out = torch.randn(2, maps(options) * 3, 5, 5)  # three channels
    dist = build(out, 3, options)
    x = torch.randint(0, 32, (2, 3, 5, 5)).float() / 32
    assert dist.log_prob(x).shape == (2,) and dist.mean.shape == x.shape and dist.sample().shape == x.shape
    assert torch.allclose(dist.level_probs().sum(-1), torch.ones(2, 3, 5, 5), atol=1e-5)


def test_channel_coupling_coefficients_stay_in_minus_one_to_one_for_large_raw_outputs():
    """Catches the coupling built without tanh: the decoder's raw maps are unbounded, and a coefficient past 1
    lets green and blue's means run off with red's level. Raw outputs of +-100 give coefficients within
    [-1, 1], and the largest saturate there."""
    options = LikelihoodOptions(levels=256, components=2, coupled=True)
    maps, build = LIKELIHOOD_BUILDERS["discretized-logistic-mixture"]
    out = torch.randn(2, maps(options) * 3, 4, 4, generator=torch.Generator().manual_seed(0)) * 100
    dist = build(out, 3, options)
    assert dist.coupling.shape == (2, 3, 4, 4, 2)
    assert (dist.coupling.abs() <= 1).all() and dist.coupling.abs().max() > 0.99


def _model_with_a_known_table(likelihood, table_logits, levels=256):
    """A VAE whose decoder ignores z and whose q(z|x) is the prior: log w = log p(x) for every sample."""
    from vaekit.config import ModelConfig
    from vaekit.models.vae import build_model

    model = build_model(ModelConfig(likelihood=likelihood, image_shape=(1, 4, 4), hidden_dim=8, latent_dim=2), levels)
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.zero_()
        model.decoder.out.weight.zero_()
        model.decoder.out.bias.copy_(table_logits)
    return model


def test_bits_per_dim_of_a_factorised_categorical_with_a_known_table_is_exact():
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(16, 256, generator=g)  # pixel d's table over the levels: softmax(logits[d])
    # the decoder's output is (1, maps * C, H, W) with the maps of a channel together: (C, H, W, L) -> flat
    model = _model_with_a_known_table("categorical", logits.view(4, 4, 256).permute(2, 0, 1).reshape(-1))
    x = torch.randint(0, 256, (50, 1, 4, 4), generator=g).float() / 256
    log_table = torch.log_softmax(logits, -1)
    exact = log_table.gather(1, (x * 256).long().view(50, 16).T).T.sum(1).double()  # (50,)
    out = evaluate_split(model, x, num_importance_samples=7, batch_size=50, measure=("bits/dim", 256))
    assert out["log_likelihood"] == pytest.approx(exact.mean().item(), abs=1e-4)
    assert out["log_likelihood_bits_per_dim"] == pytest.approx(-exact.mean().item() / (16 * math.log(2)), abs=1e-5)
    stderr = (exact.std() / math.sqrt(50)).item() / (16 * math.log(2))
    assert out["log_likelihood_bits_per_dim_stderr"] == pytest.approx(stderr, rel=1e-3)
    assert out["elbo_bits_per_dim"] == pytest.approx(out["log_likelihood_bits_per_dim"], abs=1e-5)  # q = p: no gap


def test_a_densitys_dequantized_bits_per_dim_bound_the_discrete_models_it_induces():
    """Jensen: E_u[log p((k+u)/L)] - log L <= log of the bin's integral, pixel by pixel; the Gaussian's
    expectation over u is closed form, E[(x~ - mu)^2] = (c - mu)^2 + 1/(12 L^2) at the bin centre c."""
    g = torch.Generator().manual_seed(5)
    levels, mu = 256, 0.1 + 0.8 * torch.rand(16, generator=g, dtype=torch.float64)
    std = 0.06 + 0.2 * torch.rand(16, generator=g, dtype=torch.float64)  # inside the decoder's bounds
    k = torch.floor((mu + std * torch.randn(16, generator=g, dtype=torch.float64)) * levels).clamp(0, levels - 1)
    centre = (k + 0.5) / levels
    expected_log_density = (
        -0.5 * math.log(2 * math.pi) - std.log() - ((centre - mu) ** 2 + 1 / (12 * levels**2)) / (2 * std**2)
    )
    normal = torch.distributions.Normal(mu, std)
    bin_mass = normal.cdf((k + 1) / levels) - normal.cdf(k / levels)
    dequantized = bits_per_dim(expected_log_density.sum().item(), 16, levels)
    discrete = bits_per_dim(bin_mass.log().sum().item(), 16)
    assert dequantized >= discrete and dequantized - discrete < 0.01  # narrow bins: the bound is tight
    # the evaluator's own path: a Gaussian decoder that ignores z, on one dequantization per image
    logvar_raw = torch.logit(((2 * std.log()) + 6.0) / 8.0)  # bounded_logvar's inverse for [-6, 2]
    model = _model_with_a_known_table("gaussian", torch.cat([mu, logvar_raw]).float())
    x = (k / levels).float().view(1, 1, 4, 4).repeat(4000, 1, 1, 1)
    out = evaluate_split(model, x, num_importance_samples=2, batch_size=1000, measure=("dequantized bits/dim", 256))
    se = 3 * out["log_likelihood_bits_per_dim_stderr"]
    assert out["measure"] == "dequantized bits/dim" and abs(out["log_likelihood_bits_per_dim"] - dequantized) < se
    noisy = dequantize(x[:3], levels, torch.Generator().manual_seed(0))
    assert torch.equal(level_of(noisy, levels), level_of(x[:3], levels)) and not torch.equal(noisy, x[:3])


def test_float32_keeps_the_log_probability_of_a_narrow_bin_under_a_broad_logistic():
    """1 - exp(-1/(L s)) for s up to e^7 (a bin 1e-6 of the scale wide): computed as 1 - exp it loses 1e-3 nats."""
    log_scale = torch.linspace(1.0, 7.0, 25, dtype=torch.float64).view(25, 1)
    mu, x = torch.full_like(log_scale, 0.3), torch.full_like(log_scale, 100 / 256)
    exact = DiscretizedLogisticMixture(torch.zeros_like(mu), mu, log_scale, 256, event_dims=1).log_prob(x)
    single = DiscretizedLogisticMixture(torch.zeros(25, 1), mu.float(), log_scale.float(), 256, event_dims=1)
    assert (single.log_prob(x.float()).double() - exact).abs().max() < 1e-4


@pytest.mark.parametrize("log_scale", [5.0, 12.0, 20.0, -8.0])
@pytest.mark.parametrize("level", [0, 100, 255])
def test_the_gradient_is_finite_at_every_level_and_scale(log_scale, level):
    """A broad logistic (e^12: 1 - exp(-1/(L s)) rounds to 0 in float32) left torch.where's unused branch
    -inf with an infinite slope, and its NaN reached the gradient even of the edge bins (a run stopped on it)."""
    mu, scale = torch.tensor([[0.3]], requires_grad=True), torch.tensor([[log_scale]], requires_grad=True)
    lp = DiscretizedLogisticMixture(torch.zeros(1, 1), mu, scale, 256, event_dims=1).log_prob(
        torch.tensor([[level / 256]])
    )
    lp.sum().backward()
    assert torch.isfinite(lp).all() and torch.isfinite(mu.grad).all() and torch.isfinite(scale.grad).all()


def _coupled(levels, components=3, pixels=4, dtype=torch.float64, seed=0, log_scale_range=(-8.0, 7.0)):
    """A channel-coupled RGB mixture over `pixels` pixels (batch pixels, 3, 1, 1) with random parameters,
    coupling coefficients anywhere in (-1, 1)."""
    g = torch.Generator().manual_seed(seed)
    full = (pixels, 3, 1, 1, components)
    logits = torch.randn(pixels, 1, 1, 1, components, generator=g, dtype=dtype) * 3
    mu = torch.rand(full, generator=g, dtype=dtype) * 1.6 - 0.3
    low, high = log_scale_range
    log_scale = low + (high - low) * torch.rand(full, generator=g, dtype=dtype)
    coupling = torch.rand(full, generator=g, dtype=dtype) * 2 - 1
    return DiscretizedLogisticMixture(logits, mu, log_scale, levels, coupling=coupling)


def _every_triple(levels, dtype=torch.float64):
    """Every (r, g, b) level triple as images (L^3, 3, 1, 1) of k/L, red slowest."""
    k = torch.arange(levels, dtype=dtype) / levels
    r, g, b = torch.meshgrid(k, k, k, indexing="ij")
    return torch.stack([r, g, b], -1).reshape(-1, 3, 1, 1)


def _coupled_log_probs(dist, triples):
    """log p of every triple for every pixel of dist: (pixels, L^3), through log_prob's own path."""
    rows = []
    for i in range(dist.mu.shape[0]):
        one = DiscretizedLogisticMixture(
            *(t[i : i + 1].expand(len(triples), *t.shape[1:]) for t in (dist.logits, dist.mu, dist.log_scale)),
            dist.levels,
            coupling=dist.coupling[i : i + 1].expand(len(triples), *dist.coupling.shape[1:]),
        )
        rows.append(one.log_prob(triples))
    return torch.stack(rows)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_channel_coupled_mixture_sums_to_one_over_every_rgb_triple(dtype):
    dist = _coupled(32, dtype=dtype)  # 32,768 triples per pixel, scales from e^-8 to e^7
    total = _coupled_log_probs(dist, _every_triple(32, dtype)).exp().sum(-1)
    assert torch.allclose(total.double(), torch.ones(4, dtype=torch.float64), atol=1e-5, rtol=0)


def test_the_channel_coupled_mixture_is_a_sum_over_components_of_three_conditional_logistics():
    """p(r, g, b) = sum_k pi_k P(r | mu_r) P(g | mu_g + alpha r) P(b | mu_b + beta r + gamma g), by the plain
    CDF-difference table in float64 for each conditional; a swapped coefficient or a channel read from the
    wrong level would change it."""
    levels = 8
    dist = _coupled(levels, components=2, seed=5, log_scale_range=(-4.0, 0.0))
    triples = _every_triple(levels)
    got = _coupled_log_probs(dist, triples).exp()
    pi = torch.softmax(dist.logits[:, 0, 0, 0], -1)  # (pixels, K)
    alpha, beta, gamma = dist.coupling[:, :, 0, 0].unbind(1)  # (pixels, K) each
    mu, scale = dist.mu[:, :, 0, 0], dist.log_scale[:, :, 0, 0].exp()  # (pixels, 3, K)
    index = (triples[:, :, 0, 0] * levels).round().long()  # (L^3, 3)
    r, g = triples[:, 0, 0, 0], triples[:, 1, 0, 0]
    expected = torch.zeros_like(got)
    for k in range(2):
        for n in range(len(triples)):
            means = (
                mu[:, 0, k],
                mu[:, 1, k] + alpha[:, k] * r[n],
                mu[:, 2, k] + beta[:, k] * r[n] + gamma[:, k] * g[n],
            )
            p = pi[:, k]
            for c in range(3):
                p = p * _cdf_table(means[c], scale[:, c, k], levels)[:, index[n, c]]
            expected[:, n] += p
    assert torch.allclose(got, expected, rtol=0, atol=1e-12)


def test_channel_coupled_samples_follow_the_joint_distribution():
    levels = 4
    dist = _coupled(levels, components=2, pixels=2, seed=6, log_scale_range=(-3.0, -1.0))
    probs = _coupled_log_probs(dist, _every_triple(levels)).exp()  # (2, 64)
    many = [t.repeat(10_000, 1, 1, 1, 1) for t in (dist.logits, dist.mu, dist.log_scale, dist.coupling)]
    copies = DiscretizedLogisticMixture(*many[:3], levels, coupling=many[3])  # the 2 pixels, 10,000 times over
    draws = copies.sample(torch.Generator().manual_seed(0))  # (20000, 3, 1, 1)
    assert torch.equal(draws * levels, (draws * levels).round())
    codes = (draws[:, :, 0, 0] * levels).round().long() @ torch.tensor([levels**2, levels, 1])
    for pixel in range(2):
        frequency = torch.bincount(codes[pixel::2], minlength=levels**3).double() / 10_000
        assert (frequency - probs[pixel]).abs().max() < 0.02  # 10,000 draws: s.e. at most 0.005


def test_the_channel_coupled_mean_is_exact_without_coupling_and_close_away_from_the_edges():
    """E[x] against the exact mean by enumerating all 32^3 triples: equal where the coupling is 0, and within
    1e-3 (a thirtieth of a level) where the logistics sit inside (0.25, 0.75) and the coupling moves them by
    at most a quarter."""
    levels = 32
    triples = _every_triple(levels)
    for coupling_size, tolerance in ((0.0, 1e-12), (0.25, 1e-3)):
        dist = _coupled(levels, seed=7, log_scale_range=(-5.0, -3.5))
        dist.mu = 0.25 + dist.mu.clamp(0, 1) * 0.25
        dist.coupling = dist.coupling * coupling_size
        probs = _coupled_log_probs(dist, triples).exp()  # (pixels, L^3)
        exact = probs @ triples[:, :, 0, 0]  # (pixels, 3)
        assert torch.allclose(dist.mean[:, :, 0, 0], exact, rtol=0, atol=tolerance)


def test_channel_coupling_learns_a_dependence_that_separate_channels_cannot():
    """Free parameters of one RGB pixel fitted by Adam to levels with g = r and b = r: the coupled mixture
    reaches the entropy of r alone (log 8 nats) plus little, the per-channel mixtures about 3 log 8."""
    levels = 8
    r = torch.arange(levels, dtype=torch.float32).repeat(64) / levels
    x = torch.stack([r, r, r], 1)[:, :, None, None]  # (512, 3, 1, 1)
    fitted = {}
    for coupled in (False, True):
        torch.manual_seed(0)
        params = [torch.zeros(1, 1 if coupled else 3, 1, 1, 4, requires_grad=True)]
        params += [(torch.rand(1, 3, 1, 1, 4) * 0.5 + 0.25).requires_grad_(), torch.full((1, 3, 1, 1, 4), -2.0)]
        params[2].requires_grad_()
        params += [torch.zeros(1, 3, 1, 1, 4, requires_grad=True)] if coupled else []
        optimizer = torch.optim.Adam(params, lr=0.05)
        for _ in range(400):
            coupling = params[3].tanh().expand(len(x), -1, -1, -1, -1) if coupled else None
            logits, mu, log_scale = (p.expand(len(x), *p.shape[1:]) for p in params[:3])
            nll = -DiscretizedLogisticMixture(logits, mu, log_scale, levels, coupling=coupling).log_prob(x).mean()
            optimizer.zero_grad()
            nll.backward()
            optimizer.step()
        fitted[coupled] = nll.item()
    assert fitted[True] < math.log(levels) + 0.3 < 2.5 * math.log(levels) < fitted[False]


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
def test_channel_coupling_is_for_rgb_mixtures_and_rgb_models_train_with_it(architecture):
    from vaekit.config import ConfigError, ModelConfig
    from vaekit.models.vae import build_model

    with pytest.raises(ConfigError, match="likelihood_channel_coupling"):
        ModelConfig(likelihood="discretized-logistic-mixture", image_shape=(1, 8, 8), likelihood_channel_coupling=True)
    with pytest.raises(ConfigError, match="likelihood_channel_coupling"):
        ModelConfig(likelihood="discretized-logistic", image_shape=(3, 8, 8), likelihood_channel_coupling=True)
    config = ModelConfig(
        likelihood="discretized-logistic-mixture", likelihood_components=2, likelihood_channel_coupling=True,
        architecture=architecture, image_shape=(3, 8, 8), conv_channels=(8,), hidden_dim=16, latent_dim=2,
    )  # fmt: skip
    torch.manual_seed(0)
    model = build_model(config)
    g = torch.Generator().manual_seed(1)
    red = torch.randint(0, 256, (64, 1, 8, 8), generator=g).float() / 256
    x = torch.cat([red, red, (red + 0.25) % 1], 1)
    dist = model.decode(model.posterior(x).mean)
    assert dist.coupling.shape == (64, 3, 8, 8, 2) and dist.logits.shape == (64, 1, 8, 8, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        loss = -model.decode(model.posterior(x).mean).log_prob(x).mean()
        first = loss.item() if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < first - 0.2 * 192 * math.log(2)  # at least 0.2 bits/dim lower
