"""How the latent space is used: active units against a constructed case and at the rule's edges, each
layer's KL adding up to the model's, and Chen et al.'s MIG read from q(z|x)."""

import math

import numpy as np
import pytest
import torch

from vaekit import disentanglement as d
from vaekit.config import ModelConfig
from vaekit.models.vae import build_model
from vaekit.objectives import elbo


def test_active_units_count_a_constructed_case():
    """Dimensions whose posterior mean ignores x are inactive; the others are counted active."""
    from vaekit.diagnostics import latent_diagnostics

    torch.manual_seed(0)
    model = build_model(ModelConfig(hidden_dim=16, latent_dim=5, image_shape=(1, 4, 4)))
    with torch.no_grad():  # mu_j = 0 for j in {1, 3} whatever x is; logvar = 0 for every j
        model.encoder.heads.weight[[1, 3]] = 0.0
        model.encoder.heads.bias[[1, 3]] = 0.0
        model.encoder.heads.weight[5:] = 0.0
        model.encoder.heads.bias[5:] = 0.0
        model.encoder.heads.weight[[0, 2, 4]] *= 50.0
    x = torch.rand(300, 1, 4, 4)
    d = latent_diagnostics(model, x, batch_size=64)
    assert d.active.tolist() == [True, False, True, False, True]
    assert (d.active_units, d.collapsed_units) == (3, 2)
    assert d.kl_per_dim[1].item() == 0.0 and d.kl_per_dim[3].item() == 0.0 and d.kl_per_dim[0] > 0
    assert d.posterior_means.shape == (300, 5)


def test_a_unit_is_active_against_its_own_posterior_variance_not_against_one():
    """Three units of one model. Unit 0's mean moves by about 0.05 (activity 0.0025, below Burda's 0.01)
    but its posterior std is 0.005, so it carries several nats about x: active. Unit 1's mean moves as
    much with a posterior std of 1: collapsed (the N(0, I) rule). Unit 2's posterior is narrow too but its
    mean never moves: collapsed, though its KL (about 4.8 nats) is the largest of the three."""
    from vaekit.diagnostics import latent_diagnostics
    from vaekit.models.posteriors import GaussianPosterior

    torch.manual_seed(0)
    model = build_model(ModelConfig(hidden_dim=8, latent_dim=3, image_shape=(1, 2, 2)))

    def posterior(x: torch.Tensor) -> GaussianPosterior:
        signal = 0.1 * (x.flatten(1).mean(1, keepdim=True) - 0.5) / 0.29  # about 0.05 std over x
        mu = torch.cat([signal, signal, torch.zeros_like(signal)], 1)
        return GaussianPosterior(mu, torch.tensor([2 * math.log(0.005), 0.0, 2 * math.log(0.005)]).expand_as(mu))

    model.posterior = posterior
    d = latent_diagnostics(model, torch.rand(400, 1, 2, 2), batch_size=100)
    assert d.activity[0] < 0.01 and d.activity[1] < 0.01 and d.activity[2] == 0
    torch.testing.assert_close(d.posterior_variance, torch.tensor([2.5e-5, 1.0, 2.5e-5], dtype=torch.float64),
                               rtol=0.15, atol=0)  # fmt: skip
    assert d.active.tolist() == [True, False, False]
    assert d.kl_per_dim[2] > 4.5 and d.kl_per_dim[2] > d.kl_per_dim[1]


def test_the_active_rule_at_its_edges():
    """A constant unit with a point-mass posterior is not active (activity 0 is not above 0.01 x 0); a unit is
    judged against its posterior variance, not its std: activity 4e-4 beside variance 0.01 is active, 0.03
    beside 4.0 is not."""
    from vaekit.diagnostics import LatentDiagnostics

    def active(activity: list[float], variance: list[float]) -> list[bool]:
        d = LatentDiagnostics([], torch.tensor(activity), torch.zeros(1, len(activity)), 0.01, torch.tensor(variance))
        return d.active.tolist()

    assert active([0.0], [0.0]) == [False]
    assert active([4e-4, 0.03], [0.01, 4.0]) == [True, False]


