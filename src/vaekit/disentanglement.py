"""Disentanglement metrics: how well each latent code captures one generative factor.

Every metric that reads pairs is a function `name(codes, factors, ...)` with codes (N, J), float, one
row per image (usually the posterior means), and factors (N, F), the discrete factor classes of the same
images (integers 0 .. size-1). The metrics that intervene on factors (the beta-VAE and FactorVAE
scores) take a `FactorGrid` (the images of every factor combination) and an encoding function.
Computed as disentanglement_lib computes them (Locatello et al. 2019), since that is where most
published figures come from; scikit-learn provides the classifiers and the discrete mutual information.
Mutual information and entropies are in nats.

  mig                    Chen et al. 2018, Section 5 (disentanglement_lib's estimator: 20-bin histograms)
  mig_posterior          the same gap from the Gaussian posterior's parameters (Chen et al.'s estimator)
  sap                    Kumar et al. 2018, Section 5 (the discrete-factor form: linear SVM accuracies)
  dci                    Eastwood & Williams 2018 (gradient-boosted trees' importances)
  modularity, explicitness   Ridgeway & Mozer 2018, Section 3
  beta_vae_score         Higgins et al. 2017, Section 3
  factor_vae_score       Kim & Mnih 2018, Section 4
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.nn import functional as nn_functional

# scikit-learn is imported where a metric needs it: it takes about a second, which every `vaekit train`
# would otherwise pay through vaekit.evaluation.

Encode = Callable[[np.ndarray], np.ndarray]  # images (n, C, H, W) -> codes (n, J)


HISTOGRAM_BINS = 20  # equal-width bins of each code in mig, modularity and the mutual-information matrix


def histogram_discretize(codes: np.ndarray, bins: int = HISTOGRAM_BINS) -> np.ndarray:
    """Each code column cut into `bins` equal-width bins over its own range: (N, J) -> (N, J) int."""
    out = np.zeros(codes.shape, dtype=np.int64)
    for j in range(codes.shape[1]):
        edges = np.histogram(codes[:, j], bins)[1]
        out[:, j] = np.digitize(codes[:, j], edges[:-1])
    return out


def mutual_information_matrix(discrete_codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """I(c_j; v_k) in nats from the empirical joint distribution (the plug-in estimate, as scikit-learn's
    mutual_info_score): (J, F). Counted with one bincount per pair, fast enough for the bootstrap."""
    n = len(factors)
    classes = [np.unique(factors[:, k], return_inverse=True)[1].ravel() for k in range(factors.shape[1])]
    out = np.zeros((discrete_codes.shape[1], factors.shape[1]))
    for j in range(discrete_codes.shape[1]):
        a = np.unique(discrete_codes[:, j], return_inverse=True)[1].ravel()
        for k, b in enumerate(classes):
            rows, cols = a.max() + 1, b.max() + 1
            joint = np.bincount(a * cols + b, minlength=rows * cols).reshape(rows, cols)
            p = joint[joint > 0] / n
            pa, pb = joint.sum(1) / n, joint.sum(0) / n
            outer = (pa[:, None] * pb[None, :])[joint > 0]
            out[j, k] = max(0.0, float((p * np.log(p / outer)).sum()))
    return out


def factor_entropies(factors: np.ndarray) -> np.ndarray:
    """H(v_k) in nats of each factor's empirical distribution: (F,)."""
    return np.array([_entropy(np.bincount(factors[:, k]) / len(factors)) for k in range(factors.shape[1])])


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def mig(codes: np.ndarray, factors: np.ndarray, bins: int = 20) -> float:
    """Mutual information gap, disentanglement_lib's estimator (codes discretized into `bins` histogram bins):

    MIG = 1/F sum_k (I(c_(1); v_k) - I(c_(2); v_k)) / H(v_k),
    c_(1), c_(2) the codes with the largest and second largest information about v_k (Chen et al. 2018,
    Eq. 9). 1 when each factor is in one code alone; 0 for a factor that no code, or two codes, carry.
    Chen et al.'s own estimator samples codes from the posterior over the whole factor grid instead;
    published figures come from both, and they differ.
    """
    return mig_from_information(mutual_information_matrix(histogram_discretize(codes, bins), factors), factors)


