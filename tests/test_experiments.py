"""Paper reproductions end to end on tiny data: every run, the summary, skipping and resuming."""

import json

import pytest

from vaekit.experiments import EXPERIMENTS, run_experiment


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_each_experiment_runs_with_the_smoke_budget(name, tmp_path, tiny_data):
    out = tmp_path / name
    result = run_experiment(name, out, "smoke", dataset=tiny_data)
    expected = len(EXPERIMENTS[name].runs(1, None))
    assert len(result["runs"]) == expected
    for row in result["runs"]:
        assert row["epochs"] == 1 and row["images_seen"] == len(tiny_data.train)
        assert row["log_likelihood"] > row["test_elbo"] - 5  # importance sampling tightens the bound
        assert (out / row["run"] / "images" / "traversals.png").exists()
    table = (out / "summary.md").read_text()
    assert table.count("\n| ") == expected + 1  # header and one row per run
    assert json.loads((out / "summary.json").read_text())["budget"] == "smoke"
    assert (out / "bound_vs_images.png").stat().st_size > 1000
    if name == "burda2015-mnist":
        assert "86.76" in table  # published figures beside ours


def test_complete_runs_are_skipped_and_shorter_ones_resumed(tmp_path, tiny_data):
    out = tmp_path / "beta"
    run_experiment("beta-sweep", out, "smoke", dataset=tiny_data)
    stamp = (out / "beta4" / "model.safetensors").stat().st_mtime_ns
    logs = []
    run_experiment("beta-sweep", out, "smoke", dataset=tiny_data, log=logs.append)
    assert all("skipped" in line for line in logs) and len(logs) == 5
    assert (out / "beta4" / "model.safetensors").stat().st_mtime_ns == stamp
    result = run_experiment("beta-sweep", out, "smoke", epochs=2, dataset=tiny_data)
    assert {r["epochs"] for r in result["runs"]} == {2}  # continued, not restarted


def test_unknown_names_are_clean_errors(tmp_path):
    from vaekit.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown experiment"):
        run_experiment("hinton2006", tmp_path)
    with pytest.raises(ConfigError, match="unknown budget"):
        run_experiment("beta-sweep", tmp_path, "forever")
