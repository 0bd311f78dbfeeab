"""beta-TCVAE's decomposition of the KL and DIP-VAE's penalty, against their definitions on small Gaussian
examples whose aggregate posterior is computed exactly over the whole (small) dataset."""

import math

import pytest
import torch

from vaekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from vaekit.errors import ConfigError
from vaekit.models.posteriors import GaussianPosterior
from vaekit.models.priors import StandardNormalPrior
from vaekit.models.vae import build_model
from vaekit.objectives import dip_penalty, kl_decomposition, log_minibatch_weights

N, J = 40, 3  # images in the "dataset", latent dimensions


def _dataset(logvar: float, seed: int = 0) -> GaussianPosterior:
    """The posteriors q(z|x_n) of all N images: means spread over [-2, 2], one log-variance for all."""
    g = torch.Generator().manual_seed(seed)
    mu = 4 * torch.rand(N, J, generator=g, dtype=torch.float64) - 2
    return GaussianPosterior(mu, torch.full((N, J), logvar, dtype=torch.float64))


def _exact_log_aggregate(data: GaussianPosterior, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log q(z) and sum_j log q(z_j), q = 1/N sum_n q(z|x_n) over the whole dataset: z (M, J) -> (M,), (M,)."""
    per_dim = data.at_samples().log_prob_by_layer(z.unsqueeze(0))[0]  # [n, i, j]
    joint = torch.logsumexp(per_dim.sum(-1), 0) - math.log(N)
    marginals = (torch.logsumexp(per_dim, 0) - math.log(N)).sum(-1)
    return joint, marginals


def _batch(data: GaussianPosterior, rows: torch.Tensor, seed: int) -> tuple[GaussianPosterior, torch.Tensor]:
    posterior = GaussianPosterior(data.mu[rows], data.logvar[rows])
    z, _ = posterior.rsample(1, torch.Generator().manual_seed(seed))
    return posterior, z[:, 0]


def test_the_three_terms_add_up_to_the_kl_and_its_mean_is_the_closed_form_within_its_standard_error():
    data, prior = _dataset(logvar=-0.5), StandardNormalPrior(J)
    rows = torch.arange(N)
    terms, exact = [], data.gaussian.kl_to_standard_normal()
    for seed in range(200):
        posterior, z = _batch(data, rows, seed)
        parts = kl_decomposition(posterior, z, prior, N, "mss")
        total = parts.mutual_information + parts.total_correlation + parts.dimension_kl
        mc_kl = posterior.log_prob(z) - prior.log_prob(z)
        torch.testing.assert_close(total, mc_kl)  # the telescoping sum, exactly
        terms.append(total)
    per_image = torch.stack(terms).mean(0)  # (N,): 200 draws per image
    stderr = torch.stack(terms).std(0) / math.sqrt(200)
    assert ((per_image - exact).abs() < 4 * stderr).all(), (per_image - exact, stderr)


def test_with_narrow_posteriors_minibatch_weighting_overstates_the_total_correlation_by_d_minus_1_log_m():
    """When each q(z|x_n) is far narrower than the gaps between images, q(z_i) = q(z_i|x_i) / N and likewise
    for each coordinate: the true TC is (D - 1) log N. Stratified sampling finds it; weighted sampling, with
    1 / (N M) for every term, finds (D - 1) log (N M)."""
    data, prior = _dataset(logvar=-20.0), StandardNormalPrior(J)
    rows = torch.randperm(N, generator=torch.Generator().manual_seed(1))[:10]  # M = 10
    posterior, z = _batch(data, rows, 2)
    stratified = kl_decomposition(posterior, z, prior, N, "mss").total_correlation
    weighted = kl_decomposition(posterior, z, prior, N, "mws").total_correlation
    joint, marginals = _exact_log_aggregate(data, z)
    torch.testing.assert_close(stratified, joint - marginals, atol=1e-6, rtol=0)
    torch.testing.assert_close(stratified, torch.full_like(stratified, (J - 1) * math.log(N)), atol=1e-6, rtol=0)
    torch.testing.assert_close(weighted - stratified, torch.full_like(stratified, (J - 1) * math.log(10)))


def test_the_stratified_estimate_of_the_aggregate_posterior_is_unbiased_and_the_weighted_one_is_not():
    """Over random minibatches holding image 0 (its sample fixed), the mean of the estimated q(z_0) is q(z_0)."""
    data = _dataset(logvar=-1.0)
    z0 = data.rsample(1, torch.Generator().manual_seed(3))[0][:1, 0]  # a draw from q(z|x_0), (1, J)
    exact = _exact_log_aggregate(data, z0)[0].exp().item()
    m, draws = 8, 4000
    g = torch.Generator().manual_seed(4)
    estimates = {"mss": [], "mws": []}
    for _ in range(draws):
        rows = torch.cat([torch.zeros(1, dtype=torch.long), 1 + torch.randperm(N - 1, generator=g)[: m - 1]])
        log_q = data.at_samples().log_prob_by_layer(z0.unsqueeze(0))[0][rows, 0].sum(-1)  # log q(z_0|x_row), (M,)
        for sampling in estimates:
            log_w = log_minibatch_weights(m, N, sampling)[0].double()
            estimates[sampling].append(torch.logsumexp(log_w + log_q, 0).exp().item())
    for sampling, values in estimates.items():
        t = torch.tensor(values, dtype=torch.float64)
        z_score = (t.mean().item() - exact) / (t.std().item() / math.sqrt(draws))
        assert (abs(z_score) < 4) == (sampling == "mss"), (sampling, t.mean().item(), exact, z_score)


def test_dip_penalties_are_zero_at_the_identity_and_have_the_stated_values():
    mu = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]]) * math.sqrt(2)  # Cov[mu] = I
    at_identity = GaussianPosterior(mu, torch.full((4, 2), -30.0))
    assert dip_penalty(at_identity, "dip-vae-i", 10.0, 100.0).item() == pytest.approx(0.0, abs=1e-6)
    assert dip_penalty(at_identity, "dip-vae-ii", 10.0, 10.0).item() == pytest.approx(0.0, abs=1e-6)
    correlated = GaussianPosterior(
        torch.tensor([[1.0, 1.0], [-1.0, -1.0]]), torch.zeros(2, 2)
    )  # Cov[mu] = [[1, 1], [1, 1]]
    assert dip_penalty(correlated, "dip-vae-i", 2.0, 5.0).item() == pytest.approx(2.0 * 2 * 1.0)  # two off-diagonal 1s
    # DIP-VAE-II adds E[sigma^2] = 1 to the diagonal: (2 - 1)^2 per coordinate
    assert dip_penalty(correlated, "dip-vae-ii", 2.0, 5.0).item() == pytest.approx(2.0 * 2 + 5.0 * 2)


@pytest.mark.parametrize("objective", ["beta-tcvae", "factor-vae", "dip-vae-i", "dip-vae-ii"])
@pytest.mark.parametrize("model", [{"prior": "vampprior"}, {"posterior_flow": "iaf"}, {"hierarchy": "two-layer"}])
def test_the_new_objectives_are_refused_where_their_terms_do_not_exist(objective, model):
    with pytest.raises(ConfigError, match=f"{objective} reads mu and sigma of q.z.x.: it needs a one-layer Gaussian"):
        RunConfig(ModelConfig(**model), DataConfig(), TrainConfig(objective=objective))


@pytest.mark.parametrize(
    ("train", "message"),
    [
        ({"objective": "beta-tcvae", "num_samples": 2}, "beta-tcvae takes one sample per image"),
        ({"objective": "factor-vae", "beta": 4.0}, "factor-vae has no beta"),
        ({"objective": "iwae", "warmup_steps": 10}, "iwae has no beta"),
        ({"objective": "beta-tcvae", "free_bits": 0.5}, "beta-tcvae takes no capacity or free bits"),
        ({"objective": "beta-tcvae", "gradient_estimator": "stl"}, "beta-tcvae takes reparameterization$"),
        ({"objective": "factor-vae", "optimizer": "adamax"}, "factor-vae trains its discriminator with Adam"),
        ({"objective": "dip-vae-i", "batch_size": 1}, "dip-vae-i penalises the covariance"),
        ({"objective": "reconstruction", "num_samples": 2}, "reconstruction takes one sample per image"),
        ({"objective": "elbo", "corruption": "gaussian"}, "elbo takes no corrupted input"),
        ({"objective": "iwae", "corruption": "masking"}, "iwae takes no corrupted input"),
    ],
)
def test_each_objective_is_refused_the_settings_it_declares_it_cannot_take(train, message):
    with pytest.raises(ConfigError, match=message.replace("$", "[.]$")):
        TrainConfig(**train)


@pytest.mark.parametrize("objective", ["beta-tcvae", "factor-vae", "dip-vae-i", "dip-vae-ii"])
def test_each_objective_trains_on_real_data_and_resumes_bit_for_bit(
    objective, tmp_path, tiny_config, resumes_bit_for_bit
):
    beta = {} if objective == "factor-vae" else {"train.beta": 4.0}  # FactorVAE has no beta (gamma weighs its TC)
    config = tiny_config.with_overrides({"train.objective": objective, **beta, "train.epochs": 2})
    full = resumes_bit_for_bit(config)
    assert full.metrics[-1]["valid_elbo"] > full.metrics[0]["valid_elbo"]
    if objective == "factor-vae":  # the discriminator and its optimiser state resume with the model
        from vaekit.checkpoint import read_tensors

        saved, _ = read_tensors(tmp_path / "full" / "checkpoint.safetensors")
        assert "model.discriminator.net.0.weight" in saved and "model.model.encoder.hidden.weight" in saved
    if objective == "beta-tcvae":  # the three parts, logged each epoch, add up to the KL (one sample per image)
        row = full.metrics[-1]
        parts = row["valid_mutual_information"] + row["valid_total_correlation"] + row["valid_dimension_kl"]
        assert abs(parts - row["valid_kl"]) < 1.0 and row["valid_total_correlation"] > -0.5


def test_the_factorvae_discriminator_estimates_the_total_correlation_of_a_correlated_gaussian():
    """z ~ N(0, [[1, rho], [rho, 1]]): TC = KL(q(z) || q(z_1) q(z_2)) = -1/2 log(1 - rho^2), 0.511 nats at
    rho = 0.8. A discriminator trained on z against its coordinate-permuted copies estimates it through
    the density ratio logit_0 - logit_1 (Kim & Mnih 2018, Section 3)."""
    from vaekit.models.discriminators import TotalCorrelationDiscriminator, density_ratio
    from vaekit.objectives import discriminator_loss

    torch.manual_seed(0)
    rho, g = 0.8, torch.Generator().manual_seed(1)
    scale = torch.linalg.cholesky(torch.tensor([[1.0, rho], [rho, 1.0]]))
    discriminator = TotalCorrelationDiscriminator(2, hidden_dim=64, layers=2)
    optimizer = torch.optim.Adam(discriminator.parameters(), lr=3e-3)
    for step in range(1500):
        z = torch.randn(512, 2, generator=g) @ scale.T
        loss = discriminator_loss(discriminator, z, torch.Generator().manual_seed(step))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        estimate = density_ratio(discriminator, torch.randn(50_000, 2, generator=g) @ scale.T).mean().item()
    assert estimate == pytest.approx(-0.5 * math.log(1 - rho**2), abs=0.06)


def test_the_factorvae_losses_each_reach_their_own_parameters_only():
    """The VAE's loss moves the VAE and not the discriminator; the discriminator's moves it and not the VAE."""
    from vaekit.models.discriminators import TotalCorrelationDiscriminator
    from vaekit.models.vae import build_model
    from vaekit.objectives import discriminator_loss, factor_vae_loss

    torch.manual_seed(0)
    model, discriminator = build_model(ModelConfig(hidden_dim=16, latent_dim=3)), TotalCorrelationDiscriminator(3, 8, 2)
    x = torch.bernoulli(torch.full((6, 1, 28, 28), 0.3), generator=torch.Generator().manual_seed(0))
    eps = torch.randn(6, 1, 3, generator=torch.Generator().manual_seed(1))
    loss, terms = factor_vae_loss(model, discriminator, x, 35.0, torch.Generator().manual_seed(2), eps)
    loss.backward()
    combined = {n: p.grad.clone() for n, p in discriminator.named_parameters()}
    encoder_grad = model.encoder.heads.weight.grad.clone()
    for p in list(model.parameters()) + list(discriminator.parameters()):
        p.grad = None
    z = model.posterior(x).rsample(1, eps=eps)[0][:, 0].detach()
    discriminator_loss(discriminator, z, torch.Generator().manual_seed(2)).backward()
    for name, p in discriminator.named_parameters():
        torch.testing.assert_close(p.grad, combined[name])  # nothing from the VAE's loss
    assert all(p.grad is None for p in model.parameters())  # z held fixed: nothing into the VAE
    assert encoder_grad.abs().sum() > 0 and torch.isfinite(terms.elbo).all()


def test_each_objectives_weight_multiplies_its_own_term():
    """beta-TCVAE: at beta = 1 the loss is -(reconstruction - Monte-Carlo KL), and raising beta adds
    (beta - 1) TC; FactorVAE: gamma multiplies the discriminator's TC estimate; DIP-VAE: lambda_d defaults to
    10 lambda_od (I) and lambda_od (II). A weight on the wrong term, or a flipped sign, fails here."""
    from vaekit.models.discriminators import TotalCorrelationDiscriminator, density_ratio
    from vaekit.models.vae import build_model
    from vaekit.objectives import dip_weights, factor_vae_loss, training_loss
    from vaekit.objectives.bounds import _log_likelihood

    torch.manual_seed(0)
    model = build_model(ModelConfig(hidden_dim=16, latent_dim=3)).double()
    x = torch.bernoulli(
        torch.full((8, 1, 28, 28), 0.3, dtype=torch.float64), generator=torch.Generator().manual_seed(0)
    )
    eps = torch.randn(8, 1, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        configs = {b: TrainConfig(objective="beta-tcvae", beta=b) for b in (1.0, 6.0)}
        losses = {b: training_loss(model, x, c, 0, eps=eps, dataset_size=100)[0] for b, c in configs.items()}
        posterior = model.posterior(x)
        z = posterior.rsample(1, eps=eps)[0]
        mc_kl = (posterior.at_samples().log_prob(z) - model.prior.log_prob(z))[:, 0]
        reconstruction = _log_likelihood(model, x, z)[:, 0]
        tc = kl_decomposition(posterior, z[:, 0], model.prior, 100, "mss").total_correlation
    torch.testing.assert_close(losses[1.0], -(reconstruction - mc_kl).mean())
    torch.testing.assert_close(losses[6.0] - losses[1.0], 5 * tc.mean())
    discriminator = TotalCorrelationDiscriminator(3, 8, 2).double()
    with torch.no_grad():
        at = {
            g: factor_vae_loss(model, discriminator, x, g, torch.Generator().manual_seed(3), eps)[0]
            for g in (0.0, 35.0)
        }
        ratio = density_ratio(discriminator, z[:, 0]).mean()
    torch.testing.assert_close(at[35.0] - at[0.0], 35.0 * ratio)
    assert dip_weights(TrainConfig(objective="dip-vae-i", dip_lambda_offdiag=2.0)) == (2.0, 20.0)
    assert dip_weights(TrainConfig(objective="dip-vae-ii", dip_lambda_offdiag=2.0)) == (2.0, 2.0)


def _log_normal(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, exp(logvar)) per coordinate, written out: broadcasting tensors -> their common shape."""
    return -0.5 * (math.log(2 * math.pi) + logvar + (z - mu) ** 2 / logvar.exp())


def test_with_the_whole_dataset_as_the_batch_stratified_sampling_gives_the_exact_tc_and_mi():
    """Catches log q(z_j) or log q(z) summed over the wrong axis of the pairwise densities (over the samples i
    instead of the posteriors k). With M = N every weight of stratified sampling is 1/N, so its estimate is the
    aggregate posterior itself: log q(z_i) = log 1/N sum_n q(z_i|x_n) and log q(z_ij) likewise, computed here by
    a direct float64 log-sum-exp over the N mixture components. Wide posteriors, so that the images overlap."""
    data, prior = _dataset(logvar=0.3, seed=5), StandardNormalPrior(J)
    rows = torch.randperm(N, generator=torch.Generator().manual_seed(6))  # every image, in some order
    posterior, z = _batch(data, rows, 7)
    parts = kl_decomposition(posterior, z, prior, N, "mss")
    per_dim = _log_normal(z[:, None, :], data.mu[None], data.logvar[None])  # [i, n, j]: (N, N, J)
    log_joint = torch.logsumexp(per_dim.sum(-1), dim=1) - math.log(N)  # log q(z_i), (N,)
    log_marginals = (torch.logsumexp(per_dim, dim=1) - math.log(N)).sum(-1)  # sum_j log q(z_ij), (N,)
    log_given_x = _log_normal(z, posterior.mu, posterior.logvar).sum(-1)  # log q(z_i | x_i), (N,)
    # to 1e-6: the weights are made in float32 (log 1/N to 1e-7), what a float32 run trains with
    torch.testing.assert_close(parts.total_correlation, log_joint - log_marginals, rtol=0, atol=1e-6)
    torch.testing.assert_close(parts.mutual_information, log_given_x - log_joint, rtol=0, atol=1e-6)
    assert parts.total_correlation.abs().mean() > 0.05  # overlapping posteriors: no term is trivially 0


def _small_model_and_batch():
    """A float64 MLP VAE with three latents, eight binary images and fixed noise eps (8, 1, 3)."""
    from vaekit.models.vae import build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(hidden_dim=16, latent_dim=3)).double()
    x = torch.bernoulli(
        torch.full((8, 1, 28, 28), 0.3, dtype=torch.float64), generator=torch.Generator().manual_seed(0)
    )
    eps = torch.randn(8, 1, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return model, x, eps


def test_beta_tcvae_warms_its_beta_up_as_the_elbo_objective_does():
    """Catches beta-TCVAE ignoring the KL warm-up (train.beta where beta_at(step, ...) belongs): beta = 6 with a
    warm-up of 10 steps weighs the TC by 6 * 5/10 = 3 at step 5, the loss of beta = 3 without warm-up, same noise."""
    from vaekit.objectives import training_loss

    model, x, eps = _small_model_and_batch()
    configs = {
        "warming": TrainConfig(objective="beta-tcvae", beta=6.0, warmup_steps=10),
        "three": TrainConfig(objective="beta-tcvae", beta=3.0),
        "six": TrainConfig(objective="beta-tcvae", beta=6.0),
    }
    with torch.no_grad():
        loss = {name: training_loss(model, x, c, 5, eps=eps, dataset_size=100)[0] for name, c in configs.items()}
    torch.testing.assert_close(loss["warming"], loss["three"], rtol=0, atol=0)
    assert (loss["six"] - loss["three"]).abs() > 1e-3  # beta moves this loss: the equality is not vacuous


def test_at_gamma_0_factorvae_gives_the_vae_the_gradients_of_the_plain_elbo():
    """Catches the discriminator's loss reaching the encoder (z where z.detach() belongs in the discriminator
    step): at gamma = 0 the VAE's part of FactorVAE's loss is -ELBO, so with the same noise every VAE
    parameter's gradient must be the plain ELBO's, whatever the discriminator's own loss is."""
    from vaekit.models.discriminators import TotalCorrelationDiscriminator
    from vaekit.objectives import elbo, factor_vae_loss

    model, x, eps = _small_model_and_batch()
    discriminator = TotalCorrelationDiscriminator(3, 8, 2).double()
    factor_vae_loss(model, discriminator, x, 0.0, torch.Generator().manual_seed(2), eps)[0].backward()
    factor_vae = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    (-elbo(model, x, eps=eps).elbo.mean()).backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(factor_vae[name], p.grad, rtol=1e-10, atol=1e-12, msg=name)
    assert discriminator.net[0].weight.grad.abs().sum() > 0  # the discriminator's loss was there, and trained it


def test_dip_vae_ii_adds_the_posterior_variance_to_the_diagonal():
    """Catches DIP-VAE-II adding sigma where sigma^2 belongs. Cov[mu] = I exactly (four means at (+-1, +-1))
    and logvar = log 1/4 make C = I + diag(1/4): no off-diagonal term, and with DIP-VAE-II's default weights
    at lambda_od = 1 (lambda_d = lambda_od = 1) the penalty is 2 * (1/4)^2 = 0.125 (sigma would give 0.5)."""
    from vaekit.objectives import dip_weights

    mu = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]], dtype=torch.float64)
    posterior = GaussianPosterior(mu, torch.full((4, 2), math.log(1 / 4), dtype=torch.float64))
    weights = dip_weights(TrainConfig(objective="dip-vae-ii", dip_lambda_offdiag=1.0))
    assert weights == (1.0, 1.0)
    assert dip_penalty(posterior, "dip-vae-ii", *weights).item() == 0.125
    assert dip_penalty(posterior, "dip-vae-i", 1.0, 10.0).item() == 0.0  # DIP-VAE-I reads Cov[mu] only


