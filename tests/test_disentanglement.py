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
