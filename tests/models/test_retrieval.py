"""Approximate top-k (HNSW): close to the exact answer, same scores, seen items still excluded."""

from __future__ import annotations

import numpy as np
import pytest

from recengine.data.synthetic import generate
from recengine.data.training_data import TrainingData
from recengine.data.weighting import aggregate
from recengine.errors import NotSupportedError
from recengine.models import WALS, Popularity
from recengine.models.retrieval import recall
from tests.models.conformance import small_data


@pytest.fixture(scope="module")
def data() -> TrainingData:
    dataset = generate(n_users=600, n_items=3000, seed=5, mean_events_per_user=15)
    return TrainingData.from_interactions(aggregate(dataset.events, dataset.schema))


@pytest.fixture(scope="module", params=[{}, {"feedback": "explicit", "biases": True,
                                             "unobserved_weight": 0.01}],
                ids=["implicit", "explicit-biases"])
def model(request: pytest.FixtureRequest, data: TrainingData) -> WALS:
    return WALS(factors=16, iterations=6, **request.param).fit(data)


def test_embed_is_the_score_as_inner_products(model: WALS) -> None:
    users = np.arange(20)
    rows = model.user_items_[users]
    queries, offsets = model._embed(users, rows)
    np.testing.assert_allclose(queries @ model._item_vectors().T + offsets[:, None],
                               model._score(users, rows), rtol=1e-4, atol=1e-4)


def test_index_keeps_most_of_the_exact_top_k_with_the_same_scores(model: WALS) -> None:
    users = np.arange(len(model.users_))
    exact_idx, _ = model.recommend_indices(users, 10)
    model.build_index(ef_search=64)
    try:
        approx_idx, approx_val = model.recommend_indices(users, 10)
    finally:
        model.retrieval_ = None
    assert recall(approx_idx, exact_idx) >= 0.95
    seen = model.user_items_
    for u in users:
        assert not set(approx_idx[u]) & set(seen.indices[seen.indptr[u]:seen.indptr[u + 1]])
    exact_scores = np.take_along_axis(model._score(users, seen[users]), approx_idx, axis=1)
    np.testing.assert_allclose(approx_val, exact_scores, rtol=1e-4, atol=1e-4)
    assert (np.diff(approx_val, axis=1) <= 1e-6).all()


def test_index_answers_users_known_only_by_history(model: WALS) -> None:
    history = list(model.items_.ids[:5])
    exact = model.recommend_history(history, 10)[0]
    model.build_index()
    try:
        approx = model.recommend_history(history, 10)[0]
    finally:
        model.retrieval_ = None
    assert not set(approx) & set(history)
    assert len(set(approx) & set(exact)) >= 8


def test_a_list_the_graph_cannot_fill_is_answered_exactly() -> None:
    model = WALS(factors=4, iterations=4).fit(small_data()).build_index(ef_search=1)
    n = len(model.items_) - int(np.diff(model.user_items_.indptr).max())
    approx = model.recommend_indices(np.arange(len(model.users_)), n)
    model.retrieval_ = None
    exact = model.recommend_indices(np.arange(len(model.users_)), n)
    np.testing.assert_array_equal(np.sort(approx[0], axis=1), np.sort(exact[0], axis=1))


def test_filtered_and_transformed_requests_stay_exact(model: WALS) -> None:
    users = np.arange(30)
    candidates = np.arange(0, len(model.items_), 3)
    expected = model.recommend_indices(users, 10, candidates=candidates)
    model.build_index(ef_search=1)
    try:
        got = model.recommend_indices(users, 10, candidates=candidates)
    finally:
        model.retrieval_ = None
    np.testing.assert_array_equal(got[0], expected[0])


def test_fit_drops_the_index_and_models_without_vectors_refuse(data: TrainingData) -> None:
    model = WALS(factors=4, iterations=2).fit(data).build_index()
    assert model.fit(data).retrieval_ is None
    with pytest.raises(NotSupportedError, match="popularity"):
        Popularity().fit(data).build_index()


def test_the_graph_is_saved_with_its_model(model: WALS, tmp_path) -> None:
    users = np.arange(len(model.users_))
    model.build_index(ef_search=16)
    try:
        answers = model.recommend_indices(users, 10)
        model.save(tmp_path / "m")
    finally:
        model.retrieval_ = None
    loaded = WALS.load(tmp_path / "m")
    assert loaded.retrieval_ is not None and loaded.retrieval_.n_items == len(model.items_)
    loaded.retrieval_.ef_search = 16
    got = loaded.recommend_indices(users, 10)
    np.testing.assert_array_equal(got[0], answers[0])
    np.testing.assert_allclose(got[1], answers[1], rtol=1e-6)
    model.save(tmp_path / "plain")
    assert WALS.load(tmp_path / "plain").retrieval_ is None
