"""Two stochastic layers: a linear-Gaussian hierarchy whose log p(x) is exact, and the built model."""

import math

import pytest
import torch
from torch import nn

from vaekit.config import ModelConfig
from vaekit.evaluation import importance_sampled_log_likelihood
from vaekit.likelihoods import GaussianLikelihood
from vaekit.models.encoders import GaussianMLP
from vaekit.models.hierarchy import BottomDecoder, HierarchicalPrior
from vaekit.models.posteriors import LadderInference, TwoLayerInference
from vaekit.models.priors import StandardNormalPrior
from vaekit.models.vae import VAE, build_model
from vaekit.objectives import elbo

D, J1, J2 = 3, 1, 1  # pixels, lower and upper latents: one each, so the exact posteriors are diagonal


def _linear_gaussian(net: GaussianMLP, seed: int) -> GaussianMLP:
    """mu linear in the input, logvar a constant: a linear-Gaussian conditional."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        w, b = net.heads.weight, net.heads.bias
        w.copy_(torch.randn(w.shape, generator=g))
        b.copy_(0.3 * torch.randn(b.shape, generator=g))
        w[w.shape[0] // 2 :] = 0  # the logvar half does not depend on the input
    return net


class LinearGaussianDecoder(nn.Module):
    """p(x|z1) = N(B z1 + b, diag exp(logvar)) over images of shape (1, 1, D)."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.B, self.b = torch.randn(D, J1, generator=g), 0.2 * torch.randn(D, generator=g)
        self.logvar = torch.tensor([-0.5, 0.0, 0.4])

    def forward(self, z1: torch.Tensor) -> GaussianLikelihood:
        mu = (z1 @ self.B.T + self.b).view(-1, 1, 1, D)
        return GaussianLikelihood(mu, self.logvar.expand_as(mu), event_dims=3)


class LinearEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = _linear_gaussian(GaussianMLP(D, 1, J1, 0, "tanh"), 4)

    def forward(self, x: torch.Tensor):
        return self.net(x.flatten(1))


def _model() -> VAE:
    inference = TwoLayerInference(_linear_gaussian(GaussianMLP(J1, 1, J2, 0, "tanh"), 1), J2)  # q(z2|z1)
    prior = HierarchicalPrior(
        [J1, J2], StandardNormalPrior(J2), nn.ModuleList([_linear_gaussian(GaussianMLP(J2, 1, J1, 0, "tanh"), 2)])
    )
    decoder = BottomDecoder(LinearGaussianDecoder(), J1)
    return VAE(LinearEncoder(), decoder, prior, inference)


def _exact_log_likelihood(model: VAE, x: torch.Tensor) -> torch.Tensor:
    """z2 ~ N(0, I), z1 = A z2 + a + noise, x = B z1 + b + noise: x is Gaussian with mean B a + b and
    covariance B (A A^T + D1) B^T + D0."""
    A, a, D1, B, b, D0 = _parameters(model)
    cov = B @ (A @ A.T + D1) @ B.T + D0
    return torch.distributions.MultivariateNormal(B @ a + b, cov).log_prob(x.flatten(1).double())


def _parameters(model: VAE):
    heads = model.prior.conditionals[0].heads
    A, a, D1 = heads.weight[:J1].double(), heads.bias[:J1].double(), torch.diag(heads.bias[J1:].double().exp())
    dec = model.decoder.decoder
    return A, a, D1, dec.B.double(), dec.b.double(), torch.diag(dec.logvar.double().exp())