def test_a_three_epoch_ladder_reports_finite_per_layer_kls_that_add_up_to_the_kl(tiny_data, tmp_path, capsys):
    """Each layer measured against its own prior p(z_i|z_{i+1}): every figure finite (the bottom-up
    estimate against N(0, I) gave millions of nats here), the layers' sum the model's KL within the
    Monte-Carlo error, and the traversals' rows decoding different images."""
    from vaekit import plots
    from vaekit.cli import main
    from vaekit.config import DataConfig, RunConfig, TrainConfig
    from vaekit.evaluation import EvaluationSetting, evaluate_run
    from vaekit.rundir import load_run
    from vaekit.training import train

    config = RunConfig(
        ModelConfig(hierarchy="ladder", ladder_latent_dims=(8, 4, 2), ladder_hidden_dims=(64, 32, 16)),
        DataConfig(train_limit=600, eval_limit=200),
        TrainConfig(epochs=3, batch_size=50),
    )
    train(config, tmp_path / "run", progress=False, dataset=tiny_data)
    result, _ = evaluate_run(tmp_path / "run", setting=EvaluationSetting(num_importance_samples=0))
    layers = result["layers"]
    assert [(layer["name"], layer["latent_dim"]) for layer in layers] == [("z1", 8), ("z2", 4), ("z3", 2)]
    for layer in layers:
        assert len(layer["kl_per_dim"]) == layer["latent_dim"] and all(map(math.isfinite, layer["kl_per_dim"]))
        assert sum(layer["kl_per_dim"]) == pytest.approx(layer["kl"], abs=1e-4)
    model, _ = load_run(tmp_path / "run")
    x = tiny_data.evaluation_observations("test")
    with torch.no_grad():
        kl = elbo(model, x, 1, torch.Generator().manual_seed(9)).kl.double()
    error = math.hypot(sum(layer["kl_stderr"] for layer in layers), kl.std().item() / math.sqrt(len(kl)))
    assert abs(sum(layer["kl"] for layer in layers) - kl.mean().item()) < 4 * error
    assert sum(layer["active_units"] for layer in layers) == result["active_units"]
    diagnostics = plots.latent_diagnostics(model, x)
    rows = plots.traversal_rows(diagnostics)
    active_layers = {i for i, n in enumerate(diagnostics.active_by_layer()) if n}
    assert {layer for layer, _, _ in rows} == active_layers and 0 in active_layers  # each layer in use has rows
    assert all(diagnostics.active[j] for _, j, _ in rows) and len(rows) == min(32, diagnostics.active_units)
    with torch.no_grad():
        mu = model.posterior(x[:1]).mean
        images = []
        for layer, j, _ in rows:
            z = mu.clone()
            z[:, j] = 3.0
            images.append(model.decode(model.prior.fill_below(z, layer)).mean)
    assert len({tuple(image.flatten().round(decimals=3).tolist()) for image in images}) > len(rows) // 2
    main(["evaluate", str(tmp_path / "run"), "--samples", "0", "--no-progress"])
    out = capsys.readouterr().out
    assert "layer z1" in out and "layer z3" in out and "Monte Carlo" in out


def test_chen_et_als_mig_reads_the_posteriors_std_and_adds_its_stderr_only_where_it_has_a_figure(monkeypatch):
    import numpy as np

    from vaekit import disentanglement
    from vaekit.diagnostics import _with_posterior_mig, posterior_mig

    assert _with_posterior_mig({"stderr": {"mig": 0.1}}, {})["stderr"] == {"mig": 0.1}
    torch.manual_seed(0)
    model = build_model(ModelConfig(image_shape=(1, 2, 3), hidden_dim=8, latent_dim=2)).eval()
    images = np.eye(6, dtype=np.float32).reshape(-1, 1, 2, 3)
    grid = disentanglement.FactorGrid((2, 3), lambda f: images[f[:, 0] * 3 + f[:, 1]])
    seen = {}
    real = disentanglement.mig_posterior_estimate
    monkeypatch.setattr(
        disentanglement, "mig_posterior_estimate", lambda m, s, *a: seen.update(std=s) or real(m, s, *a)
    )
    posterior_mig(model, grid, ("a", "b"), grid_classes=0, seed=0)
    expected = (0.5 * model.posterior(torch.from_numpy(images)).logvar).exp()
    torch.testing.assert_close(seen["std"], expected.detach())


@pytest.mark.parametrize(
    "model, scored",
    [({}, True), ({"posterior_flow": "planar", "flow_steps": 2}, False), ({"hierarchy": "two-layer"}, False)],
)
def test_chen_et_als_mig_is_taken_from_q_z_given_x_where_it_is_one_factorized_gaussian(model, scored):
    """mig_posterior needs log q(z_j | x) in closed form: a one-layer Gaussian posterior has it, a flow and
    a hierarchy's top layer do not, so they get no figure rather than a wrong one."""
    import torch

    from vaekit.config import ModelConfig
    from vaekit.diagnostics import posterior_mig
    from vaekit.models.vae import build_model

    torch.manual_seed(0)
    vae = build_model(ModelConfig(image_shape=(1, 2, 3), hidden_dim=8, latent_dim=2, **model)).eval()
    grid = d.FactorGrid((2, 3), lambda f: np.eye(6, dtype=np.float32)[f[:, 0] * 3 + f[:, 1]].reshape(-1, 1, 2, 3))
    figures = posterior_mig(vae, grid, ("a", "b"), grid_classes=0, seed=0)
    assert ("mig_posterior" in figures) == scored
    if scored:
        assert 0 <= figures["mig_posterior"] <= 1
        assert figures["mig_posterior_setting"] == {"images": 6, "grid_classes": 0, "samples": 10_000,
                                                    "factors": ["a", "b"]}  # fmt: skip
