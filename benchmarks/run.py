"""The benchmark suite: vaekit against a plain PyTorch loop (and Pythae) in the same process.

    python benchmarks/run.py [--device cpu|cuda] [--quick] [--skip-pythae] [--out benchmarks/results/bench.json]

Figures (medians over repeated epochs after a warm-up epoch; ratios are a loop's speed over the reference's):
  1. training throughput, images/s: the paper's MLP (784-512-16, batch 100) and the conv preset,
     vaekit uncompiled and compiled (torch.compile), and with bf16 autocast (opt-in on a CPU); the
     reference's model in a lean float32 loop (fused Adam, no DataLoader, no checks, no per-step
     sync, conv weights channels-last as vaekit keeps them), the in-situ ceiling of what a float32
     loop can gain over the plain one here; Pythae's own training step on the MLP (CPU only); and
     the 64x64 conv network of Locatello et al. on dSprites (batch 64), vaekit in float32 and bf16
     against its plain loop, and that loop with channels-last tensors. Every loop of a row
     alternates with the others epoch by epoch
  2. wall-clock time to a test ELBO of -103 nats (default settings, evaluation included)
  3. importance-sampled log p(x) throughput at K = 5000 against a per-image loop, float32 (eager and
     compiled) and bf16, and the error of the last two against the first
  4. peak resident memory of training plus a K = 5000 evaluation of the whole test set, and that
     evaluation's minutes with the defaults (compiled on a CPU; a separate process)
  5. achieved GFLOP/s of the MLP training step against this machine's float32 matmul peak, and the
     float32 floor of a step (its matrix products, the Adam update and the binarization draw timed
     alone), which bounds the MLP training ratio that any float32 loop could reach
  6. where an MLP step's CPU time goes (torch.profiler, self time per step), in vaekit's float32 loop
     and in the lean loop: matrix products, the Adam update, the binarization draw and all the rest
  7. the parts of an MLP step on one thread, in CPU time: vaekit's model and loss in the lean loop
     against the reference's, what three ways of checking the gradients for NaN and overflow add
     (vaekit's, torch's foreach norm, one flat gradient buffer) and what vaekit's whole loop adds
Not a test: nothing here asserts; the figures go to a JSON file and a printed table.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
from reference import ReferenceVAE, make_loader, test_elbo, train_epoch, train_epoch_lean  # noqa: E402
from vaekit import distributed, training  # noqa: E402
from vaekit.callbacks import Callback  # noqa: E402
from vaekit.config import DataConfig, RunConfig, TrainConfig  # noqa: E402
from vaekit.data import Dataset, Split, load_dataset  # noqa: E402
from vaekit.evaluation import evaluate_elbo, importance_sampled_log_likelihood  # noqa: E402
from vaekit.models.vae import build_model  # noqa: E402
from vaekit.training import train  # noqa: E402

TARGET_ELBO = -103.0


def subset(data: Dataset, n: int) -> Dataset:
    cut = lambda s: Split(s.images[:n], s.labels[:n])  # noqa: E731
    return Dataset(cut(data.train), cut(data.valid), cut(data.test), data.binarization, data.binarization_seed)


# vaekit's variants in the throughput rows: name -> config overrides
VARIANTS = {
    "vaekit": {"train.compile": "off", "train.precision": "float32"},
    "vaekit_compiled": {"train.compile": "on", "train.precision": "float32"},
    "vaekit_bf16": {"train.compile": "off", "train.precision": "bf16"},
}


def interleaved_epochs(
    config: RunConfig,
    data: Dataset,
    reference: torch.nn.Module,
    epochs: int,
    flatten: bool,
    device: str,
    variants: dict[str, dict] = VARIANTS,
    others: dict[str, Callable[[int], None]] | None = None,
) -> dict[str, list[float]]:
    """Seconds per epoch of the reference, its lean loop, each vaekit variant and each of `others` (a
    name -> a function that trains one epoch, given its number), alternating epoch by epoch so that all
    see the same machine (shared CPUs drift by tens of percent over minutes). vaekit's figure is its own
    metric: the training loop after the first step (which pays for compiling), not its per-epoch
    validation or checkpoint."""
    others = others or {}
    lean = copy.deepcopy(reference).to(device, memory_format=torch.channels_last)  # conv weights: faster so
    reference = reference.to(device)
    optimizer = torch.optim.Adam(reference.parameters(), lr=1e-3)
    lean_optimizer = torch.optim.Adam(lean.parameters(), lr=1e-3, fused=True)
    batch = config.train.batch_size
    loader = make_loader(data.train.images, batch, flatten)
    images = data.train.images.to(device)
    times: dict[str, list[float]] = {name: [] for name in ("reference", "lean", *variants, *others)}
    with tempfile.TemporaryDirectory() as tmp:
        for epoch in range(1, epochs + 1):
            start = time.perf_counter()
            train_epoch(reference, optimizer, loader, device)
            if device == "cuda":
                torch.cuda.synchronize()
            times["reference"].append(time.perf_counter() - start)
            start = time.perf_counter()
            train_epoch_lean(lean, lean_optimizer, images, batch, flatten)
            times["lean"].append(time.perf_counter() - start)
            for name, overrides in variants.items():
                run = config.with_overrides({**overrides, "train.epochs": epoch, "train.device": device})
                result = train(run, Path(tmp) / name, resume=epoch > 1, progress=False, dataset=data)
                times[name].append(len(data.train) / result.metrics[-1]["images_per_second"])
            for name, train_one_epoch in others.items():
                start = time.perf_counter()
                train_one_epoch(epoch)
                times[name].append(time.perf_counter() - start)
    return times


def throughput(n: int, times: list[float]) -> float:
    """Images per second from the median epoch after the first (warm-up) epoch."""
    return n / statistics.median(times[1:] if len(times) > 1 else times)


def paired_ratio(ref: list[float], ours: list[float]) -> float:
    """Median over epochs (after the first) of reference time / vaekit time."""
    pairs = list(zip(ref, ours))[1:] or list(zip(ref, ours))
    return statistics.median(r / o for r, o in pairs)


def preset(name: str) -> RunConfig:
    return RunConfig.from_json(Path(__file__).parents[1].joinpath(f"src/vaekit/presets/{name}.json").read_text())


def plain(model: torch.nn.Module) -> torch.nn.Module:
    """A vaekit network as a tutorial holds it: vaekit keeps conv weights channels-last, the plain loop does not."""
    return model.to(memory_format=torch.contiguous_format)


def bench_throughput(data: Dataset, epochs: int, conv_images: int, device: str, pythae: bool) -> dict:
    """The MLP row (with Pythae's own loop interleaved, on a CPU) and the conv row, each against the plain
    reference loop of the same model in the same process."""
    out = {}
    others = {}
    if pythae and device == "cpu":
        others = pythae_epochs(data)
        if isinstance(others, str):
            out["pythae"], others = others, {}
    for label, config, dataset, flatten, extra in (
        ("mlp", RunConfig(), data, True, others),
        ("conv", preset("mnist-conv"), subset(data, conv_images), False, {}),
    ):
        torch.manual_seed(0)
        reference = ReferenceVAE() if flatten else plain(build_model(config.model))
        times = interleaved_epochs(config, dataset, reference, epochs, flatten, device, VARIANTS, extra)
        out.update(ratios(label, times, len(dataset.train)))
        if "pythae" in times:
            out[f"{label}_vaekit_over_pythae"] = paired_ratio(times["pythae"], times["vaekit"])
    return out


def ratios(label: str, times: dict[str, list[float]], n: int) -> dict:
    """Images/s of every loop of a row and its paired ratio over the reference (the lean loop's too)."""
    out = {f"{label}_reference_images_per_s": throughput(n, times["reference"])}
    for name in times.keys() - {"reference"}:
        out[f"{label}_{name}_images_per_s"] = throughput(n, times[name])
        out[f"{label}_{name}_ratio"] = paired_ratio(times["reference"], times[name])
    if "lean" in times and "vaekit" in times:
        out[f"{label}_vaekit_over_lean"] = paired_ratio(times["lean"], times["vaekit"])
    return dict(sorted(out.items()))


# The 64 x 64 row: Locatello et al.'s conv network (the dsprites-vae preset) on rendered dSprites images
DSPRITES_VARIANTS = {
    "vaekit": {"train.compile": "off", "train.precision": "float32"},
    "vaekit_bf16": {"train.compile": "off", "train.precision": "bf16"},
}


def bench_dsprites(images: int, epochs: int, device: str) -> dict:
    """vaekit's float32 and bf16 loops against the plain loop of the same network, in float32, interleaved;
    and the plain loop with channels-last tensors, to see whether that layout would help here."""
    config = preset("dsprites-vae").with_overrides({"data.train_limit": images, "data.eval_limit": 100})
    data = load_dataset(config.data, config.model.image_shape)
    torch.manual_seed(0)
    reference = plain(build_model(config.model))
    channels_last = copy.deepcopy(reference).to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(channels_last.parameters(), lr=1e-3)
    images = data.train.images.contiguous(memory_format=torch.channels_last)
    loader = make_loader(images, config.train.batch_size, False)
    others = {"plain_channels_last": lambda epoch: train_epoch(channels_last, optimizer, loader, device)}
    times = interleaved_epochs(config, data, reference, epochs, False, device, DSPRITES_VARIANTS, others)
    return ratios("dsprites64", times, len(data.train))


def bench_time_to_target(data: Dataset, max_epochs: int, device: str) -> tuple[dict, torch.nn.Module]:
    """Seconds of wall clock until the test ELBO first reaches TARGET_ELBO, per-epoch evaluation included."""
    test_x = data.evaluation_observations("test")
    out: dict = {}
    torch.manual_seed(0)
    model = ReferenceVAE().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = make_loader(data.train.images)
    start = time.perf_counter()
    for epoch in range(1, max_epochs + 1):
        train_epoch(model, optimizer, loader, device)
        if test_elbo(model, test_x) >= TARGET_ELBO:
            out.update(reference_seconds_to_target=time.perf_counter() - start, reference_epochs_to_target=epoch)
            break
    trained = None
    for name, precision in (("vaekit", "auto"), ("vaekit_bf16", "bf16")):  # the default, and opt-in bf16
        stop = StopAtTarget(test_x)
        with tempfile.TemporaryDirectory() as tmp, contextlib.suppress(TargetReached):
            config = RunConfig(train=TrainConfig(epochs=max_epochs, device=device, precision=precision))
            train(config, tmp, progress=False, dataset=data, callbacks=[stop])
        if stop.reached is not None:
            out.update({f"{name}_seconds_to_target": stop.reached[1], f"{name}_epochs_to_target": stop.reached[0]})
        if trained is None:
            trained = stop.model
        if "reference_seconds_to_target" in out and f"{name}_seconds_to_target" in out:
            ratio = out["reference_seconds_to_target"] / out[f"{name}_seconds_to_target"]
            out["time_to_target_ratio" if name == "vaekit" else "time_to_target_bf16_ratio"] = ratio
    return out, trained


class TargetReached(Exception):
    pass


class StopAtTarget(Callback):
    """Ends a vaekit run at the first epoch whose test ELBO reaches TARGET_ELBO, as the reference loop
    checks it; `reached` is (epoch, seconds since the run began)."""

    def __init__(self, test_x: torch.Tensor) -> None:
        self.test_x, self.reached, self.model = test_x, None, None

    def on_train_start(self, loop) -> None:
        self.start = time.perf_counter()

    def on_epoch_end(self, loop, metrics) -> None:
        self.model = loop.model
        test = evaluate_elbo(loop.model, self.test_x, 1000, 1, torch.Generator().manual_seed(0))
        if test.elbo >= TARGET_ELBO:
            self.reached = (metrics["epoch"], time.perf_counter() - self.start)
            raise TargetReached


# log p(x) variants: name -> options of importance_sampled_log_likelihood; the first is the exact one
LL_VARIANTS = {
    "ll_vaekit": {"precision": "float32", "compile": "off"},
    "ll_vaekit_compiled": {"precision": "float32", "compile": "on"},
    "ll_vaekit_bf16": {"precision": "bf16", "compile": "off"},
}


def bench_log_likelihood(model, data: Dataset, images: int, k: int) -> dict:
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_evaluation import reference_log_likelihood

    x = data.evaluation_observations("test")[:images]
    reference_log_likelihood(model, x[:2], k, torch.Generator().manual_seed(0))  # warm-up
    start = time.perf_counter()
    reference_log_likelihood(model, x, k, torch.Generator().manual_seed(0))
    ref = time.perf_counter() - start
    out = {"ll_reference_images_per_s": images / ref}
    exact = None
    for name, options in LL_VARIANTS.items():
        importance_sampled_log_likelihood(model, x[:2], k, seed=0, **options)  # warm-up (and compiling)
        start = time.perf_counter()
        ll = importance_sampled_log_likelihood(model, x, k, seed=0, **options)
        seconds = time.perf_counter() - start
        out.update({f"{name}_images_per_s": images / seconds, f"{name}_ratio": ref / seconds})
        if exact is None:
            exact = ll.per_datapoint
        else:
            error = ll.per_datapoint - exact
            label = name.removeprefix("ll_vaekit_")
            out.update(
                {
                    f"ll_{label}_mean_error_nats": abs(error.mean().item()),
                    f"ll_{label}_max_error_nats": error.abs().max().item(),
                }
            )
    return out


MEMORY_SCRIPT = """
import json, resource, sys, tempfile, time, torch

def peak_kib():
    # VmHWM: this process's own high-water mark. ru_maxrss is not: on Linux it keeps the peak of the
    # forked parent's image from before exec, so a child of a large process reports the parent's.
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

from vaekit.config import RunConfig, TrainConfig
from vaekit.training import train
from vaekit.evaluation import importance_sampled_log_likelihood
device, images = sys.argv[1], int(sys.argv[2])
with tempfile.TemporaryDirectory() as tmp:
    r = train(RunConfig(train=TrainConfig(epochs=1, device=device)), tmp, progress=False)
after_training = peak_kib()
from vaekit.data import load_dataset
x = load_dataset(r.config.data).evaluation_observations("test")[:images]
start = time.perf_counter()
importance_sampled_log_likelihood(r.model, x, 5000)
seconds = time.perf_counter() - start
gpu = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None
print(json.dumps([after_training, peak_kib(), seconds, len(x), gpu]))
"""


def bench_memory(device: str, images: int) -> dict:
    """Peak RSS (MiB) of a one-epoch training run on the full dataset, then of K = 5000 evaluation of
    `images` test images (all 10,000 unless --quick) in the same process, and that evaluation's minutes."""
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, device, str(images)], capture_output=True, text=True, check=True
    )
    train_kib, total_kib, seconds, evaluated, gpu_mib = json.loads(done.stdout.splitlines()[-1])
    out = {
        "train_peak_rss_mib": train_kib / 1024,
        "train_plus_eval_peak_rss_mib": total_kib / 1024,
        "eval_images": evaluated,
        "ll_k5000_minutes_for_10k": seconds / evaluated * 10_000 / 60,
    }
    if gpu_mib is not None:
        out["gpu_peak_allocated_mib"] = gpu_mib
    return out


