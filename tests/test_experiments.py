"""Paper reproductions end to end on tiny data: every run, the summary, skipping and resuming."""

import dataclasses
import json
import math

import pytest

from vaekit import rundir
from vaekit.experiments import EXPERIMENTS, ExperimentPlan
from vaekit.experiments.runner import run_experiment


def _run(name, out, budget="short", epochs=None, only=(), minutes=None, device="auto", jobs=1, seeds=1, **kwargs):
    plan = ExperimentPlan(name, budget, epochs, tuple(only), minutes, device, seeds=seeds)
    return run_experiment(plan, out, jobs, **kwargs)


# dSprites and CIFAR-10 have tests of their own, as have the VQ-VAE's (test_vq_vae.py), whose figure is a bound only,
# and Kingma et al. 2014's (test_labels.py), whose runs train on data of their own
OWN_TESTS = ("locatello2019-dsprites", "cifar10-bpd", "vandenoord2017", "vandenoord2017-cifar10", "kingma2014-ssl")


@pytest.mark.parametrize("name", sorted(n for n in EXPERIMENTS if n not in OWN_TESTS))
def test_each_experiment_runs_with_the_smoke_budget(name, tmp_path, tiny_data):
    out = tmp_path / name
    grey = ExperimentPlan(name, "smoke").data_config.binarization == "none"  # mnist-8bit: the 8-bit levels
    result = _run(
        name, out, "smoke", dataset=dataclasses.replace(tiny_data, binarization="none") if grey else tiny_data
    )
    expected = len(ExperimentPlan(name, "smoke").runs())
    assert len(result["runs"]) == expected
    for row in result["runs"]:
        assert row["epochs"] == 1 and row["images_seen"] == len(tiny_data.train)
        assert row["log_likelihood"] > row["test_elbo"] - 5  # importance sampling tightens the bound
        assert (out / row["run"] / "images" / "traversals.png").exists()
    table = (out / "summary.md").read_text()
    assert table.count("\n| ") == (expected + 1) * (2 if grey else 1)  # header and one row per run; in bits/dim
    if grey:  # log p(x) in bits/dim with its standard error, from the same evaluation
        row = result["runs"][0]
        bits, se = -row["log_likelihood"] / (784 * math.log(2)), row["log_likelihood_stderr"] / (784 * math.log(2))
        assert f"| {row['run']} | {bits:.4f} ± {se:.4f} |" in table
    assert "| test rec. |" in table and f"| {result['runs'][0]['test_reconstruction']:.2f} |" in table
    assert json.loads((out / "summary.json").read_text())["budget"] == "smoke"
    assert (out / "bound_vs_images.png").stat().st_size > 1000
    if name == "burda2015-mnist":
        assert "86.76" in table  # published figures beside ours
    # each run with a baseline (two layers against one, a learned prior against the standard one) is
    # compared with it image by image, on the saved per-image estimates
    baselines = getattr(EXPERIMENTS[name], "BASELINES", {})
    rows = {row["run"]: row for row in result["runs"]}
    for run, baseline in baselines.items():
        a, b = (rundir.find_evaluation(out / r, "test", 10)["log_likelihood_per_image"] for r in (baseline, run))
        d = [y - x for x, y in zip(a, b)]
        assert rows[run]["paired_against"] == baseline and rows[run]["paired_images"] == len(d) > 1
        assert rows[run]["paired_difference"] == pytest.approx(sum(d) / len(d))
        assert f"| {baseline}: {rows[run]['paired_difference']:+.2f} ± {rows[run]['paired_stderr']:.2f} |" in table
    assert all(row["paired_against"] is None for r, row in rows.items() if r not in baselines)


def test_complete_runs_are_skipped_and_shorter_ones_resumed(tmp_path, tiny_data):
    out = tmp_path / "beta"
    _run("beta-sweep", out, "smoke", dataset=tiny_data)
    stamp = (out / "beta4" / "model.safetensors").stat().st_mtime_ns
    logs = []
    _run("beta-sweep", out, "smoke", dataset=tiny_data, log=logs.append)
    assert all("skipped" in line for line in logs) and len(logs) == 5
    assert (out / "beta4" / "model.safetensors").stat().st_mtime_ns == stamp
    result = _run("beta-sweep", out, "smoke", epochs=2, dataset=tiny_data)
    assert {r["epochs"] for r in result["runs"]} == {2}  # continued, not restarted


def test_unknown_names_are_clean_errors(tmp_path):
    from vaekit.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown experiment"):
        _run("hinton2006", tmp_path)
    with pytest.raises(ConfigError, match="unknown budget"):
        _run("beta-sweep", tmp_path, "forever")


