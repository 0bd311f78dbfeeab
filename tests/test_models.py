"""Contract tests run on every registered model and likelihood."""

import functools
import math

import pytest
import torch

from vaekit.config import ARCHITECTURE_NAMES, LIKELIHOOD_NAMES, MODEL_FAMILY_NAMES, ModelConfig
from vaekit.models.vae import ARCHITECTURE_BUILDERS, MODEL_BUILDERS, build_model

CASES = [(a, lik) for a in ARCHITECTURE_BUILDERS for lik in LIKELIHOOD_NAMES]


def test_registry_and_config_agree():
    assert set(ARCHITECTURE_BUILDERS) == set(ARCHITECTURE_NAMES)
    assert tuple(MODEL_BUILDERS) == MODEL_FAMILY_NAMES


@pytest.mark.parametrize("family", MODEL_FAMILY_NAMES)
def test_each_family_builds_the_model_that_declares_it(family):
    """A family's builder gives a model declaring that family, with what the rest of the code reads of it."""
    spatial = dict(architecture="conv", conv_channels=(4,)) if family == "vq-vae" else {}  # a map of 2x2 codes
    model = build_model(ModelConfig(family=family, hidden_dim=8, latent_dim=8, image_shape=(1, 4, 4), **spatial))
    assert model.family == family and isinstance(model.has_bound, bool)
    assert all(isinstance(why, str) and why for why in model.pictures_without.values())


def _spatial(architecture, shape, channels, latent_dim):
    """The resnet's latent is a map: 2 values per position of (H/2^n, W/2^n); the others keep latent_dim."""
    return 2 * (shape[1] >> len(channels)) * (shape[2] >> len(channels)) if architecture == "resnet" else latent_dim


def _build(architecture, likelihood, latent_dim=5):
    torch.manual_seed(0)
    return build_model(
        ModelConfig(
            architecture=architecture,
            likelihood=likelihood,
            hidden_dim=32,
            latent_dim=_spatial(architecture, (1, 28, 28), (8, 16), latent_dim),
            conv_channels=(8, 16),
            image_shape=(1, 28, 28),
        )
    )


@pytest.mark.parametrize("architecture,likelihood", CASES)
def test_shapes_and_dtypes(architecture, likelihood):
    model = _build(architecture, likelihood)
    x = torch.rand(6, 1, 28, 28)
    mu, logvar = model.encoder(x)
    assert mu.shape == logvar.shape == (6, model.latent_dim) and mu.dtype == torch.float32
    lik = model.decode(mu)
    assert lik.mean.shape == (6, 1, 28, 28)
    assert lik.log_prob(x).shape == (6,)
    assert model.sample(4, torch.Generator().manual_seed(0)).shape == (4, 1, 28, 28)
    assert model.reconstruct(x).shape == x.shape


@pytest.mark.parametrize("architecture,likelihood", CASES)
def test_gradients_reach_mu_and_logvar_through_the_reparameterization(architecture, likelihood):
    model = _build(architecture, likelihood)
    x = torch.bernoulli(torch.rand(4, 1, 28, 28))
    mu, logvar = model.encoder(x)
    mu.retain_grad()
    logvar.retain_grad()
    from vaekit.likelihoods import DiagonalGaussian

    z = DiagonalGaussian(mu, logvar).rsample(1, torch.Generator().manual_seed(0)).squeeze(1)
    model.decode(z).log_prob(x).sum().backward()  # the reconstruction term alone, no KL
    assert mu.grad is not None and mu.grad.abs().sum() > 0
    assert logvar.grad is not None and logvar.grad.abs().sum() > 0
    assert next(model.encoder.parameters()).grad.abs().sum() > 0  # down to the first layer


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


@pytest.mark.parametrize(
    "shape,channels",
    [((1, 28, 28), (32, 64)), ((3, 32, 32), (32, 32, 64)), ((3, 64, 64), (32, 32, 64, 64)), ((1, 16, 24), (8, 8))],
)
@pytest.mark.parametrize("architecture", ARCHITECTURE_NAMES)
def test_shapes_round_trip_for_every_image_size(shape, channels, architecture):
    model = build_model(
        ModelConfig(
            architecture=architecture,
            image_shape=shape,
            hidden_dim=32,
            latent_dim=_spatial(architecture, shape, channels, 5),
            conv_channels=channels,
            likelihood="gaussian",
        )
    )
    x = torch.rand(3, *shape)
    mu, logvar = model.encoder(x)
    assert mu.shape == logvar.shape == (3, model.latent_dim)
    lik = model.decode(mu)
    assert lik.mean.shape == x.shape and lik.logvar.shape == x.shape
    assert model.sample(2).shape == (2, *shape)


