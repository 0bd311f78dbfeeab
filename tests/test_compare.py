"""`vaekit compare`: the runs' figures in one table, their validation curves in one picture."""

import json
import shutil

import pytest
from PIL import Image

from vaekit import rundir
from vaekit.cli import main
from vaekit.compare import compare, labels, paired_log_likelihood
from vaekit.evaluation import evaluate_split
from vaekit.training import train


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, tiny_data):
    from vaekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig

    root = tmp_path_factory.mktemp("compare")
    base = RunConfig(ModelConfig(hidden_dim=64, latent_dim=4), DataConfig(), TrainConfig(epochs=2, batch_size=50))
    small = train(base, root / "small", progress=False, dataset=tiny_data)
    train(
        base.with_overrides({"train.epochs": 3, "model.latent_dim": 6}),
        root / "wider",
        progress=False,
        dataset=tiny_data,
    )
    x = tiny_data.evaluation_observations("test")[:60]
    result = evaluate_split(small.model, x, num_importance_samples=20)
    rundir.write_evaluation(root / "small", {"split": "test", "limit": 60, **result})
    return root, result


def test_the_table_holds_each_runs_figures(two_runs, capsys, tmp_path):
    root, evaluated = two_runs
    png = tmp_path / "curves.png"
    assert main(["compare", str(root / "small"), str(root / "wider"), "--png", str(png)]) == 0
    out = capsys.readouterr().out.splitlines()
    small = next(line for line in out if line.startswith("small"))
    wider = next(line for line in out if line.startswith("wider"))
    summary = rundir.read_summary(root / "small")
    assert f"{summary['test_elbo']:.2f}" in small
    assert f"{evaluated['log_likelihood']:.2f} ± {evaluated['log_likelihood_stderr']:.2f}" in small
    assert "20 x 60" in small and f"{evaluated['active_units']}/4" in small
    assert wider.split()[4:10] == ["-", "-", "-", "-", "-", "3"]  # no evaluation yet (nothing paired); 3 epochs
    with Image.open(png) as picture:
        assert picture.size[0] > 300 and picture.size[1] > 200


def test_json_and_html(two_runs, capsys, tmp_path):
    root, evaluated = two_runs
    page = tmp_path / "runs.html"
    argv = [
        "compare",
        str(root / "small"),
        str(root / "wider"),
        "--json",
        "--html",
        str(page),
        "--png",
        str(tmp_path / "c.png"),
    ]
    assert main(argv) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["run"] for r in rows] == ["small", "wider"]
    assert rows[0]["log_likelihood"] == evaluated["log_likelihood"]
    assert rows[1]["log_likelihood"] is None and rows[1]["epochs"] == 3
    assert rows[1]["test_elbo"] == rundir.read_summary(root / "wider")["test_elbo"]
    text = page.read_text()
    assert "<table>" in text and "data:image/png;base64," in text and "wider" in text


def test_runs_with_the_same_folder_name_are_told_apart(tmp_path):
    paths = [tmp_path / "a" / "run", tmp_path / "b" / "run", tmp_path / "c"]
    assert labels(paths) == [str(paths[0]), str(paths[1]), "c"]


def test_a_folder_that_is_not_a_run_is_named(tmp_path, capsys):
    assert main(["compare", str(tmp_path)]) == 2
    assert f"{tmp_path} is not a run folder" in capsys.readouterr().err
    with pytest.raises(Exception, match="not a run folder"):
        compare([tmp_path])