def test_runs_picks_part_of_the_grid_and_a_later_full_call_adds_the_rest(tmp_path, tiny_data):
    out = tmp_path / "part"
    result = _run("beta-sweep", out, "smoke", dataset=tiny_data, only=["beta4", "beta1"])
    assert [r["run"] for r in result["runs"]] == ["beta1", "beta4"] and result["missing"] == []  # grid order
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["beta1", "beta4"]
    logs = []
    result = _run("beta-sweep", out, "smoke", dataset=tiny_data, log=logs.append)
    assert len(result["runs"]) == 5 and logs.count("beta1: complete, skipped") == 1
    assert sum("training to 1 epochs" in line for line in logs) == 3


def test_minutes_stop_a_run_at_an_epoch_end_and_the_next_call_continues_it(tmp_path, tiny_data):
    out = tmp_path / "timed"
    first = _run("beta-sweep", out, "smoke", epochs=3, minutes=1e-6, dataset=tiny_data, only=["beta1"])
    row = first["runs"][0]
    assert (row["epochs"], row["epochs_planned"], row["images_seen"]) == (1, 3, len(tiny_data.train))
    summary = (out / "summary.md").read_text()
    assert "at most 1e-06 minutes of training" in summary and "| 1 of 3 |" in summary
    logs = []
    second = _run("beta-sweep", out, "smoke", epochs=3, dataset=tiny_data, only=["beta1"], log=logs.append)
    assert logs == ["beta1: resuming to 3 epochs"]
    row = second["runs"][0]
    assert (row["epochs"], row["images_seen"]) == (3, 3 * len(tiny_data.train))  # continued, not restarted
    assert [p[0] for p in row["curve"]] == [600, 1200, 1800]


def test_a_trained_run_whose_evaluation_was_lost_is_evaluated_not_retrained(tmp_path, tiny_data):
    out = tmp_path / "eval"
    first = _run("beta-sweep", out, "smoke", dataset=tiny_data, only=["beta2"])["runs"][0]
    run = out / "beta2"
    (run / rundir.evaluation_file("test", 10)).unlink()  # the smoke budget's K
    (run / rundir.CHECKPOINT_FILE).unlink()  # e.g. only the weights were copied off a GPU machine
    stamp = (run / rundir.MODEL_FILE).stat().st_mtime_ns
    logs = []
    again = _run("beta-sweep", out, "smoke", dataset=tiny_data, only=["beta2"], log=logs.append)["runs"][0]
    assert logs == ["beta2: trained to 1 epochs; evaluating"]
    assert (run / rundir.MODEL_FILE).stat().st_mtime_ns == stamp
    assert again["log_likelihood"] == pytest.approx(first["log_likelihood"], abs=1e-9)  # same weights, same seeds


def test_jobs_share_the_runs_among_worker_processes_and_a_failed_one_is_named(tmp_path, mnist_small):
    from vaekit.config import ModelConfig, RunConfig
    from vaekit.errors import VaekitError

    out = tmp_path / "jobs"
    # beta8's folder holds a run of another model, so its worker must refuse to resume it.
    rundir.prepare(out / "beta8", RunConfig(ModelConfig(latent_dim=3)), resume=False, overwrite=False)
    logs = []
    with pytest.raises(VaekitError, match="run\\(s\\) beta8 of beta-sweep failed"):
        _run("beta-sweep", out, "smoke", only=["beta1", "beta2", "beta8"], jobs=3, device="cpu", log=logs.append)
    assert sum(line.startswith("worker ") for line in logs) == 3
    summary = json.loads((out / "summary.json").read_text())
    assert [r["run"] for r in summary["runs"]] == ["beta1", "beta2"] and summary["missing"] == ["beta8"]
    for row in summary["runs"]:
        assert row["epochs"] == 1 and row["log_likelihood"] > row["test_elbo"] - 5
    logs.clear()
    _run("beta-sweep", out, "smoke", only=["beta1", "beta2"], jobs=2, device="cpu", log=logs.append)
    assert logs == ["beta1: complete, skipped", "beta2: complete, skipped"]  # nothing left for workers


def test_tensorboard_events_for_every_run_also_from_workers(tmp_path, tiny_data):
    from vaekit.experiments.plan import ExperimentPlan
    from vaekit.tensorboard import written_epochs

    out = tmp_path / "tb"
    plan = ExperimentPlan("beta-sweep", "smoke", 2, ("beta1", "beta4"), tensorboard=True)
    run_experiment(plan, out, dataset=tiny_data)
    for run in ("beta1", "beta4"):
        assert written_epochs(out / run / rundir.TENSORBOARD_DIR) == {1, 2}
    worker = ExperimentPlan("beta-sweep", "smoke", 2, ("beta1",), tensorboard=True)
    assert worker.command_line()[-1] == "--tensorboard"  # what a --jobs worker is started with