def mig_from_information(information: np.ndarray, factors: np.ndarray) -> float:
    """MIG from I(c_j; v_k), (J, F): each factor's gap between its two most informative codes over the
    empirical entropy H(v_k) of the factors (N, F) (not log(classes): classes need not be equally common)."""
    ranked = np.sort(information, axis=0)[::-1]
    second = ranked[1] if len(ranked) > 1 else np.zeros_like(ranked[0])
    entropy = factor_entropies(factors)  # 0 for a factor with one class (in a tiny bootstrap resample): gap 0
    return float(np.mean(np.where(entropy > 0, (ranked[0] - second) / np.where(entropy > 0, entropy, 1.0), 0.0)))


def posterior_mutual_information(
    mean: torch.Tensor, std: torch.Tensor, factors: np.ndarray, samples: int = 10_000, seed: int = 0
) -> np.ndarray:
    """I(z_j; v_k) = H(z_j) - H(z_j | v_k) in nats, (J, F), under a factorized Gaussian posterior
    q(z_j | x_n) = N(mean[n, j], std[n, j]^2) of N images (N, J) with factor classes (N, F), the images
    drawn uniformly (Chen et al. 2018, Section 5 and Appendix C): the mean over pairs of
    `posterior_information_terms`."""
    return posterior_information_terms(mean, std, factors, samples, seed).mean(0)


