"""Several run folders side by side: one table of their figures, their validation curves in one picture.

    vaekit compare runs/demo runs/vampprior [--png runs/compare.png] [--json] [--html compare.html]

Figures per run: the test ELBO and its two terms (summary.json), log p(x) with its standard error
from the run's most complete test evaluation (K importance samples over some images), active units
(from that evaluation), epochs and minutes of training (metrics.jsonl); where runs were scored against
known factors (vaekit evaluate --disentanglement), a second table of their disentanglement metrics.

Against a baseline (the first run, or --baseline): each run names the config keys in which it differs
from it, and a run that differs in more than one is a comparison of several changes at once, said as a
warning (a preset's network, learning rate and warm-up all change with its prior, for one).

Paired against the baseline: where two runs' evaluations share the data, K and precision, their
log p(x) is compared image by image on the test images both evaluated, d_i = log p_b(x_i) - log p_a(x_i),
and the table gives mean(d) +- std(d) / sqrt(n). Most of the spread of log p(x) is between images,
not between models, so this standard error is several times smaller than the unpaired ones, and it
is the one that says whether one model is ahead of another.
"""

from __future__ import annotations

import dataclasses
import html
import math
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vaekit import report, rundir
from vaekit.disentanglement import METRICS
from vaekit.errors import ConfigError
from vaekit.plots import elbo_curves

# (key of run_figures' dict, heading of the text table, its width)
COLUMNS = (
    ("run", "run", 0),
    ("test_elbo", "test ELBO", 9),
    ("test_reconstruction", "rec.", 9),
    ("test_kl", "KL", 7),
    ("paired_elbo", "ELBO vs base", 15),
    ("log_likelihood", "log p(x)", 17),
    ("importance_samples", "K x images", 12),
    ("paired", "vs base, paired", 17),
    ("bits_per_dim", "bits/dim", 17),
    ("paired_bits", "bits vs base", 15),
    ("active_units", "active", 7),
    ("epochs", "epochs", 6),
    ("training_minutes", "train min", 9),
    ("weights", "weights", 8),
)

# heading of each disentanglement metric (vaekit.disentanglement.METRICS) in the second table
METRIC_HEADS = {
    "mig": "MIG",
    "mig_posterior": "MIG q(z|x)",
    "sap": "SAP",
    "dci_disentanglement": "DCI dis.",
    "dci_completeness": "DCI comp.",
    "dci_informativeness": "DCI info.",
    "modularity": "modular.",
    "explicitness": "explicit.",
    "beta_vae_score": "beta-VAE",
    "factor_vae_score": "FactorVAE",
}


# Config keys that say how a run was carried out, not what it computes: not differences between runs.
HOW_IT_RAN = ("train.device", "train.num_threads", "train.compile", "train.sync_every_steps", "train.eval_batch_size",
              "train.checkpoint_minutes", "train.checkpoint_every_steps")  # fmt: skip


def differences(baseline: Path, run_dir: Path) -> dict[str, list[Any]]:
    """The config keys in which a run differs from the baseline: key -> [baseline's value, the run's]."""
    a, b = (rundir.flat(rundir.read_config(p)) for p in (baseline, run_dir))
    keys = sorted(k for k in a.keys() | b.keys() if k not in HOW_IT_RAN)
    return {k: [a.get(k), b.get(k)] for k in keys if a.get(k) != b.get(k)}


def difference_lines(rows: list[dict[str, Any]]) -> list[str]:
    """For each run after the baseline, what differs, and a warning where more than one key does (the seed
    aside)."""
    lines = []
    for row in rows[1:]:
        changed = row["differs"]
        said = ", ".join(f"{k} {a} -> {b}" for k, (a, b) in changed.items()) or "nothing: the same config"
        lines.append(f"{row['run']} differs from {rows[0]['run']} in: {said}")
        if len([k for k in changed if k != "train.seed"]) > 1:  # another seed is a replicate, not a change
            lines.append(
                f"warning: {row['run']} differs from {rows[0]['run']} in {len(changed)} settings, so its figures do "
                "not say which of them made the difference; for a matched baseline, train the baseline with "
                f"{row['run']}'s settings but one (--config PRESET --set KEY=VALUE)."
            )
    return lines


def labels(run_dirs: list[Path]) -> list[str]:
    """Each run's folder name, or its path where two runs share a name."""
    names = [p.name for p in run_dirs]
    return [p.name if names.count(p.name) == 1 else str(p) for p in run_dirs]


