"""The hybrid's readings of a source: from its HNSW graph, the same standardised scores as from
every item's score; a plain request answered from the union alone; the sources' graphs saved
with the hybrid."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recengine.data.dataset import Dataset
from recengine.data.query import Queries
from recengine.data.schema import FeatureKind
from recengine.data.synthetic import generate
from recengine.data.training_data import TrainingData
from recengine.data.weighting import aggregate
from recengine.errors import NotSupportedError
from recengine.models import WALS, ContentBased, Popularity
from recengine.models.base import Recommender
from recengine.models.hybrid import Hybrid
from recengine.models.hybrid.candidates import Source, propose
from recengine.models.hybrid.reading import DenseReading, IndexedReading, Masks
from recengine.models.retrieval import recall
from recengine.pipeline.prepare import training_data

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return generate(n_users=400, n_items=1500, seed=3, mean_events_per_user=12)


@pytest.fixture(scope="module")
def data(dataset) -> TrainingData:
    return training_data(dataset, aggregate(dataset.events, dataset.schema))


def _queries(data: TrainingData) -> Queries:
    """40 training users, a user known only by a history, and one with nothing to go on."""
    bag = sp.vstack([data.feedback[:40], sp.csr_array(
        (np.ones(6, np.float32), (np.zeros(6, int), np.arange(6))), shape=(2, data.n_items))])
    return Queries.from_bag(np.r_[np.arange(40), -1, -1], sp.csr_array(bag))


@pytest.mark.parametrize("make", [
    lambda: WALS(factors=12, iterations=4),
    lambda: WALS(factors=12, iterations=4, feedback="explicit", biases=True,
                 unobserved_weight=0.01),
    lambda: ContentBased(),
], ids=["wals", "wals-explicit-biases", "content"])
def test_a_graph_reading_standardises_as_every_score_does(data, make) -> None:
    model = make().fit(data)
    queries = _queries(data)
    masks = Masks.of(queries)
    dense = DenseReading(masks.masked(np.array(model.scores(queries), np.float32), model), 50)
    model.build_index(ef_search=64)
    graph = IndexedReading(model, queries, masks, 50)
    rows = np.repeat(np.arange(len(queries)), 200)
    items = np.random.default_rng(0).integers(0, len(model.items_), len(rows))
    unseen = np.isfinite(dense.scores[rows, items])
    np.testing.assert_allclose(graph.standardised(rows[unseen], items[unseen]),
                               dense.standardised(rows[unseen], items[unseen]), atol=1e-4)
    # the silent query: nothing proposed, every item below the row (as -inf reads)
    assert (graph.tops[-1] == -1).all() and (dense.tops[-1] == -1).all()
    np.testing.assert_array_equal(graph.standardised(np.array([len(queries) - 1]),
                                                     np.array([0])), [-1.0])
    assert recall(graph.tops[:-1], dense.tops[:-1]) >= 0.9
    seen = masks.items[masks.indptr[0]:masks.indptr[1]]
    assert not set(graph.tops[0].tolist()) & set(seen.tolist())


def test_content_has_a_vector_form_only_with_few_features(dataset, data) -> None:
    model = ContentBased().fit(data)
    queries = model.training_queries(np.arange(10))
    vectors, offsets = model.query_vectors(queries)
    np.testing.assert_allclose(vectors @ model._item_vectors().T + offsets[:, None],
                               model.scores(queries), atol=1e-5)
    coded = dataset.items.assign(code=[f"c{i}" for i in range(len(dataset.items))])
    wide = ContentBased(min_count=1).fit(TrainingData.from_interactions(
        aggregate(dataset.events, dataset.schema), items=coded,
        item_feature_kinds={**dataset.item_features, "code": FeatureKind.CATEGORICAL}))
    assert len(wide.feature_names_) > 256
    with pytest.raises(NotSupportedError, match="content"):
        wide.build_index()


def test_the_union_from_graphs_keeps_the_dense_union_and_scores(data) -> None:
    sources = [Source("wals", WALS(factors=12, iterations=4).fit(data), 60),
               Source("content", ContentBased().fit(data), 60),
               Source("popularity", Popularity().fit(data), 20)]
    queries = sources[0].model.training_queries(np.arange(60))
    dense = propose(sources, queries, limit=100)
    for source in sources[:2]:
        source.model.build_index(ef_search=64)
    graph = propose(sources, queries, limit=100)
    shared = []
    for row in range(len(queries)):
        a = dense.items[dense.indptr[row]:dense.indptr[row + 1]]
        b = graph.items[graph.indptr[row]:graph.indptr[row + 1]]
        common, at_a, at_b = np.intersect1d(a, b, return_indices=True)
        shared.append(len(common) / len(a))
        np.testing.assert_allclose(graph.scores[graph.indptr[row] + at_b],
                                   dense.scores[dense.indptr[row] + at_a], atol=1e-4)
    assert np.mean(shared) >= 0.9


@pytest.fixture(scope="module")
def hybrid(data) -> Hybrid:
    return Hybrid(candidates=40, ranker={"hidden": (16,), "epochs": 2, "patience": 1}).fit(data)


def test_a_plain_request_is_answered_from_the_union_as_from_every_score(hybrid, data
                                                                         ) -> None:
    queries = _queries(data)
    for n in (10, 60):  # 60: more than the union holds, the rest from the catalogue's order
        got = hybrid.recommend_queries(queries, n)
        every = Recommender.recommend_queries(hybrid, queries, n, transform=lambda s: s)
        np.testing.assert_array_equal(got[0], every[0])
        np.testing.assert_allclose(got[1], every[1])


def test_the_sources_graphs_are_built_saved_and_read_with_the_hybrid(hybrid, data,
                                                                     tmp_path) -> None:
    assert hybrid.indexes == ()
    hybrid.build_index(ef_search=64)
    try:
        tags = [s.tag for s in hybrid.sources_ if s.model.indexes]
        assert {"wals", "content", "wals-features"} <= set(tags)
        queries = hybrid.training_queries(np.arange(30))
        answer = hybrid.recommend_queries(queries, 10)
        loaded = Recommender.load(hybrid.save(tmp_path / "h"), histories=data)
        assert len(loaded.indexes) == len(hybrid.indexes)
        np.testing.assert_array_equal(loaded.recommend_queries(queries, 10)[0], answer[0])
        loaded.drop_indexes()
        assert loaded.indexes == ()
    finally:
        hybrid.drop_indexes()


def test_an_unfitted_hybrid_has_no_graphs_to_drop() -> None:
    hybrid = Hybrid()
    hybrid.drop_indexes()
    assert hybrid.indexes == ()


def test_a_request_that_rules_items_out_proposes_the_rest_at_their_whole_list_ranks() -> None:
    """Ruling items out changes what is proposed, not what a rank means: each proposal keeps its
    rank in the source's whole list (the ranker learned ranks from whole lists), at most the
    depth, and the row's statistics stay the whole row's."""
    scores = np.array([[5.0, 4.0, 3.0, 2.0, 1.0, -np.inf]], np.float32)
    blocked = np.array([True, False, True, False, False, False])
    reading = DenseReading(scores.copy(), 2, blocked)
    assert reading.tops.tolist() == [[1, 3]]
    assert reading.ranks.tolist() == [[1, 2]]  # 2: the depth, below the source's top two
    whole = DenseReading(scores.copy(), 2)
    assert whole.tops.tolist() == [[0, 1]] and whole.ranks.tolist() == [[0, 1]]
    np.testing.assert_array_equal(reading.standardised(np.zeros(5, int), np.arange(5)),
                                  whole.standardised(np.zeros(5, int), np.arange(5)))
