"""Item-kNN: the interface, and similarities against hand computations."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from recengine.data.training_data import TrainingData
from recengine.errors import DataError
from recengine.models import item_knn
from recengine.models.item_knn import ItemKNN
from tests.models.conformance import RecommenderConformance, small_data


class TestItemKNN(RecommenderConformance):
    model_class = ItemKNN


class TestItemKNNBM25(RecommenderConformance):
    model_class = ItemKNN
    params: ClassVar[dict[str, object]] = {"weighting": "bm25", "similarity": "dot",
                                           "neighbours": 5, "binary": False}


class TestItemKNNTFIDF(RecommenderConformance):
    model_class = ItemKNN
    params: ClassVar[dict[str, object]] = {"weighting": "tfidf", "shrinkage": 2.0,
                                           "neighbours": 3}


def matrix_data(X: np.ndarray) -> TrainingData:
    """Training data whose feedback matrix is ``X`` (users × items, zeros unobserved)."""
    users, items = np.nonzero(X)
    pairs = pd.DataFrame({"user_id": [f"u{u}" for u in users],
                          "item_id": [f"i{i}" for i in items],
                          "rating": float("nan"), "feedback": X[users, items]})
    data = TrainingData.from_interactions(pairs)
    assert data.items.ids.tolist() == [f"i{i}" for i in range(X.shape[1])]
    return data


#: Four users, four items: i0 and i1 share u0 and u1; i2 shares u1 with both; i3 only u3.
X = np.array([[1, 1, 0, 0],
              [1, 1, 1, 0],
              [0, 0, 1, 0],
              [0, 0, 0, 1]], dtype=np.float64)


def test_cosine_by_hand():
    model = ItemKNN().fit(matrix_data(X))
    # ‖i0‖ = ‖i1‖ = ‖i2‖ = √2; i0·i1 = 2 (u0, u1), i0·i2 = i1·i2 = 1 (u1); i3 shares no one
    expected = np.array([[0, 1, 1 / 2, 0],
                         [1, 0, 1 / 2, 0],
                         [1 / 2, 1 / 2, 0, 0],
                         [0, 0, 0, 0]])
    np.testing.assert_allclose(model.similarity(np.arange(4)), expected, rtol=1e-6)
    # a history of i0 and i2 scores i1 by 1 + 1/2, and i3 by nothing
    ids, scores = model.recommend_history(["i0", "i2"], 2)
    assert ids.tolist() == ["i1", "i3"]
    np.testing.assert_allclose(scores, [1.5, 0.0], rtol=1e-6)


def bm25_by_hand(counts: np.ndarray, k1: float, b: float) -> np.ndarray:
    """implicit's ``bm25_weight(user_items.T)``, one cell at a time: rows are items."""
    items = counts.T
    n_items = items.shape[0]
    lengths = items.sum(axis=1)
    out = np.zeros_like(items)
    for i in range(n_items):
        for u in range(items.shape[1]):
            if items[i, u]:
                idf = np.log(n_items) - np.log(1 + (items[:, u] > 0).sum())
                norm = 1 - b + b * lengths[i] / lengths.mean()
                out[i, u] = items[i, u] * (k1 + 1) / (k1 * norm + items[i, u]) * idf
    return out


def test_bm25_dot_is_implicits_bm25_recommender():
    """On counts (binary=False), with a user who chose one item (high idf) and one who chose
    three: their shared items weigh differently."""
    counts = np.array([[3, 1, 0, 0, 0],
                       [1, 2, 1, 0, 0],
                       [0, 0, 2, 1, 0],
                       [0, 0, 0, 4, 0],
                       [0, 2, 0, 0, 1]], dtype=np.float64)
    model = ItemKNN(weighting="bm25", similarity="dot", binary=False, bm25_k1=1.5,
                    bm25_b=0.5).fit(matrix_data(counts))
    W = bm25_by_hand(counts, 1.5, 0.5)
    expected = W @ W.T
    np.fill_diagonal(expected, 0)
    expected[expected < 0] = 0
    np.testing.assert_allclose(model.similarity(np.arange(5)), expected, rtol=1e-5, atol=1e-7)
    assert len(np.unique(np.round(expected[expected > 0], 6))) > 2  # not a trivial case