def test_log_p_x_is_compared_image_by_image_on_the_images_both_runs_evaluated(two_runs, tiny_data, capsys, tmp_path):
    from vaekit.compare import paired_log_likelihood as paired
    from vaekit.rundir import load_run

    root, evaluated = two_runs
    other = tmp_path / "wider"
    shutil.copytree(root / "wider", other)
    x = tiny_data.evaluation_observations("test")[:40]
    result = evaluate_split(load_run(other)[0], x, num_importance_samples=20)
    assert result["log_likelihood"] == pytest.approx(sum(result["log_likelihood_per_image"]) / 40, abs=1e-6)
    rundir.write_evaluation(other, {"split": "test", "limit": 40, **result})
    d = [b - a for a, b in zip(evaluated["log_likelihood_per_image"][:40], result["log_likelihood_per_image"])]
    mean = sum(d) / 40
    stderr = (sum((v - mean) ** 2 for v in d) / 39) ** 0.5 / 40**0.5
    figures = paired(root / "small", other)
    assert figures["paired_images"] == 40 and figures["paired_importance_samples"] == 20
    assert figures["paired_difference"] == pytest.approx(mean) and figures["paired_stderr"] == pytest.approx(stderr)
    # the images' own spread cancels: the paired s.e. is below the unpaired one of either run
    assert figures["paired_stderr"] < min(evaluated["log_likelihood_stderr"], result["log_likelihood_stderr"])
    # the ELBO is paired the same way, whatever K each evaluation used; its per-image figures average to it
    # (to float32's resolution: the mean is summed batch by batch in float32)
    assert result["elbo"] == pytest.approx(sum(result["elbo_per_image"]) / 40, rel=1e-6)
    e = [b - a for a, b in zip(evaluated["elbo_per_image"][:40], result["elbo_per_image"])]
    e_mean, e_stderr = sum(e) / 40, (sum((v - sum(e) / 40) ** 2 for v in e) / 39) ** 0.5 / 40**0.5
    from vaekit.compare import paired_elbo

    elbo_figures = paired_elbo(root / "small", other)
    assert elbo_figures["paired_elbo_images"] == 40 and elbo_figures["paired_elbo_difference"] == pytest.approx(e_mean)
    assert elbo_figures["paired_elbo_stderr"] == pytest.approx(e_stderr)
    assert main(["compare", str(root / "small"), str(other), "--png", str(tmp_path / "c.png")]) == 0
    out = capsys.readouterr().out
    line = next(row for row in out.splitlines() if row.startswith("wider"))
    assert f"{mean:+.2f} ± {stderr:.2f}" in line and f"{e_mean:+.2f} ± {e_stderr:.2f}" in line
    # every column says which images it covers: the test ELBO all 200, log p(x) 60 and 40, paired the 40 in common
    assert "test ELBO, rec. and KL: the first 200 test images of each run that has them" in out
    assert "warning: log p(x) cover different numbers of test images (small 60, wider 40)" in out
    assert "vs base, paired: on the test images both runs evaluated (wider 40)" in out
    # another K, or other images (a different binarization), do not compare
    evaluation = rundir.best_evaluation(other, "test")
    (other / rundir.evaluation_file("test", 20, limit=40)).unlink()
    rundir.write_evaluation(other, {**evaluation, "num_importance_samples": 30})
    assert paired(root / "small", other) == {}
    config = rundir.read_config(other).with_overrides({"data.binarization_seed": 7})
    (other / rundir.CONFIG_FILE).write_text(config.to_json())
    rundir.write_evaluation(other, evaluation)
    assert paired(root / "small", other) == {}


def test_latent_sizes_list_every_stochastic_layer_bottom_first():
    from vaekit.config import ModelConfig

    assert ModelConfig(latent_dim=16).latent_sizes == (16,)
    two = ModelConfig(hidden_dim=100, latent_dim=100, hierarchy="two-layer", top_latent_dim=50, top_hidden_dim=50)
    assert two.latent_sizes == (100, 50)
    ladder = ModelConfig(hierarchy="ladder", ladder_latent_dims=(40, 20), ladder_hidden_dims=(300, 300))
    assert ladder.latent_sizes == (40, 20)


