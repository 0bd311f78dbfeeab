"""Every schedule as a pure function of the optimisation step, so a resumed run follows it bit for bit:
the KL weight's warm-up (beta_at) and the KL capacity's target (capacity_at), scaled_to_run (a paper's
schedule kept at its share of a shorter run), and the learning-rate schedules, the factor that
multiplies each parameter group's base learning rate at a step:

  constant      1
  burda         10^(-i/7) in stage i = 0 .. 7, which lasts 3^i epochs: 3,280 epochs in all (Burda et
                al. 2016, Section 5); a shorter run keeps the stages' proportions (a stage shorter than
                one of its epochs is passed over)
  step          gamma^floor(epoch / step_epochs)
  exponential   gamma^epoch
  cosine        (step + 1) / W for the first W warm-up steps, then (1 + cos(pi (step - W) / (T - W))) / 2
                over the run's T steps (Loshchilov & Hutter 2017, without restarts)
"""

from __future__ import annotations

import math

from vaekit.config import TrainConfig

BURDA_STAGES = 8  # i = 0 .. 7
BURDA_EPOCHS = (3**BURDA_STAGES - 1) // 2  # 1 + 3 + ... + 3^7 = 3,280


def burda_stage(epoch: int, epochs: int) -> int:
    """The stage i of epoch `epoch` (from 0) in a run of `epochs`: stage i starts at epoch (3^i - 1) / 2 of
    the paper's 3,280, which a run of `epochs` reaches at that share of its own (integer arithmetic)."""
    return max(i for i in range(BURDA_STAGES) if (3**i - 1) // 2 * epochs <= epoch * BURDA_EPOCHS)


def lr_factor(step: int, train: TrainConfig, steps_per_epoch: int) -> float:
    """The schedule's factor at optimisation step `step` (from 0)."""
    epoch, schedule = step // steps_per_epoch, train.lr_schedule
    if schedule == "burda":
        return 10 ** (-burda_stage(epoch, train.epochs) / 7)
    if schedule == "step":
        return train.lr_gamma ** (epoch // train.lr_step_epochs)
    if schedule == "exponential":
        return train.lr_gamma**epoch
    if schedule == "cosine":
        warmup, total = train.lr_warmup_steps, train.epochs * steps_per_epoch
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
    return 1.0


def beta_at(step: int, beta: float, warmup_steps: int) -> float:
    """KL weight at a step: beta * min(1, step / warmup_steps), linear warm-up from 0
    (Bowman et al. 2016; Sonderby et al. 2016); plain beta without warm-up (Higgins et al. 2017)."""
    return beta if warmup_steps <= 0 else beta * min(1.0, step / warmup_steps)


def capacity_at(step: int, capacity_max: float, capacity_steps: int) -> float:
    """Target KL in nats at a step, raised linearly from 0 to capacity_max (Burgess et al. 2018)."""
    return capacity_max if capacity_steps <= 0 else capacity_max * min(1.0, step / capacity_steps)


def scaled_to_run(length: int, run: int, reference: int) -> int:
    """The length of a schedule (in steps or epochs) written for a run of `reference`, kept at the same share of
    a shorter run of `run` (same unit): max(1, length * run // reference), in integers; unchanged for a run
    as long or longer, or of unknown length (0). The one rule by which an experiment scales a paper's warm-up
    or capacity ramp to a budget shorter than the paper's."""
    if not 0 < run < reference:
        return length
    return max(1, length * run // reference)