def _set_exact_posteriors(model: VAE, shift: float = 0.0) -> None:
    """q(z1|x) = p(z1|x) and q(z2|z1) = p(z2|z1) = p(z2|z1, x), both Gaussian and linear; `shift`
    moves q(z1|x)'s mean away from the exact one."""
    A, a, D1, B, b, D0 = _parameters(model)
    S1 = A @ A.T + D1  # z1's marginal covariance
    cov1 = torch.linalg.inv(torch.linalg.inv(S1) + B.T @ torch.linalg.inv(D0) @ B)
    M, m = cov1 @ B.T @ torch.linalg.inv(D0), cov1 @ (torch.linalg.inv(S1) @ a - B.T @ torch.linalg.inv(D0) @ b)
    cov2 = torch.linalg.inv(torch.eye(J2, dtype=torch.float64) + A.T @ torch.linalg.inv(D1) @ A)
    K = cov2 @ A.T @ torch.linalg.inv(D1)  # E[z2 | z1] = K (z1 - a)
    with torch.no_grad():
        enc = model.encoder.net.heads
        enc.weight.zero_(), enc.bias.zero_()
        enc.weight[:J1], enc.bias[:J1], enc.bias[J1:] = M.float(), (m + shift).float(), cov1.diag().log().float()
        step = model.inference.conditional.heads
        step.weight.zero_(), step.bias.zero_()
        step.weight[:J2], step.bias[:J2], step.bias[J2:] = K.float(), (-K @ a).float(), cov2.diag().log().float()


def test_with_the_exact_posterior_every_importance_weight_is_the_exact_likelihood():
    model = _model()
    _set_exact_posteriors(model)
    _assert_every_weight_is_the_exact_likelihood(model)


def _assert_every_weight_is_the_exact_likelihood(model: VAE) -> None:
    """With q(z|x) = p(z|x), log w = log p(x) for every sample, so K = 10 gives the exact value and the
    ELBO is tight: KL(q || p(z|x)) = 0."""
    x = torch.randn(6, 1, 1, D, generator=torch.Generator().manual_seed(5)) * 2
    exact = _exact_log_likelihood(model, x)
    estimate = importance_sampled_log_likelihood(model, x, 10, seed=0).per_datapoint
    torch.testing.assert_close(estimate, exact, atol=1e-4, rtol=0)
    with torch.no_grad():
        bound = elbo(model, x, 10, torch.Generator().manual_seed(1)).elbo.double()
    torch.testing.assert_close(bound, exact, atol=1e-4, rtol=0)


def test_importance_sampling_converges_to_the_exact_likelihood_and_the_elbo_stays_below():
    model = _model()
    _set_exact_posteriors(model, shift=0.3)
    x = torch.randn(6, 1, 1, D, generator=torch.Generator().manual_seed(5)) * 2
    exact = _exact_log_likelihood(model, x)
    estimate = importance_sampled_log_likelihood(model, x, 20_000, seed=0).per_datapoint
    torch.testing.assert_close(estimate, exact, atol=0.02, rtol=0)  # K = 20,000 with a near-exact proposal
    with torch.no_grad():
        bound = elbo(model, x, 20_000, torch.Generator().manual_seed(1)).elbo.double()
    assert (bound < exact - 0.01).all()  # a shifted q: a strict gap


def test_the_two_layer_posterior_density_is_q_z1_given_x_times_q_z2_given_z1():
    model = _model()
    x = torch.randn(4, 1, 1, D)
    posterior = model.posterior(x)
    eps = torch.randn(4, 3, J1 + J2)
    z, log_q = posterior.rsample(3, eps=eps)
    mu1, logvar1 = model.encoder(x)
    mu2, logvar2 = model.inference.conditional(z[..., :J1])
    from vaekit.likelihoods import DiagonalGaussian

    torch.testing.assert_close(z[..., :J1], mu1.unsqueeze(1) + torch.exp(0.5 * logvar1.unsqueeze(1)) * eps[..., :J1])
    torch.testing.assert_close(z[..., J1:], mu2 + torch.exp(0.5 * logvar2) * eps[..., J1:])
    expected = DiagonalGaussian(mu1.unsqueeze(1), logvar1.unsqueeze(1)).log_prob(z[..., :J1])
    expected = expected + DiagonalGaussian(mu2, logvar2).log_prob(z[..., J1:])
    torch.testing.assert_close(log_q, expected)
    torch.testing.assert_close(posterior.at_samples().log_prob(z), expected)  # the density at a given z


