"""EASE: the interface, the closed form against a direct solve, and its variants (EDLAE's
emphasised dropout, the popularity exponent, the user weight exponent) against their
definitions."""

from __future__ import annotations

import itertools
from typing import ClassVar

import numpy as np
import pytest
import scipy.linalg

from recengine.errors import DataError
from recengine.models.ease import EASE, closed_form
from recengine.models.item_item import interactions
from tests.models.conformance import RecommenderConformance, small_data

#: Plain EASE (Steck 2019): the defaults weigh users and items (see the module), which the
#: tests of the closed form's definition turn off.
PLAIN: dict[str, float] = {"popularity_exponent": 0.0, "user_weight_exponent": 0.0}


class TestEASE(RecommenderConformance):
    model_class = EASE
    params: ClassVar[dict[str, object]] = {"l2": 10.0}


class TestPlainEASE(RecommenderConformance):
    model_class = EASE
    params: ClassVar[dict[str, object]] = {"l2": 10.0, **PLAIN}


class TestEASEWeighted(RecommenderConformance):
    model_class = EASE
    params: ClassVar[dict[str, object]] = {"l2": 3.0, "binary": False, **PLAIN}


class TestEASEVariants(RecommenderConformance):
    model_class = EASE
    params: ClassVar[dict[str, object]] = {"l2": 3.0, "dropout": 0.4,
                                           "popularity_exponent": 0.5,
                                           "user_weight_exponent": 0.7}


def ridge_per_item(X: np.ndarray, penalty: float | np.ndarray,
                   user_weights: np.ndarray | None = None) -> np.ndarray:
    """EASE's definition solved directly: column ``j`` of ``B`` is the ridge regression of
    item ``j`` on every other item, ``min Σ_u d_u (X_uj − X_{u,−j} b)² + Σ_i Λ_i b_i²`` (no
    closed form), with ``Λ_i = penalty`` (λ) or ``penalty[i]``, ``d_u = user_weights[u]`` or
    1."""
    n = X.shape[1]
    penalty = np.broadcast_to(np.asarray(penalty, dtype=np.float64), (n,))
    d = np.ones(len(X)) if user_weights is None else user_weights
    B = np.zeros((n, n))
    for j in range(n):
        others = np.delete(np.arange(n), j)
        A = X[:, others]
        B[others, j] = np.linalg.solve(A.T @ (d[:, None] * A) + np.diag(penalty[others]),
                                       A.T @ (d * X[:, j]))
    return B


def dense_feedback(data) -> np.ndarray:
    return data.feedback.toarray().astype(np.float64)


@pytest.mark.parametrize("binary", [True, False])
def test_weights_are_the_per_item_ridge_regressions(binary):
    data = small_data(n_users=25, n_items=12)
    X = dense_feedback(data)
    if binary:
        X = (data.feedback.toarray() != 0).astype(np.float64)
    model = EASE(l2=2.0, binary=binary, **PLAIN).fit(data)
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
    weights = EASE(l2=l2, **PLAIN).fit(data).weights_
    np.testing.assert_allclose(l2 * weights, co, rtol=1e-3, atol=1e-3)


def test_items_that_never_go_together_push_each_other_down():
    """Negative weights, which a neighbourhood model lacks: an item whose users never chose
    the history's item ranks below one nobody chose."""
    data = small_data(n_users=60)
    model = EASE(l2=5.0, **PLAIN).fit(data)
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
    for bad in ({"l2": 0.0}, {"max_items": 0}, {"dropout": 1.0}, {"dropout": -0.1},
                {"popularity_exponent": -0.5}, {"popularity_exponent": 1.5},
                {"user_weight_exponent": -0.1}, {"user_weight_exponent": 2.5}):
        with pytest.raises(DataError, match="invalid ease parameter"):
            EASE(**bad)


def test_the_tuner_searches_higher_l2_for_weighted_feedback():
    """Stars scale XᵀX by their square: the range that fits binary data would cut λ short."""
    binary, weighted = EASE.search_space({})["l2"], EASE.search_space({"binary": False})["l2"]
    assert binary[3] and weighted[3]  # log scale
    assert weighted[2] == 10 * binary[2] and binary[1] <= 500 <= binary[2]


def test_the_tuner_searches_the_variants_from_plain_ease_through_the_defaults():
    """The variants' ranges start at 0, plain EASE, on a linear scale, and hold the defaults
    (the tuner's first trial); dropout stops short of 1, where its penalty is infinite, the
    popularity exponent at ½, the cosine's normalisation, the user weight exponent at 1,
    ``1/n_u``."""
    space = EASE.search_space({})
    assert space["dropout"] == ("float", 0.0, 0.9, False)
    assert space["popularity_exponent"] == ("float", 0.0, 0.5, False)
    assert space["user_weight_exponent"] == ("float", 0.0, 1.0, False)
    defaults = EASE.Config().model_dump()
    for name, (_, low, high, _) in space.items():
        assert low <= defaults[name] <= high


# -- EDLAE: emphasised dropout (Steck 2020) ------------------------------------------------------


