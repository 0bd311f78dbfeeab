"""Disentanglement metrics on representations whose scores follow from the definitions.

The data is a full factor grid (every combination once, or a whole number of times), so the factors are
exactly independent and every empirical mutual information between different factors is exactly 0.
  the factors themselves       each metric at the maximum its definition allows
  a maximally mixing rotation  near the minimum (a 4 x 4 Hadamard rotation: every code carries every
                               factor with the same weight)
  one factor dropped           that factor's share lost
  one factor in two codes      MIG's gap for it is 0
"""

import math

import numpy as np
import pytest

from vaekit import disentanglement as d

HADAMARD = np.array([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]]) / 2.0


def _grid(sizes: tuple[int, ...], repeats: int = 1) -> np.ndarray:
    """Every combination of the factors' classes, row-major, `repeats` times: (repeats * prod(sizes), F)."""
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in sizes], indexing="ij"), -1).reshape(-1, len(sizes))
    return np.tile(grid, (repeats, 1))


def _rotated(factors: np.ndarray) -> np.ndarray:
    return (factors - factors.mean(0)) / factors.std(0) @ HADAMARD


def _mutual_information_by_hand(a: np.ndarray, b: np.ndarray) -> float:
    """I(a; b) in nats from the contingency table of two integer arrays: sum p(a, b) log p(a, b) / (p(a) p(b))."""
    table = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(table, (a, b), 1.0)
    p = table / table.sum()
    pa, pb = p.sum(1, keepdims=True), p.sum(0, keepdims=True)
    nonzero = p > 0
    return float((p[nonzero] * np.log(p[nonzero] / (pa @ pb)[nonzero])).sum())


def test_mig_agrees_with_an_independent_contingency_table_computation():
    rng = np.random.default_rng(0)
    factors = _grid((3, 4, 5), repeats=4)
    codes = factors @ rng.normal(size=(3, 5)) + 0.3 * rng.normal(size=(len(factors), 5))
    binned = np.stack(
        [np.digitize(c, np.linspace(c.min(), c.max(), 21)[:-1]) for c in codes.T], 1
    )  # 20 equal-width bins, the last edge closed
    information = np.array([[_mutual_information_by_hand(binned[:, j], factors[:, k]) for k in range(3)]
                            for j in range(5)])  # fmt: skip
    entropy = np.array([_mutual_information_by_hand(factors[:, k], factors[:, k]) for k in range(3)])
    np.testing.assert_allclose(entropy, np.log([3, 4, 5]))  # uniform classes: H = log(size)
    ranked = np.sort(information, 0)[::-1]
    expected = np.mean((ranked[0] - ranked[1]) / entropy)
    assert d.mig(codes, factors) == pytest.approx(expected, abs=1e-12)
    np.testing.assert_allclose(d.mutual_information_matrix(d.histogram_discretize(codes), factors), information)


def test_mig_is_one_for_the_factors_zero_when_rotated_and_loses_a_dropped_or_shared_factors_share():
    factors = _grid((3, 4, 5))
    codes = factors.astype(float)
    assert d.mig(codes, factors) == pytest.approx(1.0)  # I(c_k; v_k) = H(v_k), I(c_j; v_k) = 0 for j != k
    assert d.mig(_rotated(_grid((3, 3, 3, 3))), _grid((3, 3, 3, 3))) < 0.05
    dropped = codes.copy()
    dropped[:, 0] = 0.0  # a constant code carries nothing
    assert d.mig(dropped, factors) == pytest.approx(2 / 3)
    copied = np.concatenate([codes[:, :1], codes], 1)  # two codes carry v_0 alike: its gap is 0
    assert d.mig(copied, factors) == pytest.approx(2 / 3)


def test_modularity_is_one_when_each_code_carries_one_factor_and_zero_when_each_carries_all_alike():
    factors = _grid((3, 3, 3, 3))
    assert d.modularity(factors.astype(float), factors) == pytest.approx(1.0)
    assert d.modularity(_rotated(factors), factors) < 0.05
    # one code carrying two factors fully: I = log 3 with each, so delta = (log 3)^2 / ((log 3)^2 (F - 1)) = 1/3
    two_factors = factors[:, 0] * 3 + factors[:, 1]
    codes = np.stack([two_factors, factors[:, 2], factors[:, 3]], 1).astype(float)
    assert d.modularity(codes, factors) == pytest.approx((2 / 3 + 1 + 1) / 3)


