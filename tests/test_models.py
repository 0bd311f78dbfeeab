"""Contract tests run on every registered model and likelihood."""

import pytest
import torch

from vaekit.config import ARCHITECTURES, LIKELIHOODS, ModelConfig
from vaekit.models.vae import MODELS, build_model

CASES = [(a, lik) for a in MODELS for lik in LIKELIHOODS]


def test_registry_and_config_agree():
    assert set(MODELS) == set(ARCHITECTURES)


def _build(architecture, likelihood, latent_dim=5):
    torch.manual_seed(0)
    return build_model(ModelConfig(architecture=architecture, likelihood=likelihood, hidden_dim=32,
                                   latent_dim=latent_dim, image_shape=(1, 28, 28)))


@pytest.mark.parametrize("architecture,likelihood", CASES)
def test_shapes_and_dtypes(architecture, likelihood):
    model = _build(architecture, likelihood)
    x = torch.rand(6, 1, 28, 28)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (6, 5) and mu.dtype == torch.float32
    lik = model.decode(mu)
    assert lik.mean.shape == (6, 1, 28, 28)
    assert lik.log_prob(x).shape == (6,)
    assert model.sample(4, torch.Generator().manual_seed(0)).shape == (4, 1, 28, 28)
    assert model.reconstruct(x).shape == x.shape


@pytest.mark.parametrize("architecture,likelihood", CASES)
def test_gradients_reach_mu_and_logvar_through_the_reparameterization(architecture, likelihood):
    model = _build(architecture, likelihood)
    x = torch.bernoulli(torch.rand(4, 1, 28, 28))
    mu, logvar = model.encode(x)
    mu.retain_grad()
    logvar.retain_grad()
    from vaekit.likelihoods import DiagonalGaussian

    z = DiagonalGaussian(mu, logvar).rsample(1, torch.Generator().manual_seed(0)).squeeze(1)
    model.decode(z).log_prob(x).sum().backward()  # the reconstruction term alone, no KL
    assert mu.grad is not None and mu.grad.abs().sum() > 0
    assert logvar.grad is not None and logvar.grad.abs().sum() > 0
    assert model.encoder.hidden.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("architecture,likelihood", CASES)
def test_seeded_sampling_repeats(architecture, likelihood):
    model = _build(architecture, likelihood)
    a = model.sample(3, torch.Generator().manual_seed(7))
    b = model.sample(3, torch.Generator().manual_seed(7))
    c = model.sample(3, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_gaussian_decoder_variance_is_bounded_even_for_huge_latents():
    model = _build("mlp", "gaussian")
    lik = model.decode(torch.full((2, 5), 1e4))
    assert lik.logvar.min() >= -6.0 and lik.logvar.max() <= 2.0


def test_extreme_encoder_outputs_keep_the_elbo_finite():
    from vaekit.objectives import elbo

    model = _build("mlp", "bernoulli")
    with torch.no_grad():
        model.encoder.heads.bias.fill_(1e4)  # absurd mu and logvar
    x = torch.bernoulli(torch.rand(3, 1, 28, 28))
    terms = elbo(model, x)
    assert torch.isfinite(terms.kl).all()
    (-terms.elbo.mean()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