def emphasised_dropout_loss(X: np.ndarray, B: np.ndarray, p: float) -> float:
    """The expected EDLAE training loss, by its definition: each entry of the input is dropped
    with probability ``p`` and the kept ones scaled by ``1/(1−p)``; the squared error counts
    only on the dropped entries (full emphasis). Exact: every mask of a row is enumerated."""
    total = 0.0
    for mask in itertools.product((0.0, 1.0), repeat=X.shape[1]):
        kept = np.asarray(mask)
        probability = np.prod(np.where(kept == 1, 1 - p, p))
        error = (X - (X * kept / (1 - p)) @ B) ** 2
        total += probability * float((error * (1 - kept)).sum())
    return total


@pytest.mark.parametrize("binary", [True, False])
def test_dropout_adds_a_penalty_proportional_to_each_items_count(binary):
    """EDLAE's closed form is EASE with ``Λ = λI + p/(1−p)·dMat(diag(XᵀX))``: each column is
    the ridge regression with that per-item penalty, the diagonal stays 0."""
    data = small_data(n_users=25, n_items=12)
    X = (data.feedback.toarray() != 0 if binary else data.feedback.toarray()).astype(np.float64)
    p = 0.3
    model = EASE(l2=2.0, dropout=p, binary=binary, **PLAIN).fit(data)
    penalty = 2.0 + p / (1 - p) * (X ** 2).sum(axis=0)
    np.testing.assert_allclose(model.weights_, ridge_per_item(X, penalty), atol=2e-6)
    assert np.diag(model.weights_).tolist() == [0.0] * 12
    assert not np.allclose(model.weights_, EASE(l2=2.0, binary=binary, **PLAIN).fit(data).weights_,
                           atol=1e-3)


def test_the_dropout_closed_form_minimises_the_expected_emphasised_loss():
    """The definition, not the algebra: with the masks enumerated, ``B`` is a stationary point
    of the expected emphasised-dropout loss plus λ‖B‖² over zero-diagonal matrices (the loss
    is quadratic, so a zero gradient is the same loss a step either way). Plain EASE's ``B``
    is not, and does worse."""
    rng = np.random.default_rng(4)
    X = (rng.random((9, 5)) < 0.5).astype(np.float64)
    l2, p = 0.5, 0.4

    def objective(B: np.ndarray) -> float:
        return emphasised_dropout_loss(X, B, p) / p + l2 * float((B ** 2).sum())

    B = closed_form(X, l2, dropout=p).astype(np.float64)
    for _ in range(3):
        step = rng.normal(scale=0.1, size=B.shape)
        np.fill_diagonal(step, 0.0)
        ahead, behind = objective(B + step), objective(B - step)
        assert ahead == pytest.approx(behind, rel=1e-5) and ahead > objective(B)
    assert objective(B) < objective(closed_form(X, l2).astype(np.float64)) - 1e-3


def test_the_variants_at_zero_are_plain_ease_bit_for_bit():
    """At 0 each option takes plain EASE's path: Steck's formula, written out here, to the bit
    (a weighted path with weights 1 would round otherwise), so figures measured with plain
    EASE stand; each option away from 0 changes the weights."""
    data = small_data()
    X = interactions(data.feedback, True)
    G = (X.T @ X).toarray().astype(np.float64)
    G[np.diag_indices_from(G)] += 7.0
    P = scipy.linalg.inv(G, assume_a="pos")
    P /= -np.diag(P)[None, :]
    np.fill_diagonal(P, 0.0)
    plain = P.astype(np.float32)
    np.testing.assert_array_equal(EASE(l2=7.0, dropout=0.0, **PLAIN).fit(data).weights_, plain)
    for option in ("dropout", "popularity_exponent", "user_weight_exponent"):
        varied = EASE(l2=7.0, **(PLAIN | {option: 0.3})).fit(data).weights_
        assert not np.allclose(varied, plain, atol=1e-4)


def test_dropout_shrinks_frequent_items_more():
    """The extra penalty grows with an item's count: the rows of frequent history items lose a
    larger share of their weight than those of rare ones."""
    data = small_data(n_users=60)
    plain, dropped = EASE(l2=5.0, **PLAIN).fit(data), EASE(l2=5.0, dropout=0.5, **PLAIN).fit(data)
    counts = (data.feedback != 0).sum(axis=0)
    chosen = np.flatnonzero(counts)
    kept = (np.abs(dropped.weights_).sum(axis=1)[chosen]
            / np.abs(plain.weights_).sum(axis=1)[chosen])
    assert np.corrcoef(counts[chosen], kept)[0, 1] < -0.5


# -- the popularity exponent ---------------------------------------------------------------------


