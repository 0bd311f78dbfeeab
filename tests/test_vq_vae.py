"""The VQ-VAE (van den Oord et al. 2017): the vector quantiser's lookup, straight-through gradient, its two loss
terms and what each reaches, the moving-average codebook, the k-means start, dead-code restarts, perplexity, and
the bound under the uniform prior, all exact and on the CPU; then training, resume and evaluation on real MNIST."""

import math

import pytest
import torch

from vaekit.config import ModelConfig, RunConfig, TrainConfig
from vaekit.errors import ConfigError
from vaekit.models.quantiser import EMA_EPSILON, Quantised, VectorQuantiser, perplexity
from vaekit.models.vae import build_model
from vaekit.objectives import build_objective

VQ = {"model.family": "vq-vae", "train.objective": "vq-vae", "model.architecture": "resnet"}


def _quantiser(k=6, d=3, seed=0, **options):
    torch.manual_seed(seed)
    quantiser = VectorQuantiser(k, d, **options).double()
    with torch.no_grad():
        quantiser.codebook.copy_(torch.randn(k, d, dtype=torch.float64))
    return quantiser


def _z_e(shape=(2, 3, 4, 5), seed=1):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _vq_model(seed=0, **model):
    torch.manual_seed(seed)
    options = dict(architecture="resnet", image_shape=(1, 8, 8), conv_channels=(8, 8), conv_residual_blocks=1)
    return build_model(ModelConfig(family="vq-vae", latent_dim=2 * 4, codebook_size=5, **{**options, **model}))


def test_the_forward_pass_returns_the_nearest_codebook_vector_bit_for_bit():
    """z_q = e_k, k = argmin_j ||z_e - e_j||^2 by brute force: catches an argmax, a transposed distance, cdist's
    rounding or a straight-through sum z_e + (z_q - z_e) that is z_q only up to rounding."""
    quantiser, z_e = _quantiser(), _z_e()
    quantised = quantiser(z_e)
    vectors = z_e.permute(0, 2, 3, 1).reshape(-1, 3)
    brute = torch.stack([((v - quantiser.codebook) ** 2).sum(1).argmin() for v in vectors]).view(2, 4, 5)
    assert torch.equal(quantised.codes, brute)
    expected = quantiser.codebook.detach()[brute].permute(0, 3, 1, 2)
    assert torch.equal(quantised.z_q, expected) and torch.equal(quantised.straight_through, expected)


def test_the_straight_through_gradient_copies_dl_dz_q_to_z_e_and_gives_the_codebook_none():
    """dL/dz_e = dL/dz_q exactly (Eq. 3's sg[.]), and the decoder's path leaves the codebook untouched: catches a
    missing stop-gradient (the codebook would get the decoder's gradient) or a gradient lost to z_e."""
    quantiser, z_e = _quantiser(), _z_e().requires_grad_()
    weights = _z_e(seed=7)
    z_q = quantiser(z_e).straight_through
    (weights * z_q.sin()).sum().backward()  # any loss of z_q: dL/dz_q = weights * cos(z_q)
    assert torch.equal(z_e.grad, weights * z_q.detach().cos())
    assert quantiser.codebook.grad is None


def test_the_codebook_loss_moves_only_the_codebook_by_2_e_minus_z_e_on_the_codes_it_assigns():
    quantiser, z_e = _quantiser(), _z_e().requires_grad_()
    with torch.no_grad():
        quantiser.codebook[5] = 100.0  # far from every z_e: assigned nothing
    quantised = quantiser(z_e)
    quantised.codebook_loss().sum().backward()
    assert z_e.grad is None  # sg[z_e]: the encoder gets nothing from it
    vectors, codes = z_e.detach().permute(0, 2, 3, 1).reshape(-1, 3), quantised.codes.flatten()
    expected = torch.zeros_like(quantiser.codebook)
    for v, k in zip(vectors, codes):
        expected[k] += 2 * (quantiser.codebook.detach()[k] - v)
    assert torch.allclose(quantiser.codebook.grad, expected, rtol=0, atol=1e-12)
    unused = torch.ones(6, dtype=torch.bool)
    unused[codes] = False
    assert unused.any() and (quantiser.codebook.grad[unused] == 0).all()