def test_fixed_variance_gaussian_uses_the_configured_std():
    model = build_model(ModelConfig(likelihood="gaussian-fixed", decoder_fixed_std=0.2, hidden_dim=8, latent_dim=2))
    lik = model.decode(torch.zeros(1, 2))
    assert torch.allclose(lik.logvar, torch.full_like(lik.logvar, 2 * math.log(0.2)))


LATENT_MODELS = {
    "mixture": {"prior": "mixture", "prior_components": 4},
    "vampprior": {"prior": "vampprior", "prior_components": 4},
    "planar": {"posterior_flow": "planar", "flow_steps": 2},
    "iaf": {"posterior_flow": "iaf", "flow_steps": 2, "flow_hidden_dim": 12},
    "two-layer": {"hierarchy": "two-layer", "top_latent_dim": 2, "top_hidden_dim": 8, "prior": "mixture"},
    "ladder": {"hierarchy": "ladder", "ladder_latent_dims": (4, 2), "ladder_hidden_dims": (16, 8)},
}


@pytest.mark.parametrize("name", LATENT_MODELS)
def test_learned_priors_and_flows_rebuild_from_the_run_folder(name, tmp_path):
    from vaekit import rundir
    from vaekit.config import RunConfig

    config = RunConfig(model=ModelConfig(hidden_dim=16, latent_dim=3, **LATENT_MODELS[name]))
    torch.manual_seed(0)
    model = build_model(config.model)
    with torch.no_grad():  # away from the initial values, so that a prior or flow left at its init would show
        for p in list(model.prior.parameters()) + list(model.inference.parameters()):
            p.add_(0.1 * torch.randn_like(p))
    rundir.write_config(tmp_path, config)
    rundir.save_model(tmp_path, model)
    loaded, _ = rundir.load_run(tmp_path)
    x, eps = torch.rand(3, 1, 28, 28), torch.randn(3, 2, model.latent_dim)
    for a, b in zip(model.posterior(x).rsample(2, eps=eps), loaded.posterior(x).rsample(2, eps=eps)):
        assert torch.equal(a, b)
    z = torch.randn(5, model.latent_dim)
    assert torch.equal(model.prior.log_prob(z), loaded.prior.log_prob(z))
    g = torch.Generator
    assert torch.equal(model.sample(2, g().manual_seed(1)), loaded.sample(2, g().manual_seed(1)))


def test_glorot_and_the_papers_normal_initialisation_have_their_variances():
    """Glorot & Bengio's uniform on [-a, a], a = sqrt(6 / (fan_in + fan_out)), has variance a^2 / 3 =
    2 / (fan_in + fan_out); the paper's N(0, 0.01^2) has std 0.01. Over 401,408 weights of the 784 x 512
    layer the sample variance is within 1% of either (its relative s.e. is sqrt(0.8 / 401,408) for the
    uniform, sqrt(2 / 401,408) for the normal)."""
    torch.manual_seed(0)
    default = build_model(ModelConfig())
    torch.manual_seed(0)
    glorot = build_model(ModelConfig(init="glorot"))
    torch.manual_seed(0)
    normal = build_model(ModelConfig(init="normal"))
    first = lambda m: next(layer for layer in m.modules() if isinstance(layer, torch.nn.Linear))  # noqa: E731
    w = first(glorot).weight
    assert w.shape == (512, 784)
    bound = math.sqrt(6 / (784 + 512))
    assert w.abs().max() <= bound and w.var().item() == pytest.approx(2 / (784 + 512), rel=0.01)
    linear = [m for m in glorot.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linear) >= 4 and all(torch.all(m.bias == 0) for m in linear)
    assert first(normal).weight.std().item() == pytest.approx(0.01, rel=0.01)
    assert first(normal).bias.std().item() == pytest.approx(0.01, rel=0.15)  # 512 biases
    torch.manual_seed(0)
    again = build_model(ModelConfig())  # the default leaves PyTorch's draws as they were
    assert all(torch.equal(a, b) for a, b in zip(default.state_dict().values(), again.state_dict().values()))
    assert not torch.equal(first(default).weight, w)


