"""Every metric against hand computations, and against a plain per-user Python reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from recengine.evaluation import metrics as m
from recengine.evaluation.metrics import diversity

# --------------------------------------------------------------------------- helpers


def csr(rows: list[list[int]], n_items: int) -> sp.csr_array:
    """Binary relevance matrix: row u marks the items in rows[u]."""
    r = [u for u, items in enumerate(rows) for _ in items]
    c = [i for items in rows for i in items]
    return sp.csr_array((np.ones(len(r)), (r, c)), shape=(len(rows), n_items))


def log2(x: float) -> float:
    return math.log2(x)


# --------------------------------------------------------------------------- hits


def test_hits_by_hand_with_padding_and_repeats():
    relevant = csr([[1, 3], [0], [], [2]], 5)
    recommended = np.array([
        [1, 2, 3, 4],    # hits at ranks 1 and 3
        [2, 0, -1, -1],  # hit at rank 2, then padding (never a hit)
        [0, 1, 2, 3],    # nothing relevant
        [2, 2, 1, -1],   # item 2 listed twice: only its first (best) rank counts
    ])
    expected = np.array([
        [True, False, True, False],
        [False, True, False, False],
        [False, False, False, False],
        [True, False, False, False],
    ])
    np.testing.assert_array_equal(m.hits(recommended, relevant), expected)


def test_hits_accepts_csr_matrix_unsorted_indices_and_ignores_values():
    # Row 0 stores items 3 then 1 (unsorted), with arbitrary values, one an explicit zero.
    relevant = sp.csr_matrix((np.array([5.0, 0.0]), np.array([3, 1]), np.array([0, 2, 2])),
                             shape=(2, 4))
    assert not relevant.has_sorted_indices
    hit = m.hits(np.array([[1, 0, 3], [3, 2, 1]]), relevant)
    np.testing.assert_array_equal(hit, [[True, False, True], [False, False, False]])
    assert not relevant.has_sorted_indices  # the caller's matrix is left alone
    np.testing.assert_array_equal(relevant.indices, [3, 1])


def test_hits_unsorted_rows_and_items_past_the_last_stored_entry():
    # csr_array rows stored out of order: user 0 {4, 0, 2}, user 1 {3, 1}, user 2 {} (5 items).
    relevant = sp.csr_array((np.ones(5), np.array([4, 0, 2, 3, 1]), np.array([0, 3, 5, 5])),
                            shape=(3, 5))
    recommended = np.array([
        [0, 1, 2, 4],    # 0 ✓, 1 ✗, 2 ✓, 4 ✓
        [4, 3, 1, -1],   # 4 ✗ (user 0's item, not user 1's), 3 ✓, 1 ✓, padding
        [4, 3, 2, 1],    # user 2: nothing relevant; its keys lie past every stored entry
    ])
    expected = [[True, False, True, True], [False, True, True, False], [False] * 4]
    np.testing.assert_array_equal(m.hits(recommended, relevant), expected)


def test_hits_with_no_relevant_items_at_all():
    hit = m.hits(np.array([[0, 1], [-1, -1]]), sp.csr_array((2, 3)))
    assert hit.shape == (2, 2) and not hit.any()


@pytest.mark.parametrize(("recommended", "error"), [
    (np.array([[0, 5]]), ValueError),        # item 5 of 5 items: out of range
    (np.array([[0, -2]]), ValueError),       # only -1 is padding
    (np.array([[0, 1], [1, 2]]), ValueError),  # two users for a one-user matrix
    (np.array([0, 1]), ValueError),          # not 2-D
    (np.array([[0.0, 1.0]]), TypeError),     # not item indices
])
def test_hits_rejects_bad_lists(recommended, error):
    with pytest.raises(error):
        m.hits(recommended, csr([[1]], 5))


def test_hits_needs_a_sparse_matrix():
    with pytest.raises(TypeError, match="ndarray"):
        m.hits(np.array([[0]]), np.array([[1]]))


# --------------------------------------------------------------------------- accuracy by hand

# One hit matrix for the hand computations (K = 4):
#   user 0: hits at ranks 1 and 3, 2 relevant items
#   user 1: hit at rank 2, 1 relevant item, list padded after rank 2 (padding is never a hit)
#   user 2: no hit, 3 relevant items
#   user 3: hits at ranks 1, 2, 3, 4, 6 relevant items (more than K)
#   user 4: nothing relevant (n_relevant = 0)
HIT = np.array([
    [True, False, True, False],
    [False, True, False, False],
    [False, False, False, False],
    [True, True, True, True],
    [False, False, False, False],
])
N_REL = np.array([2, 1, 3, 6, 0])


def test_precision_by_hand():
    # @4: 2/4, 1/4 (the two padded slots still count), 0, 4/4, 0
    np.testing.assert_allclose(m.precision_at_k(HIT, 4), [0.5, 0.25, 0.0, 1.0, 0.0])
    # @2 (k < K): 1/2, 1/2, 0, 2/2, 0
    np.testing.assert_allclose(m.precision_at_k(HIT, 2), [0.5, 0.5, 0.0, 1.0, 0.0])
    # With n_relevant, the user with nothing relevant is NaN
    np.testing.assert_allclose(m.precision_at_k(HIT, 2, n_relevant=N_REL),
                               [0.5, 0.5, 0.0, 1.0, np.nan])


def test_recall_by_hand():
    # @4: 2/2, 1/1, 0/3, 4/6, NaN;  @1: 1/2, 0/1, 0/3, 1/6, NaN
    np.testing.assert_allclose(m.recall_at_k(HIT, N_REL, 4), [1.0, 1.0, 0.0, 4 / 6, np.nan])
    np.testing.assert_allclose(m.recall_at_k(HIT, N_REL, 1), [0.5, 0.0, 0.0, 1 / 6, np.nan])


def test_ndcg_by_hand():
    # user 0: hits at ranks 1 and 3 of 2 relevant: DCG = 1 + 1/log2(4) = 1.5,
    #         IDCG = 1 + 1/log2(3)
    # user 1: hit at rank 2 of 1 relevant: DCG = 1/log2(3), IDCG = 1
    # user 2: DCG = 0
    # user 3: 4 hits of 6 relevant: DCG = IDCG over min(6, 4) = 4 ranks → 1
    expected_at_4 = [1.5 / (1 + 1 / log2(3)), 1 / log2(3), 0.0, 1.0, np.nan]
    np.testing.assert_allclose(m.ndcg_at_k(HIT, N_REL, 4), expected_at_4)
    # @2: user 0: DCG = 1, IDCG = 1 + 1/log2(3); user 1: 1/log2(3) / 1; user 3: 1
    expected_at_2 = [1 / (1 + 1 / log2(3)), 1 / log2(3), 0.0, 1.0, np.nan]
    np.testing.assert_allclose(m.ndcg_at_k(HIT, N_REL, 2), expected_at_2)


def test_average_precision_by_hand():
    # user 0: P@1 = 1 (hit), P@3 = 2/3 (hit): (1 + 2/3) / min(2, 4) = 5/6
    # user 1: P@2 = 1/2: (1/2) / min(1, 4) = 1/2
    # user 3: P@1..P@4 = 1: 4 / min(6, 4) = 1 (dividing by R = 6 would give 2/3)
    np.testing.assert_allclose(m.average_precision_at_k(HIT, N_REL, 4),
                               [5 / 6, 0.5, 0.0, 1.0, np.nan])
    # @2: user 0: 1 / min(2, 2) = 1/2; user 1: (1/2) / 1; user 3: 2 / min(6, 2) = 1
    np.testing.assert_allclose(m.average_precision_at_k(HIT, N_REL, 2),
                               [0.5, 0.5, 0.0, 1.0, np.nan])


def test_reciprocal_rank_and_hit_rate_by_hand():
    # first hits at ranks 1, 2, none, 1, none
    np.testing.assert_allclose(m.reciprocal_rank_at_k(HIT, 4), [1.0, 0.5, 0.0, 1.0, 0.0])
    np.testing.assert_allclose(m.hit_rate_at_k(HIT, 4), [1.0, 1.0, 0.0, 1.0, 0.0])
    # @1: user 1's hit at rank 2 falls outside
    np.testing.assert_allclose(m.reciprocal_rank_at_k(HIT, 1), [1.0, 0.0, 0.0, 1.0, 0.0])
    np.testing.assert_allclose(m.hit_rate_at_k(HIT, 1), [1.0, 0.0, 0.0, 1.0, 0.0])


def test_late_first_hit_by_hand():
    # One hit, at rank 3 of K = 4, R = 5:
    #   RR@4 = 1/3; hit rate@4 = 1; precision@4 = 1/4; recall@4 = 1/5
    #   nDCG@4 = (1/log2(4)) / (1 + 1/log2(3) + 1/log2(4) + 1/log2(5)) = 0.5 / 2.5616 ≈ 0.1952
    #   AP@4 = P@3 / min(5, 4) = (1/3) / 4 = 1/12
    # @2 the hit is out of reach: everything 0.
    hit, n_rel = np.array([[False, False, True, False]]), np.array([5])
    idcg4 = 1 + 1 / log2(3) + 1 / log2(4) + 1 / log2(5)
    assert m.reciprocal_rank_at_k(hit, 4)[0] == pytest.approx(1 / 3)
    assert m.hit_rate_at_k(hit, 4)[0] == 1.0
    assert m.precision_at_k(hit, 4)[0] == pytest.approx(0.25)
    assert m.recall_at_k(hit, n_rel, 4)[0] == pytest.approx(0.2)
    assert m.ndcg_at_k(hit, n_rel, 4)[0] == pytest.approx(0.5 / idcg4)
    assert m.ndcg_at_k(hit, n_rel, 4)[0] == pytest.approx(0.1952, abs=1e-4)
    assert m.average_precision_at_k(hit, n_rel, 4)[0] == pytest.approx(1 / 12)
    for value in (m.reciprocal_rank_at_k(hit, 2), m.hit_rate_at_k(hit, 2),
                  m.precision_at_k(hit, 2), m.recall_at_k(hit, n_rel, 2),
                  m.ndcg_at_k(hit, n_rel, 2), m.average_precision_at_k(hit, n_rel, 2)):
        assert value[0] == 0.0


def test_metrics_return_float64_per_user():
    for value in (m.precision_at_k(HIT, 3), m.recall_at_k(HIT, N_REL, 3),
                  m.ndcg_at_k(HIT, N_REL, 3), m.average_precision_at_k(HIT, N_REL, 3),
                  m.reciprocal_rank_at_k(HIT, 3), m.hit_rate_at_k(HIT, 3)):
        assert value.dtype == np.float64 and value.shape == (5,)


@pytest.mark.parametrize("k", [0, 5, -1])
def test_k_must_fit_the_lists(k):
    with pytest.raises(ValueError, match="k must be between 1 and"):
        m.precision_at_k(HIT, k)


def test_n_relevant_is_checked():
    with pytest.raises(ValueError, match="one entry per user"):
        m.recall_at_k(HIT, N_REL[:3], 2)
    with pytest.raises(ValueError, match="smaller than the number of hits"):
        m.ndcg_at_k(HIT, np.array([1, 1, 3, 6, 0]), 2)  # user 0 has 2 hits
    with pytest.raises(ValueError, match=">= 0"):
        m.average_precision_at_k(HIT[:1] & False, [-1], 2)


def test_hits_to_metrics_end_to_end_with_padding():
    # User 0 relevant {1, 3}: list [1, 2, 3]. User 1 relevant {0}: list [2, 0, -1] (padded).
    relevant = csr([[1, 3], [0]], 4)
    hit = m.hits(np.array([[1, 2, 3], [2, 0, -1]]), relevant)
    n_rel = np.diff(relevant.indptr)
    # precision@3: 2/3 and 1/3 (the padded slot counts); recall@3: 2/2 and 1/1
    np.testing.assert_allclose(m.precision_at_k(hit, 3), [2 / 3, 1 / 3])
    np.testing.assert_allclose(m.recall_at_k(hit, n_rel, 3), [1.0, 1.0])


# --------------------------------------------------------------------------- ratings


def test_rmse_and_mae_by_hand():
    predicted, actual = np.array([3.0, 4.0, 2.5]), np.array([4.0, 4.0, 4.5])
    # errors -1, 0, -2: RMSE = sqrt((1 + 0 + 4) / 3); MAE = (1 + 0 + 2) / 3 = 1
    assert m.rmse(predicted, actual) == pytest.approx(math.sqrt(5 / 3))
    assert m.mae(predicted, actual) == pytest.approx(1.0)
    assert isinstance(m.rmse(predicted, actual), float)


def test_rating_errors_need_one_prediction_per_rating():
    with pytest.raises(ValueError, match="2 predictions for 3 ratings"):
        m.rmse([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError):
        m.mae([1.0], [])
    assert math.isnan(m.rmse([], [])) and math.isnan(m.mae([], []))


def test_rating_errors_propagate_nan_and_ignore_sign():
    # A NaN prediction makes the result NaN (documented: pass only predicted pairs).
    assert math.isnan(m.rmse([np.nan, 1.0], [1.0, 1.0]))
    assert math.isnan(m.mae([np.nan, 1.0], [1.0, 1.0]))
    # errors +3 and −1: RMSE = sqrt((9 + 1) / 2) = √5 ≈ 2.2361; MAE = (3 + 1) / 2 = 2
    assert m.rmse([4.0, 2.0], [1.0, 3.0]) == pytest.approx(math.sqrt(5))
    assert m.mae([4.0, 2.0], [1.0, 3.0]) == pytest.approx(2.0)


# --------------------------------------------------------------------------- beyond accuracy


def test_catalogue_coverage_by_hand():
    recommended = np.array([[0, 1, 5], [1, 2, -1], [-1, -1, -1]])
    # top-3: {0, 1, 5} ∪ {1, 2} = 4 distinct items of 10 (padding is not an item)
    assert m.catalogue_coverage(recommended, 3, 10) == pytest.approx(0.4)
    # top-1: {0, 1} → 2 of 10
    assert m.catalogue_coverage(recommended, 1, 10) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="only 5 items"):
        m.catalogue_coverage(recommended, 3, 5)


# 7 training users. Item 0 was chosen by all 7, item 1 by 3, item 2 by 1, item 3 by none.
POPULARITY = np.array([7, 3, 1, 0])
N_TRAIN = 7


def test_novelty_by_hand():
    # p = (count + 1) / (7 + 1): 8/8, 4/8, 2/8, 1/8 → −log2 p = 0, 1, 2, 3 bits
    recommended = np.array([[0, 1, 2], [3, 2, -1], [1, -1, -1], [-1, -1, -1]])
    # user 0: (0 + 1 + 2) / 3 = 1; user 1: (3 + 2) / 2 (padding left out); user 2: 1;
    # user 3: empty list → NaN
    np.testing.assert_allclose(m.novelty_at_k(recommended, 3, POPULARITY, N_TRAIN),
                               [1.0, 2.5, 1.0, np.nan])
    # k = 1: first items only: 0, 3, 1 bits
    np.testing.assert_allclose(m.novelty_at_k(recommended, 1, POPULARITY, N_TRAIN),
                               [0.0, 3.0, 1.0, np.nan])


def test_mean_popularity_by_hand():
    recommended = np.array([[0, 1, 2], [3, 2, -1], [-1, -1, -1]])
    # user 0: (7/7 + 3/7 + 1/7) / 3 = 11/21; user 1: (0 + 1/7) / 2 = 1/14; user 2: NaN
    np.testing.assert_allclose(m.mean_popularity_at_k(recommended, 3, POPULARITY, N_TRAIN),
                               [11 / 21, 1 / 14, np.nan])


def test_popularity_inputs_are_checked():
    recommended = np.array([[0, 1]])
    with pytest.raises(ValueError, match="between 0 and n_users_train"):
        m.novelty_at_k(recommended, 2, POPULARITY, 5)  # item 0 has 7 users of 5
    with pytest.raises(ValueError, match="n_users_train must be >= 1"):
        m.mean_popularity_at_k(recommended, 2, np.zeros(4), 0)
    with pytest.raises(ValueError, match="only 4 items"):
        m.novelty_at_k(np.array([[4]]), 1, POPULARITY, N_TRAIN)


def test_ild_identical_items_have_diversity_zero_and_orthogonal_items_one():
    vectors = np.array([[1.0, 0.0, 0.0], [3.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 5.0]])
    identical = np.array([[0, 1, 0]])  # all the same direction (item 0 repeated, too)
    orthogonal = np.array([[0, 2, 3]])
    for v in (vectors, sp.csr_array(vectors), sp.csr_matrix(vectors)):
        assert m.intra_list_diversity_at_k(identical, 3, v)[0] == pytest.approx(0.0, abs=1e-12)
        assert m.intra_list_diversity_at_k(orthogonal, 3, v)[0] == pytest.approx(1.0)


def test_ild_by_hand():
    # x0 = (1, 0), x1 = (1, 1), x2 = (0, 1), x3 = 0 (no vector)
    # cos(0, 1) = 1/√2, cos(0, 2) = 0, cos(1, 2) = 1/√2, cos(3, anything) = 0
    vectors = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0]])
    recommended = np.array([
        [0, 1, 2, -1],   # 3 pairs: mean (1/√2 + 0 + 1/√2) / 3 → ILD = 1 − √2/3
        [0, 1, -1, -1],  # 1 pair: ILD = 1 − 1/√2
        [0, 3, -1, -1],  # zero vector: similarity 0 → ILD = 1
        [0, 1, 3, 2],    # 6 pairs, sum √2 → ILD = 1 − √2/6
        [2, -1, -1, -1],  # fewer than 2 items → NaN
        [-1, -1, -1, -1],
    ])
    expected = [1 - math.sqrt(2) / 3, 1 - 1 / math.sqrt(2), 1.0, 1 - math.sqrt(2) / 6,
                np.nan, np.nan]
    for v in (vectors, sp.csr_array(vectors)):
        np.testing.assert_allclose(m.intra_list_diversity_at_k(recommended, 4, v), expected)
    # k = 2 (k < K): the first two items only
    np.testing.assert_allclose(m.intra_list_diversity_at_k(recommended, 2, vectors),
                               [1 - 1 / math.sqrt(2), 1 - 1 / math.sqrt(2), 1.0,
                                1 - 1 / math.sqrt(2), np.nan, np.nan])


def test_ild_non_unit_vectors_k1_and_duplicate_sparse_entries():
    # x0 = (3, 4), x1 = (4, 3), x2 = (1, 0), x3 = 0:
    # cos(0, 1) = 24/25 = 0.96, cos(0, 2) = 3/5 = 0.6, cos(1, 2) = 4/5 = 0.8
    vectors = np.array([[3.0, 4.0], [4.0, 3.0], [1.0, 0.0], [0.0, 0.0]])
    recommended = np.array([
        [0, 1, 2],   # 1 − (0.96 + 0.6 + 0.8) / 3 = 1 − 2.36/3 ≈ 0.21333
        [3, 0, 1],   # zero vector: pairs 0, 0, 0.96 → 1 − 0.96/3 = 0.68
        [0, 0, 1],   # item 0 repeated: cos 1 once, 0.96 twice → 1 − 2.92/3 ≈ 0.02667
        [3, 3, -1],  # a zero vector repeated is still similar to nothing → 1
    ])
    expected = [1 - 2.36 / 3, 1 - 0.96 / 3, 1 - 2.92 / 3, 1.0]
    # The same vectors as a CSR array whose row 0 stores (0, 0) as 1 + 2, a duplicate entry.
    duplicated = sp.csr_array((np.array([1.0, 2.0, 4.0, 4.0, 3.0, 1.0]),
                               np.array([0, 0, 1, 0, 1, 0]), np.array([0, 3, 5, 6, 6])),
                              shape=(4, 2))
    for v in (vectors, sp.csr_array(vectors), sp.coo_array(vectors), duplicated):
        np.testing.assert_allclose(m.intra_list_diversity_at_k(recommended, 3, v), expected)
    # k = 1: one item per list, no pair → NaN for every user
    assert np.isnan(m.intra_list_diversity_at_k(recommended, 1, vectors)).all()


def test_ild_checks_its_inputs():
    with pytest.raises(ValueError, match="only 2 items"):
        m.intra_list_diversity_at_k(np.array([[0, 2]]), 2, np.eye(2))
    with pytest.raises(ValueError, match="2-D"):
        m.intra_list_diversity_at_k(np.array([[0, 1]]), 2, np.ones(2))


def test_activity_groups_by_hand():
    # 1/3 and 2/3 quantiles of 1..6 (linear): 2.67 and 4.33
    np.testing.assert_array_equal(m.activity_groups(np.array([6, 1, 5, 2, 4, 3])),
                                  ["heavy", "light", "heavy", "light", "medium", "medium"])
    # Ties go to the lower group: quantiles of [20, 20, 20, 20, 30, 50] are 20 and 23.3
    groups = m.activity_groups(np.array([20, 20, 20, 20, 30, 50]))
    np.testing.assert_array_equal(groups, ["light"] * 4 + ["heavy"] * 2)
    # [1, 5, 5, 5, 5, 9]: q1 = q2 = 5 (positions 1.67 and 3.33 both fall between two 5s), so
    # 1 and the four 5s are light (≤ 5), 9 is heavy, nobody is medium
    np.testing.assert_array_equal(m.activity_groups(np.array([1, 5, 5, 5, 5, 9])),
                                  ["light"] * 5 + ["heavy"])
    # three users, no ties: q1 = 10 + (2/3)·10 ≈ 16.7, q2 = 20 + (1/3)·10 ≈ 23.3
    np.testing.assert_array_equal(m.activity_groups(np.array([30, 10, 20])),
                                  ["heavy", "light", "medium"])
    assert m.activity_groups(np.array([], dtype=int)).shape == (0,)


# --------------------------------------------------------------------------- per-user reference


def reference_ranking(recommended: np.ndarray, relevant: list[set[int]], k: int
                      ) -> dict[str, list[float]]:
    """Every accuracy metric, one user at a time, straight from the definitions."""
    out: dict[str, list[float]] = {name: [] for name in
                                   ("precision", "recall", "ndcg", "ap", "rr", "hit_rate")}
    for row, rel in zip(recommended, relevant, strict=True):
        seen: set[int] = set()
        hit = []
        for item in row[:k].tolist():
            hit.append(item >= 0 and item in rel and item not in seen)
            seen.add(item)
        n_rel = len(rel)
        out["precision"].append(sum(hit) / k)
        ranks = [r + 1 for r, h in enumerate(hit) if h]
        out["rr"].append(1 / ranks[0] if ranks else 0.0)
        out["hit_rate"].append(1.0 if ranks else 0.0)
        if n_rel == 0:
            for name in ("recall", "ndcg", "ap"):
                out[name].append(float("nan"))
            continue
        out["recall"].append(len(ranks) / n_rel)
        dcg = sum(1 / math.log2(r + 1) for r in ranks)
        idcg = sum(1 / math.log2(r + 1) for r in range(1, min(n_rel, k) + 1))
        out["ndcg"].append(dcg / idcg)
        ap = sum((i + 1) / r for i, r in enumerate(ranks))  # precision at the (i+1)-th hit
        out["ap"].append(ap / min(n_rel, k))
    return out


def reference_beyond(recommended: np.ndarray, k: int, vectors: np.ndarray,
                     popularity: np.ndarray, n_train: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"ild": [], "novelty": [], "popularity": []}
    norms = np.linalg.norm(vectors, axis=1)
    for row in recommended:
        items = [i for i in row[:k].tolist() if i >= 0]
        if not items:
            out["novelty"].append(float("nan"))
            out["popularity"].append(float("nan"))
        else:
            out["novelty"].append(sum(-math.log2((popularity[i] + 1) / (n_train + 1))
                                      for i in items) / len(items))
            out["popularity"].append(sum(popularity[i] / n_train for i in items) / len(items))
        sims = []
        for a in range(len(items)):
            for b in range(len(items)):
                if a != b:
                    i, j = items[a], items[b]
                    denominator = norms[i] * norms[j]
                    sims.append(float(vectors[i] @ vectors[j]) / denominator
                                if denominator > 0 else 0.0)
        out["ild"].append(1 - sum(sims) / len(sims) if sims else float("nan"))
    return out


@pytest.fixture
def random_case():
    rng = np.random.default_rng(42)
    n_users, n_items, depth = 400, 60, 8
    recommended = np.stack([rng.permutation(n_items)[:depth] for _ in range(n_users)])
    # Short lists padded with -1, and a few lists that repeat an item.
    length = rng.integers(0, depth + 1, n_users)
    recommended[np.arange(depth) >= length[:, None]] = -1
    repeat = rng.random(n_users) < 0.1
    recommended[repeat, 1] = recommended[repeat, 0]
    relevant = [set(rng.choice(n_items, rng.integers(0, 12), replace=False).tolist())
                for _ in range(n_users)]
    # Popular items get listed to many users and have dense vectors: exercises the Gram head.
    popular = rng.random((n_users, depth)) < 0.3
    recommended = np.where(popular & (recommended >= 0), rng.integers(0, 4, (n_users, depth)),
                           recommended)
    train = (rng.random((n_items, 150)) < np.linspace(0.9, 0.02, n_items)[:, None]).astype(float)
    train[[7, 19]] = 0.0  # two items nobody trained on: zero vectors
    return recommended, relevant, n_items, train


@pytest.mark.parametrize("k", [1, 3, 8])
def test_ranking_metrics_match_the_reference(random_case, k):
    recommended, relevant, n_items, _ = random_case
    order = np.random.default_rng(k).permutation  # store each row's items in a random order
    counts = [len(r) for r in relevant]
    matrix = sp.csr_array((np.ones(sum(counts)),
                           np.concatenate([order(sorted(r)) for r in relevant]).astype(np.int32),
                           np.concatenate([[0], np.cumsum(counts)])),
                          shape=(len(relevant), n_items))
    assert not matrix.has_sorted_indices
    n_rel = np.diff(matrix.indptr)
    hit = m.hits(recommended, matrix)
    expected = reference_ranking(recommended, relevant, k)
    got = {"precision": m.precision_at_k(hit, k), "recall": m.recall_at_k(hit, n_rel, k),
           "ndcg": m.ndcg_at_k(hit, n_rel, k), "ap": m.average_precision_at_k(hit, n_rel, k),
           "rr": m.reciprocal_rank_at_k(hit, k), "hit_rate": m.hit_rate_at_k(hit, k)}
    assert (n_rel == 0).any() and (recommended == -1).any()  # the case covers both
    for name, values in got.items():
        np.testing.assert_allclose(values, expected[name], err_msg=name, atol=1e-12)


@pytest.mark.parametrize("k", [2, 5, 8])
def test_beyond_accuracy_matches_the_reference(random_case, k):
    recommended, _, n_items, train = random_case
    popularity = (train > 0).sum(axis=1)
    n_train = train.shape[1]
    expected = reference_beyond(recommended, k, train, popularity, n_train)
    np.testing.assert_allclose(m.novelty_at_k(recommended, k, popularity, n_train),
                               expected["novelty"])
    np.testing.assert_allclose(m.mean_popularity_at_k(recommended, k, popularity, n_train),
                               expected["popularity"])
    for vectors in (train, sp.csr_array(train)):
        np.testing.assert_allclose(m.intra_list_diversity_at_k(recommended, k, vectors),
                                   expected["ild"], atol=1e-12)
    top = recommended[:, :k]
    assert m.catalogue_coverage(recommended, k, n_items) == len(set(top[top >= 0].tolist())) / 60


@pytest.mark.parametrize(("gram_items", "gram_entries", "block_users", "block_flops"), [
    (0, 1 << 23, 8192, 1 << 23),     # no Gram head: every item summed as sparse rows
    (3, 1 << 23, 7, 50),             # a 3-item head; tiny blocks of users
    (10_000, 1 << 23, 8192, 1 << 23),  # every listed item in the head: no sparse sum at all
    (10_000, 200, 64, 1 << 23),      # head capped by the Gram block's size
])
def test_ild_paths_agree(random_case, monkeypatch, gram_items, gram_entries, block_users,
                         block_flops):
    # Dense vectors with negative entries too (e.g. latent factors): cosines can be negative.
    recommended, _, _, train = random_case
    rng = np.random.default_rng(7)
    vectors = train * rng.normal(size=train.shape)
    expected = reference_beyond(recommended, 8, vectors, np.zeros(len(train)), 1)["ild"]
    monkeypatch.setattr(diversity, "_GRAM_ITEMS", gram_items)
    monkeypatch.setattr(diversity, "_GRAM_ENTRIES", gram_entries)
    monkeypatch.setattr(diversity, "_BLOCK_USERS", block_users)
    monkeypatch.setattr(diversity, "_BLOCK_FLOPS", block_flops)
    for v in (sp.csr_array(vectors), vectors):
        np.testing.assert_allclose(m.intra_list_diversity_at_k(recommended, 8, v), expected,
                                   atol=1e-12)


def test_paired_bootstrap_a_constant_lead_has_no_spread():
    a = np.array([0.2, 0.9, 0.4, 0.0, 1.0])
    d = m.paired_bootstrap(a, a - 0.25)
    assert (d.mean, d.low, d.high) == pytest.approx((0.25, 0.25, 0.25))
    assert d.share_not_ahead == 0.0 and d.users == 5


def test_paired_bootstrap_matches_the_normal_interval_on_many_users():
    rng = np.random.default_rng(3)
    b = rng.random(4000)
    a = b + rng.normal(0.01, 0.2, 4000)  # a small lead, noisy per user
    d = m.paired_bootstrap(a, b, draws=4000)
    diff = a - b
    half = 1.96 * diff.std() / np.sqrt(len(diff))
    assert d.mean == pytest.approx(diff.mean())
    assert d.low == pytest.approx(diff.mean() - half, abs=0.15 * half)
    assert d.high == pytest.approx(diff.mean() + half, abs=0.15 * half)
    # the share of resamples without a lead is the normal tail below zero
    z = diff.mean() / (diff.std() / np.sqrt(len(diff)))
    assert d.share_not_ahead == pytest.approx(0.5 * math.erfc(z / math.sqrt(2)), abs=0.01)


def test_paired_bootstrap_pairs_users_so_shared_variation_cancels():
    """Users differ a lot, the models on each user little: paired, the lead is clear."""
    base = np.linspace(0, 1, 200)
    d = m.paired_bootstrap(base + 0.01, base)
    assert d.low > 0 and d.share_not_ahead == 0.0


def test_paired_bootstrap_leaves_out_users_nan_in_either_and_is_seeded():
    a = np.array([0.5, np.nan, 0.3, 0.8, 0.1, 0.6])
    b = np.array([0.4, 0.2, np.nan, 0.1, 0.3, 0.6])
    d = m.paired_bootstrap(a, b, seed=7)
    assert d.users == 4 and d.mean == pytest.approx((0.1 + 0.7 - 0.2 + 0.0) / 4)
    assert d == m.paired_bootstrap(a, b, seed=7)
    assert d.low < d.mean < d.high


@pytest.mark.parametrize(("a", "b", "kwargs", "error"), [
    (np.zeros(3), np.zeros(4), {}, "same users"),
    (np.zeros((2, 2)), np.zeros((2, 2)), {}, "same users"),
    (np.zeros(3), np.zeros(3), {"draws": 0}, "draws"),
    (np.zeros(3), np.zeros(3), {"level": 1.0}, "level"),
])
def test_paired_bootstrap_refuses_bad_input(a, b, kwargs, error):
    with pytest.raises(ValueError, match=error):
        m.paired_bootstrap(a, b, **kwargs)
