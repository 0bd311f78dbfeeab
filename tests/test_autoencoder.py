"""The autoencoder family: a point posterior, no prior, the reconstruction objective and its corruption
(plain and denoising autoencoders, Vincent et al. 2008), through the same loop, evaluation and pictures."""

import json

import pytest
import torch

from vaekit.batch import Batch
from vaekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from vaekit.errors import ConfigError
from vaekit.models.vae import build_model
from vaekit.objectives import build_objective
from vaekit.objectives.losses import corrupt

AUTOENCODER = {"model.family": "autoencoder", "train.objective": "reconstruction"}


def _autoencoder(seed=0, latent_dim=3):
    torch.manual_seed(seed)
    return build_model(ModelConfig(family="autoencoder", hidden_dim=32, latent_dim=latent_dim, image_shape=(1, 4, 4)))


def _images(n=64, seed=0):
    return torch.bernoulli(torch.full((n, 1, 4, 4), 0.4), generator=torch.Generator().manual_seed(seed))


def test_masking_zeroes_each_pixel_with_its_probability_and_leaves_the_rest_exactly():
    x = torch.rand(400, 1, 16, 16, generator=torch.Generator().manual_seed(0)) + 0.5  # no pixel is 0 before
    masked = corrupt(x, "masking", 0.25, torch.Generator().manual_seed(1))
    zeroed = masked == 0
    share, n = zeroed.double().mean().item(), x.numel()
    assert abs(share - 0.25) < 4 * (0.25 * 0.75 / n) ** 0.5  # binomial s.e. over 102,400 pixels: 0.0014
    assert torch.equal(masked[~zeroed], x[~zeroed])  # the kept pixels are untouched, not rescaled


