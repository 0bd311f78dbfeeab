"""The loop asks the host only at its syncs, skips non-finite steps on the device, and compiles."""

import pytest
import torch

from vaekit import training
from vaekit.errors import TrainingDivergedError
from vaekit.training import train

SYNCING = ("item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__")


@pytest.fixture
def host_reads(monkeypatch):
    """Counts the tensor methods that make the host wait for the device, while train_epoch runs."""
    counts = {"inside": False, "calls": []}
    for name in SYNCING:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            if counts["inside"]:
                counts["calls"].append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    real_epoch = training.train_epoch

    def watched(loop):
        counts["inside"] = True
        try:
            return real_epoch(loop)
        finally:
            counts["inside"] = False

    monkeypatch.setattr(training, "train_epoch", watched)
    return counts


@pytest.mark.parametrize("images", [600, 1200])
def test_an_epoch_reads_the_device_a_fixed_number_of_times_not_once_per_step(
    images, host_reads, tmp_path, tiny_config, tiny_data
):
    config = tiny_config.with_overrides({"train.epochs": 1, "train.sync_every_steps": 1000, "data.train_limit": images})
    train(config, tmp_path / "run", progress=False, dataset=tiny_data)
    steps = min(images, len(tiny_data.train)) // config.train.batch_size
    assert steps >= 12
    # One sync at the epoch's end (the non-finite counters) and the epoch's totals: a handful, however many steps.
    assert len(host_reads["calls"]) <= 4, host_reads["calls"]


def test_syncing_every_step_reads_the_device_every_step(host_reads, tmp_path, tiny_config, tiny_data):
    """The counter above can fail: the CPU default syncs once per step, and it sees that."""
    train(tiny_config.with_overrides({"train.epochs": 1}), tmp_path / "run", progress=False, dataset=tiny_data)
    assert len(host_reads["calls"]) >= 12


def test_the_device_noise_and_sync_interval_do_not_change_the_numbers(tmp_path, tiny_config, tiny_data):
    """Syncing every 5 steps instead of every step gives the same run, bit for bit."""
    a = train(tiny_config, tmp_path / "a", progress=False, dataset=tiny_data)
    b = train(
        tiny_config.with_overrides({"train.sync_every_steps": 5}), tmp_path / "b", progress=False, dataset=tiny_data
    )
    assert [m["train_elbo"] for m in a.metrics] == [m["train_elbo"] for m in b.metrics]
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(p, q)


def _poisoned(data, rows):
    images = data.train.images.clone()
    images[rows] = float("nan")
    return type(data)(type(data.train)(images, data.train.labels), data.valid, data.test, "none", 0)


def test_non_finite_steps_are_skipped_on_the_device_and_counted_at_the_sync(tmp_path, tiny_config, tiny_data):
    bad = _poisoned(tiny_data, slice(0, 1))  # one batch of every epoch holds the NaN image
    config = tiny_config.with_overrides(
        {"data.binarization": "none", "train.skip_nonfinite": True, "train.sync_every_steps": 5}
    )
    result = train(config, tmp_path / "run", progress=False, dataset=bad)
    assert [m["skipped_steps"] for m in result.metrics] == [1, 2]
    assert all(torch.isfinite(p).all() for p in result.model.parameters())
    assert all(torch.isfinite(torch.tensor(m["train_elbo"])) for m in result.metrics)


def test_without_skipping_the_run_stops_at_the_next_sync_naming_the_steps(tmp_path, tiny_config, tiny_data):
    bad = _poisoned(tiny_data, slice(0, 1))
    config = tiny_config.with_overrides({"data.binarization": "none", "train.sync_every_steps": 5})
    with pytest.raises(TrainingDivergedError, match=r"loss became non-finite at a step from \d+ to \d+ \(epoch 1\)"):
        train(config, tmp_path / "run", progress=False, dataset=bad)


def test_a_failing_compiler_warns_once_and_trains_uncompiled(monkeypatch, tmp_path, tiny_config, tiny_data):
    def no_compiler(module, **kwargs):
        def fail(*args, **kw):
            raise RuntimeError("Compiler: cc is not found\nmore detail")

        return fail

    monkeypatch.setattr(torch, "compile", no_compiler)
    lines = []
    eager = train(tiny_config, tmp_path / "eager", progress=False, dataset=tiny_data)
    fallback = train(
        tiny_config.with_overrides({"train.compile": "on"}),
        tmp_path / "on",
        progress=False,
        dataset=tiny_data,
        log=lines.append,
    )
    warnings = [line for line in lines if "torch.compile" in line]
    assert warnings == [
        "warning: torch.compile is not available here (Compiler: cc is not found); training continues uncompiled"
    ]
    assert [m["train_elbo"] for m in eager.metrics] == [m["train_elbo"] for m in fallback.metrics]