def paired_bits(paired: dict[str, Any], dims: int) -> tuple[float, float]:
    """A paired log p(x) difference (paired_log_likelihood) in bits/dim, with its standard error: -d / (D ln 2),
    s.e. / (D ln 2). Both runs must state bits/dim alike (the same measure and levels), so that a dequantized
    density's offset D log L cancels."""
    scale = dims * math.log(2.0)
    return -paired["paired_difference"] / scale, paired["paired_stderr"] / scale


def over_seeds(rows: list[dict[str, Any]], names: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Each figure's median, minimum and maximum over the rows (runs of one config, in seed order), with the
    values; a figure no row has is left out."""
    out = {}
    for name in names:
        values = [r[name] for r in rows if r.get(name) is not None]
        if values:
            out[name] = {"median": statistics.median(values), "min": min(values), "max": max(values), "values": values}
    return out


def paired_log_likelihood(
    first: str | Path, other: str | Path, weights: tuple[str, str] = ("last", "last")
) -> dict[str, Any]:
    """Run `other`'s log p(x) minus run `first`'s, image by image on the test images both evaluated (the
    first n of the split) with the same K and precision, with the standard error of the differences,
    from the pair of saved evaluations with the most images in common (then the largest K); {} where
    none compares: other data, no common K, or no per-image figures (evaluations saved before them).
    Most of log p(x)'s spread is between images, so this standard error is several times smaller than
    the two runs' own: it is the one that says whether one model is ahead of another. weights: which
    weights' evaluations of each run ("last" or "best")."""
    setting = lambda r: (r.get("num_importance_samples"), r.get("precision", "float32"))  # noqa: E731
    found = _paired(first, other, "log_likelihood_per_image", setting, weights)
    if not found:
        return {}
    d, (k, _) = found
    return {"paired_difference": statistics.fmean(d), "paired_stderr": statistics.stdev(d) / math.sqrt(len(d)),
            "paired_images": len(d), "paired_importance_samples": k}  # fmt: skip


def paired_elbo(first: str | Path, other: str | Path, weights: tuple[str, str] = ("last", "last")) -> dict[str, Any]:
    """The same for the test ELBO (each image's one-sample estimate with the evaluation's noise): `other`'s
    minus `first`'s on the images both evaluated, with the standard error of the differences; {} where none."""
    found = _paired(first, other, "elbo_per_image", lambda r: 0, weights)
    if not found:
        return {}
    d, _ = found
    n = len(d)
    return {"paired_elbo_difference": statistics.fmean(d), "paired_elbo_stderr": statistics.stdev(d) / math.sqrt(n),
            "paired_elbo_images": n}  # fmt: skip


def paired_bound(first: str | Path, first_key: str, other: str | Path, other_key: str) -> dict[str, Any]:
    """`other`'s per-image figure other_key minus `first`'s first_key (e.g. a VQ-VAE's elbo_per_image against a
    VAE's log_likelihood_per_image) on the test images both evaluated, with the standard error of the
    differences, in nats per image; {} where none compares."""
    found = _paired(first, other, (first_key, other_key), lambda r: 0)
    if not found:
        return {}
    d, _ = found
    return {"paired_difference": statistics.fmean(d), "paired_stderr": statistics.stdev(d) / math.sqrt(len(d)),
            "paired_images": len(d)}  # fmt: skip


def _paired(
    first: str | Path,
    other: str | Path,
    key: str | tuple[str, str],
    setting: Callable[[dict[str, Any]], Any],
    weights: tuple[str, str] = ("last", "last"),
) -> tuple[list[float], Any] | None:
    """The per-image differences (other - first) of `key` (or of first's key[0] and other's key[1]) from the two
    runs' test evaluations of these weights that agree in `setting` and share the most images (then the largest
    setting), with that setting; None where none do."""
    key_a, key_b = (key, key) if isinstance(key, str) else key
    data_a, data_b = (
        dataclasses.replace(rundir.read_config(p).data, train_limit=0, eval_limit=0) for p in (first, other)
    )
    if data_a != data_b:
        return None
    pairs = [
        (min(len(a[key_a]), len(b[key_b])), setting(a), a, b)
        for a in rundir.evaluations(first, "test")
        if a.get("weights", "last") == weights[0]
        for b in rundir.evaluations(other, "test")
        if b.get("weights", "last") == weights[1] and setting(a) == setting(b) and key_a in a and key_b in b
    ]
    n, chosen, a, b = max(pairs, key=lambda p: p[:2], default=(0, 0, {}, {}))
    if n < 2:
        return None
    return [y - x for x, y in zip(a[key_a][:n], b[key_b][:n])], chosen


def run_figures(run_dir: Path, label: str, metrics: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures of one run folder with these metrics rows (None where it has none yet, e.g. no evaluation)."""
    summary = rundir.read_summary(run_dir) or {}
    evaluation = rundir.best_evaluation(run_dir, "test") or {}
    weights = evaluation.get("weights", "last")  # every figure of the row is of these weights
    test = rundir.test_figures(summary, weights)
    return {
        "run": label,
        "path": str(run_dir),
        "test_elbo": test.get("test_elbo"),
        "test_reconstruction": test.get("test_reconstruction"),
        "test_kl": test.get("test_kl"),
        "no_bound": summary.get("no_bound", ""),  # why a model has no ELBO (an autoencoder); "" where it has one
        "figures_of": _figures_of(rundir.read_config(run_dir)),
        "log_likelihood": evaluation.get("log_likelihood"),
        "log_likelihood_stderr": evaluation.get("log_likelihood_stderr"),
        **_bits_of(evaluation, rundir.read_config(run_dir)),
        "measure": (evaluation.get("measure"), evaluation.get("levels")),
        "test_images": summary.get("test_images"),
        "num_importance_samples": evaluation.get("num_importance_samples"),
        "evaluated_images": evaluation.get("images"),
        "active_units": evaluation.get("active_units"),
        "latent_dim": sum(rundir.read_config(run_dir).model.latent_sizes),  # all stochastic layers
        "epochs": len(metrics),
        "weights": f"{weights} ({summary.get('best_epoch' if weights == 'best' else 'epochs', len(metrics))})",
        "weights_used": weights,
        "training_minutes": sum(m["seconds"] for m in metrics) / 60,
        "disentanglement_settings": rundir.disentanglement_evaluations(run_dir, "test", weights),
    }


def _figures_of(config: Any) -> str:
    """What a run's bounds are of where it is not the images' log p(x): "" for most runs."""
    if config.data.dataset == "features":
        return "features (another model's posterior means), not images"
    return "log p(x|y), conditional on the labels (a cvae)" if config.model.family == "cvae" else ""


def _bits_of(evaluation: dict[str, Any], config: Any) -> dict[str, Any]:
    """bits_per_dim and its stderr: of log p(x), or for a run with none to estimate (a VQ-VAE: no_marginal) of its
    bound, the s.e. over the images, and bits_are_bound saying so."""
    if not evaluation.get("no_marginal") or "elbo_bits_per_dim" not in evaluation:
        return {
            "bits_per_dim": evaluation.get("log_likelihood_bits_per_dim"),
            "bits_per_dim_stderr": evaluation.get("log_likelihood_bits_per_dim_stderr"),
        }
    values, scale = evaluation["elbo_per_image"], math.prod(config.model.image_shape) * math.log(2.0)
    stderr = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return {
        "bits_per_dim": evaluation["elbo_bits_per_dim"],
        "bits_per_dim_stderr": stderr / scale,
        "bits_are_bound": True,
    }


def compare(
    run_dirs: list[str | Path], baseline: str | Path | None = None, log: Callable[[str], None] = lambda s: None
) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """Every run's figures, the baseline's first (the first run unless given; it joins the runs if it is
    not among them), and its metrics rows by label (for the curves); damaged metric lines are said to `log`
    and left out."""
    paths = [Path(p) for p in run_dirs]
    if baseline is not None:
        paths = [Path(baseline), *(p for p in paths if p.resolve() != Path(baseline).resolve())]
    for path in paths:
        if not rundir.holds_run(path):
            raise ConfigError(f"{path} is not a run folder (it has no {rundir.CONFIG_FILE}).")
    problems: list[str] = []
    metrics = {name: rundir.read_metrics(p, problems) for p, name in zip(paths, labels(paths))}
    for problem in problems:
        log(f"warning: {problem}")
    rows = [run_figures(p, name, metrics[name]) for p, name in zip(paths, metrics)]
    choose_disentanglement(rows)
    for path, row in zip(paths[1:], rows[1:]):
        weights = (rows[0]["weights_used"], row["weights_used"])
        row.update(paired_log_likelihood(paths[0], path, weights) | paired_elbo(paths[0], path, weights))
        if row.get("bits_are_bound"):  # its bound against the baseline's log p(x), image by image
            row.update(paired_bound(paths[0], "log_likelihood_per_image", path, "elbo_per_image"))
        row["differs"] = differences(paths[0], path)
        row.update(_paired_bits(rows[0], row, math.prod(rundir.read_config(path).model.image_shape)))
    return rows, metrics


def _setting_key(figures: dict[str, Any]) -> tuple[int, int, int]:
    setting = figures["setting"]
    return tuple(setting.get(k) or 0 for k in ("pairs", "score_points", "grid_classes"))  # type: ignore[return-value]


def choose_disentanglement(rows: list[dict[str, Any]]) -> None:
    """Each row's disentanglement figures (row["disentanglement"]) from one setting for all: the most points
    among the settings every scored run has; where they share none, each run's own most points, and
    row["disentanglement_mixed"] says so (their differences then mix the settings' with the models')."""
    scored = [r for r in rows if r["disentanglement_settings"]]
    keys = [{_setting_key(f): f for f in r["disentanglement_settings"]} for r in scored]
    common = set.intersection(*(set(k) for k in keys)) if keys else set()
    for row, by_key in zip(scored, keys):
        row["disentanglement"] = by_key[max(common)] if common else by_key[max(by_key)]
        row["disentanglement_mixed"] = not common and len({max(k) for k in keys}) > 1


def setting_label(figures: dict[str, Any]) -> str:
    """A disentanglement setting in words: '10000 pairs, 2000 score points, grid 10'."""
    pairs, points, grid = _setting_key(figures)
    return ", ".join([f"{pairs} pairs"] + [f"{points} score points"] * bool(points) + [f"grid {grid}"] * bool(grid))


def _paired_bits(base: dict[str, Any], row: dict[str, Any], dims: int) -> dict[str, float]:
    """The paired log p(x) difference in bits/dim, -d / (D ln 2), where both runs state bits/dim alike
    (the same measure and levels: a dequantized density's offset D log L then cancels); {} otherwise."""
    if "paired_difference" not in row or row["bits_per_dim"] is None or row["measure"] != base["measure"]:
        return {}
    difference, stderr = paired_bits(row, dims)
    return {"paired_bits_difference": difference, "paired_bits_stderr": stderr}


def columns(rows: list[dict[str, Any]]) -> tuple[tuple[str, str, int], ...]:
    """The table's columns: those in bits/dim where a run states its likelihood in them (grey levels)."""
    bits = any(r.get("bits_per_dim") is not None for r in rows)
    return tuple(c for c in COLUMNS if bits or c[0] not in ("bits_per_dim", "paired_bits"))


def coverage_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Which test images each column covers, with a warning where the runs' figures cover different ones."""
    lines = []
    for key, what in (("test_images", "test ELBO, rec. and KL"), ("evaluated_images", "log p(x)")):
        counts = {r["run"]: r.get(key) for r in rows if r.get(key)}
        if len(set(counts.values())) == 1:
            lines.append(f"{what}: the first {next(iter(counts.values()))} test images of each run that has them")
        elif counts:
            said = ", ".join(f"{run} {n}" for run, n in counts.items())
            lines.append(
                f"warning: {what} cover different numbers of test images ({said}), so their unpaired figures "
                "differ by the images as well as the models; the paired columns compare like with like"
            )
    paired = [f"{r['run']} {r['paired_images']}" for r in rows[1:] if r.get("paired_images")]
    if paired:
        lines.append(f"vs base, paired: on the test images both runs evaluated ({', '.join(paired)})")
    other = [f"{r['run']}: {r['figures_of']}" for r in rows if r.get("figures_of")]
    if other and len(rows) > 1:
        lines.append(
            f"warning: the bounds of some runs are not the images' log p(x) ({'; '.join(other)}), so they do not "
            "compare with the others'"
        )
    return lines


def seed_groups(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs whose configs differ in train.seed alone, as groups of two or more (the baseline's first):
    their test ELBO and log p(x) over seeds, and against the baseline's group, log p(x) paired image by
    image seed by seed (each run with the baseline's run of the same seed)."""
    groups: dict[tuple[Any, ...], list[tuple[int, dict[str, Any]]]] = {}
    for row in rows:
        config = rundir.flat(rundir.read_config(row["path"]))
        setting = tuple((k, repr(v)) for k, v in sorted(config.items()) if k not in HOW_IT_RAN and k != "train.seed")
        groups.setdefault(setting, []).append((config["train.seed"], row))
    base = {seed: row for seed, row in next(iter(groups.values()))}  # the baseline's group (rows[0] is first)
    out = []
    for index, members in enumerate(groups.values()):
        members.sort(key=lambda m: m[0])
        if len(members) < 2:
            continue
        paired = [
            {"paired_difference": paired_log_likelihood(base[seed]["path"], row["path"]).get("paired_difference")}
            for seed, row in members
            if index > 0 and seed in base
        ]
        figures = over_seeds([row for _, row in members], ("test_elbo", "log_likelihood"))
        figures |= over_seeds(paired, ("paired_difference",))
        runs = [row["run"] for _, row in members]
        group = {"runs": runs, "seeds": [seed for seed, _ in members], "figures": figures}
        out.append(group | _metrics_over_seeds([row for _, row in members]))
    return out


def _metrics_over_seeds(members: list[dict[str, Any]]) -> dict[str, Any]:
    """The disentanglement metrics' median, minimum and maximum over a group's seeds, where every seed was
    scored in one setting; {} otherwise."""
    scored = [r.get("disentanglement") for r in members]
    if not all(scored) or len({_setting_key(f) for f in scored}) != 1:  # type: ignore[arg-type]
        return {}
    return {"metrics": over_seeds(scored, METRICS), "metrics_setting": setting_label(scored[0])}  # type: ignore[arg-type]


def seed_lines(groups: list[dict[str, Any]]) -> list[str]:
    """One line per group of seeds: median [min, max] of each figure."""
    names = {
        "test_elbo": "test ELBO",
        "log_likelihood": "log p(x)",
        "paired_difference": "vs base, paired seed by seed",
    }
    lines = []
    for group in groups:
        said = "; ".join(
            f"{names[k]} {f['median']:.2f} [{f['min']:.2f}, {f['max']:.2f}]" for k, f in group["figures"].items()
        )
        seeds = ", ".join(map(str, group["seeds"]))
        lines.append(f"over seeds {seeds} ({', '.join(group['runs'])}): {said or 'no figures yet'}")
        if group.get("metrics"):
            said = "; ".join(
                f"{METRIC_HEADS[k]} {f['median']:.3f} [{f['min']:.3f}, {f['max']:.3f}]"
                for k, f in group["metrics"].items()
            )
            lines.append(f"  disentanglement over those seeds ({group['metrics_setting']}): {said}")
    return lines


def _cell(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    if key == "log_likelihood":
        return "-" if value is None else f"{value:.2f} ± {row['log_likelihood_stderr']:.2f}"
    if key == "bits_per_dim":
        bound = "*" if row.get("bits_are_bound") else ""
        return "-" if value is None else f"{value:.4f} ± {row['bits_per_dim_stderr']:.4f}{bound}"
    if key == "paired_bits":
        if "paired_bits_difference" not in row:
            return "-"
        return f"{row['paired_bits_difference']:+.4f} ± {row['paired_bits_stderr']:.4f}"
    if key in ("paired", "paired_elbo"):
        name = "paired_difference" if key == "paired" else "paired_elbo_difference"
        if name not in row:
            return "-"
        return f"{row[name]:+.2f} ± {row[name.replace('difference', 'stderr')]:.2f}"
    if key == "importance_samples":
        k = row["num_importance_samples"]
        return "-" if not k else f"{k} x {row['evaluated_images']}"
    if key == "active_units":
        return "-" if value is None else f"{value}/{row['latent_dim']}"
    if isinstance(value, float):
        return f"{value:.2f}"
    return "-" if value is None else str(value)


def text_table(rows: list[dict[str, Any]]) -> str:
    """The table for a terminal: one line per run, in the order given; the disentanglement metrics below."""
    width = max(len(r["run"]) for r in rows + [{"run": "run"}])
    shown = columns(rows)
    bits = any(key == "bits_per_dim" for key, _, _ in shown)
    lines = ["  ".join(head.ljust(width) if key == "run" else head.rjust(w) for key, head, w in shown)]
    for row in rows:
        cells = [_cell(row, key).ljust(width) if key == "run" else _cell(row, key).rjust(w) for key, _, w in shown]
        lines.append("  ".join(cells))
    lines.append(
        "nats per image, higher is better; log p(x) is the importance-sampled estimate ± its s.e.;"
        "\nELBO vs base and vs base, paired: the test ELBO and log p(x) minus the baseline's (the first run's) on the "
        "same test images, ± the s.e. of the differences"
        + ("; bits/dim: -log p(x) / (D ln 2), lower is better (dequantized for a density)" if bits else "")
    )
    if any(r.get("bits_are_bound") for r in rows):
        lines.append(
            "*: the run's bound log p(x|z_q) + log p(z_q) in bits/dim, paired with the baseline's log p(x): a VQ-VAE "
            "has no importance-sampled log p(x)"
        )
    lines += coverage_lines(rows) + difference_lines(rows) + seed_lines(seed_groups(rows))
    scored = metric_rows(rows)
    if scored:
        heads = list(scored[0])
        lines += ["", "  ".join(h.ljust(width) if i == 0 else h.rjust(13) for i, h in enumerate(heads))]
        lines += [
            "  ".join(c.ljust(width) if i == 0 else c.rjust(13) for i, c in enumerate(r.values())) for r in scored
        ]
        lines += metric_notes(rows)
    return "\n".join(lines)


def metric_notes(rows: list[dict[str, Any]]) -> list[str]:
    """What the disentanglement table's figures are, the setting they share, or a warning that they do not."""
    scored = [r for r in rows if r.get("disentanglement")]
    notes = [
        "disentanglement on the test images (vaekit evaluate --disentanglement), each in [0, 1], higher is better, "
        "± one standard error (bootstrap over points; binomial for the beta-VAE and FactorVAE scores; none for DCI's "
        "dis. and comp., one fit each: compare seeds); chance: beta-VAE and FactorVAE 1/F, explicitness 0.5"
    ]
    if any(r.get("disentanglement_mixed") for r in scored):
        said = "; ".join(f"{r['run']}: {setting_label(r['disentanglement'])}" for r in scored)
        notes.append(
            f"warning: the runs were scored in different settings ({said}), which moves the metrics as much as the "
            "models can: evaluate them alike (vaekit evaluate --disentanglement with the same --score-points and "
            "--grid-classes) before reading differences"
        )
    elif scored:
        notes.append(f"every run in one setting: {setting_label(scored[0]['disentanglement'])}")
    return notes


def metric_rows(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Each run's disentanglement metrics as table cells (heading -> cell); [] where no run has any."""
    if not any(r.get("disentanglement") for r in rows):
        return []

    def cell(figures: dict[str, Any], name: str) -> str:
        if figures.get(name) is None:
            return "-"
        stderr = (figures.get("stderr") or {}).get(name)
        return f"{figures[name]:.3f}" + ("" if stderr is None else f" ± {stderr:.3f}")

    return [
        {"run": r["run"], **{METRIC_HEADS[name]: cell(r.get("disentanglement") or {}, name) for name in METRICS}}
        for r in rows
    ]


def curves_png(
    metrics: dict[str, list[dict[str, Any]]], path: str | Path, rows: list[dict[str, Any]] | None = None
) -> Path:
    """The runs' validation ELBO against training images seen, overlaid; where a run has no bound (an
    autoencoder, said by its row's no_bound), every run's validation log p(x|z), the ELBO's reconstruction
    term and the one figure such a run has."""
    if any(row.get("no_bound") for row in rows or []):
        title = "validation log p(x|z): an autoencoder has no ELBO; a VAE's is its reconstruction term"
        return elbo_curves(metrics, path, title, keys=("valid_reconstruction",))
    return elbo_curves(metrics, path, "validation ELBO", keys=("valid_elbo",))


def html_page(rows: list[dict[str, Any]], png: Path) -> str:
    """The table and the curves as one self-contained page, like a run's report."""
    shown = [{head: _cell(row, key) for key, head, _ in columns(rows)} for row in rows]
    what = "log p(x|z) (an autoencoder has no ELBO)" if any(row.get("no_bound") for row in rows) else "ELBO"
    caption = f"Validation {what} of each run against training images seen (log axis)."
    parts = [
        "<h1>vaekit: runs compared</h1>",
        "<p class='note'>Bounds in nats per image, higher is better; log p(x) is the importance-sampled "
        "estimate with its standard error, from each run's most complete test evaluation.</p>",
        report.table(shown),
        *(
            f"<p class='note'>{html.escape(line)}</p>"
            for line in coverage_lines(rows) + difference_lines(rows) + seed_lines(seed_groups(rows))
        ),
        *(["<h2>Disentanglement (test images)</h2>", report.table(metric_rows(rows))] if metric_rows(rows) else []),
        *(f"<p class='note'>{html.escape(line)}</p>" for line in (metric_notes(rows) if metric_rows(rows) else [])),
        report.figure(png.read_bytes(), png.name, caption),
        "<h2>Run folders</h2>",
        report.table([{"run": r["run"], "folder": r["path"]} for r in rows]),
    ]
    return report.page("vaekit: runs compared", parts)
