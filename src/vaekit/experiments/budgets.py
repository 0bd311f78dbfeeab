"""How much each run of an experiment gets (a module of its own, so that experiment modules can define
budgets of their own without importing the plan)."""

from __future__ import annotations

from dataclasses import dataclass

from vaekit.disentanglement import SCORE_POINTS


@dataclass(frozen=True)
class Budget:
    """How much each run of an experiment gets: epochs, data, and K for log p(x)."""

    epochs: int
    train_limit: int  # 0: all training images (50,000 of MNIST)
    eval_limit: int  # 0: all test images (10,000 of MNIST)
    num_importance_samples: int  # K of the test log p(x)
    # data with a factor grid: classes per factor of Chen et al.'s MIG (0: the whole grid), and training points of
    # the beta-VAE and FactorVAE scores (half as many test them)
    grid_classes: int = 10
    score_points: int = SCORE_POINTS["train"]
    prior_epochs: int = 0  # a VQ-VAE's PixelCNN prior: epochs of its fit (vaekit train-prior) before evaluation


# budget name -> what each run gets (on MNIST; an experiment module may define its own BUDGETS)
BUDGETS: dict[str, Budget] = {
    "smoke": Budget(epochs=1, train_limit=500, eval_limit=100, num_importance_samples=10),
    "short": Budget(epochs=10, train_limit=0, eval_limit=1000, num_importance_samples=500),
    "long": Budget(epochs=200, train_limit=0, eval_limit=0, num_importance_samples=5000),
}
