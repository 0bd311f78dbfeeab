"""Data parallelism on PyTorch's own engine: torchrun + DistributedDataParallel over gloo on CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from vaekit import rundir
from vaekit.distributed import Context, select_device
from vaekit.errors import ConfigError

COMMON = [
    "--epochs",
    "2",
    "--train-limit",
    "600",
    "--eval-limit",
    "200",
    "--hidden-dim",
    "64",
    "--latent-dim",
    "4",
    "--seed",
    "5",
    "--device",
    "cpu",
    "--no-progress",
    "--no-pictures",
]


def _torchrun(nproc: int, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={nproc}",
            "-m",
            "vaekit",
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def test_two_gloo_processes_equal_one_process_with_the_same_global_batches(tmp_path, mnist_small):
    single = subprocess.run(
        [sys.executable, "-m", "vaekit", "train", "--run-dir", str(tmp_path / "one"), "--batch-size", "100", *COMMON],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert single.returncode == 0, single.stderr
    double = _torchrun(2, "train", "--run-dir", str(tmp_path / "two"), "--batch-size", "50", *COMMON)
    assert double.returncode == 0, double.stderr
    assert "effective batch 100" in double.stderr
    one, _ = rundir.load_run(tmp_path / "one")
    two, _ = rundir.load_run(tmp_path / "two")
    for (name, a), b in zip(one.state_dict().items(), two.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)
    m1 = rundir.read_metrics(tmp_path / "one")
    m2 = rundir.read_metrics(tmp_path / "two")
    assert m2[-1]["processes"] == 2 and m2[-1]["effective_batch"] == 100
    assert m1[-1]["train_elbo"] == pytest.approx(m2[-1]["train_elbo"], abs=1e-3)
    assert m1[-1]["valid_elbo"] == pytest.approx(m2[-1]["valid_elbo"], abs=1e-3)  # sharded validation
    # Only rank 0 wrote: one metrics line per epoch, no stray files.
    assert len((tmp_path / "two" / "metrics.jsonl").read_text().splitlines()) == 2

    # A distributed run resumes: one more epoch on two processes equals three epochs on one.
    more = _torchrun(
        2, "train", "--run-dir", str(tmp_path / "two"), "--resume", "--epochs", "3", "--no-progress", "--no-pictures"
    )
    assert more.returncode == 0, more.stderr
    three = subprocess.run(
        [
            sys.executable,
            "-m",
            "vaekit",
            "train",
            "--run-dir",
            str(tmp_path / "three"),
            "--batch-size",
            "100",
            *COMMON[:0],
            "--epochs",
            "3",
            *COMMON[2:],
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert three.returncode == 0, three.stderr
    a, _ = rundir.load_run(tmp_path / "two")
    b, _ = rundir.load_run(tmp_path / "three")
    for p, q in zip(a.state_dict().values(), b.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


SHARDED_EVAL = """
import json, sys, torch, torch.distributed as dist
from vaekit.distributed import init
from vaekit.config import ModelConfig
from vaekit.models.vae import build_model
from vaekit.evaluation import evaluate_elbo, importance_sampled_log_likelihood
ctx = init("cpu")
torch.manual_seed(0)
model = build_model(ModelConfig(hidden_dim=32, latent_dim=3, image_shape=(1, 6, 6)))
x = torch.bernoulli(torch.full((23, 1, 6, 6), 0.3), generator=torch.Generator().manual_seed(1))
bound = evaluate_elbo(model, x, batch_size=10, num_samples=2, generator=torch.Generator().manual_seed(2), ctx=ctx)
ll = importance_sampled_log_likelihood(model, x, 300, rows_per_call=200, seed=3, ctx=ctx)
if ctx.rank == 0:
    json.dump({"elbo": bound.elbo, "ll": ll.per_datapoint.tolist()}, open(sys.argv[1], "w"))
