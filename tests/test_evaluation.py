"""Importance-sampled log p(x) against exact integration, and against the ELBO."""

import math

import pytest
import torch

from vaekit.config import ModelConfig
from vaekit.evaluation import evaluate_elbo, importance_sampled_log_likelihood
from vaekit.models.vae import build_model
from vaekit.objectives import elbo


def _exact_log_likelihood(model, x, lo=-12.0, hi=12.0, points=24001):
    """log p(x) = log integral p(x|z) N(z; 0, 1) dz on a fine grid, for a 1-D latent space."""
    z = torch.linspace(lo, hi, points).unsqueeze(1)  # (points, 1)
    log_prior = -0.5 * (math.log(2 * math.pi) + z.squeeze(1) ** 2)
    with torch.no_grad():
        lik = model.decode(z)
        rows = [lik.log_prob(xi.expand(points, *xi.shape)) + log_prior for xi in x]
    dz = (hi - lo) / (points - 1)
    return torch.stack([torch.logsumexp(r.double(), 0) + math.log(dz) for r in rows])


def test_importance_sampling_agrees_with_numerical_integration_and_the_elbo_sits_below():
    torch.manual_seed(0)
    model = build_model(ModelConfig(hidden_dim=16, latent_dim=1, image_shape=(1, 3, 3)))
    x = torch.bernoulli(torch.full((6, 1, 3, 3), 0.4), generator=torch.Generator().manual_seed(1))
    exact = _exact_log_likelihood(model, x)
    est = importance_sampled_log_likelihood(model, x, num_importance_samples=5000, rows_per_call=700, seed=2)
    assert est.per_datapoint.dtype == torch.float64
    torch.testing.assert_close(est.per_datapoint, exact, atol=0.02, rtol=0)
    # The ELBO's expectation (many samples) is a lower bound on the exact log p(x).
    bound = elbo(model, x, num_samples=20000, generator=torch.Generator().manual_seed(3)).elbo.double()
    assert torch.all(bound <= exact + 1e-3)
    assert torch.any(bound < exact - 1e-2)  # and not a tight one for an untrained encoder


def test_elbo_is_below_log_likelihood_on_a_trained_model(trained_small):
    model, mnist_small = trained_small
    x = mnist_small.evaluation_observations("test")[:200]
    ll = importance_sampled_log_likelihood(model, x, 500, seed=0)
    with torch.no_grad():
        bound = elbo(model, x, num_samples=50, generator=torch.Generator().manual_seed(1)).elbo.double()
    gap = ll.per_datapoint - bound  # log p(x) - ELBO >= 0 per datapoint, up to estimator noise
    assert gap.mean() > 3 * gap.std() / math.sqrt(len(gap))
    assert (gap > -0.5).float().mean() > 0.95
    summary = evaluate_elbo(model, x, num_samples=50, generator=torch.Generator().manual_seed(1))
    assert summary.elbo < ll.mean


def test_log_likelihood_estimate_rises_with_k_on_a_trained_model(trained_small):
    model, data = trained_small
    x = data.evaluation_observations("test")[:100]
    est = [importance_sampled_log_likelihood(model, x, k, seed=k).mean for k in (1, 10, 200)]
    assert est[0] < est[1] < est[2]


def test_evaluate_split_reports_every_figure(trained_small):
    from vaekit.evaluation import evaluate_split

    model, data = trained_small
    x = data.evaluation_observations("test")[:200]
    out = evaluate_split(model, x, num_importance_samples=100, iwae_num_importance_samples=5, batch_size=50, seed=0)
    for key in (
        "elbo",
        "reconstruction",
        "kl",
        "log_likelihood",
        "log_likelihood_stderr",
        "gap",
        "iwae_bound",
        "active_units",
        "collapsed_units",
        "kl_per_dim",
    ):
        assert key in out
    assert out["elbo"] < out["iwae_bound"] < out["log_likelihood"] + 3 * out["log_likelihood_stderr"]
    assert out["gap"] > 0 and len(out["kl_per_dim"]) == model.latent_dim
    assert out["active_units"] + out["collapsed_units"] == model.latent_dim
    again = evaluate_split(model, x, num_importance_samples=100, iwae_num_importance_samples=5, batch_size=50, seed=0)
    assert again["log_likelihood"] == out["log_likelihood"] and again["elbo"] == out["elbo"]
    levels = evaluate_split(model, x, num_importance_samples=0, batch_size=50, measure=("bits/dim", 256))
    assert "log_likelihood" not in levels and levels["elbo_bits_per_dim"] == -levels["elbo"] / (784 * math.log(2))
    assert levels["measure"] == "bits/dim" and "elbo_bits_per_dim" not in out  # binary pixels stay in nats


def test_bf16_log_likelihood_is_close_to_float32_and_saved_apart(trained_small, tmp_path):
    """The opt-in bf16 path: its mean is within 0.05 nats of float32's, and its file does not replace it."""
    from vaekit import rundir

    model, data = trained_small
    x = data.evaluation_observations("test")[:40]
    exact = importance_sampled_log_likelihood(model, x, 200, seed=0)
    lower = importance_sampled_log_likelihood(model, x, 200, seed=0, precision="bf16")
    assert abs(lower.mean - exact.mean) < 0.05
    assert (lower.per_datapoint - exact.per_datapoint).abs().max() < 0.5
    assert not torch.equal(lower.per_datapoint, exact.per_datapoint)  # it did compute in bf16
    for precision in ("float32", "bf16"):
        rundir.write_evaluation(
            tmp_path, {"split": "test", "images": 40, "num_importance_samples": 200, "precision": precision}
        )
    assert sorted(p.name for p in tmp_path.glob("evaluation-*")) == [
        "evaluation-test-k200-bf16.json",
        "evaluation-test-k200.json",
    ]
    assert rundir.best_evaluation(tmp_path, "test")["precision"] == "float32"