def bench_flops(mlp_images_per_s: float, device: str) -> dict:
    """Achieved GFLOP/s of the MLP training step against a float32 matmul peak measured here."""
    a, b = torch.randn(2048, 2048, device=device), torch.randn(2048, 2048, device=device)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(10):
        start = time.perf_counter()
        a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    peak = 2 * 2048**3 / min(times) / 1e9
    d, h, j = 784, 512, 16
    forward = 2 * (d * h + h * 2 * j + j * h + h * d)  # multiply-adds of the four matmuls, per image
    achieved = 3 * forward * mlp_images_per_s / 1e9  # backward costs about twice the forward
    return {"matmul_peak_gflops": peak, "mlp_train_gflops": achieved, "mlp_fraction_of_peak": achieved / peak}


def bench_floor(reference_images_per_s: float, device: str, batch: int = 100, steps: int = 300) -> dict:
    """The float32 floor of one MLP training step: what no float32 implementation can avoid, timed alone.

    That is the step's matrix products (forward; backward to each weight, and to each layer's input
    but the first's), the fused Adam update of all 829,232 parameters, and the draw of the dynamic
    binarization (its random stream is fixed, so that runs stay bit-identical). Everything else a
    step does (biases, activations, the loss, the noise) is left out, so the floor is optimistic:
    images/s at the floor, over the reference's images/s, bounds the training ratio from above."""
    model = build_model(RunConfig().model).to(device)
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    first = model.encoder.hidden
    inputs = {m: torch.randn(batch, m.in_features, device=device) for m in layers}
    grads = {m: torch.randn(batch, m.out_features, device=device) for m in layers}
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    noise, pixels = torch.Generator(device=device).manual_seed(0), torch.empty(batch, 784, device=device)

    def gemms() -> None:
        for m in layers:
            inputs[m] @ m.weight.T
            grads[m].T @ inputs[m]
            if m is not first:
                grads[m] @ m.weight

    parts = {"gemms": gemms, "adam": optimizer.step, "binarization": lambda: pixels.uniform_(generator=noise)}
    seconds = {}
    with torch.no_grad():
        for name, part in parts.items():
            for _ in range(20):
                part()
            runs = []
            for _ in range(5):
                start = time.perf_counter()
                for _ in range(steps):
                    part()
                if device == "cuda":
                    torch.cuda.synchronize()
                runs.append((time.perf_counter() - start) / steps)
            seconds[name] = min(runs)
    floor = batch / sum(seconds.values())
    out = {f"mlp_floor_{name}_ms_per_step": 1000 * s for name, s in seconds.items()}
    out.update(mlp_float32_floor_images_per_s=floor, mlp_float32_ceiling_ratio=floor / reference_images_per_s)
    return out