@pytest.mark.parametrize("variant", ["dip-vae-i", "dip-vae-ii"])
def test_the_dip_penalty_is_added_to_the_beta_weighted_elbo_loss(variant):
    """Catches the DIP penalty replacing beta * KL instead of adding to it: with the same noise and beta = 4,
    the DIP-VAE loss minus the elbo objective's loss is exactly the penalty at the batch's posteriors."""
    from vaekit.objectives import dip_weights, training_loss

    model, x, eps = _small_model_and_batch()
    dip = TrainConfig(objective=variant, beta=4.0, dip_lambda_offdiag=3.0)
    with torch.no_grad():
        loss = training_loss(model, x, dip, 0, eps=eps)[0]
        plain = training_loss(model, x, TrainConfig(beta=4.0), 0, eps=eps)[0]
        penalty = dip_penalty(model.posterior(x), variant, *dip_weights(dip))
    torch.testing.assert_close(loss - plain, penalty, rtol=1e-12, atol=1e-12)
    assert penalty > 1e-3 and plain > 1.0  # both terms are there


def test_the_factorvae_discriminator_trains_in_its_own_group_with_kim_and_mnihs_adam_settings():
    from vaekit.objectives import build_objective

    torch.manual_seed(0)
    model = build_model(ModelConfig(hidden_dim=16, latent_dim=3, image_shape=(1, 4, 4)))
    objective = build_objective(model, TrainConfig(objective="factor-vae", batch_size=8))
    vae, discriminator = objective.parameter_groups()
    assert vae["params"] == list(model.parameters()) and "lr" not in vae  # the configured rate
    assert discriminator["params"] == list(objective.discriminator.parameters())
    assert discriminator["lr"] == 1e-4 and discriminator["betas"] == (0.5, 0.9)


