"""Approximate top-k (HNSW): close to the exact answer, same scores, seen items still excluded."""

from __future__ import annotations

import numpy as np
import pytest

from recengine.data.synthetic import generate
from recengine.data.training_data import TrainingData
from recengine.data.weighting import aggregate
from recengine.errors import ModelLoadError, NotSupportedError
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
    asked = model.training_queries(np.arange(20))
    vectors, offsets = model._embed(asked)
    np.testing.assert_allclose(vectors @ model._item_vectors().T + offsets[:, None],
                               model._score(asked), rtol=1e-4, atol=1e-4)


def test_index_keeps_most_of_the_exact_top_k_with_the_same_scores(model: WALS) -> None:
    users = np.arange(len(model.users_))
    exact_idx, _ = model.recommend_indices(users, 10)
    model.build_index(ef_search=64)
    try:
        approx_idx, approx_val = model.recommend_indices(users, 10)
    finally:
        model.retrieval_ = None
    assert recall(approx_idx, exact_idx) >= 0.95
    asked = model.training_queries(users)
    seen = asked.bag
    for u in users:
        assert not set(approx_idx[u]) & set(seen.indices[seen.indptr[u]:seen.indptr[u + 1]])
    exact_scores = np.take_along_axis(model._score(asked), approx_idx, axis=1)
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


def _finds_nothing(queries: np.ndarray, n: int, _seen: object
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A search that leaves every row short. A graph may find fewer items than asked (a
    sparse region); a small graph searched this deep always finds them all, so it is forced."""
    return (np.full((len(queries), n), -1, np.int32), np.full((len(queries), n), np.nan,
                                                                np.float32),
            np.ones(len(queries), bool))


ANSWERS = {
    "retrieval_": lambda model: model.recommend_indices(np.arange(len(model.users_)), 5),
    "similar_index_": lambda model: model.similar_items(list(model.items_.ids), 5),
}


@pytest.mark.parametrize("index", list(ANSWERS))
def test_a_list_the_graph_cannot_fill_is_answered_exactly(monkeypatch, index: str) -> None:
    model = WALS(factors=4, iterations=4).fit(small_data())
    exact = ANSWERS[index](model)
    model.build_index()
    monkeypatch.setattr(getattr(model, index), "search", _finds_nothing)
    got = ANSWERS[index](model)
    np.testing.assert_array_equal(got[0], exact[0])
    np.testing.assert_allclose(got[1], exact[1], rtol=1e-6)


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
    assert len(model.indexes) == 2 and model.fit(data).indexes == ()
    with pytest.raises(NotSupportedError, match="popularity"):
        Popularity().fit(data).build_index()


def test_the_graphs_are_saved_with_their_model(model: WALS, data: TrainingData,
                                               tmp_path) -> None:
    users, items = np.arange(len(model.users_)), list(model.items_.ids[:50])
    model.build_index(ef_search=16)
    try:
        answers = model.recommend_indices(users, 10)
        similar = model.similar_items(items, 10)
        model.save(tmp_path / "m")
    finally:
        model.drop_indexes()
    loaded = WALS.load(tmp_path / "m", histories=data)
    assert len(loaded.indexes) == 2 and loaded.retrieval_ is not None
    assert all(index.n_items == len(model.items_) for index in loaded.indexes)
    for index in loaded.indexes:
        index.ef_search = 16
    got = loaded.recommend_indices(users, 10)
    np.testing.assert_array_equal(got[0], answers[0])
    np.testing.assert_allclose(got[1], answers[1], rtol=1e-6)
    np.testing.assert_array_equal(loaded.similar_items(items, 10)[0], similar[0])
    model.save(tmp_path / "plain")
    assert WALS.load(tmp_path / "plain").indexes == ()


def _damage(folder, how: str) -> None:
    """Cut ``index.faiss`` short, or replace it with a graph over another model's vectors."""
    graph = folder / "index.faiss"
    if how == "cut":
        graph.write_bytes(graph.read_bytes()[:len(graph.read_bytes()) // 2])
    else:
        other = WALS(factors=4, iterations=2).fit(small_data()).build_index()
        other.retrieval_.write(graph)


@pytest.mark.parametrize("how", ["cut", "another model's"])
def test_a_damaged_graph_is_refused_at_load(data: TrainingData, tmp_path, how: str) -> None:
    """A graph cut short, or over other vectors, would answer wrong or read past its arrays."""
    folder = WALS(factors=4, iterations=2).fit(data).build_index().save(tmp_path / "m")
    _damage(folder, how)
    with pytest.raises(ModelLoadError, match=f"{tmp_path / 'm'}: index.faiss "):
        WALS.load(folder)


@pytest.mark.parametrize("similarity", ["cosine", "dot"])
def test_similar_items_from_the_graph_match_the_exact_ones(data: TrainingData,
                                                           similarity: str) -> None:
    model = WALS(factors=16, iterations=6, similarity=similarity).fit(data)
    items = list(model.items_.ids[:300])
    exact_ids = model.similar_items(items, 10)[0]
    model.build_index(ef_search=64)
    ids, scores = model.similar_items(items, 10)
    assert recall(model.items_.index(ids.ravel()).reshape(ids.shape),
                  model.items_.index(exact_ids.ravel()).reshape(ids.shape)) >= 0.95
    assert not (ids == np.array(items)[:, None]).any()  # never an item itself
    rows = model.items_.index(items)
    want = model._similar(rows)[np.arange(len(rows))[:, None],
                                model.items_.index(ids.ravel()).reshape(ids.shape)]
    np.testing.assert_allclose(scores, want, rtol=1e-4, atol=1e-4)
    assert (np.diff(scores, axis=1) <= 1e-6).all()
