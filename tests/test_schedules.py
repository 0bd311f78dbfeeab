"""Learning-rate schedules against their formulas, the optimiser's settings, gradient clipping, and a
scheduled run that resumes bit for bit."""

import math

import pytest
import torch

from vaekit import rundir
from vaekit.callbacks import Callback
from vaekit.config import TrainConfig
from vaekit.schedules import BURDA_EPOCHS, burda_stage, lr_factor
from vaekit.training import make_optimizer, train

# Burda et al. 2016, Section 5: stage i = 0 .. 7 lasts 3^i epochs, so it starts at 1 + 3 + ... + 3^(i-1).
BURDA_STARTS = [0, 1, 4, 13, 40, 121, 364, 1093]


def test_burdas_schedule_changes_at_its_eight_boundaries_and_a_shorter_run_keeps_the_proportions():
    assert BURDA_EPOCHS == 3280 == sum(3**i for i in range(8))
    tc = TrainConfig(epochs=3280, lr_schedule="burda")
    for i, start in enumerate(BURDA_STARTS):
        assert lr_factor(start * 10, tc, steps_per_epoch=10) == pytest.approx(10 ** (-i / 7), rel=1e-15)
        if start:
            assert lr_factor(start * 10 - 1, tc, steps_per_epoch=10) == pytest.approx(10 ** (-(i - 1) / 7), rel=1e-15)
    assert lr_factor(3279 * 10 + 9, tc, 10) == pytest.approx(0.1)  # the last stage: lr / 10
    # 328 epochs, a tenth: stage i starts at the first epoch e with e / 328 >= start / 3280, i.e. e >= start / 10:
    # 0, 0.1, 0.4, 1.3, 4, 12.1, 36.4, 109.3, so epoch 1 is already in stage 2 (stage 1 is shorter than an epoch)
    epochs = (0, 1, 2, 3, 4, 12, 13, 36, 37, 109, 110, 327)
    assert [burda_stage(e, 328) for e in epochs] == [0, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7]


@pytest.mark.parametrize(
    "settings, step, expected",
    [
        ({"lr_schedule": "constant"}, 12345, 1.0),
        ({"lr_schedule": "step", "lr_gamma": 0.5, "lr_step_epochs": 3}, 7 * 100 + 99, 0.5**2),  # epoch 7
        ({"lr_schedule": "exponential", "lr_gamma": 0.9}, 5 * 100, 0.9**5),
        ({"lr_schedule": "cosine", "lr_warmup_steps": 50}, 0, 1 / 50),
        ({"lr_schedule": "cosine", "lr_warmup_steps": 50}, 49, 1.0),
        ({"lr_schedule": "cosine", "lr_warmup_steps": 50}, 50, 1.0),
        ({"lr_schedule": "cosine", "lr_warmup_steps": 50}, 50 + 475, 0.5),  # halfway through 950 decaying steps
        ({"lr_schedule": "cosine", "lr_warmup_steps": 50}, 50 + 950 // 4, (1 + math.cos(math.pi * 237 / 950)) / 2),
    ],
)
def test_each_schedule_follows_its_formula(settings, step, expected):
    """10 epochs of 100 steps."""
    assert lr_factor(step, TrainConfig(epochs=10, **settings), steps_per_epoch=100) == pytest.approx(expected)


def test_the_optimisers_take_their_settings():
    params = [torch.nn.Parameter(torch.zeros(3))]
    adam = make_optimizer(TrainConfig(adam_beta1=0.5, adam_beta2=0.9, adam_eps=1e-4, weight_decay=0.01), params)
    assert (
        adam.defaults["betas"] == (0.5, 0.9) and adam.defaults["eps"] == 1e-4 and adam.defaults["weight_decay"] == 0.01
    )
    assert isinstance(make_optimizer(TrainConfig(optimizer="adamax"), params), torch.optim.Adamax)
    scheduled = make_optimizer(TrainConfig(learning_rate=0.003, lr_schedule="cosine"), params)
    assert scheduled.param_groups[0]["base_lr"] == 0.003
    with pytest.raises(ValueError, match="train.adam_beta2 = 1.0 is invalid"):
        TrainConfig(adam_beta2=1.0)


def test_a_scheduled_clipped_run_logs_its_rate_clips_every_step_and_resumes_bit_for_bit(
    tmp_path, tiny_config, tiny_data
):
    """600 images, batch 100: 6 steps an epoch, 18 in 3 epochs; the logged rate is that of each epoch's last
    step. Stopped after epoch 1 (max_seconds=0) and resumed, the weights equal an uninterrupted run's."""
    config = tiny_config.with_overrides(
        {
            "train.epochs": 3,
            "train.batch_size": 100,
            "train.lr_schedule": "cosine",
            "train.lr_warmup_steps": 4,
            "train.grad_clip_norm": 0.5,
            "train.optimizer": "adamax",
        }  # fmt: skip
    )
    norms = []  # each step's gradient norm: the clip at every step

    class GradientNorm(Callback):
        step_every = 1

        def on_step_end(self, loop, step):  # the gradients of the step just taken are still there
            norms.append(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in loop.model.parameters()])))

    full = train(config, tmp_path / "full", progress=False, dataset=tiny_data, callbacks=[GradientNorm()])
    assert len(norms) == 18 and all(n.item() == pytest.approx(0.5, rel=1e-5) for n in norms)
    rows = rundir.read_metrics(tmp_path / "full")
    expected = [config.train.learning_rate * lr_factor(s, config.train, 6) for s in (5, 11, 17)]
    assert [r["learning_rate"] for r in rows] == pytest.approx(expected, rel=1e-12)
    train(config, tmp_path / "cut", progress=False, dataset=tiny_data, max_seconds=0)
    assert len(rundir.read_metrics(tmp_path / "cut")) == 1
    resumed = train(config, tmp_path / "cut", resume=True, progress=False, dataset=tiny_data)
    for (name, p), q in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(p, q), name


def test_a_schedule_keeps_its_share_of_a_shorter_run_and_its_length_in_a_longer_one():
    """scaled_to_run, the one rule the experiments scale a paper's warm-up or capacity ramp by."""
    from vaekit.schedules import scaled_to_run

    assert scaled_to_run(100_000, 30_000, 300_000) == 10_000  # a third of the run stays a third
    assert scaled_to_run(100, 10, 200) == 5 and scaled_to_run(100, 1, 200) == 1  # never below 1
    assert scaled_to_run(100, 200, 200) == 100 and scaled_to_run(100, 500, 200) == 100  # not lengthened
    assert scaled_to_run(100, 0, 200) == 100  # a run of unknown length keeps the paper's