@pytest.mark.slow
def test_a_compiled_run_learns_and_resumes_bit_for_bit(tmp_path, tiny_config, tiny_data):
    config = tiny_config.with_overrides({"train.compile": "on", "train.epochs": 2})
    full = train(config, tmp_path / "full", progress=False, dataset=tiny_data)
    assert full.metrics[-1]["valid_elbo"] > full.metrics[0]["valid_elbo"]
    train(config.with_overrides({"train.epochs": 1}), tmp_path / "cut", progress=False, dataset=tiny_data)
    resumed = train(config, tmp_path / "cut", resume=True, progress=False, dataset=tiny_data)
    for p, q in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.equal(p, q)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_cuda_the_steps_between_syncs_never_wait_for_the_gpu(monkeypatch, tmp_path, tiny_config, tiny_data):
    """torch's sync debug mode raises on any synchronising call; it is on while a minibatch is drawn and
    a step is taken, and off at the syncs."""

    def strict(function):
        def wrapped(*args):
            torch.cuda.set_sync_debug_mode("error")
            try:
                return function(*args)
            finally:
                torch.cuda.set_sync_debug_mode("default")

        return wrapped

    monkeypatch.setattr(training, "train_step", strict(training.train_step))
    monkeypatch.setattr(training, "minibatch", strict(training.minibatch))
    config = tiny_config.with_overrides({"train.device": "cuda", "train.sync_every_steps": 6, "train.epochs": 1})
    result = train(config, tmp_path / "run", progress=False, dataset=tiny_data)
    assert result.metrics[-1]["skipped_steps"] == 0


def test_the_non_finite_counters_count_steps_and_the_longest_run_across_reads():
    from vaekit.training import NonFiniteSteps

    counter = NonFiniteSteps(torch.device("cpu"), step=10)
    flags = [(1, 1), (1, 0), (0, 0), (1, 0), (1, 1)]  # [loss or gradient bad, loss bad] per step
    for bad in flags[:2]:
        counter.record(torch.tensor(bad, dtype=torch.float32))
    assert counter.read(12) == (2, 1, 2, 10)
    for bad in flags[2:]:
        counter.record(torch.tensor(bad, dtype=torch.float32))
    assert counter.read(15) == (2, 1, 2, 12)  # the run of 2 after the good step
    counter.record(torch.tensor((1.0, 0.0)))
    assert counter.read(16) == (1, 0, 3, 15)  # a run that spans a read keeps counting


@pytest.mark.parametrize(
    "loss, poison, expected",
    [
        (3.0, None, [0.0, 0.0]),
        (3.0, float("nan"), [1.0, 0.0]),  # a NaN gradient with a finite loss
        (3.0, float("-inf"), [1.0, 0.0]),
        (3.0, 4e23, [1.0, 0.0]),  # finite, but the squared norm overflows: an absurd learning rate's step 1
        (float("inf"), None, [1.0, 1.0]),
        (float("-inf"), None, [1.0, 1.0]),
        (float("nan"), float("nan"), [1.0, 1.0]),
    ],
)
def test_the_step_flags_catch_a_non_finite_loss_or_gradient_and_an_overflowing_norm(loss, poison, expected):
    layers = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Linear(4, 3))
    parameters = list(layers.parameters())
    for p in parameters:
        p.grad = torch.randn_like(p)
    if poison is not None:
        parameters[2].grad[1, 2] = poison  # one entry of one tensor
    parameters[3].grad = None  # a parameter the loss did not reach is left out
    context = training.distributed.init("cpu")
    flags = training._nonfinite(torch.tensor(loss, requires_grad=True) * 1, parameters, context)
    assert flags.dtype == torch.float32 and flags.tolist() == expected


@pytest.mark.parametrize("dots", [True, False])  # the CPU's reduction, and the GPU's
def test_both_gradient_sizes_are_finite_exactly_without_nan_inf_or_overflow(dots):
    def size(poison):
        grads = [torch.full((20,), 0.5), torch.full((7,), 2.0)]
        if poison is not None:
            grads[1][3] = poison
        return training._gradient_size(grads, dots)

    assert size(None).item() == pytest.approx(33.0 if dots else 33.0**0.5)  # 20 x 0.25 + 7 x 4
    assert torch.isfinite(size(1e9))
    for poison in (float("nan"), float("inf"), float("-inf"), 4e23):
        assert not torch.isfinite(size(poison)), poison
