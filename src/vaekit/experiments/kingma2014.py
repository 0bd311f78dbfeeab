"""Semi-supervised MNIST: Kingma et al. 2014's M2 and M1 + M2 with N labelled training images (N / 10 of each digit,
the others unlabelled), their classifiers' test error beside the paper's Table 1.

Settings, where they come from (the paper's Section 4 and the authors' released code, github.com/dpkingma/nips14-ssl,
read for what the paper leaves out):
  - M2 (`mnist-m2`): q(y|x), q(z|x, y) and p(x|y, z) MLPs of one hidden layer of 500 softplus units, z of 50,
    Bernoulli pixels (dynamic binarization), alpha = 0.1 N (classification_weight 0.1 per image);
  - M1 (`mnist-m1`): a VAE of two hidden layers of 600 softplus units and z of 50 (the code's saved M1 has 500);
  - M1 + M2 (`mnist-m1-m2`): M2 on M1's features with a Gaussian p(features|y, z), one hidden layer of 300 units at
    N = 100 (500 at other N, as the code's run_2layer_ssl.py);
  - optimiser: Adam with learning rate 3e-4, betas (0.9, 0.999) (the paper's "RMSProp with momentum and bias
    correction": first moment 0.1, second 0.001 as decays, i.e. Adam's defaults), 3000 epochs in the code.
Where this differs, and why:
  - features: M2 trains on M1's posterior means; the code draws a fresh sample of q(z|x) every step;
  - every M1 unit is a feature (the code keeps those whose posterior mean's std exceeds 0.1);
  - the labelled minibatch: 100 labelled images beside each unlabelled minibatch of 100 (the code: 1 and 499);
  - initialisation: PyTorch's default (the paper: N(0, 0.001^2)); no N(0, I) prior on the weights (the code has one);
  - epochs: the budget's, far below the code's 3000 (the summary states them).
"""

from __future__ import annotations

import dataclasses

from vaekit.config import DataConfig, RunConfig, load_config
from vaekit.experiments.budgets import Budget

TITLE = "Semi-supervised MNIST with 100 labels (Kingma et al. 2014, Table 1): M2 and M1 + M2 test error"
PUBLISHED: dict[str, float] = {}  # the paper states no log p(x) for these models
# run -> metric -> the paper's figure (Table 1, N = 100: test error in percent, mean and standard deviation over runs)
PUBLISHED_METRICS = {"m2": {"error": 11.97, "error_spread": 1.71}, "m1-m2": {"error": 3.33, "error_spread": 0.14}}
PUBLISHED_SOURCES = (
    "Kingma, Rezende, Mohamed & Welling 2014, Table 1, N = 100: M2 11.97 (+- 1.71) %, M1+M2 3.33 (+- 0.14) % test "
    "error; N = 600: 4.94 (+- 0.13), 2.59 (+- 0.05); N = 1000: 3.60 (+- 0.56), 2.40 (+- 0.02); N = 3000: 3.92 "
    "(+- 0.63), 2.18 (+- 0.04)",
)
# run -> the run whose posterior means it trains on (the runner writes them first: vaekit features)
FEATURES_FROM = {"m1-m2": "m1"}  # every M1 unit that moves is a feature (features.MIN_FEATURE_STD)
LABELLED = 100  # N; `vaekit experiment kingma2014-ssl --set data.labelled=600` is not offered: edit and rerun

# smoke: the pipeline in a minute; short: the CPU budget of docs/results.md; long: a GPU's share of the paper's
BUDGETS = {
    "smoke": Budget(epochs=1, train_limit=1000, eval_limit=200, num_importance_samples=10),
    "short": Budget(epochs=50, train_limit=0, eval_limit=0, num_importance_samples=100),
    "long": Budget(epochs=300, train_limit=0, eval_limit=0, num_importance_samples=5000),
}


def data(budget: Budget) -> DataConfig:
    """Binarized MNIST within the budget's limits, every label visible (M1's; the M2 runs hide all but N)."""
    return DataConfig(train_limit=budget.train_limit, eval_limit=budget.eval_limit)


def runs(epochs: int, data: DataConfig) -> list[tuple[str, RunConfig]]:
    """M2 on pixels, M1, and M1 + M2 on M1's features (whose data the runner fills in), each for `epochs`."""
    out = []
    for name, preset in (("m2", "mnist-m2"), ("m1", "mnist-m1"), ("m1-m2", "mnist-m1-m2")):
        config = load_config(preset)
        labelled = LABELLED if config.model.family == "m2" else 0
        run_data = dataclasses.replace(data, labelled=labelled)
        if name in FEATURES_FROM:
            run_data = dataclasses.replace(config.data, labelled=labelled)
        out.append((name, RunConfig(config.model, run_data, dataclasses.replace(config.train, epochs=epochs))))
    return out