def test_the_built_two_layer_model_has_burdas_shapes_and_samples_from_its_prior():
    config = ModelConfig(hidden_dim=100, hidden_layers=2, activation="tanh", latent_dim=100, hierarchy="two-layer",
                         top_latent_dim=50, top_hidden_dim=50)  # fmt: skip
    torch.manual_seed(0)
    model = build_model(config)
    assert model.latent_dim == 150 and model.latent_sizes == (100, 50)
    x = torch.rand(3, 1, 28, 28)
    assert model.posterior(x).closed_form_kl(model.prior) is None
    terms = elbo(model, x, 2, torch.Generator().manual_seed(0))
    assert terms.elbo.shape == (3,) and torch.isfinite(terms.elbo).all()
    assert model.sample(4, torch.Generator().manual_seed(1)).shape == (4, 1, 28, 28)
    prior_z = model.sample_prior(5, torch.Generator().manual_seed(2))
    assert prior_z.shape == (5, 150) and torch.isfinite(model.prior.log_prob(prior_z)).all()
    sizes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    assert sizes["inference.conditional.heads.weight"] == (100, 50)  # q(z2|z1): 50 units -> (mu, logvar) of 50
    assert sizes["prior.conditionals.0.heads.weight"] == (200, 50)  # p(z1|z2): 50 units -> (mu, logvar) of 100


class ExactLadderEncoder(nn.Module):
    """Bottom-up estimates that make the ladder's posterior exact for the linear-Gaussian model:
    for z1, p(x|z1) as a Gaussian in z1; for z2, the exact p(z2|x)."""

    def __init__(self, model: VAE) -> None:
        super().__init__()
        A, a, D1, B, b, D0 = _parameters(model)
        P0 = torch.linalg.inv(D0)
        self.var1 = torch.linalg.inv(B.T @ P0 @ B)  # (J1, J1)
        self.M1, self.m1 = self.var1 @ B.T @ P0, -self.var1 @ B.T @ P0 @ b
        C = B @ D1 @ B.T + D0  # x's covariance given z2
        G = B @ A
        self.var2 = torch.linalg.inv(torch.eye(J2, dtype=torch.float64) + G.T @ torch.linalg.inv(C) @ G)
        self.M2 = self.var2 @ G.T @ torch.linalg.inv(C)
        self.m2 = -self.M2 @ (B @ a + b)

    def forward(self, x: torch.Tensor):
        v = x.flatten(1).double()
        mu = torch.cat([v @ self.M1.T + self.m1, v @ self.M2.T + self.m2], -1)
        logvar = torch.cat([self.var1.diag().log(), self.var2.diag().log()]).expand_as(mu)
        return mu.float(), logvar.float()


def test_the_ladders_precision_weighted_inference_is_exact_for_a_linear_gaussian_hierarchy():
    """Sonderby et al.'s merge of the bottom-up estimate with p(z1|z2) is Bayes' rule for Gaussians: with
    exact estimates every importance weight is log p(x), and the ELBO is tight."""
    linear = _model()
    prior = linear.prior
    model = VAE(ExactLadderEncoder(linear), linear.decoder, prior, LadderInference(prior.conditionals, (J1, J2)))
    _assert_every_weight_is_the_exact_likelihood(model)


def test_the_built_ladder_has_its_layers_shares_the_generative_path_and_saves_its_weights_once(tmp_path):
    from vaekit import rundir
    from vaekit.config import RunConfig

    config = RunConfig(ModelConfig(hierarchy="ladder", ladder_latent_dims=(6, 4, 2), ladder_hidden_dims=(32, 16, 8)))
    torch.manual_seed(0)
    model = build_model(config.model)
    assert model.latent_dim == 12 and model.latent_sizes == (6, 4, 2)
    assert model.inference.conditionals is model.prior.conditionals  # inference shares the generative path
    assert not any(name.startswith("inference.") for name, _ in model.named_parameters())  # held once
    x = torch.rand(3, 1, 28, 28)
    eps = torch.randn(3, 2, 12)
    z, log_q = model.posterior(x).rsample(2, eps=eps)
    assert z.shape == (3, 2, 12) and torch.isfinite(log_q).all()
    rundir.write_config(tmp_path, config)
    rundir.save_model(tmp_path, model)
    from vaekit.checkpoint import read_tensors

    saved, _ = read_tensors(tmp_path / rundir.MODEL_FILE)
    assert not any(name.startswith("inference.") for name in saved)  # the shared tensors are written once
    loaded, _ = rundir.load_run(tmp_path)
    assert loaded.inference.conditionals is loaded.prior.conditionals
    torch.testing.assert_close(loaded.posterior(x).rsample(2, eps=eps)[1], log_q)
    assert model.sample(4, torch.Generator().manual_seed(1)).shape == (4, 1, 28, 28)