def test_dci_is_one_for_the_factors_and_near_zero_when_rotated():
    factors = _grid((3, 3, 3, 3), repeats=4)
    identity = d.dci(factors.astype(float), factors)
    assert identity.disentanglement == pytest.approx(1.0, abs=1e-6)
    assert identity.completeness == pytest.approx(1.0, abs=1e-6)
    assert identity.informativeness == 1.0
    rotated = d.dci(_rotated(factors), factors)
    assert rotated.disentanglement < 0.05 and rotated.completeness < 0.05 and rotated.informativeness > 0.9
    dropped = factors.astype(float)
    dropped[:, 0] = 0.0
    assert d.dci(dropped, factors).informativeness == pytest.approx((3 * 1.0 + 1 / 3) / 4, abs=0.1)


def test_sap_for_binary_factors_is_one_minus_chance_and_near_zero_when_rotated():
    """A one-dimensional linear classifier separates a binary factor exactly from its own code (accuracy 1)
    and guesses from another code (accuracy 1/2 on balanced classes): the gap is 1/2."""
    factors = _grid((2, 2, 2), repeats=50)
    assert d.sap(factors.astype(float), factors) == pytest.approx(0.5, abs=0.08)
    four = _grid((3, 3, 3, 3), repeats=4)
    assert d.sap(_rotated(four), four) < 0.05


def test_explicitness_is_one_for_binary_factors_even_rotated_and_a_dropped_factor_reads_as_chance():
    """Logistic regression on all codes reads any linear mixture: explicitness measures how simply the factors
    can be read, not whether they are separated. A dropped factor's AUC is 1/2."""
    factors = _grid((2, 2, 2, 2), repeats=20)
    assert d.explicitness(factors.astype(float), factors) == pytest.approx(1.0)
    assert d.explicitness(_rotated(factors), factors) == pytest.approx(1.0)
    dropped = factors.astype(float)
    dropped[:, 0] = 0.0
    assert d.explicitness(dropped, factors) == pytest.approx((3 + 0.5) / 4, abs=0.03)


def _grid_images(sizes: tuple[int, ...]) -> d.FactorGrid:
    """'Images' that are their factor values, one pixel per factor: (N, F, 1, 1)."""
    return d.FactorGrid.from_images(_grid(sizes).astype(np.float32)[:, :, None, None], sizes)


def test_the_intervention_scores_are_one_for_the_factors_and_chance_when_rotated():
    sizes = (3, 3, 3, 3)
    grid = _grid_images(sizes)
    factors = _grid(sizes)

    def identity(images: np.ndarray) -> np.ndarray:
        return images[:, :, 0, 0].astype(float)

    def rotated(images: np.ndarray) -> np.ndarray:
        return (identity(images) - factors.mean(0)) / factors.std(0) @ HADAMARD

    options = {"train": 400, "test": 400, "batch_size": 32}
    assert d.beta_vae_score(grid, identity, **options) == 1.0
    assert d.factor_vae_score(grid, identity, **options) == 1.0
    chance, spread = 1 / 4, 4 * math.sqrt(0.25 * 0.75 / 400)
    assert d.beta_vae_score(grid, rotated, **options) < chance + spread
    assert d.factor_vae_score(grid, rotated, **options) < 0.5


def test_the_factorvae_score_loses_a_dropped_factors_share():
    """A constant code never votes; the votes for the dropped factor go to codes assigned to the others."""
    sizes = (3, 3, 3, 3)

    def dropped(images: np.ndarray) -> np.ndarray:
        codes = images[:, :, 0, 0].astype(float)
        codes[:, 0] = 0.0
        return codes

    score = d.factor_vae_score(_grid_images(sizes), dropped, train=400, test=1000, batch_size=32)
    assert score == pytest.approx(3 / 4, abs=4 * math.sqrt(0.25 * 0.75 / 1000))


def test_a_factor_grid_finds_each_combinations_image_in_row_major_order():
    grid = _grid_images((2, 3, 4))
    factors = np.array([[0, 0, 0], [1, 2, 3], [0, 1, 2]])
    np.testing.assert_array_equal(grid.observations(factors)[:, :, 0, 0], factors)
    drawn = grid.sample_factors(1000, np.random.default_rng(0))
    assert drawn.min(0).tolist() == [0, 0, 0] and drawn.max(0).tolist() == [1, 2, 3]