def test_compiled_log_likelihood_equals_eager_to_float_rounding(trained_small):
    """compile="on" computes the same estimate (same noise, fused kernels): equal to float32 rounding."""
    model, data = trained_small
    x = data.evaluation_observations("test")[:12]
    eager = importance_sampled_log_likelihood(model, x, 300, seed=0, compile="off")
    compiled = importance_sampled_log_likelihood(model, x, 300, seed=0, compile="on")
    torch.testing.assert_close(compiled.per_datapoint, eager.per_datapoint, atol=0, rtol=1e-6)
    assert not torch.equal(compiled.per_datapoint, eager.per_datapoint)  # it did run the compiled kernels


def test_log_likelihood_without_a_compiler_warns_once_and_equals_eager(trained_small, monkeypatch, capsys):
    def no_compiler(function, **options):
        def fail(*args, **kwargs):
            raise RuntimeError("Compiler: cc is not found\nmore detail")

        return fail

    model, data = trained_small
    x = data.evaluation_observations("test")[:6]
    eager = importance_sampled_log_likelihood(model, x, 100, seed=0, compile="off")
    monkeypatch.setattr(torch, "compile", no_compiler)
    lines: list[str] = []
    fallback = importance_sampled_log_likelihood(model, x, 100, seed=0, compile="on", log=lines.append)
    assert lines == [
        "warning: torch.compile is not available here (Compiler: cc is not found); evaluation continues uncompiled"
    ]
    assert capsys.readouterr().err == ""  # said through `log`, never printed by the library
    assert torch.equal(fallback.per_datapoint, eager.per_datapoint)


def test_auto_compiles_large_cpu_evaluations_only():
    from vaekit.compiling import CompiledOrEager
    from vaekit.evaluation import COMPILE_FROM_DECODES, _weights_function
    from vaekit.objectives import log_importance_weights

    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert _weights_function("auto", cpu, COMPILE_FROM_DECODES - 1) is log_importance_weights
    assert isinstance(_weights_function("auto", cpu, COMPILE_FROM_DECODES), CompiledOrEager)
    assert _weights_function("auto", gpu, 10**9) is log_importance_weights
    assert isinstance(_weights_function("on", cpu, 1), CompiledOrEager)
    assert _weights_function("off", cpu, 10**9) is log_importance_weights


def test_evaluate_weights_best_reads_the_best_epochs_file_and_says_so(trained_run_2d, tmp_path, capsys):
    """Saved apart (...-best.json) with the epoch it holds; compare and the evaluation table name the weights; a
    run folder without model-best.safetensors (written before vaekit kept it) is one sentence."""
    import json
    import shutil

    from vaekit import rundir
    from vaekit.cli import main

    run = tmp_path / "run"
    shutil.copytree(trained_run_2d, run)
    for path in run.glob("evaluation-*.json"):
        path.unlink()
    summary = rundir.read_summary(run)
    assert main(["evaluate", str(run), "--weights", "best", "--samples", "5", "--limit", "40"]) == 0
    assert f"40 images, the best weights (epoch {summary['best_epoch']})" in capsys.readouterr().out
    saved = json.loads((run / "evaluation-test-k5-first40-best.json").read_text())
    assert saved["weights"] == "best" and saved["epochs"] == summary["best_epoch"]
    assert main(["compare", str(run), "--png", str(tmp_path / "c.png")]) == 0
    assert f"best ({summary['best_epoch']})" in capsys.readouterr().out
    (run / rundir.BEST_MODEL_FILE).unlink()
    assert main(["evaluate", str(run), "--weights", "best", "--samples", "0"]) != 0
    assert "has no model-best.safetensors: it was trained before vaekit kept the best model" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("likelihood", "binarization", "unit"),
    [
        ("bernoulli", "dynamic", "nats"),
        ("bernoulli", "none", "nats"),
        ("gaussian", "none", "dequantized bits/dim"),
        ("continuous-bernoulli", "none", "dequantized bits/dim"),
        ("discretized-logistic", "none", "bits/dim"),
        ("categorical", "none", "bits/dim"),
    ],
)
def test_each_likelihood_kind_is_stated_in_its_own_unit(likelihood, binarization, unit):
    """The kind a likelihood declares decides a run's unit: binary pixels in nats, a density on [0, 1] in bits/dim
    after dequantization, a probability over grey levels in bits/dim as it stands."""
    from vaekit.config import DataConfig, ModelConfig, RunConfig
    from vaekit.evaluation import measure

    bits = 5 if binarization == "none" else 8  # fewer levels apply to grey levels kept as they are
    config = RunConfig(ModelConfig(likelihood=likelihood), DataConfig(binarization=binarization, bits=bits))
    assert measure(config) == (unit, 2**bits)