def posterior_information_terms(
    mean: torch.Tensor, std: torch.Tensor, factors: np.ndarray, samples: int = 10_000, seed: int = 0
) -> np.ndarray:
    """Each pair's term of I(z_j; v_k), (samples, J, F): log q(z_j | v_k) - log q(z_j) at (n uniform,
    z ~ q(z | x_n)), with the exact mixtures
        q(z_j) = 1/N sum_n q(z_j | x_n),   q(z_j | v_k = v) = 1/N_v sum_{n: v_k(x_n) = v} q(z_j | x_n).
    Their mean is the Monte-Carlo estimate of I, their spread its standard error. One set of pairs serves
    the marginal and every conditional (Chen et al. draw a set per factor value: the same expectations, and
    shared pairs make the difference's Monte-Carlo error smaller). Computed in float64 on mean's device."""
    mean, std = mean.double(), std.double()
    n, j = mean.shape
    generator = torch.Generator().manual_seed(seed)
    picks = torch.randint(n, (samples,), generator=generator).to(mean.device)
    z = mean[picks] + std[picks] * torch.randn(samples, j, generator=generator, dtype=torch.float64).to(mean.device)
    classes = torch.as_tensor(factors, dtype=torch.long, device=mean.device)
    # one row per (factor, class): summing over images with a matrix product groups them by class
    members = torch.cat([nn_functional.one_hot(classes[:, k]).T for k in range(classes.shape[1])]).double()
    offsets = torch.tensor([0, *np.cumsum([int(classes[:, k].max()) + 1 for k in range(classes.shape[1])])[:-1]])
    own = classes[picks] + offsets.to(mean.device)  # (S, F): each pair's row of `members`, v_k(x_n) of factor k
    log_count = members.sum(1).log()
    mean, precision, log_norm = mean.T.contiguous(), 1 / std.T, std.T.log() + 0.5 * math.log(2 * math.pi)  # (J, N)
    terms = []
    chunk = max(1, 2**23 // (n * j))  # pairs per step: the (J, N, chunk) densities stay near 64 MB
    for rows in torch.arange(samples, device=mean.device).split(chunk):
        log_q = z[rows].T[:, None, :] - mean[..., None]  # (J, N, c): log q(z_s,j | x_n), in place from here
        log_q.mul_(precision[..., None]).square_().mul_(-0.5).sub_(log_norm[..., None])
        top = log_q.amax(1, keepdim=True)  # (J, 1, c), subtracted before exp so that no mixture underflows
        weights = log_q.sub_(top).exp_()
        entropy = -(weights.sum(1).log() + top[:, 0] - math.log(n))  # (J, c): -log q(z_s,j)
        mine = (members @ weights)[:, own[rows].T, torch.arange(len(rows))]  # (J, F, c): each pair's own class
        conditional = -(mine.log() + top - log_count[own[rows].T])  # (J, F, c): -log q(z_s,j | v_k(x_n))
        terms.append((entropy[:, None] - conditional).permute(2, 0, 1).cpu())
    return torch.cat(terms).numpy()


def mig_posterior(
    mean: torch.Tensor, std: torch.Tensor, factors: np.ndarray, samples: int = 10_000, seed: int = 0
) -> float:
    """MIG as Chen et al. 2018 compute it (their Eq. 9 with `posterior_mutual_information`): from the
    Gaussian posterior's parameters over every factor combination, not from histograms of the means as
    `mig` does; the figures of the two differ. Chen et al. score dSprites without its shape factor."""
    return mig_posterior_estimate(mean, std, factors, samples, seed)[0]


def mig_posterior_estimate(
    mean: torch.Tensor, std: torch.Tensor, factors: np.ndarray, samples: int = 10_000, seed: int = 0
) -> tuple[float, float, np.ndarray]:
    """`mig_posterior`, its Monte-Carlo standard error (the spread over pairs of each pair's gap term, the
    two codes ranked by the estimate) and I(z_j; v_k) (J, F) itself."""
    terms = posterior_information_terms(mean, std, factors, samples, seed)
    information = np.maximum(terms.mean(0), 0.0)
    if information.shape[0] < 2:
        return mig_from_information(information, factors), 0.0, information
    first, second = np.argsort(-information, axis=0, kind="stable")[:2]  # (F,) each
    columns = np.arange(information.shape[1])
    per_pair = ((terms[:, first, columns] - terms[:, second, columns]) / factor_entropies(factors)).mean(1)
    stderr = float(per_pair.std(ddof=1) / math.sqrt(len(per_pair)))
    return mig_from_information(information, factors), stderr, information


def _fit(model: Any, x: np.ndarray, y: np.ndarray) -> Any:
    """model.fit(x, y) without scikit-learn's guess that many classes among few points mean a regression:
    factor classes are classes by definition (dSprites' orientation has 40)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The number of unique classes is greater than 50%")
        return model.fit(x, y)


def _halves(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    return order[: n // 2], order[n // 2 :]


def sap(codes: np.ndarray, factors: np.ndarray, seed: int = 0) -> float:
    """Separated attribute predictability (Kumar et al. 2018) for discrete factors, as disentanglement_lib
    computes it: S[j, k] = test accuracy of a linear SVM (C = 0.01, balanced classes) predicting v_k from
    code c_j alone, trained on one half of the points and scored on the other; SAP = 1/F sum_k (S_(1)k -
    S_(2)k), the gap between the two best codes for each factor (not the best and the worst)."""
    return _sap_from_hits(sap_hits(codes, factors, seed))


def sap_hits(codes: np.ndarray, factors: np.ndarray, seed: int = 0) -> np.ndarray:
    """Whether each code's SVM classifies each test point's factor right: (J, F, test points) bool; a
    factor with one class in the training half counts as classified."""
    from sklearn.svm import LinearSVC

    train, test = _halves(len(codes), seed)
    hits = np.ones((codes.shape[1], factors.shape[1], len(test)), dtype=bool)
    for j in range(codes.shape[1]):
        for k in range(factors.shape[1]):
            if len(np.unique(factors[train, k])) < 2:
                continue
            classifier = _fit(LinearSVC(C=0.01, class_weight="balanced"), codes[train, j : j + 1], factors[train, k])
            hits[j, k] = classifier.predict(codes[test, j : j + 1]) == factors[test, k]
    return hits


def _sap_from_hits(hits: np.ndarray) -> float:
    ranked = np.sort(hits.mean(-1), axis=0)[::-1]  # (J, F) accuracies, best code first
    return float(np.mean(ranked[0] - ranked[1])) if len(ranked) > 1 else float(np.mean(ranked[0]))


@dataclass(frozen=True)
class DCI:
    """Eastwood & Williams 2018: disentanglement (each code predicts few factors), completeness (each
    factor is predicted by few codes), informativeness (test accuracy of the predictors), each in [0, 1]."""

    disentanglement: float
    completeness: float
    informativeness: float
    hits: np.ndarray | None = None  # (F, test points) bool: each factor's classifier right on each test point


def _one_minus_entropy(p: np.ndarray, base: int) -> np.ndarray:
    """1 - H(p) / log(base) along the last axis, for rows of probabilities."""
    p = p / np.maximum(p.sum(-1, keepdims=True), 1e-12)
    h = -(p * np.log(np.where(p > 0, p, 1.0))).sum(-1)
    return 1.0 - h / math.log(base) if base > 1 else np.ones(p.shape[:-1])


DCI_TREES = 100  # boosting stages of each factor's classifier: scikit-learn's default, as disentanglement_lib


def dci(codes: np.ndarray, factors: np.ndarray, seed: int = 0) -> DCI:
    """DCI with gradient-boosted trees as disentanglement_lib computes it: for each factor a
    GradientBoostingClassifier on all codes (trained on one half, accuracy on the other); R[j, k] its
    feature importance of code j.
      disentanglement = sum_j rho_j (1 - H_F(R[j, :] / sum_k R[j, k])),  rho_j = sum_k R[j, k] / sum R
      completeness    = 1/F sum_k (1 - H_J(R[:, k] / sum_j R[j, k]))
    with entropies in base F and J (Eastwood & Williams 2018, Section 3)."""
    from sklearn.ensemble import GradientBoostingClassifier

    train, test = _halves(len(codes), seed)
    importance = np.zeros((codes.shape[1], factors.shape[1]))
    hits = np.zeros((factors.shape[1], len(test)), dtype=bool)
    for k in range(factors.shape[1]):
        seen = np.unique(factors[train, k])
        if len(seen) < 2:  # one class in the training half (a tiny split): predicted alike, no code matters
            hits[k] = factors[test, k] == seen[0]
            continue
        model = _fit(
            GradientBoostingClassifier(n_estimators=DCI_TREES, random_state=seed), codes[train], factors[train, k]
        )
        importance[:, k] = np.abs(model.feature_importances_)
        hits[k] = model.predict(codes[test]) == factors[test, k]
    disentanglement, completeness = dci_from_importance(importance)
    return DCI(disentanglement, completeness, float(hits.mean()), hits)


def dci_from_importance(importance: np.ndarray) -> tuple[float, float]:
    """DCI's disentanglement and completeness from the importances R (J, F) (see `dci`)."""
    code_weight = importance.sum(1) / max(importance.sum(), 1e-12)
    disentanglement = float(np.sum(code_weight * _one_minus_entropy(importance, importance.shape[1])))
    completeness = float(np.mean(_one_minus_entropy(importance.T, importance.shape[0])))
    return disentanglement, completeness


def modularity(codes: np.ndarray, factors: np.ndarray, bins: int = 20) -> float:
    """Ridgeway & Mozer 2018, Eq. 2: each code should carry information about one factor only.
    With m_jk = I(c_j; v_k) and theta_j = max_k m_jk, the deviation from the ideal template is
        delta_j = sum_{k != argmax} m_jk^2 / (theta_j^2 (F - 1)),   modularity = 1/J sum_j (1 - delta_j);
    a code with no information at all counts as 0."""
    return modularity_from_information(mutual_information_matrix(histogram_discretize(codes, bins), factors))


def modularity_from_information(information: np.ndarray) -> float:
    """Modularity (see `modularity`) from I(c_j; v_k), (J, F)."""
    theta = information.max(1)
    off = (information**2).sum(1) - theta**2
    scale = np.maximum(theta**2 * max(information.shape[1] - 1, 1), 1e-12)
    return float(np.mean(np.where(theta > 0, 1 - off / scale, 0.0)))


def explicitness(codes: np.ndarray, factors: np.ndarray, seed: int = 0) -> float:
    """Ridgeway & Mozer 2018, Section 3: how simply the factors can be read from all codes together: for
    each factor value a one-versus-rest logistic regression on the codes, standardised by the training
    half's mean and standard deviation as disentanglement_lib does (a constant code is left as it is);
    the explicitness is the mean ROC AUC of those classifiers on the other half, averaged over factors."""
    return _explicitness_from(explicitness_decisions(codes, factors, seed))


Decisions = list[list[tuple[np.ndarray, np.ndarray]]]  # per factor, per value: (is it that value, score) on test


def explicitness_decisions(codes: np.ndarray, factors: np.ndarray, seed: int = 0) -> Decisions:
    """Each factor value's one-versus-rest logistic regression, trained on one half of the standardised
    codes: per factor, per value seen in both halves, (whether each test point has it, its decision score)."""
    from sklearn.linear_model import LogisticRegression

    train, test = _halves(len(codes), seed)
    center, scale = codes[train].mean(0), codes[train].std(0)
    codes = (codes - center) / np.where(scale > 0, scale, 1.0)
    out: Decisions = []
    for k in range(factors.shape[1]):
        out.append([])
        for v in np.unique(factors[:, k]):
            y_train, y_test = factors[train, k] == v, factors[test, k] == v
            if y_train.all() or not y_train.any() or y_test.all() or not y_test.any():
                continue
            model = LogisticRegression(max_iter=1000).fit(codes[train], y_train)
            out[-1].append((y_test, model.decision_function(codes[test])))
    return out


def _roc_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """The area under the ROC curve, P(a positive outscores a negative) with ties counted half, by the
    Mann-Whitney rank sum (what scikit-learn's roc_auc_score computes, without its checks, for the bootstrap)."""
    from scipy.stats import rankdata

    n1 = int(positive.sum())
    n0 = len(positive) - n1
    return float((rankdata(score)[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _explicitness_from(decisions: Decisions, rows: np.ndarray | None = None) -> float:
    """The mean over factors of the mean ROC AUC over its values, on the test points `rows` (all: None)."""
    per_factor = []
    for values in decisions:
        picked = [(y, s) if rows is None else (y[rows], s[rows]) for y, s in values]
        aucs = [_roc_auc(y, s) for y, s in picked if 0 < y.sum() < len(y)]
        per_factor.append(np.mean(aucs) if aucs else 1.0)
    return float(np.mean(per_factor))


@dataclass(frozen=True)
class FactorGrid:
    """Data that has an image for every combination of F discrete factors: their numbers of classes
    `sizes` and `observe`, factor classes (n, F) -> images (n, C, H, W) (dSprites renders them)."""

    sizes: tuple[int, ...]
    observe: Callable[[np.ndarray], np.ndarray]

    @classmethod
    def from_images(cls, images: np.ndarray, sizes: tuple[int, ...]) -> FactorGrid:
        """A grid stored as images (prod(sizes), C, H, W) in row-major order of the factors (last fastest)."""
        return cls(tuple(sizes), lambda factors: images[np.ravel_multi_index(tuple(factors.T), sizes)])

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n factor combinations drawn uniformly: (n, F) ints."""
        return np.stack([rng.integers(0, s, n) for s in self.sizes], 1)

    def combinations(self, classes_per_factor: int | None = None) -> np.ndarray:
        """Every factor combination in row-major order, (n, F) ints; with classes_per_factor, each factor
        thinned to that many evenly spaced classes (a coarser grid, still complete and uniform)."""
        kept = [
            np.unique(np.linspace(0, s - 1, min(s, classes_per_factor or s)).round().astype(np.int64))
            for s in self.sizes
        ]
        return np.stack([a.ravel() for a in np.meshgrid(*kept, indexing="ij")], 1)

    def observations(self, factors: np.ndarray) -> np.ndarray:
        """The images of factor combinations (n, F): (n, C, H, W)."""
        return self.observe(factors)


def _fixed_factor_batches(
    grid: FactorGrid, encode: Encode, rng: np.random.Generator, batch_size: int, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Two batches of codes whose factors are drawn independently except factor k, shared pairwise."""
    a, b = grid.sample_factors(batch_size, rng), grid.sample_factors(batch_size, rng)
    b[:, k] = a[:, k]
    return encode(grid.observations(a)), encode(grid.observations(b))


def beta_vae_score(
    grid: FactorGrid, encode: Encode, seed: int = 0, batch_size: int = 64, train: int = 10_000, test: int = 5_000
) -> float:
    """Higgins et al. 2017, Section 3: for a factor k drawn uniformly, the mean over a batch of pairs that
    share v_k of |c(x1) - c(x2)|; a linear classifier (logistic regression) predicts k from it. The score
    is its accuracy on `test` new points after training on `train`."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)

    def points(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, len(grid.sizes), n)
        features = [
            np.abs(np.subtract(*_fixed_factor_batches(grid, encode, rng, batch_size, k))).mean(0) for k in labels
        ]
        return np.stack(features), labels

    x_train, y_train = points(train)
    x_test, y_test = points(test)
    model = LogisticRegression(max_iter=1000).fit(x_train, y_train)
    return float(np.mean(model.predict(x_test) == y_test))


# FactorVAE score: codes whose standard deviation over the data is below this never vote, and a representation
# with none above it scores 0 (disentanglement_lib's _prune_dims; a posterior mean under a N(0, I) prior that
# varies this little carries almost nothing).
PRUNE_STD = 0.05


def factor_vae_score(grid: FactorGrid, encode: Encode, *args: Any, **kwargs: Any) -> float:
    """The FactorVAE score alone (see `factor_vae_estimate`, which takes the same arguments)."""
    return factor_vae_estimate(grid, encode, *args, **kwargs)[0]


def factor_vae_estimate(
    grid: FactorGrid,
    encode: Encode,
    seed: int = 0,
    batch_size: int = 64,
    train: int = 10_000,
    test: int = 5_000,
    variance_points: int = 10_000,
) -> tuple[float, int]:
    """Kim & Mnih 2018, Section 4: codes are divided by their standard deviation over the data; for a
    factor k drawn uniformly and a batch with v_k fixed, the code of least variance votes for k. A
    majority-vote classifier (each code -> the factor it voted for most) is fitted on `train` votes and
    scored on `test` others. Codes whose standard deviation over the data is below PRUNE_STD (collapsed)
    never vote, and with none left the score is 0, as disentanglement_lib computes it. Returns the score
    and the number of codes that vote."""
    rng = np.random.default_rng(seed)
    scale = encode(grid.observations(grid.sample_factors(variance_points, rng))).std(0, ddof=1)
    active = scale >= PRUNE_STD
    if not active.any():
        return 0.0, 0

    def votes(n: int) -> np.ndarray:
        counts = np.zeros((len(scale), len(grid.sizes)), dtype=np.int64)
        for k in rng.integers(0, len(grid.sizes), n):
            codes = encode(grid.observations(_fixed_k(grid, rng, batch_size, k)))
            variance = np.where(active, (codes / np.where(active, scale, 1.0)).var(0), np.inf)
            counts[int(np.argmin(variance)), k] += 1
        return counts

    train_votes, test_votes = votes(train), votes(test)
    assigned = train_votes.argmax(1)  # each code's factor
    return float(test_votes[np.arange(len(scale)), assigned].sum() / max(test_votes.sum(), 1)), int(active.sum())


def _fixed_k(grid: FactorGrid, rng: np.random.Generator, batch_size: int, k: int) -> np.ndarray:
    """A batch of factor combinations drawn uniformly with factor k set to one value drawn uniformly."""
    factors = grid.sample_factors(batch_size, rng)
    factors[:, k] = rng.integers(0, grid.sizes[k])
    return factors


# Points of the intervention scores in `scores` by default: fewer than disentanglement_lib's 10,000 + 5,000,
# so that a CPU evaluation of a 64 x 64 model takes about a minute; `scores(..., score_points=N)` takes N
# training points and N // 2 test points instead. Stated with every result.
SCORE_POINTS = {"train": 2000, "test": 1000, "batch_size": 64, "variance_points": 10_000}
# Every figure of `scores` and of vaekit.diagnostics.disentanglement_figures, in the order tables show them; each
# in [0, 1], higher is better.
METRICS = (
    "mig",
    "mig_posterior",
    "sap",
    "dci_disentanglement",
    "dci_completeness",
    "dci_informativeness",
    "modularity",
    "explicitness",
    "beta_vae_score",
    "factor_vae_score",
)
POSTERIOR_SAMPLES = 10_000  # (image, code) pairs of each entropy in mig_posterior, as Chen et al. draw
PAIR_POINTS = 10_000  # (code, factor) pairs of the metrics read from pairs, as disentanglement_lib takes


BOOTSTRAP = 100  # resamples behind each bootstrap standard error in `scores`

Step = Callable[[str], None]  # told the name of each stage of `scores` as it starts (a progress bar)


def scores(
    codes: np.ndarray,
    factors: np.ndarray,
    grid: FactorGrid | None = None,
    encode: Encode | None = None,
    seed: int = 0,
    score_points: int | None = None,
    step: Step = lambda stage: None,
) -> dict[str, Any]:
    """Every metric, as a JSON-ready dict: those read from (codes, factors) pairs on at most PAIR_POINTS of
    them (`pair_scores`), and, given a factor grid and an encoder, the beta-VAE and FactorVAE scores with
    SCORE_POINTS (score_points: that many training points and half as many test points instead), each
    with its binomial standard error over the test points and its chance level 1/F."""
    if len(codes) > PAIR_POINTS:
        keep = np.random.default_rng(seed).choice(len(codes), PAIR_POINTS, replace=False)
        codes, factors = codes[keep], factors[keep]
    out = pair_scores(codes, factors, seed, step)
    if grid is not None and encode is not None:
        setting = dict(SCORE_POINTS)
        if score_points is not None:
            setting.update(train=score_points, test=max(1, score_points // 2))
        points = {k: v for k, v in setting.items() if k != "variance_points"}
        step("beta-VAE score")
        out["beta_vae_score"] = beta_vae_score(grid, encode, seed, **points)
        step("FactorVAE score")
        out["factor_vae_score"], out["factor_vae_voting_codes"] = factor_vae_estimate(grid, encode, seed, **setting)
        for name in ("beta_vae_score", "factor_vae_score"):
            p = out[name]
            out["stderr"][name] = math.sqrt(p * (1 - p) / setting["test"])
            out["chance"][name] = 1 / len(grid.sizes)  # a classifier that guesses the fixed factor
        out["score_points"] = setting
    return out


def pair_scores(
    codes: np.ndarray, factors: np.ndarray, seed: int = 0, step: Step = lambda stage: None
) -> dict[str, Any]:
    """The metrics of (codes, factors) pairs, with
    - stderr: a bootstrap standard error over the points (BOOTSTRAP resamples; for SAP, DCI's
      informativeness and explicitness over the test half, the classifiers held fixed); none for DCI's
      disentanglement and completeness, whose importances come from one fit of 100-stage boosted trees per
      factor (a bootstrap would refit them each time): the spread over seeds is their guide;
    - chance: the figure of codes that carry nothing, where there is one (explicitness 1/2, DCI's
      informativeness the test half's most common class of each factor);
    - mutual_information: I(c_j; v_k) (J, F) in nats of 20-bin histograms, the matrix behind MIG, modularity
      and the factors picture, with factor_entropies H(v_k) and information_floor, the plug-in estimator's
      upward bias for codes that carry nothing, about (bins - 1)(classes - 1) / 2N nats (Miller 1955)."""
    step("MIG, modularity")
    discrete = histogram_discretize(codes)
    information = mutual_information_matrix(discrete, factors)
    step("SAP")
    hits = sap_hits(codes, factors, seed)
    step("DCI")
    measured = dci(codes, factors, seed)
    step("explicitness")
    decisions = explicitness_decisions(codes, factors, seed)
    out: dict[str, Any] = {
        "pairs": len(codes),
        "mig": mig_from_information(information, factors),
        "sap": _sap_from_hits(hits),
        "dci_disentanglement": measured.disentanglement,
        "dci_completeness": measured.completeness,
        "dci_informativeness": measured.informativeness,
        "modularity": modularity_from_information(information),
        "explicitness": _explicitness_from(decisions),
    }
    step("standard errors")
    out["stderr"] = _bootstrap_stderrs(discrete, factors, hits, measured.hits, decisions, seed)
    test = _halves(len(codes), seed)[1]
    majority = [np.bincount(factors[test, k]).max() / len(test) for k in range(factors.shape[1])]
    out["chance"] = {"explicitness": 0.5, "dci_informativeness": float(np.mean(majority))}
    out["mutual_information"] = information.round(6).tolist()
    out["factor_entropies"] = factor_entropies(factors).round(6).tolist()
    out["information_floor"] = information_floor(factors).round(6).tolist()
    return out


def information_floor(factors: np.ndarray, bins: int = HISTOGRAM_BINS) -> np.ndarray:
    """The plug-in estimate's upward bias, in nats, for a code in `bins` histogram bins that carries nothing
    about each factor of (N, F): about (bins - 1)(classes - 1) / 2N (Miller 1955), (F,)."""
    return (bins - 1) * factors.max(0) / (2 * len(factors))  # classes - 1 = the largest class


def _bootstrap_stderrs(
    discrete: np.ndarray, factors: np.ndarray, hits: np.ndarray, dci_hits: Any, decisions: Decisions, seed: int
) -> dict[str, float | None]:
    """Each pair metric's bootstrap standard error (see `pair_scores`): the spread of its figure over
    BOOTSTRAP resamples, with replacement, of the points (of the test half where classifiers were fitted)."""
    rng = np.random.default_rng([seed, 1])
    figures: dict[str, list[float]] = {
        k: [] for k in ("mig", "modularity", "sap", "dci_informativeness", "explicitness")
    }
    n, test = len(discrete), hits.shape[-1]
    for _ in range(BOOTSTRAP):
        rows, test_rows = rng.integers(0, n, n), rng.integers(0, test, test)
        information = mutual_information_matrix(discrete[rows], factors[rows])
        figures["mig"].append(mig_from_information(information, factors[rows]))
        figures["modularity"].append(modularity_from_information(information))
        figures["sap"].append(_sap_from_hits(hits[..., test_rows]))
        figures["dci_informativeness"].append(float(dci_hits[:, test_rows].mean()))
        figures["explicitness"].append(_explicitness_from(decisions, test_rows))
    out: dict[str, float | None] = {k: float(np.std(v, ddof=1)) for k, v in figures.items()}
    return out | {"dci_disentanglement": None, "dci_completeness": None}
