"""The VQ-VAE (van den Oord et al. 2017): the vector quantiser's lookup, straight-through gradient, its two loss
terms and what each reaches, the moving-average codebook, the k-means start, dead-code restarts, perplexity, and
the bound under the uniform prior, all exact and on the CPU; then training, resume and evaluation on real MNIST."""

import math
import statistics

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
    stderr = by_hand.std().item() / math.sqrt(6)  # over the images, in bits/dim: s / sqrt(N), not s / N or s
    assert result["elbo_uniform_prior_bits_per_dim_stderr"] == pytest.approx(stderr, rel=1e-3)
    assert result["elbo_bits_per_dim_stderr"] == pytest.approx(stderr, rel=1e-3)  # the prior is the uniform one
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


@pytest.fixture
def vq_run(tmp_path, tiny_config, tiny_data):
    """A small VQ-VAE trained for one epoch on 600 binarized MNIST images (nats), its run folder."""
    from vaekit.training import train

    overrides = {**VQ, "model.latent_dim": 4 * 49, "model.conv_channels": (16, 16), "model.codebook_size": 32}
    overrides |= {"model.codebook_init": "kmeans", "model.pixelcnn_channels": 16, "model.pixelcnn_layers": 4}
    config = tiny_config.with_overrides({**overrides, "train.epochs": 1})
    train(config, tmp_path / "vq", progress=False, dataset=tiny_data)
    return tmp_path / "vq", config


def test_the_fitted_prior_gives_a_tighter_bound_than_the_uniform_one_and_its_fit_resumes_bit_for_bit(
    vq_run, tiny_data, tmp_path
):
    """train_prior fits the PixelCNN to the codes: under it the test bound is above the uniform prior's (in nats,
    higher is better), both from one evaluation; a fit cut after one epoch and resumed equals one of two epochs."""
    import shutil

    from vaekit import checkpoint, rundir
    from vaekit.evaluation import evaluate_split
    from vaekit.prior_training import PriorTraining, train_prior

    run, _ = vq_run
    cut = tmp_path / "cut"
    shutil.copytree(run, cut)
    two, one = (PriorTraining(epochs=n, batch_size=32, learning_rate=2e-3) for n in (2, 1))
    metrics = train_prior(run, two, progress=False, dataset=tiny_data)
    train_prior(cut, one, progress=False, dataset=tiny_data)
    train_prior(cut, two, resume=True, progress=False, dataset=tiny_data)
    (full, meta), (resumed, meta_resumed) = (checkpoint.read_tensors(r / rundir.PRIOR_FILE) for r in (run, cut))
    assert meta == meta_resumed and full.keys() == resumed.keys()
    assert all(torch.equal(full[k], resumed[k]) for k in full)
    assert metrics[-1]["valid_code_nll"] < min(metrics[0]["valid_code_nll"], 49 * math.log(32))
    model, _ = rundir.load_run(run)
    assert model.prior.label == "PixelCNN over 32 codes"
    result = evaluate_split(model, tiny_data.evaluation_observations("test"))
    assert result["elbo"] > result["elbo_uniform_prior"] + 10
    assert result["kl"] == pytest.approx(result["reconstruction"] - result["elbo"])
    assert result["elbo_uniform_prior"] == pytest.approx(result["reconstruction"] - 49 * math.log(32))


def test_a_fitted_prior_is_kept_from_replacement_and_set_aside_once_the_model_trains_on(vq_run, tiny_data):
    """A second fit without --resume or --overwrite is one sentence; after the VQ-VAE trains on, load_run leaves the
    old prior aside (the uniform one is used) and resuming its fit is refused, while --overwrite fits anew."""
    from vaekit import rundir
    from vaekit.errors import CheckpointError
    from vaekit.prior_training import PriorTraining, prior_fitted, train_prior
    from vaekit.training import train

    run, config = vq_run
    one = PriorTraining(epochs=1, batch_size=64)
    train_prior(run, one, progress=False, dataset=tiny_data)
    assert prior_fitted(run, 1) and not prior_fitted(run, 2)
    with pytest.raises(CheckpointError, match="already has a fitted prior .*--resume continues its fit, --overwrite"):
        train_prior(run, one, progress=False, dataset=tiny_data)
    train(config.with_overrides({"train.epochs": 2}), run, resume=True, progress=False, dataset=tiny_data)
    assert rundir.load_run(run)[0].prior.label == "uniform over 32 codes" and not prior_fitted(run, 1)
    with pytest.raises(CheckpointError, match="fitted to the codes of earlier weights"):
        train_prior(run, one, resume=True, progress=False, dataset=tiny_data)
    train_prior(run, one, overwrite=True, progress=False, dataset=tiny_data)
    assert rundir.load_run(run)[0].prior.label == "PixelCNN over 32 codes"


def test_train_prior_refuses_a_run_that_is_not_a_vq_vae(tmp_path, tiny_config, tiny_data):
    from vaekit.prior_training import train_prior
    from vaekit.training import train

    train(tiny_config.with_overrides({"train.epochs": 1}), tmp_path / "vae", progress=False, dataset=tiny_data)
    with pytest.raises(ConfigError, match="holds a vae run: train-prior fits the code prior of a VQ-VAE"):
        train_prior(tmp_path / "vae", dataset=tiny_data)


