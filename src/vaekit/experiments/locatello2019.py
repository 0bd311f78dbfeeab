"""Locatello et al. (2019), "Challenging common assumptions in the unsupervised learning of disentangled
representations", on dSprites: the VAE, beta-VAE (beta = 4), the annealed capacity VAE, beta-TCVAE
(beta = 6), FactorVAE (gamma = 35) and DIP-VAE-I with their conv network (the dsprites-* presets), each
scored by every disentanglement metric of vaekit.disentanglement on the test images. Run it over seeds
(--seeds 3): the paper's point is that the spread between seeds is as large as that between methods.
Locatello et al. trained 12,600 models (six objectives at six settings each, 50 seeds, seven datasets: the
sweep of disentanglement_lib's unsupervised_study_v1) and report distributions of the metrics, not single
figures; the published figures set beside these runs come from elsewhere (PUBLISHED_SOURCES).

Budgets: smoke (1 epoch of 256 images), short (a CPU budget: 20,000 images for 6 epochs, 120,000 images
seen, about 4 minutes a run on 2 cores, the capacity ramp scaled to it), long (the paper's 300,000 steps
of 64 images on all of dSprites, for a GPU). The figures are scored on 1,000 held-out test images (the
pair metrics), on rendered factor combinations (the beta-VAE and FactorVAE scores: 1,000 training and 500
test points at the short budget, which keeps three seeds of all six under 90 minutes on 2 cores;
disentanglement_lib's 10,000 and 5,000 at the long one) and, for Chen et al.'s MIG, on a grid of 10 classes
per factor (the long budget: the whole grid).
"""

from __future__ import annotations

import dataclasses
import math

from vaekit.config import DataConfig, RunConfig, load_config
from vaekit.experiments.budgets import Budget
from vaekit.schedules import scaled_to_run

TITLE = "Locatello et al. (2019) on dSprites: six objectives, one conv network, every disentanglement metric"
PRESETS = {
    "vae": "dsprites-vae",
    "beta-vae": "dsprites-beta-vae",
    "annealed-vae": "dsprites-annealed-vae",
    "beta-tcvae": "dsprites-beta-tcvae",
    "factor-vae": "dsprites-factor-vae",
    "dip-vae-i": "dsprites-dip-vae-i",
}
PUBLISHED: dict[str, float] = {}  # no published -log p(x) on dSprites
# Published disentanglement figures on dSprites, each under the vaekit metric that computes it as its source did.
# None is Locatello et al.'s. All but DIP-VAE-I's SAP are rows of Lin et al. 2020's Table 1, a compilation of the
# best reported result of each method (its caption as issue 35 quotes it; the table was read here only as Ding et
# al. 2021, arXiv:1911.05210, Table 3, copy its baseline rows from it). Every MIG is Chen et al. 2018's estimator
# (mig_posterior: sampled codes over the whole grid, shape left out; their code, rtqichen/beta-tcvae, was read to
# confirm the setting), never disentanglement_lib's 20-bin one (mig). Left out: the table's beta-VAE FactorVAE
# score, 0.63 +- 0.10, a mean over seeds from yet another source, which beside FactorVAE's best 0.82 would compare
# a mean with a best. PUBLISHED_SOURCES names the original behind each figure and what could be checked.
PUBLISHED_METRICS: dict[str, dict[str, float]] = {
    "vae": {"mig_posterior": 0.10},
    "beta-vae": {"mig_posterior": 0.21, "sap": 0.55},
    "beta-tcvae": {"mig_posterior": 0.45},
    "factor-vae": {"mig_posterior": 0.15, "factor_vae_score": 0.82},
    "dip-vae-i": {"sap": 0.53},
}
# Where each published figure comes from: the experiment summary prints these lines under its metric tables.
PUBLISHED_SOURCES = (
    "Published figures, in brackets, are the best reported result of each method, not medians over seeds, and "
    "none is Locatello et al.'s, who show their 12,600 models as distributions.",
    "MIG 0.10 (vae), 0.21 (beta-vae), 0.45 (beta-tcvae), 0.15 (factor-vae), in the mig_posterior column: Lin et "
    "al. 2020 (InfoGAN-CR and ModelCentrality), Table 1, best over beta (gamma for FactorVAE) with Chen et al. "
    "2018's estimator, as issue 35 reports; Chen et al.'s own figures were not checked here.",
    "FactorVAE score 0.82 (factor-vae): Lin et al. 2020, Table 1, from Kim & Mnih 2018, their best mean over 10 "
    "seeds as issue 35 reports; Kim & Mnih's own table was not checked here.",
    "SAP 0.55 (beta-vae): Lin et al. 2020, Table 1; the paper it comes from was not identified.",
    "SAP 0.53 (dip-vae-i): not in Lin et al. 2020's Table 1; its source was not found (Kumar et al. 2018, who "
    "define DIP-VAE and SAP, could not be read here), so it is unchecked.",
)
BUDGETS = {
    "smoke": Budget(
        epochs=1, train_limit=256, eval_limit=128, num_importance_samples=0, grid_classes=3, score_points=40
    ),
    "short": Budget(epochs=6, train_limit=20_000, eval_limit=1_000, num_importance_samples=0, score_points=1000),
    "long": Budget(
        epochs=33, train_limit=0, eval_limit=10_000, num_importance_samples=0, grid_classes=0, score_points=10_000
    ),
}


def data(budget: Budget) -> DataConfig:
    return DataConfig(dataset="dsprites", train_limit=budget.train_limit, eval_limit=budget.eval_limit)


PAPER_STEPS = 300_000  # Locatello et al.'s steps per run (batch 64)


def runs(epochs: int, data: DataConfig) -> list[tuple[str, RunConfig]]:
    """Each preset at the budget; a run shorter than the paper's raises the annealed VAE's capacity over the
    same share of its steps (100,000 of 300,000), or the capacity would still be near 0 nats when it ends."""
    out = []
    for run, preset in PRESETS.items():
        config = load_config(preset)
        train = dataclasses.replace(config.train, epochs=epochs)
        steps = epochs * math.ceil(data.train_limit / train.batch_size)  # train_limit 0: all of dSprites
        if train.capacity_steps:
            train = dataclasses.replace(train, capacity_steps=scaled_to_run(train.capacity_steps, steps, PAPER_STEPS))
        out.append((run, dataclasses.replace(config, data=data, train=train)))
    return out