def test_a_vampprior_on_the_ladders_top_layer_mixes_the_top_layers_posteriors_at_the_pseudo_inputs():
    """Tomczak & Welling's best model puts the VampPrior on the top layer: p(z_L) = 1/K sum_k q(z_L|u_k)."""
    from vaekit.likelihoods import DiagonalGaussian

    config = ModelConfig(hierarchy="ladder", ladder_latent_dims=(6, 3), ladder_hidden_dims=(32, 16), prior="vampprior",
                         prior_components=1)  # fmt: skip
    torch.manual_seed(0)
    model = build_model(config)
    z = torch.randn(5, 9)
    mu, logvar = model.encoder(model.prior.top.pseudo_inputs())  # all layers' estimates at u_1
    conditional = model.prior.conditionals[0](z[:, 6:])
    expected = DiagonalGaussian(mu[:, 6:], logvar[:, 6:]).log_prob(z[:, 6:]) + DiagonalGaussian(*conditional).log_prob(
        z[:, :6]
    )
    torch.testing.assert_close(model.prior.log_prob(z), expected)
    assert model.sample_prior(4, torch.Generator().manual_seed(0)).shape == (4, 9)
    assert model.prior.top.encoder.encoder is model.encoder  # the top block's view shares the encoder


def test_samples_from_the_hierarchical_prior_have_its_moments():
    """z2 ~ N(0, 1), z1 = A z2 + a + noise: mean a, variance A^2 + D1, covariance A with z2."""
    model = _model()
    A, a, D1, *_ = _parameters(model)
    with torch.no_grad():
        z = model.sample_prior(200_000, torch.Generator().manual_seed(0)).double()
    n = len(z)
    torch.testing.assert_close(
        z.mean(0), torch.cat([a, torch.zeros(J2, dtype=torch.float64)]), atol=5 * 2 / n**0.5, rtol=0
    )
    cov = torch.cov(z.T)
    expected = torch.tensor([[(A @ A.T + D1).item(), A.item()], [A.item(), 1.0]], dtype=torch.float64)
    torch.testing.assert_close(cov, expected, atol=0.03 * expected.abs().max().item(), rtol=0)