def test_tfidf_cosine_with_shrinkage_by_hand():
    counts = np.array([[4, 1, 0], [1, 0, 1], [0, 1, 1], [1, 1, 1]], dtype=np.float64)
    h = 0.5
    model = ItemKNN(weighting="tfidf", binary=False, shrinkage=h).fit(matrix_data(counts))
    items = counts.T
    idf = np.log(3) - np.log1p((items > 0).sum(axis=0))
    W = np.sqrt(items) * idf[None, :]
    norms = np.linalg.norm(W, axis=1)
    expected = (W @ W.T) / (norms[:, None] * norms[None, :] + h)
    np.fill_diagonal(expected, 0)
    expected[expected < 0] = 0
    np.testing.assert_allclose(model.similarity(np.arange(3)), expected, rtol=1e-5, atol=1e-7)


def test_only_the_top_neighbours_are_kept():
    data = small_data(n_users=60, n_items=40)
    full = ItemKNN(neighbours=1000).fit(data).similarity(np.arange(40))
    k = 4
    model = ItemKNN(neighbours=k).fit(data)
    pruned = model.similarity(np.arange(40))
    assert (np.count_nonzero(pruned, axis=1) <= k).all()
    assert (np.count_nonzero(pruned, axis=1) == np.minimum(np.count_nonzero(full, axis=1),
                                                           k)).all()
    for i in range(40):
        kept = np.flatnonzero(pruned[i])
        np.testing.assert_array_equal(pruned[i, kept], full[i, kept])
        dropped = np.setdiff1d(np.flatnonzero(full[i]), kept)
        if len(kept) and len(dropped):
            assert full[i, dropped].max() <= full[i, kept].min()
    assert model.similarity_.nnz == np.count_nonzero(pruned)  # stored sparse


def test_ties_keep_the_lower_index():
    counts = np.array([[1, 1, 1, 1]], dtype=np.float64)  # every pair has cosine 1
    model = ItemKNN(neighbours=2).fit(matrix_data(counts))
    assert model.similar_items("i2", 2)[0].tolist() == ["i0", "i1"]
    assert model.similar_items("i0", 2)[0].tolist() == ["i1", "i2"]


def test_blocks_give_the_same_neighbours(monkeypatch):
    data = small_data(n_users=60, n_items=40)
    whole = ItemKNN(neighbours=5, weighting="bm25").fit(data)
    monkeypatch.setattr(item_knn, "_BLOCK_ENTRIES", 3 * 40)  # three items a block
    seen = []
    blocked = ItemKNN(neighbours=5, weighting="bm25").fit(
        data, progress=lambda what, done, total: seen.append(done))
    assert seen[:2] == [3, 6] and seen[-1] == 40
    for name in ("similarity_data_", "similarity_indices_", "similarity_indptr_"):
        np.testing.assert_array_equal(getattr(whole, name), getattr(blocked, name))


def test_an_unknown_user_is_scored_from_their_history():
    data = small_data()
    model = ItemKNN(neighbours=10).fit(data)
    history = {"i1": 3.0, "i4": 1.0, "i7": 2.0}
    idx = data.items.index(list(history))
    S = model.similarity(np.arange(data.n_items))
    expected = S[idx].sum(axis=0)  # binary: each item counts 1, whatever its feedback
    np.testing.assert_allclose(model._score(model.history_queries(history))[0], expected,
                               rtol=1e-6)
    weighted = ItemKNN(neighbours=10, binary=False).fit(data)
    Sw = weighted.similarity(np.arange(data.n_items))
    np.testing.assert_allclose(weighted._score(weighted.history_queries(history))[0],
                               np.array([3.0, 1.0, 2.0]) @ Sw[idx], rtol=1e-5)


def test_explanations_name_the_most_similar_history_item():
    model = ItemKNN().fit(matrix_data(X))
    assert model.explain_history(["i2", "i0"], ["i1", "i3"]) == [
        "because you chose i0", "nothing you chose points to it"]


def test_invalid_parameters_are_refused():
    for bad in ({"neighbours": 0}, {"weighting": "bm42"}, {"bm25_b": 1.5},
                {"shrinkage": 1.0, "similarity": "dot"}):
        with pytest.raises(DataError, match="invalid item-knn parameter"):
            ItemKNN(**bad)