def test_the_commitment_loss_moves_only_the_encoder_by_2_beta_z_e_minus_e_through_the_objective():
    """The vq-vae objective's gradient at the encoder's output is the straight-through one plus 2 beta (z_e - e)
    per image / M, and its gradient at the codebook is the codebook loss's alone: catches the two terms swapped,
    beta on the codebook term, or the codebook loss taken at the straight-through output (no codebook motion)."""
    model = _vq_model().double()
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    model.eval()  # no quantiser update: the gradients alone
    beta = 0.25
    objective = build_objective(model, TrainConfig(objective="vq-vae", commitment_weight=beta))
    captured = {}
    quantiser = model.inference.quantiser
    original = quantiser.forward

    def keep(z_e):
        z_e.retain_grad()
        captured["q"] = original(z_e)
        return captured["q"]

    quantiser.forward = keep
    loss, terms = objective.loss(x, 0)
    loss.backward()
    q: Quantised = captured["q"]
    # the reconstruction's gradient at z_q, by autograd on the decoder alone
    z_q = q.z_q.detach().requires_grad_()
    (-model.decode(z_q.flatten(1)).log_prob(x).mean()).backward()
    commitment = 2 * beta * (q.z_e.detach() - q.z_q.detach()) / len(x)
    assert torch.allclose(q.z_e.grad, z_q.grad + commitment, rtol=1e-10, atol=1e-12)
    expected = torch.zeros_like(quantiser.codebook)
    vectors = q.z_e.detach().permute(0, 2, 3, 1).reshape(-1, expected.shape[1])
    for v, k in zip(vectors, q.codes.flatten()):
        expected[k] += 2 * (quantiser.codebook.detach()[k] - v) / len(x)
    assert torch.allclose(quantiser.codebook.grad, expected, rtol=1e-10, atol=1e-12)
    n = 4  # positions of the 2x2 code map
    assert torch.allclose(terms.kl, torch.full((4,), n * math.log(5), dtype=torch.float64))


def _clusters(n=40):
    """Two tight clusters of 2-D vectors around (5, 5) and (-5, 0) as a (1, 2, 1, 2n) code map, and their means."""
    g = torch.Generator().manual_seed(3)
    a = torch.tensor([5.0, 5.0], dtype=torch.float64) + 0.1 * torch.randn(n, 2, generator=g, dtype=torch.float64)
    b = torch.tensor([-5.0, 0.0], dtype=torch.float64) + 0.1 * torch.randn(n, 2, generator=g, dtype=torch.float64)
    vectors = torch.cat([a, b])
    return vectors.T.reshape(1, 2, 1, 2 * n), a.mean(0), b.mean(0), vectors


