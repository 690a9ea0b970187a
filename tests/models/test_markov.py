"""Markov: the interface, and the next-item behaviour that a bag-of-items model cannot have."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from recengine.data.query import Query
from recengine.data.training_data import TrainingData
from recengine.errors import DataError
from recengine.models.base import Recommender
from recengine.models.markov import Markov
from recengine.models.popularity import Popularity
from tests.models.conformance import RecommenderConformance, small_data


class TestMarkov(RecommenderConformance):
    model_class = Markov


class TestMarkovWindow(RecommenderConformance):
    model_class = Markov
    params: ClassVar[dict[str, object]] = {"window": 3, "decay": 0.5, "smoothing": 5.0}


def logged(sequences: dict[str, list[str]], *, extra_items: list[str] | None = None,
           same_time: bool = False) -> TrainingData:
    """Training data whose log is each user's items in the order given (one event each, a
    second apart, or all in the same second with ``same_time``)."""
    rows = [(user, item, 0 if same_time else t)
            for user, items in sequences.items() for t, item in enumerate(items)]
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    events["timestamp"] = pd.to_datetime(events["timestamp"], unit="s")
    pairs = (events.drop_duplicates(["user_id", "item_id"])
             .assign(rating=float("nan"), feedback=1.0))
    return TrainingData.from_interactions(
        pairs, events=events,
        extra_items=None if extra_items is None else np.array(extra_items))


#: ``a`` is always followed by ``b``; ``c`` and ``d`` are more popular than ``b``.
FOLLOWS = {"u1": ["c", "a", "b"], "u2": ["d", "a", "b", "c"], "u3": ["a", "b", "d"],
           "u4": ["c", "d"], "u5": ["d", "c"], "u6": ["c", "d", "e"], "u7": ["e", "c", "d"]}


def popularity_share(data: TrainingData) -> np.ndarray:
    counts = data.item_counts().astype(np.float64)
    return counts / counts.sum()


def test_the_item_that_always_follows_comes_first():
    data = logged(FOLLOWS)
    counts = dict(zip(data.items.ids, data.item_counts(), strict=True))
    assert counts["c"] > counts["b"] and counts["d"] > counts["b"]  # not popularity's answer
    model = Markov().fit(data)
    assert model.recommend_history(["a"], 1)[0].tolist() == ["b"]
    assert model.recommend_history(["d", "e", "a"], 1)[0].tolist() == ["b"]
    assert Popularity().fit(data).recommend_history(["a"], 1)[0].tolist() != ["b"]
    assert model.similar_items("a", 1)[0].tolist() == ["b"]


def test_probabilities_by_hand():
    """P(j | i) = (C[i, j] + β · pop(j)) / (C[i, ·] + β), C counted within each user."""
    data = logged({"u": ["a", "b", "a", "c"], "v": ["a", "b"], "w": ["c"]})
    beta = 2.0
    model = Markov(smoothing=beta).fit(data)
    pop = popularity_share(data)  # a: 2, b: 2, c: 2 users of 6 pairs
    a, b, c = data.items.index(["a", "b", "c"])
    moves = np.zeros((3, 3))
    moves[a, b], moves[b, a], moves[a, c] = 2, 1, 1  # "c" of u and "c" of w never join
    expected = (moves + beta * pop[None, :]) / (moves.sum(axis=1, keepdims=True) + beta)
    np.testing.assert_allclose(model.similarity(np.array([a, b, c])), expected, rtol=1e-6)
    # c is never left: its row is popularity, and every row is a distribution
    np.testing.assert_allclose(expected[c], pop)
    np.testing.assert_allclose(model.similarity(np.arange(3)).sum(axis=1), 1.0, rtol=1e-6)


def test_order_matters_where_a_bag_of_items_would_not():
    forward = {"u1": ["a", "b"], "u2": ["c", "d"], "u3": ["a", "b"], "u4": ["x", "c", "d"]}
    backward = {user: items[::-1] for user, items in forward.items()}
    data, reversed_data = logged(forward), logged(backward)
    assert (data.feedback != reversed_data.feedback).nnz == 0  # the same bags
    assert Markov().fit(data).recommend_history(["c"], 1)[0].tolist() == ["d"]
    assert Markov().fit(reversed_data).recommend_history(["c"], 1)[0].tolist() == ["x"]
    # and the query's order: the same items, the other one last
    model = Markov().fit(data)
    assert model.recommend_history(["a", "c"], 1)[0].tolist() == ["d"]
    assert model.recommend_history(["c", "a"], 1)[0].tolist() == ["b"]
    bag = Popularity().fit(data)
    assert (bag.recommend_history(["a", "c"], 3)[0].tolist()
            == bag.recommend_history(["c", "a"], 3)[0].tolist())


def test_the_session_is_the_most_recent_history():
    model = Markov().fit(logged(FOLLOWS))
    assert model.recommend_query(Query(user="u4", session=["a"]), 1)[0].tolist() == ["b"]
    # without a session, u4's own last item (d) decides
    ids, _ = model.recommend_query(Query(user="u4"), 1)
    assert ids.tolist() == model.recommend_history(["c", "d"], 1)[0].tolist() != ["b"]


def test_unseen_last_item_and_empty_history_back_off_to_popularity():
    data = logged(FOLLOWS, extra_items=["new"])
    model = Markov().fit(data)
    pop = popularity_share(data)
    new, e = data.items.index(["new", "e"])
    # "new" has no events at all: its row is popularity
    np.testing.assert_allclose(model.similarity(np.array([new])), pop[None, :], rtol=1e-6)
    empty = model.recommend_history([], data.n_items, exclude_seen=False)
    popular = Popularity().fit(data).recommend_history([], data.n_items, exclude_seen=False)
    assert empty[0].tolist() == popular[0].tolist()
    np.testing.assert_allclose(empty[1], np.sort(pop)[::-1], rtol=1e-6)
    after_new = model.recommend_history(["new"], data.n_items - 1)
    assert after_new[0].tolist() == popular[0][popular[0] != "new"].tolist()
    assert model.explain_history(["new"], ["c"]) == ["popular: 6 of 7 users chose it"]
    assert model.explain_history([], ["c"]) == ["popular: 6 of 7 users chose it"]
    assert model.score_indices(np.array([0]), np.array([e]))[0] > 0  # everything is ranked


def test_an_item_only_ever_chosen_last_backs_off_to_popularity():
    data = logged({"u": ["a", "z"], "v": ["b", "a"], "w": ["b"]})
    model = Markov().fit(data)
    (z,) = data.items.index(["z"])
    np.testing.assert_allclose(model.similarity(np.array([z]))[0], popularity_share(data),
                               rtol=1e-6)


def test_large_smoothing_tends_to_popularity_order():
    data = small_data()
    pop = data.item_counts()
    users = np.arange(data.n_users)
    sharp, _ = Markov(smoothing=0.1).fit(data).recommend_indices(users, 5)
    flat, _ = Markov(smoothing=1e9).fit(data).recommend_indices(users, 5)
    popular, _ = Popularity().fit(data).recommend_indices(users, 5)
    # every list is in popularity order, and the most popular unseen item comes first
    assert (np.diff(pop[flat], axis=1) <= 0).all()
    assert (pop[flat[:, 0]] == pop[popular[:, 0]]).all()
    assert (np.diff(pop[sharp], axis=1) > 0).any()  # small β: moves, not popularity
    model = Markov(smoothing=1e9).fit(data)
    np.testing.assert_allclose(model.similarity(np.arange(data.n_items)),
                               np.broadcast_to(popularity_share(data), (data.n_items,) * 2),
                               atol=1e-7)


def test_events_of_one_second_keep_the_log_order():
    model = Markov().fit(logged({"u": ["a", "b"], "v": ["c"], "w": ["c"]}, same_time=True))
    assert model.similar_items("a", 1)[0].tolist() == ["b"]  # not "c", the more popular
    swapped = Markov().fit(logged({"u": ["b", "a"], "v": ["c"], "w": ["c"]}, same_time=True))
    assert swapped.similar_items("b", 1)[0].tolist() == ["a"]
    assert swapped.similar_items("a", 1)[0].tolist() == ["c"]  # a is never left: popularity


def test_repeated_events_of_one_item_are_one_visit():
    """A view then a booking of the same listing is no move; the move out of it counts once."""
    events = pd.DataFrame({
        "user_id": ["u", "u", "u", "u", "v"],
        "item_id": ["a", "a", "b", "b", "c"],
        "event_type": ["view", "book", "view", "view", "view"],
        "timestamp": pd.to_datetime([1, 2, 3, 4, 1], unit="s")})
    pairs = (events.drop_duplicates(["user_id", "item_id"])
             .assign(rating=float("nan"), feedback=1.0))
    data = TrainingData.from_interactions(pairs, events=events)
    beta = 1.0
    model = Markov(smoothing=beta).fit(data)
    pop = popularity_share(data)
    a, b = data.items.index(["a", "b"])
    expected = beta * pop / (1 + beta)
    expected[b] += 1 / (1 + beta)  # one move a → b, none a → a, none b → b
    np.testing.assert_allclose(model.similarity(np.array([a]))[0], expected, rtol=1e-6)
    np.testing.assert_allclose(model.similarity(np.array([b]))[0], pop, rtol=1e-6)
    assert model.explain_history(["a"], ["b"]) == ["often chosen after a: next 1 of 1 times"]


def test_window_mixes_recent_visits_with_decaying_weights():
    data = logged(FOLLOWS)
    one = Markov(smoothing=2.0).fit(data)
    mixed = Markov(smoothing=2.0, window=3, decay=0.5).fit(data)
    a, c, d, e = data.items.index(["a", "c", "d", "e"])
    p = one.similarity(np.array([a, c, d]))
    # history e, a, a, c, d: repeats merge into visits e, a, c, d; the window keeps a, c, d
    expected = (p[2] + 0.5 * p[1] + 0.25 * p[0]) / 1.75
    got = mixed._score(mixed.history_queries(["e", "a", "a", "c", "d"]))[0]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert np.isclose(got.sum(), 1.0)
    assert mixed.explain_history(["a", "c", "d"], ["b"])[0].startswith("often chosen after a")
    assert e not in mixed.recommend_history(["e", "a", "c", "d"], 3)[0].tolist()


def test_save_load_gives_identical_scores(tmp_path):
    data = logged(FOLLOWS, extra_items=["new"])
    for params in ({}, {"window": 2, "smoothing": 0.5}):
        model = Markov(**params).fit(data)
        loaded = Recommender.load(model.save(tmp_path / str(len(params))), histories=data)
        assert isinstance(loaded, Markov) and loaded.config == model.config
        queries = data.queries(np.arange(data.n_users))
        np.testing.assert_array_equal(model._score(queries), loaded._score(queries))
        for history in (["a"], ["new"], [], ["c", "a", "d"]):
            q = model.history_queries(history)
            np.testing.assert_array_equal(model._score(q), loaded._score(q))


def test_invalid_parameters_are_refused():
    for bad in ({"smoothing": -1.0}, {"window": 0}, {"decay": 0.0}):
        with pytest.raises(DataError, match="invalid markov parameter"):
            Markov(**bad)