def test_a_gated_dense_layer_is_its_definition_and_gated_networks_train():
    """h = (W x + b) * sigmoid(V x + c) (Dauphin et al. 2017), recomputed in float64 from its weights; a
    VampPrior VAE with gated hidden layers has a finite ELBO and a gradient on every gate."""
    from vaekit.models.encoders import GatedDense
    from vaekit.objectives import elbo

    torch.manual_seed(0)
    layer = GatedDense(5, 3).double()
    x = torch.randn(4, 5, dtype=torch.float64)
    w, b, v, c = layer.value.weight, layer.value.bias, layer.gate.weight, layer.gate.bias
    expected = (x @ w.T + b) / (1 + torch.exp(-(x @ v.T + c)))
    torch.testing.assert_close(layer(x), expected, rtol=1e-12, atol=1e-12)
    model = build_model(ModelConfig(hidden_dim=32, hidden_layers=2, activation="gated", prior="vampprior",
                                    prior_components=5, latent_dim=4))  # fmt: skip
    gates = [m for m in model.modules() if isinstance(m, GatedDense)]
    assert len(gates) == 4  # two in the encoder, two in the decoder
    bound = elbo(model, torch.rand(8, 1, 28, 28).round()).elbo.mean()
    assert torch.isfinite(bound)
    (-bound).backward()
    assert all(g.gate.weight.grad is not None and g.gate.weight.grad.abs().sum() > 0 for g in gates)


@pytest.mark.parametrize("name", ["conv", "resnet", *LATENT_MODELS])
def test_a_wrong_shaped_or_integer_batch_gets_one_sentence_at_every_entry_point(name):
    """posterior, reconstruct, the ELBO and decode refuse a batch the model cannot take with a DataError naming the
    shape or dtype expected and the one given, for every architecture and latent family; the right batch passes."""
    from vaekit.errors import DataError
    from vaekit.objectives import elbo

    options = {"architecture": name, "conv_channels": (8, 16)} if name in ARCHITECTURE_NAMES else LATENT_MODELS[name]
    latent_dim = _spatial(name, (3, 16, 16), (8, 16), 3)
    torch.manual_seed(0)
    model = build_model(ModelConfig(image_shape=(3, 16, 16), hidden_dim=16, latent_dim=latent_dim, **options))
    j = model.latent_dim
    shape = r"the model takes images of shape \(batch, 3, 16, 16\), but the batch has shape"
    for call in (model.posterior, model.reconstruct, functools.partial(elbo, model)):
        with pytest.raises(DataError, match=shape + r" \(4, 1, 28, 28\): load the run's images with vaekit.data"):
            call(torch.rand(4, 1, 28, 28))
        with pytest.raises(DataError, match=shape + r" \(3, 16, 16\): add the batch dimension"):
            call(torch.rand(3, 16, 16))
        with pytest.raises(DataError, match=r"takes float images in \[0, 1\], but the batch is torch.uint8"):
            call(torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8))
        with pytest.raises(DataError, match=r"weights are torch.float32 but the batch is torch.float64: pass x.to"):
            call(torch.rand(4, 3, 16, 16, dtype=torch.float64))
        with pytest.raises(DataError, match="takes a torch.Tensor of images, not ndarray: pass torch.as_tensor"):
            call(torch.rand(4, 3, 16, 16).numpy())
        call(torch.rand(4, 3, 16, 16))
    with pytest.raises(
        DataError, match=rf"model.decode takes latents of shape \(batch, {j}\), but z has shape \(2, {j + 1}\)"
    ):
        model.decode(torch.zeros(2, j + 1))
    with pytest.raises(DataError, match="model.decode takes float latents, but z is torch.int64"):
        model.decode(torch.zeros(2, j, dtype=torch.int64))
    assert model.decode(torch.zeros(2, j)).mean.shape == (2, 3, 16, 16)