def test_runs_scored_against_known_factors_get_a_table_of_their_disentanglement_metrics(two_runs, capsys, tmp_path):
    """The figures come from the evaluation with --disentanglement that covers the most images; a run
    without one shows dashes, and runs with none at all get no second table."""
    from vaekit.compare import METRIC_HEADS
    from vaekit.disentanglement import METRICS

    root = tmp_path / "runs"
    shutil.copytree(two_runs[0], root)
    figures = {name: 0.1 + i / 100 for i, name in enumerate(METRICS)}
    rundir.write_evaluation(root / "small", {"split": "test", "images": 50, "disentanglement": {**figures, "mig": 0.9}})
    rundir.write_evaluation(root / "small", {"split": "test", "images": 200, "limit": 200, "disentanglement": figures})
    png = str(tmp_path / "c.png")
    assert main(["compare", str(root / "wider"), "--png", png]) == 0
    assert "MIG q(z|x)" not in capsys.readouterr().out
    assert (
        main(["compare", str(root / "small"), str(root / "wider"), "--png", png, "--html", str(tmp_path / "c.html")])
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    heads = next(i for i, line in enumerate(out) if "MIG q(z|x)" in line)
    assert list(METRIC_HEADS) == list(METRICS)
    assert out[heads + 1].split() == ["small", *(f"{figures[name]:.3f}" for name in METRICS)]
    assert out[heads + 2].split() == ["wider", *["-"] * len(METRICS)]
    assert "Disentanglement (test images)" in (tmp_path / "c.html").read_text()
    assert main(["compare", str(root / "small"), "--json", "--png", png]) == 0
    shown = json.loads(capsys.readouterr().out)[0]["disentanglement"]
    assert shown == {**figures, "setting": {"pairs": 200, "score_points": None, "grid_classes": None}}


def test_compare_names_the_settings_each_run_changes_and_warns_when_several_do(two_runs, tmp_path, capsys):
    """'wider' has 3 epochs and 6 latents where 'small' has 2 and 4 (how a run was carried out, such as its
    device, is no difference); --baseline puts the named run first and pairs the others with it."""
    from vaekit.compare import differences

    root, _ = two_runs
    small, wider = root / "small", root / "wider"
    assert differences(small, wider) == {"model.latent_dim": [4, 6], "train.epochs": [2, 3]}
    assert differences(small, small) == {}
    png = str(tmp_path / "c.png")
    assert main(["compare", str(small), str(wider), "--png", png]) == 0
    out = capsys.readouterr().out
    assert "wider differs from small in: model.latent_dim 4 -> 6, train.epochs 2 -> 3" in out
    assert "warning: wider differs from small in 2 settings" in out
    assert main(["compare", str(small), str(wider), "--baseline", str(wider), "--png", png, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["run"] for r in rows] == ["wider", "small"] and "differs" not in rows[0]
    assert rows[1]["differs"] == {"model.latent_dim": [6, 4], "train.epochs": [3, 2]}
    copy = tmp_path / "copy"
    shutil.copytree(small, copy)
    config = json.loads((copy / "config.json").read_text())
    config["train"]["device"], config["train"]["learning_rate"] = "cpu", 0.01
    (copy / "config.json").write_text(json.dumps(config))
    assert main(["compare", str(small), str(copy), "--png", png]) == 0
    out = capsys.readouterr().out
    assert "copy differs from small in: train.learning_rate 0.001 -> 0.01" in out and "warning" not in out


def test_damaged_metric_lines_are_named_and_skipped_and_a_damaged_evaluation_is_one_sentence(
    two_runs, tmp_path, capsys
):
    root = tmp_path / "runs"
    shutil.copytree(two_runs[0], root)
    path = root / "wider" / "metrics.jsonl"
    lines = path.read_text().splitlines()
    first = json.loads(lines[0])
    del first["seconds"]
    path.write_text("\n".join([json.dumps(first), "{not json", *lines[1:]]) + "\n")
    png = str(tmp_path / "c.png")
    assert main(["compare", str(root / "small"), str(root / "wider"), "--png", png]) == 0
    captured = capsys.readouterr()
    assert f"warning: {path} line 1 lacks seconds; it was skipped" in captured.err
    assert f"warning: {path} line 2 is not a JSON object; it was skipped" in captured.err
    assert next(line for line in captured.out.splitlines() if line.startswith("wider")).split()[9] == "2"  # of 3 epochs
    evaluation = next((root / "small").glob("evaluation-*.json"))
    saved = json.loads(evaluation.read_text())
    saved["log_likelihood_per_image"][3] = "-90.1"
    evaluation.write_text(json.dumps(saved))
    assert main(["compare", str(root / "small"), str(root / "wider"), "--png", png]) != 0
    err = capsys.readouterr().err
    assert f"{evaluation} is damaged: its log_likelihood_per_image holds '-90.1' at image 3, not a number" in err
    assert "Traceback" not in err


def test_three_seeds_of_two_configs_are_grouped_with_their_medians_and_spreads(tmp_path, tiny_data, capsys):
    """Two configs (4 and 6 latents), seeds 0, 1, 2 each: the groups' medians and ranges, checked by hand
    from the rows, and the wider config's log p(x) paired with the baseline's seed by seed."""
    import statistics

    from vaekit.compare import seed_groups
    from vaekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig

    paths = []
    for latent in (4, 6):
        for seed in (0, 1, 2):
            config = RunConfig(ModelConfig(hidden_dim=32, latent_dim=latent), DataConfig(),
                               TrainConfig(epochs=1, batch_size=100, seed=seed))  # fmt: skip
            path = tmp_path / f"z{latent}-s{seed}"
            model = train(config, path, progress=False, dataset=tiny_data).model
            x = tiny_data.evaluation_observations("test")[:30]
            rundir.write_evaluation(path, {"split": "test", "limit": 30, **evaluate_split(model, x, 5, seed=seed)})
            paths.append(path)
    rows, _ = compare(paths)
    groups = seed_groups(rows)
    assert [g["runs"] for g in groups] == [[p.name for p in paths[:3]], [p.name for p in paths[3:]]]
    for group, members in zip(groups, (rows[:3], rows[3:])):
        elbos = [r["test_elbo"] for r in members]
        assert group["seeds"] == [0, 1, 2]
        assert group["figures"]["test_elbo"] == {"median": sorted(elbos)[1], "min": min(elbos), "max": max(elbos),
                                                 "values": elbos}  # fmt: skip
    wider = groups[1]["figures"]["paired_difference"]
    by_seed = [
        statistics.fmean(b - a for a, b in zip(
            json.loads(next(paths[s].glob("evaluation-*.json")).read_text())["log_likelihood_per_image"],
            json.loads(next(paths[3 + s].glob("evaluation-*.json")).read_text())["log_likelihood_per_image"]))
        for s in range(3)
    ]  # fmt: skip
    assert wider["values"] == pytest.approx(by_seed) and wider["median"] == pytest.approx(sorted(by_seed)[1])
    assert "paired_difference" not in groups[0]["figures"]
    assert main(["compare", *map(str, paths), "--png", str(tmp_path / "c.png")]) == 0
    out = capsys.readouterr().out
    e = groups[1]["figures"]["test_elbo"]
    assert (
        f"over seeds 0, 1, 2 (z6-s0, z6-s1, z6-s2): test ELBO {e['median']:.2f} [{e['min']:.2f}, {e['max']:.2f}]" in out
    )
    assert "z6-s1 differs from z4-s0 in: model.latent_dim 4 -> 6, train.seed 0 -> 1" in out
    assert "warning: z6-s1" not in out  # another seed is a replicate, not a second change


def test_two_8bit_runs_are_compared_and_paired_in_bits_per_dim(tmp_path, tiny_data, capsys):
    """The paired column in bits/dim is the paired log p(x) difference over -D ln 2, its s.e. likewise."""
    import math

    from vaekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from vaekit.evaluation import EvaluationSetting, evaluate_run

    data = DataConfig(binarization="none", train_limit=300, eval_limit=40)
    runs = []
    for name, hidden in (("narrow", 16), ("wide", 48)):
        model = ModelConfig(likelihood="discretized-logistic", hidden_dim=hidden, latent_dim=4)
        train(RunConfig(model, data, TrainConfig(epochs=1, batch_size=50)), tmp_path / name, progress=False)
        result, _ = evaluate_run(tmp_path / name, "test", EvaluationSetting(num_importance_samples=10, limit=40))
        assert result["measure"] == "bits/dim" and result["levels"] == 256
        scale = 784 * math.log(2)
        assert result["log_likelihood_bits_per_dim"] == pytest.approx(-result["log_likelihood"] / scale)
        assert result["log_likelihood_bits_per_dim_stderr"] == pytest.approx(result["log_likelihood_stderr"] / scale)
        runs.append(result)
    assert main(["compare", str(tmp_path / "narrow"), str(tmp_path / "wide"), "--png", str(tmp_path / "c.png")]) == 0
    out = capsys.readouterr().out
    d = [b - a for a, b in zip(runs[0]["log_likelihood_per_image"], runs[1]["log_likelihood_per_image"])]
    mean, stderr = sum(d) / 40, (sum((v - sum(d) / 40) ** 2 for v in d) / 39) ** 0.5 / 40**0.5
    wide = next(row for row in out.splitlines() if row.startswith("wide"))
    bpd, bpd_se = runs[1]["log_likelihood_bits_per_dim"], runs[1]["log_likelihood_bits_per_dim_stderr"]
    assert "bits/dim" in out.splitlines()[0] and f"{bpd:.4f} ± {bpd_se:.4f}" in wide
    assert f"{-mean / scale:+.4f} ± {stderr / scale:.4f}" in wide


def _scored(path, setting: dict, mig: float, weights: str = "last") -> None:
    """A saved disentanglement evaluation with every metric, standard errors and a setting."""
    from vaekit.disentanglement import METRICS

    figures = {name: 0.5 for name in METRICS} | {"mig": mig, "pairs": setting["pairs"], "setting": setting}
    figures["stderr"] = {name: 0.01 for name in METRICS} | {"dci_disentanglement": None}
    result = {"split": "test", "images": setting["pairs"], "weights": weights, "disentanglement": figures}
    rundir.write_evaluation(path, result)


def test_disentanglement_over_seeds_with_standard_errors_and_never_two_settings_in_one_column(
    two_runs, tmp_path, capsys
):
    """Two seeds of one config and a third run: each metric ± its s.e., the seeds' median [min, max], and
    figures taken from the setting every run has; where the runs share none, a warning names each one's."""
    from vaekit.compare import choose_disentanglement, seed_groups

    root, _ = two_runs
    paths = [tmp_path / name for name in ("a-s0", "a-s1", "b")]
    for path, seed in zip(paths, (0, 1, 0)):
        shutil.copytree(root / ("small" if path.name != "b" else "wider"), path)
        rundir.write_config(path, rundir.read_config(path).with_overrides({"train.seed": seed}))
    long, quick = (
        {"pairs": 200, "score_points": 2000, "grid_classes": 10},
        {"pairs": 200, "score_points": 40, "grid_classes": 3},
    )
    for path, mig in zip(paths, (0.2, 0.4, 0.3)):
        _scored(path, long, mig)
    _scored(paths[0], quick, 0.9)  # a quick check of one run: not set beside the others' long ones
    rows, _ = compare(paths)
    assert [r["disentanglement"]["mig"] for r in rows] == [0.2, 0.4, 0.3]
    (group,) = seed_groups(rows)
    assert group["metrics"]["mig"] == {"median": pytest.approx(0.3), "min": 0.2, "max": 0.4, "values": [0.2, 0.4]}
    assert main(["compare", *map(str, paths), "--png", str(tmp_path / "c.png")]) == 0
    out = capsys.readouterr().out
    assert "0.200 ± 0.010" in out and "every run in one setting: 200 pairs, 2000 score points, grid 10" in out
    assert "disentanglement over those seeds (200 pairs, 2000 score points, grid 10): MIG 0.300 [0.200, 0.400]" in out
    for file in paths[2].glob("evaluation-test-k0-disentanglement-*.json"):
        file.unlink()
    _scored(paths[2], quick, 0.7)  # the third run has only the quick setting: the columns would mix
    rows, _ = compare(paths)
    choose_disentanglement(rows)
    assert rows[2]["disentanglement_mixed"] and [r["disentanglement"]["mig"] for r in rows] == [0.2, 0.4, 0.7]
    assert main(["compare", *map(str, paths), "--png", str(tmp_path / "c.png")]) == 0
    out = capsys.readouterr().out
    assert "warning: the runs were scored in different settings (a-s0: 200 pairs, 2000 score points, grid 10" in out
    assert "b: 200 pairs, 40 score points, grid 3)" in out and "disentanglement over those seeds" in out


def test_a_row_of_the_best_weights_takes_the_best_weights_test_figures(two_runs, tmp_path):
    """Where a run's most complete evaluation is of its best weights, its test ELBO comes from the summary's
    best_weights, and its disentanglement figures only from evaluations of those weights."""
    root, result = two_runs
    path = tmp_path / "run"
    shutil.copytree(root / "wider", path)
    summary = rundir.read_summary(path)
    rundir.write_summary(path, {**summary, "best_epoch": 2, "best_weights": {"epoch": 2, "test_elbo": -123.0}})
    rundir.write_evaluation(path, {"split": "test", "limit": 60, **result, "images": 10_000, "weights": "best"})
    _scored(path, {"pairs": 100, "score_points": None, "grid_classes": None}, 0.6, weights="last")
    (row,) = compare([path])[0]
    assert row["test_elbo"] == -123.0 and row["weights"] == "best (2)" and row.get("disentanglement") is None


def test_seeds_scored_in_different_settings_get_no_medians_and_old_files_keep_their_pairs(two_runs, tmp_path):
    """Two seeds scored in different settings are not summarised over seeds; a file saved before settings
    were kept reads its pairs from its figures, not from the evaluation's image count; a summary from before
    best_weights were kept gives a best-weights row no test ELBO rather than the last weights'."""
    from vaekit.compare import seed_groups

    root, _ = two_runs
    paths = [tmp_path / "a-s0", tmp_path / "a-s1"]
    for path, seed in zip(paths, (0, 1)):
        shutil.copytree(root / "small", path)
        rundir.write_config(path, rundir.read_config(path).with_overrides({"train.seed": seed}))
    _scored(paths[0], {"pairs": 200, "score_points": 40, "grid_classes": 3}, 0.2)
    _scored(paths[1], {"pairs": 200, "score_points": 2000, "grid_classes": 10}, 0.4)
    (group,) = seed_groups(compare(paths)[0])
    assert "metrics" not in group
    old = tmp_path / "old"
    old.mkdir()
    rundir.write_evaluation(old, {"split": "test", "images": 20_000, "disentanglement": {"mig": 0.3, "pairs": 10_000}})
    assert rundir.disentanglement_evaluations(old, "test")[0]["setting"]["pairs"] == 10_000
    assert rundir.test_figures({"epochs": 4, "best_epoch": 2, "test_elbo": -90.0}, "best") == {}
    assert rundir.test_figures({"epochs": 4, "best_epoch": 4, "test_elbo": -90.0}, "best")["test_elbo"] == -90.0


def _evaluated_run(root, name: str, precision: str, values: list[float]):
    from vaekit.config import RunConfig

    run = root / name
    run.mkdir()
    rundir.write_config(run, RunConfig())
    rundir.write_evaluation(
        run,
        {
            "split": "test",
            "num_importance_samples": 50,
            "precision": precision,
            "images": len(values),
            "log_likelihood_per_image": values,
        },  # fmt: skip
    )
    return run


def test_a_bf16_evaluation_is_never_paired_with_a_float32_one(tmp_path):
    """The contract: pairs share K and precision, since bf16 weights move single images by up to 0.1 nats."""
    a = _evaluated_run(tmp_path, "a", "float32", [-90.0, -91.0, -92.5])
    b = _evaluated_run(tmp_path, "b", "bf16", [-89.0, -90.5, -92.0])
    c = _evaluated_run(tmp_path, "c", "float32", [-89.0, -90.5, -92.0])
    assert paired_log_likelihood(a, b) == {}
    paired = paired_log_likelihood(a, c)
    assert paired["paired_images"] == 3 and paired["paired_difference"] == pytest.approx((1.0 + 0.5 + 0.5) / 3)
