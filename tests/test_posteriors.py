"""The Posterior interface and the properties that the objectives and pictures rely on, each against an
exact quantity: torch.distributions' density, mixture moments, a float64 reference, the ELBO's KL."""

import math

import pytest
import torch

from vaekit import rundir
from vaekit.checkpoint import read_tensors, write_tensors
from vaekit.config import ModelConfig, RunConfig
from vaekit.models.flows import PlanarFlow
from vaekit.models.hierarchy import HierarchicalPrior
from vaekit.models.posteriors import GaussianPosterior
from vaekit.models.priors import MixturePrior, StandardNormalPrior, mixture_log_prob
from vaekit.models.vae import build_model
from vaekit.objectives import elbo, iwae_training_terms

FAMILIES = {
    "standard": {},
    "mixture": {"prior": "mixture", "prior_components": 4},
    "vampprior": {"prior": "vampprior", "prior_components": 3},
    "planar": {"posterior_flow": "planar", "flow_steps": 2},
    "iaf": {"posterior_flow": "iaf", "flow_steps": 2, "flow_hidden_dim": 12},
    "two-layer": {"hierarchy": "two-layer", "top_latent_dim": 2, "top_hidden_dim": 8},
    "ladder": {"hierarchy": "ladder", "ladder_latent_dims": (3, 2), "ladder_hidden_dims": (16, 8)},
}


