"""`vaekit compare`: the runs' figures in one table, their validation curves in one picture."""

import json

import pytest
from PIL import Image

from vaekit import rundir
from vaekit.cli import main
from vaekit.compare import compare, labels
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
    assert wider.split()[4:8] == ["-", "-", "-", "3"]  # no log p(x), K or active units yet; 3 epochs
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
