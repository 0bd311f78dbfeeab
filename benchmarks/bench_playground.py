"""Benchmark: latency of one playground decode request (the work behind every slider move).

    python benchmarks/bench_playground.py RUN_DIR [--requests 100]
Times POST /api/decode through Starlette's test client (the full ASGI app: JSON parsing,
validation, decoding, PNG encoding; no network). Writes benchmarks/results/playground.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from starlette.testclient import TestClient

from vaekit.playground.server import Playground, create_app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/playground.json"))
    args = parser.parse_args()
    playground = Playground(args.run_dir)
    client = TestClient(create_app(playground))
    g = torch.Generator().manual_seed(0)
    times = []
    for i in range(args.requests + 5):
        z = (torch.randn(playground.latent_dim, generator=g) * 1.5).tolist()
        start = time.perf_counter()
        assert client.post("/api/decode", json={"z": z}).status_code == 200
        if i >= 5:  # the first few warm up
            times.append(time.perf_counter() - start)
    result = {
        "run_dir": str(args.run_dir),
        "requests": len(times),
        "latent_dim": playground.latent_dim,
        "median_ms": statistics.median(times) * 1000,
        "p90_ms": sorted(times)[int(0.9 * len(times))] * 1000,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