def _entropy_by_quadrature(means: np.ndarray, stds: np.ndarray) -> float:
    """-integral q log q of the equal-weight Gaussian mixture q(z) = 1/n sum_i N(z; means_i, stds_i^2), on a
    grid of 40,001 points over 12 standard deviations beyond the outermost components."""
    z = np.linspace(means.min() - 12 * stds.max(), means.max() + 12 * stds.max(), 40_001)
    q = np.mean(np.exp(-0.5 * ((z[:, None] - means) / stds) ** 2) / (stds * math.sqrt(2 * math.pi)), 1)
    integrand = -q * np.log(np.where(q > 0, q, 1.0))
    return float(np.sum((integrand[1:] + integrand[:-1]) / 2 * np.diff(z)))


def test_the_posterior_mutual_information_agrees_with_numerical_integration():
    """I(z_j; v_k) = H(z_j) - sum_v p(v) H(z_j | v_k = v), each entropy of a Gaussian mixture integrated
    numerically, against the Monte-Carlo estimate from 200,000 pairs (its standard error is below 0.003
    nats: the per-pair terms have a spread of about 1 nat). Stds differ by image, so a variance used for a
    std, or a conditional mixture averaged over N images instead of N_v, is off by tenths of a nat."""
    import torch

    factors = _grid((2, 3))
    rng = np.random.default_rng(1)
    means = factors @ np.array([[1.0, 0.8], [0.4, -0.9]]) + 0.1 * rng.normal(size=(6, 2))
    stds = rng.uniform(0.15, 1.2, size=(6, 2))  # stds far from 1: a variance for a std moves I by 0.03
    expected = np.zeros((2, 2))
    for j in range(2):
        for k in range(2):
            given = [factors[:, k] == v for v in np.unique(factors[:, k])]
            conditional = [np.mean(g) * _entropy_by_quadrature(means[g, j], stds[g, j]) for g in given]
            expected[j, k] = _entropy_by_quadrature(means[:, j], stds[:, j]) - sum(conditional)
    assert expected.min() > 0.05  # every pair shares information, so no estimate passes by being near 0
    estimate = d.posterior_mutual_information(torch.tensor(means), torch.tensor(stds), factors, samples=200_000)
    np.testing.assert_allclose(estimate, expected, atol=0.01)


def test_the_posterior_mig_is_one_for_the_factors_and_loses_a_dropped_or_shared_factors_share():
    """Codes at the factor values with a tiny std: the mixtures over the classes of v_k are spikes of equal
    weight, so I(z_k; v_k) = log(size_k) = H(v_k), and over a complete grid q(z_j | v_k) = q(z_j) for j != k."""
    import torch

    factors = _grid((3, 4, 5))
    means, stds = torch.tensor(factors, dtype=torch.float64), torch.full(factors.shape, 0.01, dtype=torch.float64)
    information = d.posterior_mutual_information(means, stds, factors, samples=4000)
    np.testing.assert_allclose(information, np.diag(np.log([3, 4, 5])), atol=1e-9)
    assert d.mig_posterior(means, stds, factors, samples=4000) == pytest.approx(1.0, abs=1e-9)
    dropped = means.clone()
    dropped[:, 0] = 0.0  # the same posterior for every image carries nothing
    assert d.mig_posterior(dropped, stds, factors, samples=4000) == pytest.approx(2 / 3, abs=1e-9)
    copied, copied_stds = torch.cat([means[:, :1], means], 1), torch.cat([stds[:, :1], stds], 1)
    assert d.mig_posterior(copied, copied_stds, factors, samples=4000) == pytest.approx(2 / 3, abs=1e-9)


def test_a_coarser_factor_grid_keeps_evenly_spaced_classes_of_every_factor():
    grid = d.FactorGrid((3, 6, 40), lambda f: f)
    assert grid.combinations().shape == (3 * 6 * 40, 3)
    coarse = grid.combinations(classes_per_factor=5)
    assert [sorted(set(coarse[:, k])) for k in range(3)] == [[0, 1, 2], [0, 1, 2, 4, 5], [0, 10, 20, 29, 39]]
    assert len(coarse) == 3 * 5 * 5 and len(np.unique(coarse, axis=0)) == len(coarse)