# Where a step's CPU time goes: operator name -> part (self time; everything not named is "other")
STEP_PARTS = {
    "aten::mm": "matrix products",
    "aten::addmm": "matrix products",
    "aten::_fused_adam_": "adam update",
    "Optimizer.step#Adam.step": "adam update",
    "aten::uniform_": "binarization draw",
    "aten::bernoulli_": "binarization draw",
}


def step_parts(events: Any, steps: int) -> dict[str, float]:
    """Milliseconds per step of each part of STEP_PARTS, and of everything else, from profiler events."""
    out: dict[str, float] = {}
    for event in events:
        part = STEP_PARTS.get(event.key, "other")
        out[part] = out.get(part, 0.0) + event.self_cpu_time_total / 1000 / steps
    return out


class ProfileSteps(Callback):
    """Profiles vaekit's training steps `first` to `first + steps` (the callback's loss read adds one host
    sync a step, free on a CPU)."""

    step_every = 1

    def __init__(self, first: int, steps: int) -> None:
        self.first, self.steps, self.profiler, self.events, self.seconds = first, steps, None, None, 0.0

    def on_step_end(self, loop, step) -> None:
        if step["step"] == self.first:
            self.profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
            self.profiler.__enter__()
            self.seconds = -time.perf_counter()
        elif step["step"] == self.first + self.steps and self.profiler is not None:
            self.seconds += time.perf_counter()
            self.profiler.__exit__(None, None, None)
            self.events = self.profiler.key_averages()