def test_the_epochs_kl_decomposition_estimates_the_aggregate_posterior_of_all_its_images():
    """evaluate_kl_decomposition over N images in minibatches of M < N: each minibatch's estimate of q(z) is
    that of all N images (N, not M, in the stratified weights), so it equals kl_decomposition batch by batch
    with N = len(x), at the same noise."""
    from vaekit.objectives import evaluate_kl_decomposition

    torch.manual_seed(0)
    model = build_model(ModelConfig(hidden_dim=16, latent_dim=3, image_shape=(1, 4, 4))).eval()
    x = torch.bernoulli(torch.full((40, 1, 4, 4), 0.4), generator=torch.Generator().manual_seed(1))
    figures = evaluate_kl_decomposition(model, x, 10, "mss", torch.Generator().manual_seed(2))
    generator, sums = torch.Generator().manual_seed(2), torch.zeros(3, dtype=torch.float64)
    with torch.no_grad():
        for start in range(0, 40, 10):
            posterior = model.posterior(x[start : start + 10])
            z, _ = posterior.rsample(1, generator)
            parts = kl_decomposition(posterior, z[:, 0], model.prior, 40, "mss")
            terms = (parts.mutual_information, parts.total_correlation, parts.dimension_kl)
            sums += torch.stack([t.sum() for t in terms]).double()
    expected = (sums / 40).tolist()
    assert [figures[k] for k in ("mutual_information", "total_correlation", "dimension_kl")] == pytest.approx(
        expected, abs=1e-9
    )