def test_gaussian_corruption_adds_noise_of_the_given_std_and_none_or_level_0_change_nothing():
    x = torch.rand(200, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    noise = corrupt(x, "gaussian", 0.3, torch.Generator().manual_seed(1)) - x
    assert abs(noise.mean().item()) < 4 * 0.3 / noise.numel() ** 0.5
    assert abs(noise.std().item() - 0.3) < 0.01  # a std, not a variance (0.09) or a log-variance
    assert torch.equal(corrupt(x, "none", 0.3, torch.Generator()), x)
    assert torch.equal(corrupt(x, "masking", 0.0, torch.Generator()), x)


@pytest.mark.parametrize("corruption", ["none", "masking", "gaussian"])
def test_the_reconstruction_loss_is_the_clean_images_negative_log_likelihood_at_the_corrupted_images_code(corruption):
    """-(1/M) sum_i log p(x_i | f(x~_i)): the Bernoulli negative log-likelihood (binary cross-entropy, summed over
    pixels) of the clean image at the code of its corrupted copy, computed here from the networks directly.
    Catches scoring the corrupted image, encoding the clean one, a mean over pixels, or a KL term."""
    model, x = _autoencoder(), _images()
    level = 0.3 if corruption != "none" else 0.25  # a level applies with a corruption only
    train = TrainConfig(objective="reconstruction", corruption=corruption, corruption_level=level)
    loss, terms = build_objective(model, train).loss(x, 0, generator=torch.Generator().manual_seed(5))
    corrupted = corrupt(x, corruption, level, torch.Generator().manual_seed(5))
    code, _ = model.encoder(corrupted)  # the first head is the code
    logits = model.decode(code).logits
    direct = torch.nn.functional.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none")
    direct = direct.sum((1, 2, 3))  # nats per image, summed over pixels
    assert torch.allclose(loss, direct.mean(), atol=1e-5)
    assert torch.equal(terms.kl, torch.zeros(len(x))) and torch.equal(terms.elbo, terms.reconstruction)
    if corruption != "none":  # the code is the corrupted image's: the clean image's would give another loss
        clean = -model.decode(model.encoder(x)[0]).log_prob(x).mean()
        assert not torch.allclose(loss, clean)


def test_the_corruption_is_a_function_of_the_seed_and_the_step():
    model, x = _autoencoder(), _images()
    objective = build_objective(model, TrainConfig(objective="reconstruction", corruption="masking"))
    assert torch.equal(objective(Batch(x), 3)[0], objective(Batch(x), 3)[0])
    assert not torch.equal(objective(Batch(x), 3)[0], objective(Batch(x), 4)[0])


def test_the_autoencoder_declares_no_bound_and_the_pictures_it_cannot_draw():
    model = _autoencoder()
    assert model.family == "autoencoder" and not model.has_bound
    assert set(model.pictures_without) == {"samples"}  # the manifold is drawn for two latents only
    assert set(_autoencoder(latent_dim=2).pictures_without) == {"samples", "manifold"}
    posterior = model.posterior(_images(8))
    assert posterior.as_gaussian() is None and not posterior.has_density
    assert torch.equal(posterior.mean, model.encoder(_images(8))[0])
    with pytest.raises(ValueError, match="an autoencoder has no prior"):
        model.prior.log_prob(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="an autoencoder has no prior"):
        model.sample(4)


@pytest.mark.parametrize(
    ("model", "train", "message"),
    [
        (
            {"family": "autoencoder"},
            {},
            "elbo trains the vae family, and model.family is autoencoder: use reconstruction",
        ),
        ({}, {"objective": "reconstruction"}, "reconstruction trains the autoencoder family, and model.family is vae"),
        ({"family": "autoencoder", "prior": "vampprior"}, {"objective": "reconstruction"}, "model.prior = 'vampprior'"),
        (
            {"family": "autoencoder", "posterior_flow": "iaf"},
            {"objective": "reconstruction"},
            "leave model.posterior_flow",
        ),
        ({"family": "autoencoder", "hierarchy": "two-layer"}, {"objective": "reconstruction"}, "leave model.hierarchy"),
        ({}, {"corruption": "masking"}, "elbo takes no corrupted input: corruption applies to reconstruction"),
        ({"family": "autoencoder"}, {"objective": "reconstruction", "beta": 4.0}, "train.beta = 4.0 is invalid"),
    ],
)
def test_a_family_and_an_objective_that_do_not_belong_together_are_refused(model, train, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig(ModelConfig(**model), DataConfig(), TrainConfig(**train))


def test_a_masking_level_above_one_and_a_level_without_a_corruption_are_refused():
    with pytest.raises(ConfigError, match="train.corruption_level = 1.5 is invalid: use 0 to 1 for masking"):
        TrainConfig(objective="reconstruction", corruption="masking", corruption_level=1.5)
    with pytest.raises(ConfigError, match="corruption_level = 0.5 is invalid: it applies with train.corruption"):
        TrainConfig(objective="reconstruction", corruption_level=0.5)


@pytest.mark.parametrize("corruption", ["none", "masking"])
def test_the_autoencoders_train_on_real_mnist_and_resume_bit_for_bit(corruption, tiny_config, resumes_bit_for_bit):
    config = tiny_config.with_overrides({**AUTOENCODER, "train.corruption": corruption, "train.epochs": 2})
    full = resumes_bit_for_bit(config)
    first, last = full.metrics[0], full.metrics[-1]
    assert last["valid_reconstruction"] > first["valid_reconstruction"]  # log p(x|f(x)) rises: the error falls
    assert last["valid_kl"] == 0 and last["valid_elbo"] == last["valid_reconstruction"]


@pytest.mark.parametrize("preset", ["mnist-autoencoder", "mnist-denoising-autoencoder"])
def test_the_mnist_autoencoders_train_draw_and_evaluate_from_the_command_line(preset, tmp_path, capsys, monkeypatch):
    """vaekit train on the preset writes the pictures a model without a prior can draw, says which it cannot,
    and vaekit evaluate prints the reconstruction error and in one sentence why no bound is given."""
    from vaekit.cli import main

    run = str(tmp_path / "run")
    limits = ["--set", "data.train_limit=300", "--set", "data.eval_limit=100", "--set", "model.hidden_dim=64"]
    assert main(["train", "--config", preset, "--epochs", "1", *limits, "--run-dir", run, "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert "test log p(x|z)" in out and "an autoencoder has no prior p(z), so it has no ELBO" in out
    assert "test elbo" not in out and "no samples picture: an autoencoder has no prior" in err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())  # its reconstruction, and why no bound
    assert {"test_reconstruction", "no_bound"} <= set(summary) and not {"test_elbo", "test_kl"} & set(summary)
    written = {p.name for p in (tmp_path / "run" / "images").iterdir()}
    assert {"reconstructions.png", "interpolations.png", "traversals.png", "curves.png"} <= written
    assert "samples.png" not in written
    page = (tmp_path / "run" / "report.html").read_text()  # the report says why there is no bound
    assert "There is no bound: an autoencoder has no prior p(z)" in page and "validation log p(x|z)" in page
    assert main(["evaluate", run, "--samples", "50", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "log p(x|z)" in out and "an autoencoder has no prior p(z), so it has no ELBO" in out
    assert "elbo" not in out.lower().replace("no elbo", "") and "importance sampled" not in out
    saved = json.loads((tmp_path / "run" / "evaluation-test-k0.json").read_text())
    assert "elbo" not in saved and "log_likelihood" not in saved and saved["reconstruction"] < 0
    if preset == "mnist-autoencoder":  # beside a VAE, compare overlays the one figure both have
        from vaekit import compare

        vae = str(tmp_path / "vae")
        assert main(["train", "--epochs", "1", *limits, "--run-dir", vae, "--no-progress", "--no-pictures"]) == 0
        rows, metrics = compare.compare([vae, run])
        assert not rows[0]["no_bound"] and "an autoencoder has no prior" in rows[1]["no_bound"]
        drawn = []
        monkeypatch.setattr(compare, "elbo_curves", lambda m, path, title, keys: drawn.append((title, keys)) or path)
        compare.curves_png(metrics, tmp_path / "c.png", rows)
        assert drawn[0][1] == ("valid_reconstruction",) and "an autoencoder has no ELBO" in drawn[0][0]


@pytest.mark.parametrize("corruption", ["none", "masking"])
def test_the_dsprites_autoencoders_get_their_disentanglement_metrics(corruption, tmp_path, capsys, monkeypatch):
    """The metrics read the codes z = f(x) as a VAE's posterior means; Chen et al.'s MIG, which needs a Gaussian
    q(z|x), is left out."""
    from vaekit import disentanglement
    from vaekit.cli import main

    monkeypatch.setattr(
        disentanglement, "SCORE_POINTS", {"train": 60, "test": 40, "batch_size": 8, "variance_points": 500}
    )
    preset = "dsprites-denoising-autoencoder" if corruption == "masking" else "dsprites-autoencoder"
    run = str(tmp_path / "run")
    limits = ["--set", "data.train_limit=300", "--set", "data.eval_limit=200", "--set", "model.hidden_dim=32"]
    assert main(["train", "--config", preset, "--epochs", "1", *limits, "--run-dir", run, "--no-progress"]) == 0
    capsys.readouterr()
    args = ["evaluate", run, "--samples", "0", "--disentanglement", "--grid-classes", "3", "--score-points", "60"]
    assert main([*args, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "so it has no ELBO and no log p(x)" in out and "factor_vae_score" in out
    # no grid in the name: the grid serves Chen et al.'s MIG alone, which needs a Gaussian q(z|x)
    saved = json.loads((tmp_path / "run" / "evaluation-test-k0-disentanglement-n200-p60.json").read_text())
    figures = saved["disentanglement"]
    assert all(0 <= figures[name] <= 1 for name in disentanglement.METRICS if name != "mig_posterior"), figures
    assert "mig_posterior" not in figures or figures["mig_posterior"] is None
    assert (tmp_path / "run" / "images" / "factors.png").exists()


def test_an_autoencoders_units_are_active_by_burda_et_al_s_absolute_rule():
    """A point posterior has no noise to measure a unit's activity against (E_x Var_q = 0, which would make any
    code that moves at all active): its units are active where Var_x(code) > 0.01, Burda et al.'s rule."""
    from vaekit.diagnostics import latent_diagnostics

    model, x = _autoencoder(), _images(200)
    with torch.no_grad():
        model.encoder.heads.weight[:3].mul_(0.0)  # codes 0-2 constant: only their bias
        model.encoder.heads.weight[0].add_(0.001)  # code 0 moves a little: Var_x far below 0.01
    latents = latent_diagnostics(model, x)
    assert latents.posterior_variance is None
    assert torch.equal(latents.active, latents.activity > 0.01)
    assert not latents.active[:3].any() and 0 < latents.activity[0] < 0.01


def test_an_autoencoders_traversals_sweep_each_code_over_its_own_spread(tmp_path, monkeypatch):
    """A code has no N(0, I) prior to set its scale: the traversal of z_j runs over mean_j +- 3 std_j of the
    codes, ranked by their variance (no KL per dimension)."""
    from vaekit.diagnostics import latent_diagnostics
    from vaekit.plots import traversals

    model, x = _autoencoder(), _images(200)
    latents = latent_diagnostics(model, x)
    assert latents.kl_per_dim is None
    decoded = []
    real = model.decode
    monkeypatch.setattr(model, "decode", lambda z: (decoded.append(z.clone()), real(z))[1])
    traversals(model, x[:1], latents, tmp_path / "t.png", steps=5)
    codes = latents.posterior_means
    j = int(latents.activity.argmax())  # the first row: the code that moves most
    swept = decoded[0][:, j]
    centre, scale = codes[:, j].mean(), codes[:, j].std()
    assert torch.allclose(swept, centre + scale * torch.linspace(-3, 3, 5), atol=1e-5)