def test_the_ema_update_fed_one_batch_t_times_matches_its_closed_form_and_reaches_the_cluster_means():
    """N_t = gamma^t N_0 + (1 - gamma^t) n_i and m_t = gamma^t m_0 + (1 - gamma^t) s_i (Appendix A.1), e = m / N~
    with Laplace smoothing; the codes stay put, so the closed form holds at every t. A third code, never used,
    decays towards 0 but stays finite. Catches gamma and 1 - gamma swapped, a missing smoothing, a sum for a mean."""
    gamma = 0.9
    quantiser = VectorQuantiser(3, 2, update="ema", decay=gamma).double()
    start = torch.tensor([[4.0, 4.0], [-4.0, 1.0], [100.0, -100.0]], dtype=torch.float64)
    quantiser.codebook.copy_(start)
    quantiser.ema_sum.copy_(start)  # N_0 = 1 per code, m_0 = e_0
    quantiser.started.fill_(True)
    z_e, mean_a, mean_b, vectors = _clusters()
    sums, sizes = torch.stack([vectors[:40].sum(0), vectors[40:].sum(0), torch.zeros(2)]), torch.tensor([40.0, 40, 0])
    for t in range(1, 31):
        quantiser.update(quantiser(z_e), torch.Generator())
        count = gamma**t + (1 - gamma**t) * sizes.double()
        total = (gamma**t + (1 - gamma**t) * sizes.double()).sum()
        smoothed = (count + EMA_EPSILON) / (total + 3 * EMA_EPSILON) * total
        expected = (gamma**t * start + (1 - gamma**t) * sums) / smoothed.unsqueeze(1)
        assert torch.allclose(quantiser.codebook, expected, rtol=1e-12, atol=0), t
    for _ in range(300):
        quantiser.update(quantiser(z_e), torch.Generator())
    assert torch.allclose(quantiser.codebook[0], mean_a, atol=1e-4)
    assert torch.allclose(quantiser.codebook[1], mean_b, atol=1e-4)
    assert torch.isfinite(quantiser.codebook).all() and quantiser.codebook[2].abs().max() < 100


def test_the_ema_codebook_is_a_buffer_outside_the_optimiser_and_in_the_state_dict():
    model = _vq_model(codebook_update="ema")
    quantiser = model.inference.quantiser
    objective = build_objective(model, TrainConfig(objective="vq-vae"))
    trained = {id(p) for group in objective.parameter_groups() for p in group["params"]}
    assert id(quantiser.codebook) not in trained and not quantiser.codebook.requires_grad
    assert {"ema_count", "ema_sum", "usage", "codebook"} <= {k.split(".")[-1] for k in model.state_dict()}
    gradient = _vq_model()
    params = {
        id(p)
        for group in build_objective(gradient, TrainConfig(objective="vq-vae")).parameter_groups()
        for p in group["params"]
    }
    assert id(gradient.inference.quantiser.codebook) in params


def test_the_kmeans_start_finds_the_clusters_of_the_first_batch():
    quantiser = VectorQuantiser(2, 2, init="kmeans").double()
    z_e, mean_a, mean_b, _ = _clusters()
    quantiser.update(quantiser(z_e), torch.Generator().manual_seed(0))
    found = sorted(quantiser.codebook.tolist())
    assert torch.allclose(torch.tensor(found, dtype=torch.float64), torch.stack([mean_b, mean_a]), atol=1e-12)
    assert bool(quantiser.started)


def test_a_dead_code_is_restarted_from_a_batch_vector_deterministically_and_perplexity_rises_from_1():
    """Every vector goes to code 0 (the others are far away): perplexity 1. With restarts at usage below 1, the
    dead codes move onto vectors of the batch (the same ones under the same seed, others under another), and
    the next assignment uses several codes."""
    z_e, _, _, vectors = _clusters()

    def run(seed):
        quantiser = VectorQuantiser(4, 2, decay=0.8, restart=1.0).double()  # usage 20 -> below 1 in 14 steps
        quantiser.codebook.data.copy_(torch.tensor([[0.0, 2.0], [1e3, 1e3], [-1e3, 1e3], [1e3, -1e3]]))
        quantised = quantiser(z_e)
        assert perplexity(quantiser.counts(quantised.codes)) == pytest.approx(1.0)
        for step in range(60):
            quantiser.update(quantiser(z_e), torch.Generator().manual_seed(seed + step))
        return quantiser

    first, again, other = run(0), run(0), run(100)
    assert torch.equal(first.codebook, again.codebook) and not torch.equal(first.codebook, other.codebook)
    restarted = first.codebook[1:].detach()
    assert all((vectors == row).all(1).any() for row in restarted)  # each is one of the batch's vectors
    assert perplexity(first.counts(first(z_e).codes)) > 1.5


