"""Queries carry ordered histories; the training log keeps order and follows every split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recengine.data.query import NO_TIME, Queries, Sequences
from recengine.data.synthetic import generate
from recengine.data.training_data import TrainingData
from recengine.data.weighting import aggregate
from recengine.pipeline.prepare import prepare


def _events() -> pd.DataFrame:
    return pd.DataFrame({
        "user_id": ["u", "u", "u", "v", "u"],
        "item_id": ["c", "a", "b", "a", "a"],
        "event_type": ["view", "view", "booking", "view", "rating"],
        "value": [1.0, 1.0, 300.0, 1.0, 4.0],
        "weight": [1.0, 1.0, 4.0, 1.0, 4.0],
        "timestamp": pd.to_datetime(["2025-01-03", "2025-01-01", "2025-01-02",
                                     "2025-01-01", "2025-01-02"]),
    })


def test_events_are_ordered_by_time_and_ties_keep_the_log_order() -> None:
    events = _events()
    rows = np.array([0, 0, 0, 1, 0])
    items = np.array([2, 0, 1, 0, 0])
    seqs = Sequences.from_table(events, rows, items, 2)
    # u: a (Jan 1), then b and a at the same time (Jan 2, in log order), then c (Jan 3)
    assert seqs.row_items(0).tolist() == [0, 1, 0, 2]
    assert [seqs.event_types[k] for k in seqs.kinds[:4]] == ["view", "booking", "rating",
                                                             "view"]
    assert seqs.row_items(1).tolist() == [0]
    assert seqs.last_items().tolist() == [2, 0]
    np.testing.assert_allclose(seqs.bag(3).toarray(), [[5.0, 4.0, 1.0], [1.0, 0.0, 0.0]])


def test_take_and_append_keep_every_column_aligned() -> None:
    seqs = Sequences.from_table(_events(), np.array([0, 0, 0, 1, 0]),
                                np.array([2, 0, 1, 0, 0]), 2)
    swapped = seqs.take(np.array([1, 0]))
    assert swapped.row_items(0).tolist() == [0] and swapped.row_items(1).tolist() == [0, 1, 0, 2]
    live = Sequences.from_rows([[1], [2, 2]])
    both = seqs.append(live)
    assert both.row_items(0).tolist() == [0, 1, 0, 2, 1]
    assert both.row_items(1).tolist() == [0, 2, 2]
    assert both.timestamps[both.indptr[1] - 1] == NO_TIME  # the live event has no time
    assert both.weights[both.indptr[0]:both.indptr[1]].tolist() == [1.0, 4.0, 4.0, 1.0, 1.0]
    assert both.event_types[both.kinds[both.indptr[1] - 1]] == ""


def test_devices_follow_their_events_through_take_keep_append_and_saving() -> None:
    events = _events().assign(device=["tv", None, "mobile", "", "tv"])
    seqs = Sequences.from_table(events, np.array([0, 0, 0, 1, 0]), np.array([2, 0, 1, 0, 0]), 2)
    assert seqs.device_names == ("", "mobile", "tv")  # unknown first, whatever the names

    def devices(s: Sequences, row: int) -> list[str]:
        return [s.device_names[d] for d in s.devices[s.indptr[row]:s.indptr[row + 1]]]

    assert devices(seqs, 0) == ["", "mobile", "tv", "tv"] and devices(seqs, 1) == [""]
    assert devices(seqs.take(np.array([1, 0])), 1) == devices(seqs, 0)
    assert devices(seqs.keep(seqs.items != 1), 0) == ["", "tv", "tv"]
    other = Sequences.from_table(pd.DataFrame({"device": ["watch", "mobile"]}),
                                 np.array([0, 1]), np.array([1, 1]), 2)
    both = seqs.append(other)
    assert devices(both, 0) == ["", "mobile", "tv", "tv", "watch"]
    assert devices(both, 1) == ["", "mobile"]
    saved = Sequences.from_arrays(both.to_arrays("log_"), "log_")
    assert devices(saved, 0) == devices(both, 0) and saved.device_names == both.device_names
    old = {k: v for k, v in both.to_arrays("log_").items() if "device" not in k}
    assert devices(Sequences.from_arrays(old, "log_"), 0) == [""] * 5  # saved before devices
    assert Sequences.from_rows([[1, 2]]).devices.tolist() == [0, 0]


def test_queries_slice_every_field_together() -> None:
    seqs = Sequences.from_rows([[3, 1], [2], []])
    queries = Queries(np.array([0, 1, -1], np.int32), seqs.bag(4), seqs,
                      session=Sequences.from_rows([[], [0], []]),
                      user_features=pd.DataFrame({"age": [20, 30, 40]}),
                      context=({"page": "a"}, {"page": "b"}, {"page": "c"}))
    part = queries[np.array([2, 1])]
    assert part.users.tolist() == [-1, 1] and part.bag.shape == (2, 4)
    assert part.user_features["age"].tolist() == [40, 30]
    assert [c["page"] for c in part.context] == ["c", "b"]
    assert queries.recent_items().tolist() == [1, 0, -1]  # the session's last item wins


def test_training_log_defaults_to_one_event_per_pair() -> None:
    pairs = pd.DataFrame({"user_id": ["u", "u", "v"], "item_id": ["b", "a", "a"],
                          "rating": np.nan, "feedback": [2.0, 1.0, 1.0],
                          "timestamp": pd.to_datetime(["2025-01-02", "2025-01-01",
                                                       "2025-01-05"])})
    data = TrainingData.from_interactions(pairs)
    u = data.users.get("u")
    assert data.items.id_of(data.log.row_items(u)).tolist() == ["a", "b"]  # by time
    np.testing.assert_allclose(data.log.bag(data.n_items).toarray(), data.feedback.toarray())


@pytest.mark.parametrize("split", ["stratified", "last", "time"])
def test_the_training_log_holds_exactly_the_training_pairs_events(split: str) -> None:
    dataset = generate(n_users=120, n_items=60, seed=2)
    prepared = prepare(dataset, split, test_fraction=0.2, seed=1)
    data = prepared.data
    log = data.log
    rows = np.repeat(np.arange(data.n_users), np.diff(log.indptr))
    logged = set(zip(rows.tolist(), log.items.tolist(), strict=True))
    coo = data.feedback.tocoo()
    assert logged == set(zip(coo.row.tolist(), coo.col.tolist(), strict=True))
    np.testing.assert_allclose(log.bag(data.n_items).toarray(), data.feedback.toarray(),
                               rtol=1e-5)
    pairs = aggregate(dataset.events, dataset.schema)
    test_keys = set(zip(prepared.split.test["user_id"], prepared.split.test["item_id"],
                        strict=True))
    events_of_train = len(pairs) and sum(
        n for u, i, n in zip(pairs["user_id"], pairs["item_id"], pairs["n_events"], strict=True)
        if (u, i) not in test_keys and u in data.users)
    assert log.n_events == events_of_train
    times = log.timestamps
    for r in range(data.n_users):  # oldest first within each user
        assert (np.diff(times[log.indptr[r]:log.indptr[r + 1]]) >= 0).all()


def test_a_request_time_is_in_the_seconds_of_event_timestamps() -> None:
    from datetime import UTC, datetime, timedelta, timezone

    from recengine.data.query import Query, seconds_of
    from recengine.models.popularity import Popularity

    events = _events()
    data = TrainingData.from_interactions(aggregate(events), events=events)
    model = Popularity().fit(data)
    asked = model.queries_from(Query(user="u", time=datetime(2025, 1, 5)))
    last = asked.sequences.timestamps[-1]  # c, viewed on Jan 3
    assert asked.times.dtype == np.int64
    assert int(asked.times[0] - last) == 2 * 86400
    assert asked.bag.nnz == 3 and asked.context == ({},)
    cet = timezone(timedelta(hours=1))
    assert seconds_of(datetime(2025, 1, 5, 1, tzinfo=cet)) == seconds_of(datetime(2025, 1, 5))
    assert seconds_of(datetime(2025, 1, 5, tzinfo=UTC)) == seconds_of(datetime(2025, 1, 5))
