"""Benchmark: importance-sampled log p(x) at K = 5000, vaekit against a plain per-image loop.

The reference is what one writes first: for each test image, encode it, draw all K samples,
decode them in one call, and average the weights with a float32 log-sum-exp. Both run on the
same images, model and threads in this process; the ratio is reported with both timings, and
vaekit's figure is extrapolated to (or, with --full, measured on) the whole 10,000-image test set.

    python benchmarks/bench_evaluation.py RUN_DIR [--images 200] [--full]
Writes benchmarks/results/evaluation.json.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import resource
import time
from pathlib import Path

import torch

from vaekit.data import load_dataset
from vaekit.evaluation import importance_sampled_log_likelihood
from vaekit.likelihoods import DiagonalGaussian, standard_normal_log_prob
from vaekit.rundir import load_run


@torch.no_grad()
def reference_log_likelihood(model, x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """The straightforward per-image loop (all K samples decoded at once, float32 throughout)."""
    out = []
    for xi in x:
        mu, logvar = model.encoder(xi.unsqueeze(0))
        q = DiagonalGaussian(mu, logvar)
        z = q.rsample(k, generator)[0]  # (K, J)
        log_w = model.decode(z).log_prob(xi.expand(k, *xi.shape)) + standard_normal_log_prob(z) - q.log_prob(z)
        out.append(torch.logsumexp(log_w, 0) - math.log(k))
    return torch.stack(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--images", type=int, default=200, help="test images timed for the ratio (default: 200)")
    parser.add_argument("--samples", type=int, default=5000, help="K (default: 5000)")
    parser.add_argument("--full", action="store_true", help="also time vaekit on the whole test set")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/evaluation.json"))
    args = parser.parse_args()

    model, config = load_run(args.run_dir)
    test = load_dataset(config.data, config.model.image_shape).evaluation_observations("test")
    x = test[: args.images]
    timings = {}
    runners = {
        "reference": lambda xs: reference_log_likelihood(model, xs, args.samples, torch.Generator().manual_seed(0)),
        "vaekit": lambda xs: importance_sampled_log_likelihood(model, xs, args.samples, seed=0).per_datapoint,
    }
    for name, run in runners.items():
        run(x[:5])  # warm-up
        start = time.perf_counter()
        values = run(x)
        timings[name] = {"seconds": time.perf_counter() - start, "log_likelihood": values.double().mean().item()}
    per_image = timings["vaekit"]["seconds"] / len(x)
    result = {
        "benchmark": "importance-sampled log p(x)",
        "run_dir": str(args.run_dir),
        "num_importance_samples": args.samples,
        "images_timed": len(x),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "reference_images_per_second": len(x) / timings["reference"]["seconds"],
        "vaekit_images_per_second": len(x) / timings["vaekit"]["seconds"],
        "speedup_vs_reference": timings["reference"]["seconds"] / timings["vaekit"]["seconds"],
        "vaekit_minutes_for_10k_extrapolated": per_image * 10_000 / 60,
        "log_likelihood_reference": timings["reference"]["log_likelihood"],
        "log_likelihood_vaekit": timings["vaekit"]["log_likelihood"],
    }
    if args.full:
        start = time.perf_counter()
        ll = importance_sampled_log_likelihood(model, test, args.samples, seed=0)
        result.update(
            vaekit_minutes_for_full_test_set=(time.perf_counter() - start) / 60,
            full_test_log_likelihood=ll.mean,
            full_test_stderr=ll.stderr,
            full_test_images=len(test),
        )
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    width = max(map(len, result))
    for key, value in result.items():
        print(f"{key:{width}s}  {value:.3f}" if isinstance(value, float) else f"{key:{width}s}  {value}")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