def bench_profile(data: Dataset, steps: int = 200) -> dict:
    """The MLP step of vaekit's float32 loop and of the lean loop under torch.profiler, split into the
    parts of STEP_PARTS: what vaekit's step spends beyond the lean one's is in "other"."""
    probe = ProfileSteps(20, steps)
    with tempfile.TemporaryDirectory() as tmp:
        config = RunConfig(train=TrainConfig(epochs=1, compile="off"))
        train(config, tmp, progress=False, dataset=data, callbacks=[probe])
    torch.manual_seed(0)
    lean = ReferenceVAE()
    optimizer = torch.optim.Adam(lean.parameters(), lr=1e-3, fused=True)
    images = data.train.images[: 100 * (steps + 20)]
    train_epoch_lean(lean, optimizer, images[: 100 * 20])  # warm-up
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
        seconds = -time.perf_counter()
        train_epoch_lean(lean, optimizer, images[100 * 20 :])
        seconds += time.perf_counter()
    out = {}
    for loop, events, wall in (("vaekit", probe.events, probe.seconds), ("lean", profiler.key_averages(), seconds)):
        parts = step_parts(events, steps)
        parts["outside operators"] = 1000 * wall / steps - sum(parts.values())  # Python, and the profiler's own
        out.update({f"profile_{loop}_{part.replace(' ', '_')}_ms": ms for part, ms in parts.items()})
    return dict(sorted(out.items()))