def test_the_popularity_exponent_fits_ease_on_the_scaled_columns():
    """``W = dMat(s)·B̃`` with ``B̃`` EASE's weights for ``X·dMat(s)``, ``s_j ∝ n_j^−β`` scaled
    to keep ``trace(XᵀX)``: the history, scaled by ``s``, times ``B̃``."""
    data = small_data(n_users=25, n_items=12)
    X = (data.feedback.toarray() != 0).astype(np.float64)
    counts = X.sum(axis=0)
    beta = 0.7
    s = np.where(counts > 0, np.maximum(counts, 1) ** -beta, 1.0)
    s *= np.sqrt(counts.sum() / (s ** 2 * counts).sum())
    model = EASE(l2=2.0, popularity_exponent=beta, user_weight_exponent=0.0).fit(data)
    expected = s[:, None] * ridge_per_item(X * s, 2.0)
    np.testing.assert_allclose(model.weights_, expected, atol=2e-6)
    assert np.diag(model.weights_).tolist() == [0.0] * 12


def popular_and_rare() -> tuple[np.ndarray, list[str]]:
    """``a`` came three times with the popular ``b`` (33 users), twice with the rare ``c``
    (3 users); ``d`` goes with ``b``."""
    rows = [[1, 1, 0, 0]] * 3 + [[1, 0, 1, 0]] * 2 + [[0, 1, 0, 1]] * 20 + [[0, 1, 0, 0]] * 10
    return np.array([*rows, [0, 0, 1, 1]], dtype=np.float64), ["a", "b", "c", "d"]


def test_a_positive_exponent_lifts_rare_items_over_popular_ones():
    X, names = popular_and_rare()
    after_a = {beta: dict(zip(names, closed_form(X, 1.0, popularity_exponent=beta)[0],
                              strict=True)) for beta in (0.0, 0.5)}
    assert after_a[0.0]["b"] > after_a[0.0]["c"] > 0  # plain EASE: the popular one first
    assert after_a[0.5]["c"] > after_a[0.5]["b"] > 0


def test_a_larger_exponent_recommends_less_popular_items():
    data = small_data(n_users=60)
    counts = (data.feedback != 0).sum(axis=0)
    users = np.arange(data.n_users)
    mean_count = [counts[EASE(l2=5.0, popularity_exponent=beta, user_weight_exponent=0).fit(data)
                         .recommend_indices(users, 5)[0]].mean() for beta in (0.0, 0.5, 1.0)]
    assert mean_count[0] > mean_count[1] > mean_count[2]


# -- the user weight exponent --------------------------------------------------------------------


@pytest.mark.parametrize("binary", [True, False])
def test_the_user_weight_exponent_weighs_each_users_errors(binary):
    """Each column is the ridge regression with user ``u``'s squared errors weighted by
    ``d_u ∝ ‖x_u‖^−2γ`` (``n_u^−γ`` for binary data), scaled so ``Σ_u d_u ‖x_u‖² = Σ ‖x_u‖²``
    (λ keeps its size); the diagonal stays 0."""
    data = small_data(n_users=25, n_items=12)
    X = (data.feedback.toarray() != 0 if binary else data.feedback.toarray()).astype(np.float64)
    gamma = 0.8
    norms = (X ** 2).sum(axis=1)
    d = np.where(norms > 0, np.maximum(norms, 1e-12) ** -gamma, 1.0)
    d *= norms.sum() / (d * norms).sum()
    model = EASE(l2=2.0, user_weight_exponent=gamma, popularity_exponent=0.0,
                 binary=binary).fit(data)
    np.testing.assert_allclose(model.weights_, ridge_per_item(X, 2.0, d), atol=2e-6)
    assert np.diag(model.weights_).tolist() == [0.0] * 12


def test_heavy_users_co_occurrences_count_for_less():
    """``a`` came with ``b`` for four heavy users (20 other items each), with ``c`` for three
    users who chose nothing else. With λ large, ``B`` is the (weighted) co-occurrence counts:
    ``b`` follows ``a`` in plain EASE; with each user's errors weighted by ``1/n_u``, the light
    users' pairs win and ``c`` does."""
    rng = np.random.default_rng(0)
    heavy = np.zeros((4, 40))
    heavy[:, :2] = 1
    for row in heavy:
        row[3 + rng.choice(37, size=20, replace=False)] = 1
    light = np.zeros((3, 40))
    light[:, [0, 2]] = 1
    X = np.vstack([heavy, light])
    after_a = {gamma: closed_form(X, 1e3, user_weight_exponent=gamma)[0] for gamma in (0.0, 1.0)}
    assert after_a[0.0][1] > after_a[0.0][2]
    assert after_a[1.0][2] > after_a[1.0][1]


def test_a_large_catalogue_is_inverted_on_one_thread_to_the_same_weights(monkeypatch):
    """Above THREADED_MAX_ITEMS the inverse runs on one thread (scipy's threaded Cholesky
    crashes there): the same weights."""
    import recengine.models.ease as ease_module

    X = (np.random.default_rng(0).random((40, 12)) < 0.3).astype(np.float64)
    threaded = ease_module.closed_form(X, l2=2.0)
    monkeypatch.setattr(ease_module, "THREADED_MAX_ITEMS", 10)
    np.testing.assert_allclose(ease_module.closed_form(X, l2=2.0), threaded, rtol=1e-6)
