"""Flows: each log-determinant against autograd's Jacobian; a new IAF step is the identity."""

import pytest
import torch
from torch.autograd.functional import jacobian

from vaekit.config import FLOW_NAMES, ModelConfig
from vaekit.models.flows import IAFStep, PlanarFlow, build_flows
from vaekit.models.vae import build_model


def _log_abs_det_by_autograd(flow, z):
    """log |det df/dz| for each row of z (n, J), from the full Jacobian."""
    return torch.stack([torch.linalg.slogdet(jacobian(lambda v: flow(v.unsqueeze(0))[0][0], row))[1] for row in z])


def _scrambled(module, scale, seed):
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, scale)
    return module


@pytest.mark.parametrize("seed", range(4))
def test_planar_log_determinant_equals_the_jacobians(seed):
    flow = _scrambled(PlanarFlow(3), 1.5, seed).double()
    z = torch.randn(6, 3, dtype=torch.float64) * 2
    _, log_det = flow(z)
    torch.testing.assert_close(log_det, _log_abs_det_by_autograd(flow, z))
    assert (flow.w @ flow.u_hat()).item() >= -1 - 1e-9  # the condition that keeps f invertible


@pytest.mark.parametrize("reverse", [False, True])
def test_iaf_log_determinant_equals_the_jacobians_and_the_jacobian_is_triangular(reverse):
    step = _scrambled(IAFStep(4, 16, reverse=reverse), 0.5, 1).double()
    z = torch.randn(5, 4, dtype=torch.float64)
    _, log_det = step(z)
    torch.testing.assert_close(log_det, _log_abs_det_by_autograd(step, z))
    jac = jacobian(lambda v: step(v.unsqueeze(0))[0][0], z[0])
    strictly_later = torch.triu(torch.ones(4, 4), 1).bool()  # output j may depend on inputs before j only
    assert (jac.flip(0, 1) if reverse else jac)[strictly_later].abs().max() == 0


def test_a_new_iaf_step_is_the_identity():
    step = IAFStep(5, 32)
    z = torch.randn(7, 3, 5)
    out, log_det = step(z)
    assert torch.equal(out, z) and torch.equal(log_det, torch.zeros(7, 3))


@pytest.mark.parametrize("name", [n for n in FLOW_NAMES if n != "none"])
def test_the_posterior_density_through_a_flow_is_the_change_of_variables(name):
    """log q_K(z_K) = log q_0(z_0) - sum log|det|, checked against a direct sum over steps."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(hidden_dim=16, latent_dim=3, posterior_flow=name, flow_steps=3))
    for flow in model.inference.flows:
        _scrambled(flow, 0.3, 2)
    x = torch.rand(4, 1, 28, 28)
    posterior = model.posterior(x)
    eps = torch.randn(4, 2, 3)
    z, log_q = posterior.rsample(2, eps=eps)
    mu, logvar = model.encoder(x)
    std = torch.exp(0.5 * logvar)
    z0 = mu.unsqueeze(1) + std.unsqueeze(1) * eps
    expected = -0.5 * (torch.log(2 * torch.pi * std.unsqueeze(1) ** 2) + eps**2).sum(-1)
    for flow in model.inference.flows:
        z0, log_det = flow(z0)
        expected = expected - log_det
    torch.testing.assert_close(z, z0)
    torch.testing.assert_close(log_q, expected, rtol=1e-5, atol=1e-4)
    assert len(build_flows("none", 3, 0, 8)) == 0
    with pytest.raises(ValueError, match="no density at a given z"):
        posterior.log_prob(z)  # the flow is not inverted: a given z has no density here


@pytest.mark.parametrize("name", ["planar", "iaf"])
def test_pictures_place_an_image_at_the_flowed_mean(name):
    """reconstruct, interpolations, traversals and the playground use the posterior's mean: mu carried
    through the flow, which a trained flow moves away from the encoder's mu."""
    model = build_model(ModelConfig(hidden_dim=32, latent_dim=4, posterior_flow=name, flow_steps=2))
    _scrambled(model.inference.flows, 0.5, seed=0)
    x = torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        mu = model.encoder(x)[0]
        flowed = mu
        for flow in model.inference.flows:
            flowed = flow(flowed)[0]
        assert not torch.allclose(flowed, mu)
        assert torch.equal(model.posterior(x).mean, flowed)
        assert torch.equal(model.reconstruct(x), model.decode(flowed).mean)