def bench_step_parts(data: Dataset, rounds: int = 15, steps: int = 50) -> dict:
    """Milliseconds per MLP step, single-threaded (CPU time, which a busy neighbour does not inflate), of the
    lean loop with the reference's model and with vaekit's model and loss (the difference is the model, which
    no loop change reaches); that loop plus the step's non-finite check, three ways: vaekit's (a dot product
    per gradient tensor), torch's foreach norm (vaekit's on a GPU), and one dot over a flat gradient buffer
    that autograd accumulates into (the apex/DeepSpeed layout, which must be zeroed each step); and vaekit's
    whole loop (train_epoch: the check, counters, epoch sums and a host sync a step). Interleaved by round."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    small = subset(data, 100 * steps)
    config = RunConfig(train=TrainConfig(epochs=1000, compile="off", precision="float32"))
    with tempfile.TemporaryDirectory() as tmp:
        loop = training.set_up(config, Path(tmp), small, distributed.init("cpu"), False, lambda s: None, False)
    order = torch.arange(len(small.train))
    flat = torch.zeros(sum(p.numel() for p in loop.parameters))
    views = list(torch.split(flat, [p.numel() for p in loop.parameters]))

    def vaekit_steps(check: str) -> None:
        for b in range(steps):
            batch, eps = training.minibatch(loop, order, b)
            loss, _ = loop.step_loss(batch, 0, eps)
            if check == "flat":
                for p, view in zip(loop.parameters, views):
                    p.grad = view.view_as(p)  # autograd adds into it in place
                flat.zero_()
            else:
                loop.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if check != "none":  # the size of this step's gradients, then the flags as vaekit makes them
                grads = [p.grad.reshape(-1) for p in loop.parameters]
                size = torch.dot(flat, flat) if check == "flat" else training._gradient_size(grads, check == "dots")
                loop.optimizer.found_inf = (torch.stack([loss.detach() + size, loss.detach()]) * 0 != 0).float()[0]
            loop.optimizer.step()
            loop.optimizer.__dict__.pop("found_inf", None)

    def whole_loop() -> None:
        loop.state.batch_in_epoch = 0
        training.train_epoch(loop)

    torch.manual_seed(0)
    lean = ReferenceVAE()
    lean_optimizer = torch.optim.Adam(lean.parameters(), lr=1e-3, fused=True)
    parts = {
        "lean_reference_model": lambda: train_epoch_lean(lean, lean_optimizer, small.train.images),
        "lean_vaekit_model": lambda: vaekit_steps("none"),
        "check_dots": lambda: vaekit_steps("dots"),
        "check_foreach_norm": lambda: vaekit_steps("foreach"),
        "check_flat_buffer": lambda: vaekit_steps("flat"),
        "vaekit_loop": whole_loop,
    }
    times: dict[str, list[float]] = {name: [] for name in parts}
    for _ in range(rounds):
        for name, part in parts.items():
            start = time.thread_time()
            part()
            times[name].append(1000 * (time.thread_time() - start) / steps)
    torch.set_num_threads(threads)
    ms = {name: statistics.median(t[1:]) for name, t in times.items()}
    out = {f"step_{name}_ms": value for name, value in ms.items()}
    for name in ("check_dots", "check_foreach_norm", "check_flat_buffer", "vaekit_loop"):  # paired by round
        added = [a - b for a, b in zip(times[name][1:], times["lean_vaekit_model"][1:])]
        out[f"step_{name}_added_ms"] = statistics.median(added)
    out["step_vaekit_model_over_reference_model"] = ms["lean_reference_model"] / ms["lean_vaekit_model"]
    out["step_vaekit_loop_over_lean_reference"] = ms["lean_reference_model"] / ms["vaekit_loop"]
    return out


def pythae_epochs(data: Dataset) -> dict[str, Callable[[int], None]] | str:
    """Pythae 0.1.2's VAE with the same MLP, as {"pythae": a function that trains one epoch with Pythae's own
    trainer step} (or why it cannot run). Its data is binarized once, as Pythae has no per-batch
    binarization; its per-epoch extras (the copy of the best model, the scheduler) are left out, as
    vaekit's validation and checkpoint are, so that both figures are the training loop alone."""
    try:
        import logging

        from pythae.data.datasets import BaseDataset
        from pythae.models import VAE, VAEConfig
        from pythae.models.base.base_utils import ModelOutput
        from pythae.models.nn import BaseDecoder, BaseEncoder
        from pythae.trainers import BaseTrainer, BaseTrainerConfig
    except ImportError as err:
        return f"not installed ({err}); pip install -e '.[bench]'"
    for name in [n for n in logging.root.manager.loggerDict if n.startswith("pythae")]:
        logging.getLogger(name).setLevel(logging.ERROR)

    class Encoder(BaseEncoder):
        def __init__(self):
            super().__init__()
            self.hidden, self.mu, self.logvar = (
                torch.nn.Linear(784, 512),
                torch.nn.Linear(512, 16),
                torch.nn.Linear(512, 16),
            )

        def forward(self, x):
            h = torch.relu(self.hidden(x.flatten(1)))
            return ModelOutput(embedding=self.mu(h), log_covariance=self.logvar(h))

    class Decoder(BaseDecoder):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(16, 512), torch.nn.ReLU(), torch.nn.Linear(512, 784))

        def forward(self, z):
            return ModelOutput(reconstruction=torch.sigmoid(self.net(z)).view(-1, 1, 28, 28))

    config = VAEConfig(input_dim=(1, 28, 28), latent_dim=16, reconstruction_loss="bce")
    model = VAE(config, encoder=Encoder(), decoder=Decoder())
    binary = torch.bernoulli(data.train.images, generator=torch.Generator().manual_seed(0))
    folder = tempfile.mkdtemp()
    settings = BaseTrainerConfig(output_dir=folder, learning_rate=1e-3, per_device_train_batch_size=100, no_cuda=True)

    def quietly(work: Callable[[], Any]) -> Any:  # Pythae prints its set-up and a progress bar per epoch
        with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
            return work()

    trainer = quietly(lambda: BaseTrainer(model, BaseDataset(binary, torch.zeros(len(binary))), None, settings))
    quietly(trainer.prepare_training)

    def one_epoch(epoch: int) -> None:
        quietly(lambda: trainer.train_step(epoch))

    return {"pythae": one_epoch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs and images (a smoke run)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where both loops run (default: cpu)")
    parser.add_argument("--skip-pythae", action="store_true", help="leave out Pythae (always left out on a GPU)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/bench.json"))
    args = parser.parse_args()
    started = time.perf_counter()
    data = load_dataset(DataConfig())
    epochs = 2 if args.quick else 6
    device = args.device
    results: dict = {
        "machine": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or platform.machine(),
        "device": device,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    print("training throughput ...", flush=True)
    train_data = data if not args.quick else subset(data, 10_000)
    results.update(bench_throughput(train_data, epochs, 2000 if args.quick else 10_000, device, not args.skip_pythae))
    print("the 64x64 conv network of Locatello et al. on dSprites ...", flush=True)
    results.update(bench_dsprites(256 if args.quick else 2000, epochs, device))
    print("time to a test ELBO of -103 ...", flush=True)
    target, model = bench_time_to_target(data, 3 if args.quick else 40, device)
    results.update(target)
    print("log-likelihood throughput ...", flush=True)
    results.update(bench_log_likelihood(model, data, 20 if args.quick else 200, 5000))
    print("memory and K = 5000 over the test set ...", flush=True)
    results.update(bench_memory(device, 500 if args.quick else 10_000))
    results.update(bench_flops(results["mlp_vaekit_images_per_s"], device))
    results.update(bench_floor(results["mlp_reference_images_per_s"], device))
    if device == "cpu":
        print("where an MLP step's time goes (torch.profiler) ...", flush=True)
        results.update(bench_profile(data, 40 if args.quick else 200))
        print("the parts of an MLP step, single-threaded ...", flush=True)
        results.update(bench_step_parts(data, 3 if args.quick else 15))
    results["suite_seconds"] = time.perf_counter() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    width = max(map(len, results))
    for key, value in results.items():
        shown = f"{value:.3f}" if isinstance(value, float) and math.isfinite(value) else str(value)
        print(f"{key:{width}s}  {shown}")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