def _product_grid(counts: list[list[int]]) -> np.ndarray:
    """Factors whose classes occur `counts[k][c]` times each, all combinations crossed, so that the factors
    are exactly independent however unequal their class frequencies: (prod of sums, F)."""
    columns = [np.repeat(np.arange(len(c)), c) for c in counts]
    return np.stack([a.ravel() for a in np.meshgrid(*columns, indexing="ij")], 1)


def test_mig_divides_by_the_empirical_entropy_not_log_classes():
    """Factors as their own codes carry each factor's whole entropy, so MIG = 1 exactly; normalising by
    log(classes) instead of the empirical H(v_k) gives less where classes are unequally common."""
    factors = _product_grid([[7, 2, 1], [1, 3], [2, 2, 5, 1]])
    assert d.factor_entropies(factors)[0] < math.log(3) - 0.2  # unequal classes: H well below log(classes)
    assert d.mig(factors.astype(float), factors) == pytest.approx(1.0, abs=1e-12)


def test_sap_takes_the_gap_between_the_two_best_codes_not_the_best_and_the_worst():
    """Codes [v0, v0, v1, v2] of three binary factors: v0's two best codes tie (gap 0), v1's and v2's best
    code is right and the others guess (gap 1/2): SAP = (0 + 1/2 + 1/2) / 3. Best minus worst gives 1/2."""
    factors = _grid((2, 2, 2), repeats=50)
    codes = factors[:, [0, 0, 1, 2]].astype(float)
    assert d.sap(codes, factors) == pytest.approx(1 / 3, abs=0.05)


