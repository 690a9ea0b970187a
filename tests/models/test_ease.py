"""EASE: the interface, and the closed form against a direct solve."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest

from recengine.errors import DataError
from recengine.models.ease import EASE
from tests.models.conformance import RecommenderConformance, small_data


class TestEASE(RecommenderConformance):
    model_class = EASE
    params: ClassVar[dict[str, object]] = {"l2": 10.0}


class TestEASEWeighted(RecommenderConformance):
    model_class = EASE
    params: ClassVar[dict[str, object]] = {"l2": 3.0, "binary": False}


def ridge_per_item(X: np.ndarray, l2: float) -> np.ndarray:
    """EASE's definition solved directly: column ``j`` of ``B`` is the ridge regression of
    item ``j`` on every other item, ``min ‖X_j − X_{−j} b‖² + λ‖b‖²`` (no closed form)."""
    n = X.shape[1]
    B = np.zeros((n, n))
    for j in range(n):
        others = np.delete(np.arange(n), j)
        A = X[:, others]
        B[others, j] = np.linalg.solve(A.T @ A + l2 * np.eye(n - 1), A.T @ X[:, j])
    return B


def dense_feedback(data) -> np.ndarray:
    return data.feedback.toarray().astype(np.float64)


@pytest.mark.parametrize("binary", [True, False])
def test_weights_are_the_per_item_ridge_regressions(binary):
    data = small_data(n_users=25, n_items=12)
    X = dense_feedback(data)
    if binary:
        X = (data.feedback.toarray() != 0).astype(np.float64)
    model = EASE(l2=2.0, binary=binary).fit(data)
    np.testing.assert_allclose(model.weights_, ridge_per_item(X, 2.0), atol=2e-6)
    assert model.weights_.dtype == np.float32 and np.diag(model.weights_).tolist() == [0.0] * 12
    assert model.weights_.flags.c_contiguous  # scoring reads rows: a column-major B was copied
    queries = data.queries(np.arange(data.n_users))
    np.testing.assert_allclose(model._score(queries), X @ model.weights_, rtol=1e-5, atol=1e-6)


def test_a_large_l2_tends_to_co_occurrence_counts():
    """``λ·B → XᵀX`` off the diagonal as λ → ∞: a user's scores become co-occurrence counts."""
    data = small_data()
    X = (data.feedback.toarray() != 0).astype(np.float64)
    co = X.T @ X
    np.fill_diagonal(co, 0.0)
    l2 = 1e6
    np.testing.assert_allclose(l2 * EASE(l2=l2).fit(data).weights_, co, rtol=1e-3, atol=1e-3)


def test_items_that_never_go_together_push_each_other_down():
    """Negative weights, which a neighbourhood model lacks: an item whose users never chose
    the history's item ranks below one nobody chose."""
    data = small_data(n_users=60)
    model = EASE(l2=5.0).fit(data)
    assert model.weights_.min() < 0
    ids, scores = model.recommend_history(["i0"], data.n_items - 1)
    (nobody,) = np.flatnonzero(ids == "i29")  # catalogue-only: no weight either way
    assert scores[nobody] == 0 and (scores[nobody + 1:] < 0).any()


def test_catalogues_over_max_items_are_refused_before_training():
    data = small_data()
    fitted = EASE(l2=10.0, max_items=30).fit(data)  # exactly at the limit: fine
    before = fitted.weights_
    with pytest.raises(DataError, match=r"31 items.* max_items=30; raise max_items.*item-knn"
                       ) as info:
        fitted.fit(small_data(seed=3, n_items=31))
    assert info.value.column == "max_items"
    assert fitted.weights_ is before and len(fitted.items_) == 30


def test_an_unknown_user_is_scored_from_their_history_without_refitting():
    data = small_data()
    model = EASE(l2=10.0).fit(data)
    history = ["i1", "i4", "i7"]
    idx = data.items.index(history)
    expected = model.weights_[idx].sum(axis=0)  # binary: one row of B per item
    expected[idx] = -np.inf
    ids, scores = model.recommend_history(history, 5)
    np.testing.assert_allclose(scores, np.sort(expected)[::-1][:5], rtol=1e-6)
    assert ids.tolist() == data.items.id_of(np.argsort(-expected, kind="stable")[:5]).tolist()


def test_explanations_name_the_history_item_that_adds_most():
    data = small_data()
    model = EASE(l2=10.0).fit(data)
    history = ["i1", "i4", "i7"]
    idx = data.items.index(history)
    ids, _ = model.recommend_history(history, 3)
    target = data.items.index(ids.tolist())
    best = np.asarray(history)[np.argmax(model.weights_[idx][:, target], axis=0)]
    assert model.explain_history(history, ids.tolist()) == [
        f"because you chose {b}" for b in best]
    assert model.explain_history([], ["i2"]) == ["no history to compare with"]


def test_two_fits_give_the_same_weights():
    data = small_data()
    np.testing.assert_array_equal(EASE().fit(data).weights_, EASE().fit(data).weights_)


def test_invalid_parameters_are_refused():
    for bad in ({"l2": 0.0}, {"max_items": 0}):
        with pytest.raises(DataError, match="invalid ease parameter"):
            EASE(**bad)


def test_the_tuner_searches_higher_l2_for_weighted_feedback():
    """Stars scale XᵀX by their square: the range that fits binary data would cut λ short."""
    binary, weighted = EASE.search_space({})["l2"], EASE.search_space({"binary": False})["l2"]
    assert binary[3] and weighted[3]  # log scale
    assert weighted[2] == 10 * binary[2] and binary[1] <= 500 <= binary[2]