def test_the_mnist_vq_vae_trains_fits_its_prior_evaluates_and_draws_from_the_command_line(tmp_path, capsys):
    """The README's three commands on 8-bit MNIST (cut to 300 images): the bound in bits/dim under both priors, why
    there is no log p(x), the codebook's use; the pictures of both priors and of the codes; the report's note; the
    playground's one sentence."""
    from vaekit.cli import main

    run = str(tmp_path / "run")
    limits = ["--set", "data.train_limit=300", "--set", "data.eval_limit=100", "--set", "model.conv_channels=16,16"]
    assert main(["train", "--config", "mnist-vq-vae", "--epochs", "1", *limits, "--run-dir", run, "--no-progress"]) == 0
    assert "bits/dim" in capsys.readouterr().out
    assert main(["train-prior", run, "--epochs", "1", "--no-progress"]) == 0
    assert "prior fitted: valid -log p(c)" in capsys.readouterr().out
    assert main(["evaluate", run, "--samples", "100", "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert "elbo, uniform" in out and "prior            PixelCNN over 256 codes" in out and "codes used" in out
    assert "--samples and --iwae-k do not apply" in err and "no log p(x): q(z|x) is a point mass" in out
    images = tmp_path / "run" / "images"
    assert (images / "prior-samples.png").exists() and (images / "codes.png").exists()
    assert not (images / "traversals.png").exists()
    report = (tmp_path / "run" / "report.html").read_text()
    assert "No importance-sampled log p(x)" in report and "prior-samples.png" in report
    assert main(["playground", run, "--no-browser"]) == 2
    assert "the playground's sliders cannot sweep the latents of" in capsys.readouterr().err


def test_the_vandenoord2017_experiment_pairs_the_vq_vae_with_the_conv_vae(tmp_path, tiny_data):
    """The smoke budget end to end: both runs, the prior fitted before the evaluation, and the summary's table of
    the VQ-VAE's bounds paired image by image with the conv VAE's log p(x), as computed here from the files."""
    import dataclasses

    from vaekit import rundir
    from vaekit.experiments import ExperimentPlan
    from vaekit.experiments.runner import run_experiment

    small = dataclasses.replace(tiny_data, binarization="none")
    small = dataclasses.replace(small, train=type(small.train)(small.train.images[:200], small.train.labels[:200]))
    result = run_experiment(ExperimentPlan("vandenoord2017", "smoke"), tmp_path, 1, dataset=small)
    vq = {r["run"]: r for r in result["runs"]}["vq-vae"]
    assert vq["prior"] == "PixelCNN over 256 codes" and vq["log_likelihood"] is None
    a = rundir.find_evaluation(tmp_path / "conv-dmol", "test", 10)["log_likelihood_per_image"]
    b = rundir.find_evaluation(tmp_path / "vq-vae", "test", 10)["elbo_per_image"]
    d = [y - x for x, y in zip(a, b)]
    assert vq["bound_against_log_likelihood"] == pytest.approx(-sum(d) / len(d) / (784 * math.log(2)))
    table = (tmp_path / "summary.md").read_text()
    assert f"| vq-vae | PixelCNN over 256 codes | {vq['bound_bits_per_dim']:.4f} ±" in table
    assert f"{vq['bound_against_log_likelihood']:+.4f} ±" in table
    scale = 784 * math.log(2)  # bits/dim = -nats / (D ln 2); standard errors s / sqrt(n), s with n - 1
    assert vq["bound_bits_per_dim"] == pytest.approx(-statistics.fmean(b) / scale)
    assert vq["bound_bits_per_dim_stderr"] == pytest.approx(statistics.stdev(b) / math.sqrt(len(b)) / scale)
    assert vq["bound_against_log_likelihood_stderr"] == pytest.approx(statistics.stdev(d) / math.sqrt(len(d)) / scale)
    from vaekit.compare import compare, text_table  # the same pairing in vaekit compare, marked as a bound

    rows, _ = compare([tmp_path / "conv-dmol", tmp_path / "vq-vae"])
    assert rows[1]["bits_are_bound"] and rows[1]["paired_difference"] == pytest.approx(sum(d) / len(d))
    assert rows[1]["paired_bits_difference"] == pytest.approx(vq["bound_against_log_likelihood"])
    assert f"{vq['bound_bits_per_dim']:.4f} ±" in text_table(rows) and "*: the run's bound" in text_table(rows)


def test_the_kmeans_start_sets_the_ema_statistics_and_runs_once():
    """Under ema, one update from the k-means start keeps the cluster means (its moving sums start there, not at
    the random codebook); a second batch elsewhere moves no centre by k-means again (it runs on the first only)."""
    z_e, mean_a, mean_b, _ = _clusters()
    quantiser = VectorQuantiser(2, 2, update="ema", init="kmeans").double()
    quantiser.update(quantiser(z_e), torch.Generator().manual_seed(0))
    found = torch.tensor(sorted(quantiser.codebook.tolist()), dtype=torch.float64)
    assert torch.allclose(found, torch.stack([mean_b, mean_a]), atol=1e-3)
    gradient = VectorQuantiser(2, 2, init="kmeans").double()
    gradient.update(gradient(z_e), torch.Generator().manual_seed(0))
    before = gradient.codebook.detach().clone()
    gradient.update(gradient(z_e + 100.0), torch.Generator().manual_seed(1))
    assert torch.equal(gradient.codebook.detach(), before)


@pytest.mark.parametrize("update", ["gradient", "ema"])
def test_a_restart_moves_the_dead_codes_only_and_under_ema_they_stay_near_the_data(update):
    z_e, _, _, vectors = _clusters()
    quantiser = VectorQuantiser(4, 2, update=update, decay=0.8, restart=1.0).double()
    quantiser.codebook.data.copy_(torch.tensor([[0.0, 2.0], [1e3, 1e3], [-1e3, 1e3], [1e3, -1e3]]))
    quantiser.ema_sum.copy_(quantiser.codebook.data)
    for step in range(20):  # code 0 takes everything until the others are restarted
        quantiser.update(quantiser(z_e), torch.Generator().manual_seed(step))
    assert (quantiser.codebook[1:].abs() < 10).all()  # moved from 1e3 onto the data, and kept there
    if update == "gradient":
        assert torch.equal(quantiser.codebook[0].detach(), torch.tensor([0.0, 2.0], dtype=torch.float64))


def test_uniform_code_samples_follow_the_generator():
    prior = _vq_model().prior
    draw = lambda seed: prior.sample_codes(6, torch.Generator().manual_seed(seed), uniform=True)  # noqa: E731
    assert torch.equal(draw(3), draw(3)) and not torch.equal(draw(3), draw(4))


def test_the_prior_fit_sees_every_map_once_an_epoch_in_a_new_order_and_states_its_nll(vq_run, tiny_data):
    """Each epoch feeds all N training maps (the last partial batch too) in an order of its own; the validation
    -log p(c) is the mean of the network's -log_prob over the validation maps, per map, and in bits/dim /(784 ln 2)."""
    from vaekit import rundir
    from vaekit.models.pixelcnn import GatedPixelCNN
    from vaekit.models.quantiser import encode_codes
    from vaekit.prior_training import PriorTraining, code_nll, train_prior

    run, _ = vq_run
    seen, original = [], GatedPixelCNN.log_prob

    def record(self, codes):
        if self.training:
            seen.append(codes.clone())
        return original(self, codes)

    GatedPixelCNN.log_prob = record
    try:
        metrics = train_prior(run, PriorTraining(epochs=2, batch_size=32), progress=False, dataset=tiny_data)
    finally:
        GatedPixelCNN.log_prob = original
    per_epoch = len(seen) // 2
    first, second = torch.cat(seen[:per_epoch]), torch.cat(seen[per_epoch:])
    model, _ = rundir.load_run(run)
    codes = encode_codes(model, tiny_data.evaluation_observations("train"))
    assert len(first) == len(second) == len(codes) == 600 and not torch.equal(first, second)
    key = lambda maps: sorted(m.flatten().tolist() for m in maps)  # noqa: E731
    assert key(first) == key(codes) == key(second)  # every map once
    valid = encode_codes(model, tiny_data.evaluation_observations("valid"))
    by_hand = -model.prior.pixelcnn.log_prob(valid).double().mean().item()
    assert metrics[-1]["valid_code_nll"] == pytest.approx(by_hand, rel=1e-5)
    assert metrics[-1]["valid_code_bits_per_dim"] == pytest.approx(by_hand / (784 * math.log(2)), rel=1e-5)
    assert code_nll(model.prior.pixelcnn, valid) == pytest.approx(by_hand, rel=1e-6)


def test_the_cifar10_experiment_plans_the_papers_vq_vae_beside_the_conv_vae():
    """The paper's setup (Section 4.1): 8x8 codes of 64 values from 512 vectors, 256-unit convolutions, Adam 2e-4,
    batch 128, beside the published 4.67 bits/dim; the model builds (its training needs the user's archive)."""
    from vaekit.experiments import EXPERIMENTS, ExperimentPlan

    runs = dict(ExperimentPlan("vandenoord2017-cifar10", "long").runs())
    vq = runs["vq-vae"]
    assert set(runs) == {"conv-vae-dmol", "vq-vae"} and vq.train.epochs == 711
    assert (vq.model.codebook_size, vq.model.conv_channels, vq.train.learning_rate) == (512, (256, 256), 2e-4)
    assert build_model(vq.model).prior.code_shape == (64, 8, 8)
    assert EXPERIMENTS["vandenoord2017-cifar10"].PUBLISHED_BITS["vq-vae"] == 4.67


def test_train_prior_on_a_missing_folder_is_one_sentence(tmp_path):
    from vaekit.errors import CheckpointError
    from vaekit.prior_training import train_prior

    with pytest.raises(CheckpointError, match="is not a vaekit run folder"):
        train_prior(tmp_path / "missing")
    assert not (tmp_path / "missing").exists()  # nothing written where there was no run