def test_dci_weights_each_codes_disentanglement_by_its_share_of_the_importance():
    """R = [[1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]] (code 0 predicts v0 and v1 alike): code 0's
    disentanglement is 1 - log 2 / log 4 = 1/2 with weight 2/4, the others 1 with weight 1/4 each:
    D = 0.75, whatever the importances' scale; completeness 1 (each factor read from one code). The codes
    [3 v0 + v1, v2, v3] of a (3, 3, 3, 3) grid give that R to boosted trees."""
    importance = 7.0 * np.array([[1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=float)
    assert d.dci_from_importance(importance) == pytest.approx((0.75, 1.0))
    factors = _grid((3, 3, 3, 3), repeats=4)
    codes = np.stack([3 * factors[:, 0] + factors[:, 1], factors[:, 2], factors[:, 3]], 1).astype(float)
    measured = d.dci(codes, factors)
    assert measured.disentanglement == pytest.approx(0.75, abs=0.02)
    assert measured.completeness == pytest.approx(1.0, abs=0.02)


def _noisy_factor_codes(scales: list[float], noise: float = 0.5, seed: int = 0):
    """An encoder of _grid_images whose codes are (10 v_k + N(0, noise^2)) * scales[k]: each factor in its own
    code, the codes on very different scales."""
    rng = np.random.default_rng(seed)

    def encode(images: np.ndarray) -> np.ndarray:
        values = images[:, :, 0, 0].astype(float)
        return (10 * values + noise * rng.normal(size=values.shape)) * np.asarray(scales)

    return encode


def test_the_factorvae_score_divides_each_code_by_its_spread():
    """Codes scaled [1, 100, 0.01, 10]: the fixed factor's code still varies least once divided by its
    standard deviation over the data; unscaled, the 0.01 code would win every vote (score about 1/4)."""
    grid = _grid_images((3, 3, 3, 3))
    score = d.factor_vae_score(grid, _noisy_factor_codes([1, 100, 0.01, 10]), train=300, test=300, batch_size=32)
    assert score > 0.95


def test_the_factorvae_vote_assigns_each_code_a_factor_with_more_codes_than_factors_and_fewer():
    """More codes than factors: two pure-noise codes beside the factors never win a vote (score 1). Fewer:
    codes [v0, v1] of three factors; v2's votes split between the two codes, each code keeps its own
    factor, so v0's and v1's test votes are right and v2's wrong: 2/3."""
    sizes = (3, 3, 3, 3)
    rng = np.random.default_rng(0)

    def more(images: np.ndarray) -> np.ndarray:
        values = images[:, :, 0, 0].astype(float)
        return np.concatenate([values, rng.normal(size=(len(values), 2))], 1)

    assert d.factor_vae_score(_grid_images(sizes), more, train=300, test=300, batch_size=32) == 1.0
    fewer = d.factor_vae_score(
        _grid_images((3, 3, 3)), lambda images: images[:, :2, 0, 0].astype(float), train=600, test=1500, batch_size=32
    )
    assert fewer == pytest.approx(2 / 3, abs=0.05)


def test_the_factorvae_score_of_a_collapsed_representation_is_zero():
    """Codes whose spread over the data is below PRUNE_STD never vote; with none left the score is 0 (as in
    disentanglement_lib), where majority voting among noise would score well above chance."""
    grid = _grid_images((3, 3, 3, 3))
    collapsed = _noisy_factor_codes([0.001] * 4)  # each code's std about 0.008
    assert d.factor_vae_score(grid, collapsed, train=200, test=200, batch_size=32) == 0.0
    one_left = _noisy_factor_codes([0.001, 0.001, 0.001, 1.0])  # only v3's code votes: its own share, 1/4
    assert d.factor_vae_score(grid, one_left, train=200, test=400, batch_size=32) == pytest.approx(0.25, abs=0.1)


def test_explicitness_standardises_the_codes_first():
    """A binary factor in a code scaled by 1e-4 beside a pure-noise code: on raw codes the regularised
    logistic regression barely weighs the tiny code and ranks by noise (AUC near 1/2); standardised, it
    reads the factor (AUC 1). Rescaling codes never changes the figure."""
    rng = np.random.default_rng(0)
    factors = _grid((2,), repeats=500)
    codes = np.stack([1e-4 * (factors[:, 0] + 0.1 * rng.normal(size=1000)), rng.normal(size=1000)], 1)
    assert d.explicitness(codes, factors) > 0.99
    assert d.explicitness(codes * [1e6, 1e-3], factors) == pytest.approx(d.explicitness(codes, factors), abs=1e-6)


def test_the_bootstrap_standard_errors_match_the_spread_over_fresh_datasets():
    """MIG's and SAP's bootstrap standard errors on one dataset, against the standard deviation of each
    metric over 30 datasets drawn alike: within a factor of two of each other (a bootstrap that resampled
    nothing, or a variance given for a standard deviation, is off by far more)."""
    sizes = (3, 4)

    def draw(seed: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        factors = np.stack([rng.integers(0, s, 600) for s in sizes], 1)
        return factors @ np.array([[1.0, 0.5], [0.3, 1.0]]) + 0.8 * rng.normal(size=(600, 2)), factors

    spread = {name: np.std([getattr(d, name)(*draw(s)) for s in range(30)], ddof=1) for name in ("mig", "sap")}
    stderr = d.pair_scores(*draw(100))["stderr"]
    for name in ("mig", "sap"):
        assert spread[name] / 2 < stderr[name] < spread[name] * 2, (name, stderr[name], spread[name])


def test_the_scores_carry_standard_errors_chance_levels_and_the_information_matrix():
    sizes = (3, 3, 3, 3)
    grid, factors = _grid_images(sizes), _grid(sizes, repeats=2)
    identity = lambda images: images[:, :, 0, 0].astype(float)  # noqa: E731
    stages: list[str] = []
    out = d.scores(factors.astype(float), factors, grid, identity, score_points=200, step=stages.append)
    assert stages[0] == "MIG, modularity" and stages[-1] == "FactorVAE score"
    assert out["stderr"]["beta_vae_score"] == 0.0  # a perfect score: p (1 - p) = 0
    assert out["chance"] == {"explicitness": 0.5, "dci_informativeness": pytest.approx(1 / 3, abs=0.05),
                             "beta_vae_score": 0.25, "factor_vae_score": 0.25}  # fmt: skip
    np.testing.assert_allclose(out["mutual_information"], np.diag(np.log([3.0] * 4)), atol=1e-6)
    assert out["information_floor"] == pytest.approx([19 * 2 / (2 * len(factors))] * 4)
    assert out["stderr"]["dci_disentanglement"] is None and out["stderr"]["mig"] >= 0
    dropped = lambda images: identity(images) * [0, 1, 1, 1]  # noqa: E731  v0's code constant: about 3/4
    partial = d.scores(factors.astype(float), factors, grid, dropped, score_points=200)
    p = partial["factor_vae_score"]
    assert 0.5 < p < 1 and partial["stderr"]["factor_vae_score"] == pytest.approx(math.sqrt(p * (1 - p) / 100))


def test_the_information_floor_is_what_the_plug_in_estimate_gives_codes_that_carry_nothing():
    """Codes independent of the factors: I = 0, yet the 20-bin plug-in estimate averages about
    (bins - 1)(classes - 1) / 2N nats; the floor stated beside the figures must match it (within 25 %)."""
    rng = np.random.default_rng(0)
    factors = np.stack([rng.integers(0, s, 2000) for s in (3, 10, 40)], 1)
    noise = rng.normal(size=(2000, 30))  # thirty codes that carry nothing
    measured = d.mutual_information_matrix(d.histogram_discretize(noise), factors).mean(0)
    np.testing.assert_allclose(measured, d.information_floor(factors), rtol=0.25)


def test_chen_et_als_mig_standard_error_matches_its_spread_over_fresh_samples():
    """The Monte-Carlo s.e. of mig_posterior from one set of pairs, against the spread of the estimate over 40
    sets: within a factor of 1.5 (missing sqrt, the two worst codes' gap, or a sum over factors are far off)."""
    import torch

    f = _grid((3, 4, 2))
    rng = np.random.default_rng(0)
    weights = np.array([[0.8, 0.3, 0.0], [0.1, 0.6, 0.2], [0.0, 0.2, 0.9]])
    mean = torch.tensor(np.concatenate([f @ weights, 0.3 * rng.normal(size=(len(f), 2))], 1))
    std = torch.full(mean.shape, 0.5, dtype=torch.float64)
    spread = np.std([d.mig_posterior(mean, std, f, samples=1000, seed=s) for s in range(40)], ddof=1)
    stderr = d.mig_posterior_estimate(mean, std, f, samples=1000, seed=100)[1]
    assert spread / 1.5 < stderr < spread * 1.5


def test_edge_cases_of_modularity_explicitness_and_dci():
    """A code that carries nothing scores 0 in modularity; a factor with one class counts as explicit (1);
    DCI takes a factor with one class in its training half (a tiny split) without a classifier."""
    f = _grid((3, 3))
    assert d.modularity(np.stack([f[:, 0], np.zeros(len(f))], 1).astype(float), f) == pytest.approx(0.5)
    binary = np.concatenate([_grid((2, 2), repeats=50), np.zeros((200, 1), dtype=np.int64)], 1)
    assert d.explicitness(binary[:, :2].astype(float), binary) == pytest.approx(1.0)
    measured = d.dci(binary[:, :2].astype(float), binary)
    assert measured.informativeness == pytest.approx(1.0) and 0 <= measured.disentanglement <= 1


def test_the_chance_level_of_informativeness_is_the_test_halfs_majority_class():
    """Every test point in class 0 while the training half is mixed: the majority-class accuracy on the test
    half is 1 (the training half's would be about 1/2)."""
    _, test = d._halves(200, 0)
    factors = np.ones((200, 1), dtype=np.int64)
    factors[::2] = 0
    factors[test] = 0
    codes = np.random.default_rng(0).normal(size=(200, 2))
    assert d.pair_scores(codes, factors)["chance"]["dci_informativeness"] == 1.0


def test_every_test_half_figure_is_resampled_by_the_bootstrap():
    """Explicitness' and DCI informativeness' s.e. are not 0 (the test points are resampled), and the latter is
    near the binomial-like spread of the per-point hits."""
    rng = np.random.default_rng(100)
    factors = np.stack([rng.integers(0, s, 600) for s in (3, 4)], 1)
    codes = factors @ np.array([[1.0, 0.5], [0.3, 1.0]]) + 0.8 * rng.normal(size=(600, 2))
    stderr = d.pair_scores(codes, factors)["stderr"]
    hits = d.dci(codes, factors).hits.mean(0)
    assert stderr["explicitness"] > 1e-6
    assert stderr["dci_informativeness"] == pytest.approx(hits.std(ddof=1) / math.sqrt(len(hits)), rel=0.5)


def test_the_factorvae_estimate_counts_the_codes_that_vote():
    grid = _grid_images((3, 3, 3, 3))
    codes = _noisy_factor_codes([0.001, 0.001, 1.0, 1.0])
    assert d.factor_vae_estimate(grid, codes, train=100, test=100, batch_size=16)[1] == 2