def _normal_log_prob(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, exp(logvar)) summed over the last dimension, written out by hand."""
    return (-0.5 * (math.log(2 * math.pi) + logvar + (z - mu) ** 2 / logvar.exp())).sum(-1)


def test_a_three_layer_ladders_log_q_is_the_sum_of_each_layers_merged_density():
    """With three layers every layer's term must add (a term that overwrote another would agree with
    the sum only for two layers, where the exact test above lives): log q = log N(z3; mu^3, s^3)
    + log N(z2; merge(mu^2, p(z2|z3))) + log N(z1; merge(mu^1, p(z1|z2))), each merge by hand."""
    config = ModelConfig(hierarchy="ladder", ladder_latent_dims=(4, 3, 2), ladder_hidden_dims=(16, 12, 8))
    torch.manual_seed(0)
    model = build_model(config).double()
    x = torch.rand(5, 1, 28, 28, dtype=torch.float64)
    z, log_q = model.posterior(x).rsample(3, torch.Generator().manual_seed(1))
    mu_hat, logvar_hat = (t.unsqueeze(1) for t in model.encoder(x))
    z1, z2, z3 = z[..., :4], z[..., 4:7], z[..., 7:]
    expected = _normal_log_prob(z3, mu_hat[..., 7:], logvar_hat[..., 7:])
    for z_i, above, sl, conditional in ((z2, z3, slice(4, 7), 1), (z1, z2, slice(0, 4), 0)):
        mu_p, logvar_p = model.prior.conditionals[conditional](above)
        precision = 1 / logvar_hat[..., sl].exp() + 1 / logvar_p.exp()
        mu_q = (mu_hat[..., sl] / logvar_hat[..., sl].exp() + mu_p / logvar_p.exp()) / precision
        expected = expected + _normal_log_prob(z_i, mu_q, -precision.log())
    torch.testing.assert_close(log_q, expected)
    torch.testing.assert_close(model.posterior(x).at_samples().log_prob(z), expected)


def _exact_layer_kls(model: VAE, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, the two layers' KLs of the linear-Gaussian two-layer model, from the Gaussians' moments:
    z1 ~ N(m1, v1) = q(z1|x), z2 = K z1 + c + sqrt(v2) e = q(z2|z1); p(z2) = N(0, 1), p(z1|z2) = N(A z2 + a, D1).
      layer 2: E[log q(z2|z1) - log p(z2)] = -1/2 (log v2 + 1) + 1/2 E[z2^2]
      layer 1: E[log q(z1|x) - log p(z1|z2)] = -1/2 (log v1 + 1) + 1/2 (log D1 + E[(z1 - A z2 - a)^2] / D1)"""
    A, a, D1, *_ = (t.squeeze() for t in _parameters(model))
    enc, step = model.encoder.net.heads, model.inference.conditional.heads
    m1 = (x.flatten(1).double() @ enc.weight[:J1].double().T + enc.bias[:J1].double()).squeeze(1)
    v1 = enc.bias[J1:].double().exp().squeeze()
    K, c, v2 = step.weight[0, 0].double(), step.bias[0].double(), step.bias[1].double().exp()
    m2, var2 = K * m1 + c, K**2 * v1 + v2
    layer2 = -0.5 * (v2.log() + 1) + 0.5 * (m2**2 + var2)
    residual = (m1 - A * m2 - a) ** 2 + v1 + A**2 * var2 - 2 * A * K * v1
    layer1 = -0.5 * (v1.log() + 1) + 0.5 * (D1.log() + residual / D1)
    return layer1, layer2


def test_each_layers_kl_matches_the_linear_gaussian_oracle_and_the_layers_add_up_to_the_kl():
    """latent_diagnostics measures each layer against its own prior, p(z1|z2) and p(z2), never the
    encoder's Gaussian against N(0, I); a sign flipped or a layer measured against the wrong density fails."""
    from vaekit.diagnostics import latent_diagnostics

    model = _model()
    _set_exact_posteriors(model, shift=0.3)
    x = (torch.randn(6, 1, 1, D, generator=torch.Generator().manual_seed(5)) * 2).repeat(2000, 1, 1, 1)
    layer1, layer2 = _exact_layer_kls(model, x)
    latents = latent_diagnostics(model, x)
    assert [layer.name for layer in latents.layers] == ["z1", "z2"]
    for layer, exact in zip(latents.layers, (layer1, layer2)):
        assert layer.estimate == "Monte Carlo" and layer.kl_per_dim is not None
        assert abs(layer.kl - exact.mean().item()) < 4 * layer.kl_stderr + 1e-9, (layer, exact.mean())
        assert layer.kl_per_dim.sum().item() == pytest.approx(layer.kl)
    with torch.no_grad():
        total = elbo(model, x, 1, torch.Generator().manual_seed(2)).kl.double()
    assert abs(sum(layer.kl for layer in latents.layers) - (layer1 + layer2).mean().item()) < 0.05
    assert abs(total.mean().item() - (layer1 + layer2).mean().item()) < 4 * total.std().item() / len(total) ** 0.5
