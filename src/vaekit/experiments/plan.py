"""The plan of an experiment: which paper, which budget, and the grid of runs it makes.

Light on purpose (configs only, no torch), so that the command line takes its choices from here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from types import ModuleType

from vaekit.config import DEVICES, DataConfig, RunConfig
from vaekit.errors import ConfigError
from vaekit.experiments import (
    beta_sweep,
    burda2015,
    cifar10,
    kingma2013,
    kingma2014,
    locatello2019,
    mnist8bit,
    tomczak2018,
    vandenoord2017,
    vandenoord2017_cifar10,
)
from vaekit.experiments.budgets import BUDGETS, Budget

# experiment name -> the module that defines its runs (`runs(epochs, data)`), TITLE and PUBLISHED figures
EXPERIMENTS: dict[str, ModuleType] = {
    "kingma2013-mnist": kingma2013,
    "burda2015-mnist": burda2015,
    "beta-sweep": beta_sweep,
    "tomczak2018-vampprior": tomczak2018,
    "locatello2019-dsprites": locatello2019,
    "mnist-8bit": mnist8bit,
    "cifar10-bpd": cifar10,
    "vandenoord2017": vandenoord2017,
    "vandenoord2017-cifar10": vandenoord2017_cifar10,
    "kingma2014-ssl": kingma2014,
}


@dataclass(frozen=True)
class ExperimentPlan:
    """One invocation of an experiment: its runs (all, or those in `only`), epochs per run (the
    budget's unless given), an optional time cap in minutes of training per run and invocation,
    the device the runs train and are evaluated on (in float32, comparable with the papers), and
    whether they write TensorBoard events (`tensorboard --logdir OUT` then shows every run)."""

    name: str
    budget: str = "short"
    epochs: int | None = None
    only: tuple[str, ...] = ()
    minutes: float | None = None
    device: str = "auto"
    tensorboard: bool = False  # each run also writes RUN/tensorboard (vaekit.tensorboard)
    seeds: int = 1  # each run trained this many times, as RUN-seedS with train.seed + S (S = 0, 1, ...)
    recipe: bool = True  # at the long budget, the paper's RECIPE; False keeps a constant rate and PyTorch's defaults

    def __post_init__(self) -> None:
        if self.name not in EXPERIMENTS:
            raise ConfigError(f"unknown experiment '{self.name}': choose one of {', '.join(EXPERIMENTS)}.")
        if self.budget not in self.budgets:
            raise ConfigError(f"unknown budget '{self.budget}': choose one of {', '.join(self.budgets)}.")
        if self.epochs is not None and not 1 <= self.epochs <= 100_000:
            raise ConfigError(f"--epochs {self.epochs} is invalid: use 1 to 100000.")
        if self.minutes is not None and not 0 < self.minutes <= 10**6:
            raise ConfigError(f"--minutes {self.minutes} is invalid: use a positive number of minutes.")
        if self.device not in DEVICES:
            raise ConfigError(f"--device {self.device} is invalid: choose one of {', '.join(DEVICES)}.")
        if not 1 <= self.seeds <= 1000:
            raise ConfigError(f"--seeds {self.seeds} is invalid: use 1 to 1000.")
        names = [run for run, _ in self._grid()]
        unknown = sorted(set(self.only) - set(names) - {seeded for seeded, _ in self._seeded(self._grid())})
        if unknown:
            raise ConfigError(f"{self.name} has no run {', '.join(unknown)}: its runs are {', '.join(names)}.")

    @property
    def budgets(self) -> dict[str, Budget]:
        """The experiment's own budgets (its module's BUDGETS) where it has them, else the MNIST ones."""
        return getattr(EXPERIMENTS[self.name], "BUDGETS", BUDGETS)

    @property
    def spec(self) -> Budget:
        return self.budgets[self.budget]

    @property
    def epochs_per_run(self) -> int:
        return self.epochs or self.spec.epochs

    @property
    def data_config(self) -> DataConfig:
        """The experiment's data (its module's `data(budget)`, e.g. dSprites), else MNIST within the budget's limits."""
        data = getattr(EXPERIMENTS[self.name], "data", None)
        if data is not None:
            return data(self.spec)
        return DataConfig(train_limit=self.spec.train_limit, eval_limit=self.spec.eval_limit)

    def _grid(self) -> list[tuple[str, RunConfig]]:
        """The module's runs; at the long budget with its RECIPE (dotted overrides: the paper's schedule,
        optimiser settings and initialisation), where it has one and the plan asks for it."""
        grid = EXPERIMENTS[self.name].runs(self.epochs_per_run, self.data_config)
        recipe = getattr(EXPERIMENTS[self.name], "RECIPE", {}) if self.budget == "long" and self.recipe else {}
        return [(run, config.with_overrides(recipe) if recipe else config) for run, config in grid]

    def _seeded(self, grid: list[tuple[str, RunConfig]]) -> list[tuple[str, RunConfig]]:
        """Each run of the grid once, or with seeds > 1 as RUN-seed0, RUN-seed1, ... at train.seed + S."""
        if self.seeds == 1:
            return grid
        return [
            (
                seeded_name(run, s),
                dataclasses.replace(config, train=dataclasses.replace(config.train, seed=config.train.seed + s)),
            )
            for run, config in grid
            for s in range(self.seeds)
        ]

    def runs(self) -> list[tuple[str, RunConfig]]:
        """(run name, config) in grid order (each seed after the other), set to train on the plan's device in
        float32; `only` names runs of the grid (all their seeds) or single seeded runs."""
        return [
            (
                run,
                dataclasses.replace(
                    config, train=dataclasses.replace(config.train, device=self.device, precision="float32")
                ),
            )
            for run, config in self._seeded(self._grid())
            if not self.only or run in self.only or base_run(run) in self.only
        ]

    def command_line(self) -> list[str]:
        """The `vaekit experiment` arguments that give this plan (how worker processes get theirs)."""
        args = [self.name, "--budget", self.budget, "--device", self.device]
        args += ["--runs", ",".join(self.only)] if self.only else []
        args += ["--epochs", str(self.epochs)] if self.epochs else []
        args += ["--minutes", str(self.minutes)] if self.minutes else []
        args += ["--tensorboard"] if self.tensorboard else []
        args += ["--seeds", str(self.seeds)] if self.seeds > 1 else []
        args += [] if self.recipe else ["--no-recipe"]
        return args


SEED_SUFFIX = "-seed"


def seeded_name(run: str, seed: int) -> str:
    return f"{run}{SEED_SUFFIX}{seed}"


def base_run(run: str) -> str:
    """The grid's name of a run: RUN for RUN-seedS, the name itself otherwise."""
    head, sep, tail = run.rpartition(SEED_SUFFIX)
    return head if sep and tail.isdigit() else run


def seed_suffix(run: str) -> str:
    """'-seedS' of a seeded run's name, '' otherwise."""
    return run[len(base_run(run)) :]
