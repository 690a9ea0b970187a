"""The hybrid: the interface, candidate generation, the carve, and a ranker that must learn
what its sources miss."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest

from recengine.data.query import Queries
from recengine.errors import DataError
from recengine.models.base import Recommender
from recengine.models.ease import EASE
from recengine.models.hybrid import Hybrid
from recengine.models.hybrid.candidates import Source, propose, union_recall
from recengine.models.hybrid.model import carve
from recengine.models.popularity import Popularity
from tests.models.conformance import RecommenderConformance, small_data
from tests.models.test_two_tower import GENRES, genre_data

pytest.importorskip("torch")

#: Every default source, a ranker small enough for a fit in a second or two.
QUICK: dict[str, object] = {"ranker": {"hidden": (16,), "epochs": 3, "patience": 2}}


class TestHybrid(RecommenderConformance):
    model_class = Hybrid
    params: ClassVar[dict[str, object]] = QUICK


def test_the_union_is_bounded_unseen_and_tagged():
    data = small_data()
    sources = [Source("ease", EASE().fit(data), 5), Source("popularity", Popularity().fit(data), 3)]
    queries = data.queries(np.arange(data.n_users))
    union = propose(sources, queries, limit=6)
    assert (np.diff(union.indptr) <= 6).all()
    for row in range(len(union)):
        span = slice(union.indptr[row], union.indptr[row + 1])
        items = union.items[span]
        assert len(set(items.tolist())) == len(items)
        assert not set(items.tolist()) & set(data.feedback[[row]].indices.tolist())
        # every candidate was proposed by someone, and the best ranks come first
        assert union.proposed[span].any(axis=1).all()
        best = np.where(union.proposed[span], union.ranks[span], 99).min(axis=1)
        assert (np.diff(best) >= 0).all()
    popular = sources[1].model.recommend_indices(np.arange(data.n_users), 3)[0]
    rows = np.flatnonzero(union.proposed[:, 1] & (union.ranks[:, 1] == 0))
    assert (union.items[rows] == popular[union.rows[rows], 0]).all()


def test_union_recall_counts_each_source_and_the_union():
    data = small_data()
    sources = [Source("ease", EASE().fit(data), 2), Source("popularity", Popularity().fit(data), 2)]
    union = propose(sources, data.queries(np.array([0, 1])), limit=10)
    first = union.items[union.indptr[0]:union.indptr[1]]
    ease_first = first[union.proposed[union.indptr[0]:union.indptr[1], 0]][:1]
    relevant = [np.array([ease_first[0], 10_000]), np.array([10_001])]
    recall = union_recall(union, relevant, ["ease", "popularity"])
    assert recall["union"] == pytest.approx(1 / 3)
    assert recall["ease"] == pytest.approx(1 / 3)


@pytest.mark.parametrize("how", ["random", "time"])
def test_the_carve_holds_out_a_share_of_each_user_with_enough_items(how):
    data = small_data()
    drop = carve(data, 0.25, how, seed=0)
    counts = np.diff(data.feedback.indptr)
    dropped = np.add.reduceat(drop, data.feedback.indptr[:-1])
    assert (dropped[counts >= 3] == np.maximum(1, np.round(0.25 * counts[counts >= 3]))).all()
    assert (dropped[counts < 3] == 0).all()
    if how == "time":  # the held-out pairs are each user's latest
        for user in np.flatnonzero(dropped):
            events = data.log.row_items(user)
            held = set(data.feedback[[user]].indices[drop[data.feedback.indptr[user]:
                                                          data.feedback.indptr[user + 1]]])
            last_seen = {item: pos for pos, item in enumerate(events.tolist())}
            kept = set(last_seen) - held
            assert min(last_seen[i] for i in held) > max(last_seen[i] for i in kept)


def test_the_ranker_learns_a_cross_its_sources_miss():
    """Users like the genre their ``taste`` feature names; the only source is popularity,
    which knows neither. The ranker reads both features and must learn their product."""
    data = genre_data(user_features=True, n_users=120, n_items=45, cold=0)
    model = Hybrid(sources=[{"model": "popularity", "depth": 45}], similarity_source=None,
                   carves=2, ranker={"epochs": 40, "patience": 8, "learning_rate": 5e-3}
                   ).fit(data)
    top, _ = model.recommend_indices(np.arange(data.n_users), 5)
    liked = np.array([int(str(u)[1:]) % 3 for u in data.users.ids])
    genre = np.array([int(str(i)[1:]) % 3 for i in data.items.ids])
    assert (genre[top] == liked[:, None]).mean() > 0.8  # popularity alone: about a third
    training = model.training_
    assert training["validation_ndcg@10"] > training["sources_validation_ndcg@10"][
        "popularity"] + 0.1
    assert {f"taste={g}" for g in GENRES} <= set(model.profile_.user_names)
    assert {f"genres={g}" for g in GENRES} <= set(model.profile_.item_names)


def test_explanations_name_the_sources_and_what_ranked_the_item_up():
    data = small_data()
    model = Hybrid(**QUICK).fit(data)
    ids, _ = model.recommend("u4", 3)
    for reason in model.explain("u4", ids.tolist()):
        assert reason.startswith("proposed by ")
        assert any(tag in reason for tag in ("wals", "ease", "item-knn", "content",
                                             "popularity"))


def test_a_new_user_known_by_history_is_ranked_from_it():
    data = small_data()
    model = Hybrid(**QUICK).fit(data)
    ids, scores = model.recommend_history(["i0", "i3"], 5)
    assert len(ids) == 5 and np.isfinite(scores).all() and not {"i0", "i3"} & set(ids)
    assert isinstance(model.training_queries(np.array([0])), Queries)


def test_a_content_source_is_skipped_without_item_features():
    data = small_data()
    bare = type(data)(data.users, data.items, data.feedback, data.ratings, log=data.log)
    model = Hybrid(**QUICK).fit(bare)
    assert "content" not in [s.tag for s in model.sources_]


def test_sources_must_be_told_apart():
    with pytest.raises(DataError, match="two sources are tagged 'ease'"):
        Hybrid(sources=[{"model": "ease"}, {"model": "ease"}], similarity_source=None)
    with pytest.raises(DataError, match="similarity_source"):
        Hybrid(sources=[{"model": "ease"}])


def test_it_is_registered_and_saved_whole(tmp_path):
    data = small_data()
    model = Hybrid(**QUICK).fit(data)
    loaded = Recommender.load(model.save(tmp_path / "h"), histories=data)
    assert [s.tag for s in loaded.sources_] == [s.tag for s in model.sources_]
    assert loaded.training_ == model.training_
