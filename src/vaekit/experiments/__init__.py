"""Paper reproductions: grids of runs composed from training and evaluation, with a summary.

    plan.py     which experiment and budget, and the grid of runs they make (ExperimentPlan)
    runner.py   run_experiment: skip complete runs, resume shorter ones, evaluate, worker processes
    summary.py  one row per run read back from its folder, the Markdown table, the figure
    kingma2013.py, burda2015.py, beta_sweep.py, tomczak2018.py, locatello2019.py, mnist8bit.py: the papers'
                grids and published figures

This package's own import is light (configs only); `vaekit.experiments.runner` brings in torch.
"""

from vaekit.experiments.plan import BUDGETS, EXPERIMENTS, Budget, ExperimentPlan

__all__ = ["BUDGETS", "EXPERIMENTS", "Budget", "ExperimentPlan"]