def test_the_vampprior_experiments_warm_up_is_a_share_of_the_run_at_every_budget():
    """Half the epochs (at most 100) of warm-up, counted in the steps of the data each budget trains on."""
    from vaekit.experiments import tomczak2018

    for budget, epochs in (("smoke", 1), ("short", 10), ("long", 200)):
        plan = ExperimentPlan("tomczak2018-vampprior", budget)
        for _, config in plan.runs():
            images = config.data.train_limit or 50_000
            steps = -(-images // config.train.batch_size) * config.train.epochs
            assert config.train.epochs == epochs and config.train.warmup_steps <= steps
            assert config.train.warmup_steps == tomczak2018.steps_per_epoch(config.data) * max(1, min(100, epochs // 2))
    assert tomczak2018.steps_per_epoch(ExperimentPlan("tomczak2018-vampprior", "smoke").data_config) == 5


def test_seeds_train_each_run_again_pair_seed_with_seed_and_give_medians_and_ranges(tmp_path, tiny_data):
    import statistics

    out = tmp_path / "seeds"
    result = _run("tomczak2018-vampprior", out, "smoke", only=("vae-standard", "vae-mog"), dataset=tiny_data, seeds=3)
    rows = {row["run"]: row for row in result["runs"]}
    assert sorted(rows) == [f"vae-{p}-seed{s}" for p in ("mog", "standard") for s in range(3)]
    assert [rows[f"vae-mog-seed{s}"]["seed"] for s in range(3)] == [0, 1, 2]  # train.seed + S
    for s in range(3):  # each seed paired with the same seed of the baseline, on the per-image estimates
        assert rows[f"vae-mog-seed{s}"]["paired_against"] == f"vae-standard-seed{s}"
        a, b = (rundir.find_evaluation(out / f"vae-{p}-seed{s}", "test", 10)["log_likelihood_per_image"]
                for p in ("standard", "mog"))  # fmt: skip
        assert rows[f"vae-mog-seed{s}"]["paired_difference"] == pytest.approx(
            statistics.fmean(y - x for x, y in zip(a, b))
        )
    groups = {g["run"]: g for g in result["over_seeds"]}
    elbos = [rows[f"vae-mog-seed{s}"]["test_elbo"] for s in range(3)]
    figure = groups["vae-mog"]["figures"]["test_elbo"]
    assert figure == {"median": sorted(elbos)[1], "min": min(elbos), "max": max(elbos), "values": elbos}
    assert groups["vae-mog"]["paired_against"] == "vae-standard" and groups["vae-standard"]["paired_against"] is None
    assert len(set(elbos)) == 3  # the seeds differ
    table = (out / "summary.md").read_text()
    assert "Over seeds: median [minimum, maximum]" in table
    assert f"| vae-mog | 3 | {figure['median']:.2f} [{figure['min']:.2f}, {figure['max']:.2f}] |" in table
    assert ExperimentPlan("beta-sweep", "smoke", seeds=2, only=("beta1-seed1",)).runs()[0][1].train.seed == 1
    assert "--seeds" in ExperimentPlan("beta-sweep", "smoke", seeds=2).command_line()


def test_the_locatello_experiment_scores_every_objective_with_every_metric_over_seeds(tmp_path, monkeypatch):
    """dSprites at the smoke budget (256 images, one epoch), two seeds: each run's metrics in its row, the
    published figures beside them, and the medians over seeds."""
    from vaekit import disentanglement

    monkeypatch.setattr(  # the smoke budget's own 40 points replace train and test
        disentanglement, "SCORE_POINTS", {"train": 1000, "test": 1000, "batch_size": 8, "variance_points": 500}
    )
    monkeypatch.setattr(disentanglement, "DCI_TREES", 5)  # DCI's own test has 100
    out = tmp_path / "locatello"
    only = ("vae", "factor-vae")
    result = _run("locatello2019-dsprites", out, "smoke", only=only, seeds=2)
    rows = {row["run"]: row for row in result["runs"]}
    assert sorted(rows) == sorted(f"{r}-seed{s}" for r in only for s in (0, 1))
    for row in rows.values():
        assert row["images_seen"] == 256 and row["log_likelihood"] is None  # K = 0: no log p(x) on dSprites
        assert all(0 <= row[m] <= 1 for m in disentanglement.METRICS), row
        assert (out / row["run"] / "images" / "factors.png").exists()
        (path,) = (out / row["run"]).glob("evaluation-test-k0-disentanglement-n*-p40-g*.json")  # named by its setting
        saved = json.loads(path.read_text())
        assert saved["disentanglement"]["score_points"] == {"train": 40, "test": 20, "batch_size": 8,
                                                            "variance_points": 500}  # fmt: skip
    assert rows["factor-vae-seed0"]["published_metrics"] == {"mig_posterior": 0.15, "factor_vae_score": 0.82}
    groups = {g["run"]: g for g in result["over_seeds"]}
    migs = [rows[f"vae-seed{s}"]["mig"] for s in (0, 1)]
    assert groups["vae"]["figures"]["mig"]["median"] == pytest.approx(sum(migs) / 2)
    table = (out / "summary.md").read_text()
    assert "| run | mig | mig_posterior | sap |" in table and " (0.82) |" in table
    over = groups["factor-vae"]["figures"]  # over seeds: median [min, max], the published MIG beside Chen et al.'s only
    cell = lambda m: f"{over[m]['median']:.3f} [{over[m]['min']:.3f}, {over[m]['max']:.3f}]"  # noqa: E731
    assert f"| factor-vae | 2 | {cell('mig')} | {cell('mig_posterior')} (0.15) |" in table
    assert "Lin et al. 2020 (InfoGAN-CR and ModelCentrality), Table 1" in table  # the sources, under the tables


def test_every_published_locatello_figure_sits_beside_the_estimator_it_was_computed_with():
    """The published MIGs (Chen et al.'s estimator, via Lin et al. 2020's Table 1) stand only beside mig_posterior,
    never the 20-bin mig; beta-VAE's FactorVAE score, a mean, is not set against FactorVAE's best; every
    published figure appears in a source line, none of them ascribed to Locatello et al."""
    from vaekit.experiments import locatello2019 as loc

    published = loc.PUBLISHED_METRICS
    assert all("mig" not in figures for figures in published.values())
    assert published["beta-tcvae"] == {"mig_posterior": 0.45} and "factor_vae_score" not in published["beta-vae"]
    sources = " ".join(loc.PUBLISHED_SOURCES)
    for run, figures in published.items():
        for value in figures.values():
            assert f"{value:.2f} ({run})" in sources, (run, value)
    assert "12,600" in sources and "none is Locatello et al.'s" in sources


def test_the_long_budget_runs_burdas_recipe_and_the_short_one_keeps_the_defaults():
    from vaekit.experiments.plan import ExperimentPlan

    defaults = ("constant", 1e-8, "default")
    for budget, recipe in (("long", ("burda", 1e-4, "glorot")), ("short", defaults)):
        for _, config in ExperimentPlan("burda2015-mnist", budget=budget).runs():
            assert (config.train.lr_schedule, config.train.adam_eps, config.model.init) == recipe
    plain = ExperimentPlan("burda2015-mnist", budget="long", recipe=False)  # --no-recipe: the constant-rate baseline
    for (_, config), (_, with_recipe) in zip(plain.runs(), ExperimentPlan("burda2015-mnist", budget="long").runs()):
        assert (config.train.lr_schedule, config.train.adam_eps, config.model.init) == defaults
        assert config.model.architecture == with_recipe.model.architecture and config.train.epochs == 200
    assert plain.command_line()[-1] == "--no-recipe"  # what a --jobs worker is started with


def test_every_burda_run_has_the_papers_base_rate_at_every_budget():
    """Catches a wrong base learning rate in the Burda recipe: Adam at 1e-3 (Burda et al. 2016, Section 5), the
    rate the burda schedule's 10^(-i/7) factors multiply, in every run of every budget, with and without
    the recipe."""
    for budget in ("smoke", "short", "long"):
        for recipe in (True, False):
            runs = ExperimentPlan("burda2015-mnist", budget=budget, recipe=recipe).runs()
            assert runs and {config.train.learning_rate for _, config in runs} == {1e-3}, (budget, recipe)


def test_the_annealed_vaes_capacity_ramp_keeps_its_share_of_the_run_at_every_locatello_budget():
    """100,000 of the paper's 300,000 steps: a third of each budget's steps (its epochs times the batches of its
    images), and the paper's own ramp where the run is as long."""
    import math

    for budget in ("smoke", "short", "long"):
        plan = ExperimentPlan("locatello2019-dsprites", budget)
        config = dict(plan.runs())["annealed-vae"]
        images = config.data.train_limit or round(737_280 * 0.8)
        steps = config.train.epochs * math.ceil(images / config.train.batch_size)
        expected = 100_000 if steps >= 300_000 or not config.data.train_limit else max(1, 100_000 * steps // 300_000)
        assert config.train.capacity_steps == expected, (budget, steps)
