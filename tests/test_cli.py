"""The command line: the documented contract, help texts, and clean errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from vaekit.cli import main


def test_train_evaluate_sample_reconstruct_end_to_end(tmp_path, mnist_small, capsys):
    run = tmp_path / "run"
    args = [
        "train",
        "--run-dir",
        str(run),
        "--epochs",
        "2",
        "--seed",
        "3",
        "--train-limit",
        "1000",
        "--eval-limit",
        "300",
        "--hidden-dim",
        "64",
        "--set",
        "model.latent_dim=4",
        "--no-progress",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "test elbo" in out and str(run) in out
    config = json.loads((run / "config.json").read_text())
    assert (config["train"]["epochs"], config["train"]["seed"], config["model"]["latent_dim"]) == (2, 3, 4)
    for name in (
        "reconstructions.png",
        "samples.png",
        "interpolations.png",
        "traversals.png",
        "latents.png",
        "curves.png",
    ):
        assert Image.open(run / "images" / name).size[0] > 100
    assert (run / "report.html").stat().st_size > 10_000

    assert main(["evaluate", str(run), "--json", "--samples", "100", "--iwae-k", "5"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"elbo", "reconstruction", "kl"} <= set(result)
    assert result["elbo"] == pytest.approx(result["reconstruction"] - result["kl"])
    summary = json.loads((run / "summary.json").read_text())
    assert result["elbo"] == pytest.approx(summary["test_elbo"])  # the same fixed binarization and noise

    assert main(["evaluate", str(run), "--split", "valid", "--samples", "50"]) == 0
    assert "reconstruction" in capsys.readouterr().out
    assert main(["sample", str(run), "-n", "16", "--out", str(tmp_path / "s.png")]) == 0
    assert Image.open(tmp_path / "s.png").size == (2 * (4 * 30 + 2), 2 * (4 * 30 + 2) + 18)
    assert main(["reconstruct", str(run), "-n", "20", "--out", str(tmp_path / "r.png")]) == 0
    assert (tmp_path / "r.png").stat().st_size > 0

    # Resume with more epochs continues the run.
    assert main(["train", "--run-dir", str(run), "--resume", "--epochs", "3", "--no-progress", "--no-pictures"]) == 0
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3


@pytest.mark.parametrize(
    "argv,fragment",
    [
        # a value is reported by the flag or --set that gave it, a missing one by the flag that sets it
        (["train", "--latent-dim", "0"], "error: --latent-dim 0 is invalid: use 1 to 4096."),
        (["train", "--set", "model.latent_dim=0"], "error: --set model.latent_dim=0 is invalid: use 1 to 4096."),
        (["train", "--config", "images-conv64"], "error: --path is needed: dataset 'image-folder' needs its folder"),
        (["train", "--config", "mnist-gausian"], "did you mean 'mnist-gaussian'?"),
        (["train", "--set", "model.latnt_dim=3"], "did you mean 'latent_dim'"),
        (["train", "--set", "oops"], "must look like key=value"),
        (["train", "--config", "no-such-preset"], "neither a preset"),
        (["train", "--learning-rate", "fast"], "error: --learning-rate fast is invalid: use a number."),
        (["evaluate", "/nonexistent/run"], "does not exist"),
        (["train", "--minutes", "0"], "--minutes 0.0 is invalid"),
        (["experiment", "beta-sweep", "--runs", "beta3"], "beta-sweep has no run beta3: its runs are beta0.5"),
        (["experiment", "beta-sweep", "--jobs", "0"], "--jobs 0 is invalid"),
        (["experiment", "beta-sweep", "--minutes", "-1"], "--minutes -1.0 is invalid"),
    ],
)
def test_bad_input_is_one_clean_error(argv, fragment, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err


def test_every_subcommand_has_help(capsys):
    for command in ("train", "evaluate", "plot", "report", "sample", "reconstruct", "presets", "data"):
        with pytest.raises(SystemExit) as exit_:
            main([command, "--help"])
        assert exit_.value.code == 0 and "usage: vaekit" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "--run-dir" in out and "--epochs" in out and "(default: 16)" in out and "--skip-nonfinite" in out
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    out = capsys.readouterr().out
    assert "--samples" in out and "5000" in out
    # The module entry point that torchrun and `python -m vaekit` use.
    done = subprocess.run([sys.executable, "-m", "vaekit", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "train" in done.stdout


def test_presets_load():
    from vaekit.config import load_config as load_config_with_overrides
    from vaekit.config import preset_names

    names = preset_names()
    assert {"mnist-mlp", "mnist-conv", "mnist-beta4", "mnist-iwae50", "images-conv64"} <= set(names)
    for name in names:
        needs_path = name.startswith(("images", "svhn", "celeba"))  # their data are the user's
        extra = {"data.path": "/some/folder"} if needs_path else {}
        config = load_config_with_overrides(name, extra)
        assert config.model.latent_dim >= 2
    assert load_config_with_overrides("mnist-beta4", {}).train.beta == 4.0
    assert load_config_with_overrides("mnist-iwae50", {}).train.num_samples == 50
    with pytest.raises(Exception, match="needs its folder or file in data.path"):
        load_config_with_overrides("images-conv64", {})


@settings(max_examples=60, deadline=None)
@given(
    flag=st.sampled_from(
        [
            "--latent-dim",
            "--hidden-dim",
            "--batch-size",
            "--learning-rate",
            "--epochs",
            "--num-samples",
            "--seed",
            "--image-shape",
            "--likelihood",
            "--source",
        ]
    ),
    value=st.text(alphabet="0123456789-.,eanx", max_size=6),
)
def test_any_flag_value_runs_or_gives_one_clean_error(flag, value, tmp_path_factory):
    """Bad values must be rejected before any work starts; good ones are stopped before training
    by pointing --resume at an empty folder, which is itself a clean error."""
    empty = tmp_path_factory.mktemp("e")
    try:
        code = main(["train", "--run-dir", str(empty), "--resume", f"{flag}={value}"])
    except SystemExit as exit_:  # argparse rejects values outside `choices` itself, with usage
        assert exit_.code == 2
    else:
        assert code == 2


def test_a_folder_of_generated_rgb_images_trains_with_the_64px_conv_preset(tmp_path, capsys):
    from PIL import Image, ImageDraw

    rng = __import__("random").Random(0)
    folder = tmp_path / "shapes"
    folder.mkdir()
    for i in range(120):
        img = Image.new("RGB", (80, 72), tuple(rng.randrange(256) for _ in range(3)))
        x, y, r = rng.randrange(10, 60), rng.randrange(10, 50), rng.randrange(6, 20)
        ImageDraw.Draw(img).ellipse((x - r, y - r, x + r, y + r), fill=tuple(rng.randrange(256) for _ in range(3)))
        img.save(folder / f"{i}.png")
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--config",
                "images-conv64",
                "--path",
                str(folder),
                "--run-dir",
                str(run),
                "--epochs",
                "2",
                "--batch-size",
                "16",
                "--no-progress",
            ]
        )
        == 0
    )
    assert Image.open(run / "images" / "samples.png").mode == "RGB"
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["valid_elbo"] > metrics[0]["valid_elbo"]
    assert main(["evaluate", str(run), "--samples", "20", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["images"] == 12 and "elbo_bits_per_dim" in result and "log_likelihood" in result


TINY_RUN = [
    "--train-limit",
    "600",
    "--eval-limit",
    "200",
    "--hidden-dim",
    "32",
    "--latent-dim",
    "4",
    "--batch-size",
    "100",
    "--seed",
    "0",
    "--no-pictures",
]


def test_the_same_command_line_with_resume_added_continues_the_run(tmp_path, mnist_small, capsys):
    run = tmp_path / "run"
    command = ["train", "--run-dir", str(run), "--epochs", "2", *TINY_RUN]
    assert main([*command, "--minutes", "1e-6"]) == 0  # stops after epoch 1 of 2, as a killed run would
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1
    assert main([*command, "--resume"]) == 0
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    # where it runs may change; what it computes may not, and the message names the key and both values
    assert main([*command, "--resume", "--epochs", "3", "--device", "cpu", "--num-threads", "1"]) == 0
    assert json.loads((run / "config.json").read_text())["train"]["num_threads"] == 1
    capsys.readouterr()
    assert main([*command, "--resume", "--latent-dim", "5"]) == 2
    err = capsys.readouterr().err
    assert "model.latent_dim is 4 in the saved run, 5 was given" in err and "Traceback" not in err


def test_a_log_file_gets_no_progress_bars_and_one_line_per_epoch(tmp_path, mnist_small):
    log = tmp_path / "log"
    with log.open("w") as out:
        done = subprocess.run(
            [sys.executable, "-m", "vaekit", "train", "--run-dir", str(tmp_path / "run"), "--epochs", "2", *TINY_RUN],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    text = log.read_text()
    assert done.returncode == 0, text
    assert "\r" not in text and "batch/s" not in text and "it/s" not in text
    assert sum(line.startswith("epoch ") for line in text.splitlines()) == 2


def test_sigterm_ends_training_with_a_message_and_exit_status_143_and_resume_finishes(tmp_path, mnist_small):
    import signal
    import time

    run = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "vaekit",
        "train",
        "--run-dir",
        str(run),
        "--epochs",
        "200",
        *TINY_RUN,
        "--batch-size",
        "10",
    ]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (run / "metrics.jsonl").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)  # the first epoch is done: the loop is running
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM at step" in err and "--resume continues" in err and "Traceback" not in err
    step, epoch = (int(err.split(word)[1].split()[0].rstrip(");")) for word in ("at step ", "(epoch "))
    assert step >= 60  # 60 steps per epoch, and the first epoch had ended
    finish = str(epoch + 1)
    assert main(["train", "--run-dir", str(run), "--resume", "--epochs", finish, "--no-pictures", "--no-progress"]) == 0
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["epoch"] == epoch + 1 and metrics[-1]["step"] == 60 * (epoch + 1)


@pytest.mark.parametrize(
    "argv,suggestion",
    [
        (["train", "--latent_dim", "3"], "did you mean --latent-dim?"),
        (["train", "--learnig-rate", "0.01"], "did you mean --learning-rate?"),
        (["train", "--epohcs", "3"], "did you mean --epochs?"),
        (["evaluate", "runs/x", "--sampels", "50"], "did you mean --samples?"),
    ],
)
def test_a_mistyped_flag_gets_the_subcommands_usage_and_the_nearest_flag(argv, suggestion, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and suggestion in err
    assert err.startswith(f"usage: vaekit {argv[0]} ") and f"vaekit {argv[0]}: error: unrecognized arguments" in err


def test_lr_is_the_learning_rate():
    from vaekit.cli import build_parser, train_config

    args = build_parser().parse_args(["train", "--lr", "0.01"])
    assert train_config(args).train.learning_rate == 0.01


def test_presets_are_listed_with_what_they_are_for(capsys):
    assert main(["presets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("mnist-mlp") and "the paper's model" in line for line in lines)
    assert all(len(line.split(None, 1)) == 2 for line in lines)  # every preset has its description


def test_presets_say_what_they_change_from_the_defaults(capsys):
    """The VampPrior preset changes its network, learning rate and warm-up with its prior: comparing it with
    the default run changes all of them at once, which `presets --changes` makes plain."""
    from vaekit import rundir
    from vaekit.config import RunConfig, load_config, preset_changes

    assert preset_changes("mnist-mlp") == {}
    vamp = preset_changes("mnist-vampprior")
    network = {"model.hidden_dim": 300, "model.hidden_layers": 2, "model.latent_dim": 40}
    assert vamp == {
        **network,
        "model.prior": "vampprior",
        "train.learning_rate": 0.0005,
        "train.warmup_share": 0.6666667,
    }
    default, loaded = rundir.flat(RunConfig()), rundir.flat(load_config("mnist-vampprior"))
    assert sorted(vamp) == sorted(k for k in loaded if loaded[k] != default[k])
    assert main(["presets", "--changes"]) == 0
    out = capsys.readouterr().out.splitlines()
    at = next(i for i, line in enumerate(out) if line.startswith("mnist-vampprior"))
    assert out[at + 1].strip() == "changes: " + ", ".join(f"{k}={v}" for k, v in vamp.items())
    assert out[next(i for i, line in enumerate(out) if line.startswith("mnist-mlp")) + 1].split() == [
        "changes:",
        "nothing",
    ]


def test_a_conv_stack_too_deep_for_the_image_names_the_channels_given(capsys, tmp_path):
    argv = ["train", "--architecture", "conv", "--conv-channels", "8,8,8,8,8,8,8", "--run-dir", str(tmp_path / "r")]
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert (
        "--conv-channels 8,8,8,8,8,8,8 is invalid: 7 strided conv layers need a height and width divisible by 128"
        in err
    )
    assert "model.image_shape is (1, 28, 28)" in err and not (tmp_path / "r").exists()


def test_a_file_where_the_tensorboard_folder_goes_is_one_sentence_before_anything_is_written(capsys, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "tensorboard").write_text("notes")
    assert main(["train", "--epochs", "1", "--run-dir", str(run), "--tensorboard", "--no-progress"]) != 0
    err = capsys.readouterr().err
    assert f"{run / 'tensorboard'} is a file: TensorBoard writes its events into a folder" in err
    assert "Traceback" not in err and sorted(p.name for p in run.iterdir()) == ["tensorboard"]


def test_help_explains_run_dir_limits_and_positive_elbos(capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    assert "RUN_DIR a run folder written by `vaekit train`" in " ".join(capsys.readouterr().out.split())
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "the first N training images (0: all)" in out and "50,000" not in out
    assert "densities, not probabilities, so their log p(x|z) and ELBO can be positive" in out


def _shape_folder(folder, per_class=3):
    """Subfolders circle/, square/, triangle/ of small RGB drawings, and one file that is not an image."""
    from PIL import ImageDraw

    for k, shape in enumerate(("circle", "square", "triangle")):
        (folder / shape).mkdir(parents=True)
        for i in range(per_class):
            img = Image.new("RGB", (40, 40), (255, 255, 255))
            draw, box, colour = ImageDraw.Draw(img), (8 + i, 8, 32 - i, 32), (40 * k, 80, 200 - 50 * k)
            if shape == "circle":
                draw.ellipse(box, fill=colour)
            elif shape == "square":
                draw.rectangle(box, fill=colour)
            else:
                draw.polygon([(20, 6 + i), (6, 34), (34, 34)], fill=colour)
            img.save(folder / shape / f"{i}.png")
    (folder / "circle" / "broken.png").write_bytes(b"not a png")


def test_a_small_image_folder_trains_draws_what_it_can_and_names_its_classes(tmp_path, capsys):
    folder, run = tmp_path / "shapes", tmp_path / "run"
    _shape_folder(folder)  # 9 usable images: 7 train, 1 valid, 1 test
    command = [
        "train",
        "--config",
        "images-conv64",
        "--path",
        str(folder),
        "--run-dir",
        str(run),
        "--epochs",
        "1",
        "--on-bad-file",
        "skip",
        "--no-progress",
    ]
    # A start that fails validation leaves no run behind, so the corrected command simply works.
    assert main(command) == 2
    err = capsys.readouterr().err
    assert "train.batch_size = 64 is larger than the 7 training images" in err and "training into" not in err
    assert not (run / "config.json").exists()
    assert main([*command, "--batch-size", "4"]) == 0
    captured = capsys.readouterr()
    assert "no interpolations picture: interpolations need 2 images and the split has 1" in captured.err
    assert "warning: this run takes only 2 optimisation steps (1 epoch of 2 batches)" in captured.err
    assert "after 1 epoch," in captured.out and "Traceback" not in captured.err
    assert "no latents picture: the latent scatter needs 2 images and the split has 1" in captured.err
    assert {p.name for p in (run / "images").iterdir()} >= {"reconstructions.png", "samples.png", "traversals.png"}
    assert main(["plot", str(run), "--which", "latents", "--out", str(tmp_path / "valid")]) == 0  # test split: 1 image
    from vaekit import plots
    from vaekit.data import load_dataset
    from vaekit.rundir import load_run

    model, config = load_run(run)
    data = load_dataset(config.data, config.model.image_shape)
    images = torch.cat([data.train.images, data.test.images])
    labels = torch.cat([data.train.labels, data.test.labels])
    inputs = plots.PictureInputs(model, images, labels, [], 0, data.class_names)
    assert plots.write_pictures(inputs, run / "images", ["latents"]) == [run / "images" / "latents.png"]
    report = __import__("vaekit.report").report.build_report(run)
    assert "coloured by class" in report and "the ELBO can be positive" in report

    from vaekit.playground.server import Playground
    from vaekit.plots import latent_scatter_figure

    assert data.class_names == ("circle", "square", "triangle")
    labels = torch.tensor([0, 1, 2, 2])
    figure = latent_scatter_figure(torch.randn(4, 3), labels, data.class_names)
    assert [t.get_text() for t in figure.axes[0].get_legend().get_texts()] == ["circle", "square", "triangle"]
    assert Playground(run).scatter()["class_names"] == ["circle", "square", "triangle"]


def test_evaluations_of_different_settings_are_kept_and_the_report_shows_the_most_complete(
    trained_run_2d, tmp_path, capsys
):
    import shutil

    from vaekit import rundir
    from vaekit.report import build_report

    run = Path(shutil.copytree(trained_run_2d, tmp_path / "run"))
    assert main(["plot", str(run), "--which", "samples"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run), "--samples", "20", "--json"]) == 0
    full = json.loads(capsys.readouterr().out)
    assert main(["evaluate", str(run), "--samples", "0", "--json"]) == 0
    assert main(["evaluate", str(run), "--samples", "100", "--limit", "50", "--json"]) == 0
    capsys.readouterr()
    names = {p.name for p in run.glob("evaluation-*.json")}
    assert {"evaluation-test-k20.json", "evaluation-test-k0.json", "evaluation-test-k100-first50.json"} <= names
    assert rundir.best_evaluation(run, "test")["log_likelihood"] == full["log_likelihood"]
    page = build_report(run)
    assert f"{full['log_likelihood']:.3f}" in page
    n = len(full["log_likelihood_per_image"])  # every test image's estimate is saved, the page only counts them
    assert n == full["images"] and f"{n} values (in the JSON file)" in page
    assert ", ".join(f"{v:.3f}" for v in full["log_likelihood_per_image"][:3]) not in page
    # the figures per stochastic layer get their own table: one layer here, its KL in closed form
    (layer,) = full["layers"]
    assert "<h3>Stochastic layers</h3>" in page and f"<td>{layer['kl']:.3f}</td>" in page and "closed form" in page
    before = (run / "images" / "samples.png").read_bytes()
    assert main(["sample", str(run), "-n", "16", "--seed", "3"]) == 0
    assert (run / "images" / "samples.png").read_bytes() == before  # the run's own picture is kept
    assert (run / "images" / "samples-n16-seed3.png").exists()


def test_a_busy_port_is_named_before_anything_is_printed(trained_run_2d, capsys):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["playground", str(trained_run_2d), "--port", str(port), "--no-browser"]) == 2
    captured = capsys.readouterr()
    assert f"port {port} is in use on 127.0.0.1; pick another with --port." in captured.err
    assert "http://" not in captured.out