def test_perplexity_is_k_under_even_use_and_1_under_collapse():
    assert perplexity(torch.full((16,), 7.0)) == pytest.approx(16.0, rel=1e-12)
    assert perplexity(torch.tensor([0.0, 30.0, 0.0, 0.0])) == pytest.approx(1.0, rel=1e-12)
    assert perplexity(torch.tensor([1.0, 1.0, 2.0])) == pytest.approx(math.exp(1.5 * math.log(2)), rel=1e-12)


def test_the_uniform_prior_bound_is_minus_log_p_x_given_z_q_plus_n_ln_k_over_d_ln_2():
    """On a hand-computed case: the categorical likelihood's log p(x|z_q) from the decoder's logits, N ln K for the
    7x7... here 2x2 map of K = 5 codes, divided by D ln 2 with D the pixels. Catches ln for log2, the prior's cost
    dropped or counted per dimension, or K and N swapped."""
    from vaekit.evaluation import evaluate_split

    model = _vq_model(likelihood="categorical").eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (6, 1, 8, 8), generator=g).float() / 255
    result = evaluate_split(model, x, num_importance_samples=10, measure=("bits/dim", 256))
    logits = model.decoder(model.posterior(x).mean).logits  # (6, 1, 8, 8, 256)
    levels = (x * 255).round().long()
    log_px = torch.log_softmax(logits.double(), -1).gather(-1, levels.unsqueeze(-1)).sum((1, 2, 3, 4))
    by_hand = (-log_px + 4 * math.log(5)) / (64 * math.log(2))
    assert result["elbo_bits_per_dim"] == pytest.approx(by_hand.mean().item(), rel=1e-6)
    assert result["elbo_uniform_prior_bits_per_dim"] == pytest.approx(by_hand.mean().item(), rel=1e-6)
    per_image = torch.tensor(result["elbo_per_image"], dtype=torch.float64)
    assert torch.allclose(per_image, log_px - 4 * math.log(5), atol=1e-4)
    assert "log_likelihood" not in result and "point mass" in result["no_marginal"]
    assert result["codebook_size"] == 5 and 1 <= result["codes_used"] <= 5


def test_the_vq_vae_needs_a_spatial_code_map_and_its_own_objective():
    with pytest.raises(ConfigError, match="a VQ-VAE quantises a spatial code map"):
        ModelConfig(family="vq-vae", architecture="mlp", latent_dim=49)
    with pytest.raises(ConfigError, match="a VQ-VAE's code map has 49 positions"):
        ModelConfig(family="vq-vae", architecture="conv", latent_dim=50)
    with pytest.raises(ConfigError, match="vq-vae trains the vq-vae family, and model.family is vae"):
        RunConfig(train=TrainConfig(objective="vq-vae"))
    with pytest.raises(ConfigError, match="commitment_weight = 0.5 is invalid: it weighs the vq-vae objective"):
        TrainConfig(commitment_weight=0.5)


@pytest.mark.parametrize("update", ["gradient", "ema"])
def test_the_vq_vae_trains_on_real_mnist_and_resumes_bit_for_bit(update, tiny_config, resumes_bit_for_bit):
    """Two epochs with the k-means start and restarts (the quantiser's state in the checkpoint): the bound rises,
    and the run cut after epoch 1 and resumed ends with the same weights and buffers."""
    overrides = {**VQ, "model.latent_dim": 4 * 49, "model.conv_channels": (16, 16), "model.codebook_size": 32}
    overrides |= {"model.codebook_update": update, "model.codebook_init": "kmeans", "model.codebook_restart": 0.5}
    full = resumes_bit_for_bit(tiny_config.with_overrides({**overrides, "train.epochs": 2}))
    first, last = full.metrics[0], full.metrics[-1]
    assert last["valid_elbo"] > first["valid_elbo"]
    assert last["valid_kl"] == pytest.approx(49 * math.log(32))  # the uniform prior's N ln K
    assert 1 <= last["valid_perplexity"] <= 32 and 1 <= last["valid_codes_used"] <= 32