def _model(name: str, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(ModelConfig(hidden_dim=16, latent_dim=3, **FAMILIES[name]))


def test_a_batch_of_posteriors_scores_another_batchs_samples_pairwise_as_torch_distributions_does():
    """beta-TCVAE needs log q(z_i | x_j) for every pair: a (B, 1, J) posterior against (1, B, J) samples."""
    model = _model("standard")
    x = torch.rand(5, 1, 28, 28)
    posterior = model.posterior(x)
    z, _ = posterior.rsample(1, torch.Generator().manual_seed(0))
    pairwise = posterior.at_samples().log_prob(z[:, 0].unsqueeze(0))  # (5, 1, J) against (1, 5, J)
    reference = torch.distributions.Normal(posterior.mu[:, None], posterior.gaussian.std[:, None])
    assert pairwise.shape == (5, 5)
    torch.testing.assert_close(pairwise, reference.log_prob(z[:, 0].unsqueeze(0)).sum(-1))
    assert torch.equal(
        GaussianPosterior(posterior.mu[:, None], posterior.logvar[:, None]).log_prob(z[None, :, 0]), pairwise
    )


@pytest.mark.parametrize("name", FAMILIES)
def test_every_family_samples_with_its_log_density_and_agrees_with_log_prob_where_it_has_one(name):
    model = _model(name)
    x = torch.rand(4, 1, 28, 28)
    posterior = model.posterior(x)
    z, log_q = posterior.rsample(3, torch.Generator().manual_seed(1))
    assert z.shape == (4, 3, model.latent_dim) and log_q.shape == (4, 3) and torch.isfinite(log_q).all()
    assert posterior.mean.shape == (4, model.latent_dim)
    if name in ("planar", "iaf"):
        with pytest.raises(ValueError, match="no density at a given z"):
            posterior.log_prob(z)
    else:
        torch.testing.assert_close(posterior.at_samples().log_prob(z), log_q)
    assert (posterior.closed_form_kl(model.prior) is not None) == (name == "standard")


def test_a_planar_flow_stays_invertible_where_u_alone_would_fold_the_line():
    """1-D, w = 1, u = -3: f(z) = z + u tanh(z) with u itself is not monotone (f'(0) = -2); the flow uses
    u_hat, with w.u_hat >= -1, so f is monotone and its log-determinant finite."""
    flow = PlanarFlow(1)
    with torch.no_grad():
        flow.w.fill_(1.0), flow.u.fill_(-3.0), flow.b.zero_()
    z = torch.linspace(-5, 5, 2001).unsqueeze(1)
    f, log_det = flow(z)
    assert (f[1:, 0] - f[:-1, 0] >= 0).all() and torch.isfinite(log_det).all()


def test_the_mixture_density_is_computed_in_float64_where_float32_loses_hundredths_of_a_nat():
    """J = 40, logvar = -8, |mu| near 3, z near a component: the expanded terms are ~1e5 and cancel."""
    g = torch.Generator().manual_seed(0)
    mu = 3 * torch.sign(torch.randn(6, 40, generator=g)) + 0.1 * torch.randn(6, 40, generator=g)
    logvar = torch.full((6, 40), -8.0)
    log_weights = torch.log_softmax(torch.randn(6, generator=g), 0)
    z = mu[torch.arange(10) % 6] + 0.02 * torch.randn(10, 40, generator=g)
    components = torch.distributions.Normal(mu.double(), (0.5 * logvar.double()).exp())
    reference = torch.logsumexp(components.log_prob(z.double()[:, None]).sum(-1) + log_weights.double(), -1)
    torch.testing.assert_close(mixture_log_prob(z, mu, logvar, log_weights).double(), reference, atol=1e-3, rtol=0)


def _moments_check(samples: torch.Tensor, mean: torch.Tensor, variance: torch.Tensor) -> None:
    """Sample mean and variance within 5 standard errors (the variance's from the fourth moment)."""
    n = len(samples)
    s = samples.double()
    assert ((s.mean(0) - mean).abs() < 5 * (variance / n).sqrt()).all(), (s.mean(0), mean)
    fourth = ((s - s.mean(0)) ** 4).mean(0)
    assert ((s.var(0) - variance).abs() < 5 * ((fourth - variance**2) / n).sqrt()).all(), (s.var(0), variance)


def _mixture_moments(mu: torch.Tensor, logvar: torch.Tensor, log_weights: torch.Tensor):
    w = log_weights.double().exp()[:, None]
    mean = (w * mu.double()).sum(0)
    return mean, (w * (logvar.double().exp() + mu.double() ** 2)).sum(0) - mean**2


def test_mixture_samples_have_the_mixtures_mean_and_variance():
    """A variance drawn where the standard deviation belongs changes the variance, not the mean."""
    prior = MixturePrior(2, 3)
    with torch.no_grad():
        prior.logvar.copy_(torch.tensor([[1.2, -1.0], [0.4, 0.8], [-0.6, 1.5]]))
        prior.logits.copy_(torch.tensor([0.3, -0.2, 0.5]))
    samples = prior.sample(100_000, torch.Generator().manual_seed(0))
    _moments_check(samples, *_mixture_moments(*prior.components()))


def test_vampprior_samples_have_the_moments_of_the_mixture_of_posteriors():
    model = _model("vampprior")
    with torch.no_grad():
        model.encoder.heads.bias[3:].fill_(0.9)  # posteriors wider than 1, so sigma and sigma^2 differ
        samples = model.prior.sample(100_000, torch.Generator().manual_seed(0))
        _moments_check(samples, *_mixture_moments(*model.prior.components()))


def test_a_hierarchys_top_layer_is_drawn_from_its_top_prior():
    top = MixturePrior(2, 2)
    with torch.no_grad():
        top.logvar.fill_(1.0)
    conditionals = torch.nn.ModuleList([torch.nn.Identity()])  # unused below: only the top layer is checked
    prior = HierarchicalPrior([3, 2], top, conditionals)
    samples = prior.top.sample(100_000, torch.Generator().manual_seed(0))
    with torch.no_grad():
        _moments_check(samples, *_mixture_moments(*top.components()))
    assert prior.layer_sizes == (3, 2) and "mixture" in prior.label


@pytest.mark.parametrize("name", ["mixture", "vampprior", "planar", "two-layer", "ladder"])
def test_the_kl_that_iwae_training_logs_is_the_elbos_kl_at_one_sample(name):
    """Without a closed form the IWAE terms' KL is mean_k [log q - log p]; at k = 1 with the same noise it is
    the ELBO's Monte-Carlo KL, sign included (in float64: the IWAE terms take it as log p(x|z) - log w,
    a difference of numbers near -500)."""
    model = _model(name).double()
    x = torch.rand(4, 1, 28, 28, dtype=torch.float64)
    eps = torch.randn(4, 1, model.latent_dim, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    with torch.no_grad():
        _, terms = iwae_training_terms(model, x, 1, eps=eps)
        expected = elbo(model, x, 1, eps=eps)
    torch.testing.assert_close(terms.kl, expected.kl)
    torch.testing.assert_close(terms.elbo, expected.elbo)


def _legacy(tensors: dict[str, torch.Tensor], renames: dict[str, str]) -> dict[str, torch.Tensor]:
    out = {}
    for name, tensor in tensors.items():
        prefix = next((new for new in renames if name.startswith(new)), None)
        out[name if prefix is None else renames[prefix] + name.removeprefix(prefix)] = tensor
    return out


# Weight names as vaekit wrote them before the Posterior interface (read from that version's state dicts):
# the two-layer model's bottom encoder sat in a padding wrapper and q(z2|z1) was filed as a flow.
LEGACY_NAMES = {
    "two-layer": {"encoder.": "encoder.bottom.", "inference.conditional.": "flows.0.conditional."},
    "planar": {"inference.flows.": "flows."},
    "vampprior": {},  # the VampPrior did not hold the encoder: no prior.encoder.* names
    "ladder": {},  # the ladder's top-down step held nothing: no inference.* names
}


@pytest.mark.parametrize("name", LEGACY_NAMES)
def test_model_files_written_before_the_posterior_interface_still_load(name, tmp_path):
    config = RunConfig(ModelConfig(hidden_dim=16, latent_dim=3, **FAMILIES[name]))
    model = _model(name, seed=1)
    rundir.write_config(tmp_path, config)
    rundir.save_model(tmp_path, model)
    tensors, _ = read_tensors(tmp_path / rundir.MODEL_FILE)
    assert not any(k.startswith(("prior.encoder.", "inference.conditionals.")) for k in tensors)  # stored once
    write_tensors(tmp_path / rundir.MODEL_FILE, _legacy(tensors, LEGACY_NAMES[name]))
    loaded, _ = rundir.load_run(tmp_path)
    x, eps = torch.rand(3, 1, 28, 28), torch.randn(3, 2, model.latent_dim)
    for a, b in zip(model.posterior(x).rsample(2, eps=eps), loaded.posterior(x).rsample(2, eps=eps)):
        assert torch.equal(a, b)
    if name == "vampprior":
        assert loaded.prior.encoder is loaded.encoder  # read back into both places


def test_priors_declare_what_the_rest_of_the_code_needs():
    assert StandardNormalPrior(2).closed_form_kl and StandardNormalPrior(2).label == "N(0, I)"
    for name in ("mixture", "vampprior", "two-layer", "ladder"):
        model = _model(name)
        assert not model.prior.closed_form_kl and model.prior.label
        assert model.prior.typical_point().shape == (model.latent_sizes[-1],)
    assert math.isclose(float(_model("standard").prior.typical_point().abs().sum()), 0.0)