dist.destroy_process_group()
"""


def _run_on_two_processes(source: str, tmp_path) -> dict:
    """Run a script on two gloo processes under torchrun; what its rank 0 wrote to the JSON file in argv[1]."""
    script, out = tmp_path / "script.py", tmp_path / "out.json"
    script.write_text(source)
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(out.read_text())


def test_sharded_evaluation_equals_the_single_process_one(tmp_path):
    from vaekit.config import ModelConfig
    from vaekit.evaluation import evaluate_elbo, importance_sampled_log_likelihood
    from vaekit.models.vae import build_model

    sharded = _run_on_two_processes(SHARDED_EVAL, tmp_path)
    torch.manual_seed(0)
    model = build_model(ModelConfig(hidden_dim=32, latent_dim=3, image_shape=(1, 6, 6)))
    x = torch.bernoulli(torch.full((23, 1, 6, 6), 0.3), generator=torch.Generator().manual_seed(1))
    bound = evaluate_elbo(model, x, batch_size=10, num_samples=2, generator=torch.Generator().manual_seed(2))
    ll = importance_sampled_log_likelihood(model, x, 300, rows_per_call=200, seed=3)
    assert sharded["elbo"] == pytest.approx(bound.elbo, abs=1e-5)
    torch.testing.assert_close(torch.tensor(sharded["ll"], dtype=torch.float64), ll.per_datapoint, atol=1e-5, rtol=0)


QUANTISER_SYNC = """
import json, sys, torch, torch.distributed as dist
from vaekit.distributed import init
from vaekit.models.quantiser import VectorQuantiser
ctx = init("cpu")
torch.manual_seed(0)
quantiser = VectorQuantiser(8, 2, init="kmeans", restart=5.0)
z = torch.randn(1, 2, 4, 4, generator=torch.Generator().manual_seed(10 + ctx.rank))  # each process its own batch
for step in range(3):
    quantiser.update(quantiser(z), torch.Generator().manual_seed(step))
books = [torch.zeros_like(quantiser.codebook.data) for _ in range(2)]
dist.all_gather(books, quantiser.codebook.data)
mine = torch.randn(1, 2, 4, 4, generator=torch.Generator().manual_seed(10)).permute(0, 2, 3, 1).reshape(-1, 2)
if ctx.rank == 0:
    same = torch.equal(books[0], books[1])
    from_first = all(bool((mine == row).all(1).any()) for row in books[0])  # every code is one of rank 0's vectors
    json.dump({"same": same, "from_first": from_first}, open(sys.argv[1], "w"))
dist.destroy_process_group()
"""


def test_the_quantisers_k_means_start_and_restarts_leave_every_process_one_codebook(tmp_path):
    """DistributedDataParallel averages gradients but not the in-place codebook moves of the k-means start and the
    restarts: each process would keep its own codebook. After each update every process takes the first's."""
    assert _run_on_two_processes(QUANTISER_SYNC, tmp_path) == {"same": True, "from_first": True}


def test_device_selection():
    assert select_device("cpu") == torch.device("cpu")
    assert select_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            select_device("cuda")
    assert not Context().distributed and Context().is_main


def test_bf16_autocast_trains_on_cpu(tmp_path, tiny_data, tiny_config):
    """The mixed-precision path (bf16 autocast, float32 bounds) runs and learns; on a GPU it is the default."""
    from vaekit.training import train

    result = train(
        tiny_config.with_overrides({"train.precision": "bf16", "train.epochs": 2}),
        tmp_path / "r",
        progress=False,
        dataset=tiny_data,
    )
    assert result.metrics[-1]["valid_elbo"] > result.metrics[0]["valid_elbo"] - 1
    assert all(p.dtype == torch.float32 for p in result.model.parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_training_on_cuda_matches_the_cpu_contract(tmp_path, tiny_data, tiny_config):
    from vaekit.training import train

    result = train(
        tiny_config.with_overrides({"train.device": "cuda", "train.epochs": 2}),
        tmp_path / "gpu",
        progress=False,
        dataset=tiny_data,
    )
    assert next(result.model.parameters()).is_cuda
    assert result.metrics[-1]["valid_elbo"] > result.metrics[0]["valid_elbo"]
    loaded, _ = rundir.load_run(tmp_path / "gpu")
    assert loaded.latent_dim == result.model.latent_dim
