"""The event store keeps what it acknowledged, exactly once, in order, on SQLite and PostgreSQL.

Behavioural tests take the ``store`` fixture and so run on both databases. Crashes are real: a
child process is killed with SIGKILL, after an append returned or in the middle of one.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from recengine.data.dataset import Dataset
from recengine.data.schema import EVENT_COLUMNS, EventSchema, FeatureKind
from recengine.data.validation import (
    ColumnMapping,
    RawTable,
    validate_event_records,
    validate_events,
)
from recengine.errors import DataError
from recengine.store import AppendResult, EventStore, StoreError
from recengine.store import events as events_module

from .conftest import PostgresServer, _free_port


def make_events(n: int, *, start: int = 0, event_ids: bool = True) -> pd.DataFrame:
    """``n`` canonical events numbered from ``start``, some without value or time."""
    numbers = range(start, start + n)
    stamps = [pd.NaT if k % 4 == 3 else pd.Timestamp("2024-01-01") + pd.Timedelta(seconds=k)
              for k in numbers]
    frame = pd.DataFrame({
        "user_id": pd.Series([f"u{k % 3}" for k in numbers], dtype=object),
        "item_id": pd.Series([f"i{k}" for k in numbers], dtype=object),
        "event_type": pd.Series(["rating" if k % 2 else "view" for k in numbers], dtype=object),
        "value": pd.Series([float(1 + k % 5) if k % 5 != 4 else np.nan for k in numbers],
                           dtype="float64"),
        "timestamp": pd.Series(stamps, dtype="datetime64[s]"),
    })
    if event_ids:
        frame["event_id"] = [f"e{k}" for k in numbers]
    return frame


def canonical(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[list(EVENT_COLUMNS)].reset_index(drop=True)


# --- append and read back --------------------------------------------------------------------


def test_append_reads_back_exactly(store: EventStore) -> None:
    batch = pd.DataFrame({
        "user_id": pd.Series(["u1", "ü-ß ✓", "u1"], dtype=object),
        "item_id": pd.Series(["i1", "i2", "i'3\""], dtype=object),
        "event_type": pd.Series(["rating", "view", "play"], dtype=object),
        "value": pd.Series([4.5, np.nan, 0.1], dtype="float64"),
        "timestamp": pd.Series(["2024-03-01 12:34:56", None, "1969-12-31 23:59:59"],
                               dtype="datetime64[s]"),
    })
    assert store.append(batch) == AppendResult(accepted=3, duplicates=0)
    stored = store.events()
    assert list(stored.columns) == ["id", *EVENT_COLUMNS, "device"]
    assert stored["id"].dtype == np.int64 and stored["id"].is_monotonic_increasing
    assert stored["id"].is_unique
    pd.testing.assert_frame_equal(stored.drop(columns="id"), batch.assign(device=None))
    assert store.count() == 3 and store.last_id() == int(stored["id"].iloc[-1])


def test_empty_store_reads_as_empty_canonical_events(store: EventStore) -> None:
    stored = store.events()
    assert len(stored) == 0 and list(stored.columns) == ["id", *EVENT_COLUMNS, "device"]
    assert stored["timestamp"].dtype == "datetime64[s]" and stored["value"].dtype == "float64"
    assert store.count() == 0 and store.last_id() == 0
    assert store.append(make_events(0)) == AppendResult(0, 0)


def test_append_without_canonical_columns_is_a_data_error(store: EventStore) -> None:
    with pytest.raises(DataError, match="lack the columns event_type, value, timestamp"):
        store.append(pd.DataFrame({"user_id": ["u1"], "item_id": ["i1"]}))


# --- idempotency ------------------------------------------------------------------------------


def test_repeated_batch_is_all_duplicates(store: EventStore) -> None:
    batch = make_events(6)
    first = store.append(batch)
    assert first == AppendResult(6, 0) and first.duplicate_ids == frozenset()
    again = store.append(batch)
    assert again == AppendResult(0, 6) and again.duplicate_ids == set(batch["event_id"])
    assert store.count() == 6
    overlapping = make_events(4, start=4)  # e4 and e5 are known, e6 and e7 new
    result = store.append(overlapping)
    assert result == AppendResult(2, 2)
    assert result.duplicate_ids == set(batch["event_id"][4:])
    assert store.events()["item_id"].tolist() == [f"i{k}" for k in range(8)]


def test_duplicates_inside_one_batch_are_skipped(store: EventStore) -> None:
    batch = make_events(5)
    batch["event_id"] = ["a", "a", "b", None, ""]  # rows without an id are never duplicates
    assert store.append(batch) == AppendResult(accepted=4, duplicates=1)
    assert store.events()["item_id"].tolist() == ["i0", "i2", "i3", "i4"]


def test_events_identified_by_content_are_stored_once(store: EventStore) -> None:
    batch = make_events(1500, event_ids=False)  # PostgreSQL: COPY
    assert store.append(batch, identify_by_content=True) == AppendResult(1500, 0)
    corrected = batch.assign(value=5.0)  # the same events: the value is no part of the identity
    assert store.append(corrected, identify_by_content=True) == AppendResult(0, 1500)
    overlapping = make_events(4, start=1498, event_ids=False)  # i1498, i1499 known
    assert store.append(pd.concat([overlapping, overlapping.iloc[3:]]),  # i1501 twice
                        identify_by_content=True) == AppendResult(2, 3)
    with_ids = make_events(2, start=1498)  # an event id is the identity of its row
    assert store.append(with_ids, identify_by_content=True) == AppendResult(2, 0)
    assert store.append(batch.iloc[:5]) == AppendResult(5, 0)  # by default, every row is new
    stored = store.events()
    assert len(stored) == 1500 + 2 + 2 + 5
    pd.testing.assert_frame_equal(canonical(stored.iloc[:1500]), canonical(batch))


def test_a_store_from_before_content_identity_opens_and_gains_it(store_url: str) -> None:
    with EventStore(store_url) as new:
        new.append(make_events(3))
    engine = sa.create_engine(store_url)
    with engine.begin() as conn:  # back to the tables the code before content identity made
        conn.execute(sa.text("DROP INDEX ux_events_content_key"))
        conn.execute(sa.text("ALTER TABLE events DROP COLUMN content_key"))
    engine.dispose()
    with EventStore(store_url) as old:
        assert old.count() == 3
        batch = make_events(2, start=3, event_ids=False)
        assert old.append(batch, identify_by_content=True) == AppendResult(2, 0)
        assert old.append(batch, identify_by_content=True) == AppendResult(0, 2)
        assert old.append(make_events(1)) == AppendResult(0, 1)  # event ids as before
    with EventStore(store_url) as reopened:  # migrated once
        assert reopened.count() == 5


def test_devices_are_stored_and_read_back_by_every_reader(store: EventStore) -> None:
    batch = make_events(1500).assign(device=["tv", None, ""] * 500)  # PostgreSQL: COPY
    assert store.append(batch.iloc[:3]) == AppendResult(3, 0)  # and INSERT
    assert store.append(batch.iloc[3:]) == AppendResult(1497, 0)
    stored = store.events()
    assert stored["device"].tolist() == ["tv", None, None] * 500
    assert [e.device for e in store.event_rows(limit=3)] == ["tv", None, None]
    rows, _ = store.user_events("u0", limit=1000)
    of_u0 = stored[stored["user_id"] == "u0"]
    assert {r.id: r.device for r in rows} == dict(zip(of_u0["id"], of_u0["device"], strict=True))
    result, report = store.ingest([{"user_id": "u", "item_id": "i", "event_type": "view",
                                    "device": " mobile "}])
    assert result.accepted == 1 and report.ok
    assert store.event_rows(since_id=1500)[0].device == "mobile"


def test_a_device_changes_the_snapshot_and_no_device_keeps_the_old_digest(
        store: EventStore) -> None:
    batch = make_events(3)
    store.append(batch)
    lines = [json.dumps([r.user_id, r.item_id, r.event_type, r.value, r.timestamp.isoformat()],
                        ensure_ascii=False) for r in batch.itertuples()]
    expected = hashlib.sha256("".join(f"{line}\n" for line in lines).encode()).hexdigest()
    assert store.snapshot()["sha256"] == expected  # the digest of a store before devices
    store.append(make_events(1, start=3).assign(device="tv"))
    with_tv = store.snapshot()["sha256"]
    store.append(make_events(1, start=4))
    assert store.snapshot(until_id=4)["sha256"] == with_tv != expected


def test_a_store_from_before_devices_opens_and_gains_the_column(store_url: str) -> None:
    with EventStore(store_url) as new:
        new.append(make_events(3))
    engine = sa.create_engine(store_url)
    with engine.begin() as conn:  # back to the table the code before devices made
        conn.execute(sa.text("ALTER TABLE events DROP COLUMN device"))
    engine.dispose()
    with EventStore(store_url) as old:
        assert old.events()["device"].tolist() == [None] * 3
        assert old.append(make_events(1, start=3).assign(device="tv")) == AppendResult(1, 0)
    with EventStore(store_url) as reopened:
        assert reopened.events()["device"].tolist() == [None, None, None, "tv"]


def test_large_and_small_chunks_of_one_batch_keep_order_and_count_duplicates(
        store: EventStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events_module, "_CHUNK_ROWS", 1000)  # PostgreSQL: COPY, COPY, INSERT
    batch = make_events(2500)
    assert store.append(batch) == AppendResult(2500, 0)
    assert store.append(make_events(2000, start=1500)) == AppendResult(1000, 1000)
    stored = store.events()
    assert stored["item_id"].tolist() == [f"i{k}" for k in range(3500)]
    pd.testing.assert_frame_equal(canonical(stored.iloc[:2500]), canonical(batch))


# --- atomicity and durability ------------------------------------------------------------------


def test_a_batch_failing_midway_stores_nothing(store: EventStore,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    store.append(make_events(3, start=100))
    batch = make_events(5)
    batch.loc[4, "user_id"] = None  # slipped past validation: violates NOT NULL in the last chunk
    chunks: list[int] = []
    insert_chunk = EventStore._insert_chunk

    def counting(self: EventStore, conn: object, rows: list[dict[str, object]]) -> int:
        chunks.append(len(rows))
        return insert_chunk(self, conn, rows)  # type: ignore[arg-type]

    monkeypatch.setattr(events_module, "_CHUNK_ROWS", 2)
    monkeypatch.setattr(EventStore, "_insert_chunk", counting)
    with pytest.raises(StoreError, match="cannot append events"):
        store.append(batch)
    assert chunks == [2, 2, 1]  # two chunks went in before the failure...
    assert store.count() == 3  # ...and were rolled back
    assert store.append(batch.iloc[:4]) == AppendResult(4, 0)  # their event ids were not used


CHILD = textwrap.dedent("""
    import os, signal, sys, time
    import pandas as pd
    from recengine.store import EventStore
    from recengine.store import events as module

    def batch(start, n):
        return pd.DataFrame({
            "user_id": [f"u{k}" for k in range(start, start + n)],
            "item_id": "i", "event_type": "view", "value": 1.0,
            "timestamp": pd.Series([pd.NaT] * n, dtype="datetime64[s]"),
            "event_id": [f"e{k}" for k in range(start, start + n)]})

    store = EventStore(sys.argv[1])
    print(store.append(batch(0, 5)).accepted, flush=True)
    if sys.argv[2] == "wait":
        time.sleep(60)  # the parent kills us now
    module._CHUNK_ROWS = 10
    insert = module.EventStore._insert_chunk
    calls = []

    def crash_after_two(self, conn, rows):
        calls.append(insert(self, conn, rows))
        if len(calls) == 2:
            print("crashing", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        return calls[-1]

    module.EventStore._insert_chunk = crash_after_two
    store.append(batch(5, 50))
""")


def _child(url: str, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", CHILD, url, mode], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_events_survive_a_kill_right_after_append_returns(store_url: str) -> None:
    child = _child(store_url, "wait")
    assert child.stdout is not None
    watchdog = threading.Timer(60, child.kill)  # should the child hang before printing
    watchdog.start()
    line = child.stdout.readline()
    child.send_signal(signal.SIGKILL)
    watchdog.cancel()
    child.wait(timeout=30)
    assert line.strip() == "5", child.stderr.read() if child.stderr else ""
    assert child.returncode == -signal.SIGKILL
    with EventStore(store_url) as reopened:
        assert reopened.events()["user_id"].tolist() == [f"u{k}" for k in range(5)]


def test_a_crash_mid_batch_leaves_the_store_as_before(store_url: str) -> None:
    child = _child(store_url, "crash")
    out, err = child.communicate(timeout=60)
    assert out.split() == ["5", "crashing"], err
    assert child.returncode == -signal.SIGKILL
    with EventStore(store_url) as reopened:
        assert reopened.count() == 5  # 20 of the 50 rows had been inserted, none committed
        assert reopened.append(pd.DataFrame({  # the crashed batch's ids are free
            "user_id": ["u5"], "item_id": ["i"], "event_type": ["view"], "value": [1.0],
            "timestamp": pd.Series([pd.NaT], dtype="datetime64[s]"), "event_id": ["e5"],
        })) == AppendResult(1, 0)


def test_a_fresh_store_on_the_same_sqlite_file_sees_everything(sqlite_url: str) -> None:
    with EventStore(sqlite_url) as first:
        first.append(make_events(4))
        first.upsert_items(pd.DataFrame({"genre": ["a"]}, index=["i0"]))
        before = first.snapshot()
    with EventStore(sqlite_url) as second:
        assert second.snapshot() == before
        assert second.items().loc["i0", "genre"] == "a"
        second.append(make_events(2, start=4))
        assert second.events()["id"].min() == before["first_id"]
        assert second.events()["id"].iloc[-2] > before["last_id"]


def test_sqlite_is_configured_for_durability(sqlite_url: str) -> None:
    with EventStore(sqlite_url) as store, store._engine.connect() as conn:
        pragma = {name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                  for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")}
    assert pragma == {"journal_mode": "wal", "synchronous": 2, "foreign_keys": 1,
                      "busy_timeout": 30_000}


def test_sqlite_appends_write_times_as_sqlalchemy_does(sqlite_url: str) -> None:
    """Appends bypass SQLAlchemy on SQLite (the write lock is held half as long); their times
    must be the very text it writes, or SQL would compare and sort them wrongly."""
    with EventStore(sqlite_url) as store:
        store.append(make_events(1))
        with store._engine.connect() as conn:
            query = "SELECT timestamp, ingested_at FROM events"
            stamp, ingested = conn.exec_driver_sql(query).one()
    dialect = sa.dialects.sqlite.dialect()
    write = sa.DateTime().dialect_impl(dialect).bind_processor(dialect)
    assert write is not None and stamp == write(pd.Timestamp("2024-01-01").to_pydatetime())
    parsed = pd.Timestamp(ingested).to_pydatetime()
    assert ingested == write(parsed)


def test_concurrent_writers_each_get_every_event_stored(store_url: str) -> None:
    failures: list[BaseException] = []

    def writer(offset: int) -> None:
        try:
            with EventStore(store_url) as own:  # separate engines: separate connections
                for k in range(8):
                    own.append(make_events(5, start=offset + 5 * k))
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(offset,)) for offset in (0, 1000)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures
    with EventStore(store_url) as store:
        stored = store.events()
    assert len(stored) == 80 and stored["id"].is_unique and stored["item_id"].is_unique


# --- reading by id, snapshots ------------------------------------------------------------------


def test_events_since_and_until_an_id(store: EventStore) -> None:
    first, second, third = make_events(3), make_events(2, start=3), make_events(4, start=5)
    store.append(first)
    mark1 = store.last_id()
    store.append(second)
    mark2 = store.last_id()
    store.append(third)
    both = pd.concat([second, third])
    pd.testing.assert_frame_equal(canonical(store.events(since_id=mark1).drop(columns="id")),
                                  canonical(both))
    pd.testing.assert_frame_equal(canonical(store.events(mark1, mark2).drop(columns="id")),
                                  canonical(second))
    pd.testing.assert_frame_equal(canonical(store.events(until_id=mark1).drop(columns="id")),
                                  canonical(first))
    assert store.count(since_id=mark1) == 6 and store.count(since_id=mark2) == 4
    assert store.events(since_id=store.last_id()).empty


def test_ids_are_never_reused_after_a_delete(store: EventStore) -> None:
    store.append(make_events(3))  # the last event is u2's
    last = store.last_id()
    assert store.delete_user("u2") == 1
    store.append(make_events(1, start=10))
    assert store.last_id() > last  # a trainer that saw up to `last` will see the new event


def _expected_sha(frame: pd.DataFrame) -> str:
    digest = hashlib.sha256()
    for row in canonical(frame).itertuples(index=False):
        value = None if np.isnan(row.value) else row.value
        stamp = None if pd.isna(row.timestamp) else row.timestamp.isoformat()
        line = [row.user_id, row.item_id, row.event_type, value, stamp]
        digest.update(json.dumps(line, ensure_ascii=False).encode() + b"\n")
    return digest.hexdigest()


def test_snapshot_describes_exactly_the_stored_events(store: EventStore) -> None:
    assert store.snapshot() == {"first_id": None, "last_id": 0, "count": 0,
                                "min_timestamp": None, "max_timestamp": None,
                                "sha256": hashlib.sha256(b"").hexdigest()}
    batch = make_events(7)
    store.append(batch)
    snap = store.snapshot()
    ids = store.events()["id"]
    assert snap == {"first_id": int(ids.iloc[0]), "last_id": int(ids.iloc[-1]), "count": 7,
                    "min_timestamp": "2024-01-01T00:00:00",
                    "max_timestamp": "2024-01-01T00:00:06", "sha256": _expected_sha(batch)}


def test_snapshot_is_stable_until_the_data_changes(store: EventStore) -> None:
    store.append(make_events(5))
    snap = store.snapshot()
    assert store.snapshot() == snap
    store.append(make_events(5))  # all duplicates: nothing changes
    assert store.snapshot() == snap
    store.append(make_events(1, start=5))
    grown = store.snapshot()
    assert grown["sha256"] != snap["sha256"] and grown["last_id"] > snap["last_id"]
    assert store.snapshot(until_id=snap["last_id"]) == snap  # what the earlier run saw
    store.delete_user("u1")
    assert store.snapshot()["sha256"] not in (snap["sha256"], grown["sha256"])


def test_snapshot_sees_a_changed_value(sqlite_url: str) -> None:
    other_url = sqlite_url.replace("events.db", "other.db")
    batch = make_events(4, event_ids=False)
    changed = batch.assign(value=batch["value"].where(batch.index != 2, 3.0000001))
    with EventStore(sqlite_url) as one, EventStore(other_url) as two:
        one.append(batch)
        two.append(changed)
        assert one.snapshot()["sha256"] != two.snapshot()["sha256"]


def test_snapshot_hash_is_the_same_on_both_databases(sqlite_url: str, postgres_url: str) -> None:
    batch = make_events(9)
    with EventStore(sqlite_url) as lite, EventStore(postgres_url) as pg:
        lite.append(batch)
        pg.append(batch)
        assert lite.snapshot()["sha256"] == pg.snapshot()["sha256"] == _expected_sha(batch)


# --- items and users ---------------------------------------------------------------------------


def _catalogue() -> pd.DataFrame:
    return pd.DataFrame({
        "genres": [["drama", "war"], [], ["comedy"]],
        "year": [1999, np.nan, 2005.5],
        "title": ["Ünïcode", None, "T3"],
        "released": pd.to_datetime(["2020-01-02 00:00:00", None, "2021-05-06 07:08:09"]),
    }, index=pd.Index(["i1", "i2", "i3"], name="item_id"))


def test_upserted_items_read_back_with_lists_intact(store: EventStore) -> None:
    assert store.upsert_items(_catalogue()) == 3
    items = store.items()
    assert items.index.tolist() == ["i1", "i2", "i3"] and items.index.name == "item_id"
    assert items.loc["i1", "genres"] == ["drama", "war"] and items.loc["i2", "genres"] == []
    assert items.loc["i1", "year"] == 1999 and items.loc["i2", "year"] is None
    assert items.loc["i1", "title"] == "Ünïcode" and items.loc["i2", "title"] is None
    assert items.loc["i3", "released"] == "2021-05-06T07:08:09"
    assert items.loc["i2", "released"] is None


def test_an_upsert_replaces_the_features_of_known_ids(store: EventStore) -> None:
    store.upsert_items(_catalogue())
    update = pd.DataFrame({"genres": [("horror",), ["new"]]}, index=["i1", "i4"])
    assert store.upsert_items(update) == 2
    items = store.items()
    assert items.index.tolist() == ["i1", "i2", "i3", "i4"]
    assert items.loc["i1", "genres"] == ["horror"] and items.loc["i4", "genres"] == ["new"]
    assert items.loc["i1", "year"] is None  # replaced as a whole, not merged
    assert items.loc["i3", "year"] == 2005.5  # untouched


def test_upserts_reject_what_they_cannot_store(store: EventStore) -> None:
    with pytest.raises(DataError, match="user id 'u1' appears twice"):
        store.upsert_users(pd.DataFrame({"age": [1, 2]}, index=["u1", "u1"]))
    with pytest.raises(DataError, match="column 'blob': user 'u1': a object cannot be stored"):
        store.upsert_users(pd.DataFrame({"blob": [object()]}, index=["u1"]))
    assert store.users().empty


def test_deleting_a_user_deletes_their_events(store: EventStore) -> None:
    store.append(make_events(9))  # users u0, u1, u2: three events each
    store.upsert_users(pd.DataFrame({"age": [30, 40]}, index=["u1", "u2"]))
    assert store.delete_user("u1") == 3
    assert sorted(set(store.events()["user_id"])) == ["u0", "u2"] and store.count() == 6
    assert store.users().index.tolist() == ["u2"]
    assert store.delete_user("u1") == 0


def test_deleting_an_item_keeps_its_events(store: EventStore) -> None:
    store.append(make_events(3))
    store.upsert_items(_catalogue())
    assert store.delete_item("i1") is True and store.delete_item("i1") is False
    assert store.items().index.tolist() == ["i2", "i3"] and store.count() == 3


def test_deleted_items_are_recorded_until_written_again(store_url: str) -> None:
    with EventStore(store_url) as store:
        store.upsert_items(_catalogue())
        assert store.delete_item("i1") is True and store.delete_item("i1") is False
        assert store.delete_item("i9") is True  # never seen: deleted ahead of its events
        assert store.deleted_items() == {"i1", "i9"}
        assert store.items().index.tolist() == ["i2", "i3"]
    with EventStore(store_url) as reopened:  # durable, as everything the store acknowledged
        assert reopened.deleted_items() == {"i1", "i9"}
        reopened.upsert_items(_catalogue().loc[["i1"]])  # written again: revived
        assert reopened.deleted_items() == {"i9"}
        assert reopened.items().index.tolist() == ["i1", "i2", "i3"]
        assert reopened.delete_item("i1") is True


def test_dataset_leaves_out_the_events_of_deleted_items(store: EventStore) -> None:
    store.append(make_events(6))  # items i0..i5
    store.delete_item("i2")
    assert store.count() == 6  # the events stay...
    assert "i2" not in set(store.dataset().events["item_id"])  # ...but are not trained on
    assert len(store.dataset().events) == 5
    store.upsert_items(pd.DataFrame({"year": [2000]}, index=["i2"]))
    assert len(store.dataset().events) == 6  # revived with its whole history


def _drop_deleted_items_table(store: EventStore) -> None:
    """Make the last statement of a delete or an upsert fail: the record of deleted items."""
    store.deleted_items()  # the tables exist, and the store will not create them again
    with store._engine.connect() as conn, conn.begin():
        conn.execute(sa.text("DROP TABLE deleted_items"))


def test_a_delete_or_upsert_failing_midway_changes_nothing(store: EventStore) -> None:
    store.upsert_items(_catalogue(), kinds={"year": "numeric"})
    _drop_deleted_items_table(store)
    with pytest.raises(StoreError, match="cannot delete an item"):
        store.delete_item("i1")  # the row went first, then recording the id failed
    assert store.items().index.tolist() == ["i1", "i2", "i3"]
    replacement = pd.DataFrame({"year": [1], "released": ["2030-01-01"]}, index=["i1"])
    with pytest.raises(StoreError, match="cannot write items"):
        store.upsert_items(replacement, kinds={"released": "date"})
    assert store.items().loc["i1", "year"] == 1999
    assert store.feature_kinds() == {"year": FeatureKind.NUMERIC}


def test_feature_kinds_are_kept_and_type_the_catalogue(store: EventStore) -> None:
    kinds = {"genres": "multi", "year": "numeric", "released": FeatureKind.DATE}
    store.upsert_items(_catalogue(), kinds=kinds)
    store.upsert_items(pd.DataFrame({"title": ["Later"]}, index=["i4"]))  # kinds stay
    store.upsert_users(pd.DataFrame({"age": [30]}, index=["u1"]), kinds={"age": "numeric"})
    assert store.feature_kinds("item") == {name: FeatureKind(k) for name, k in kinds.items()}
    assert store.feature_kinds("user") == {"age": FeatureKind.NUMERIC}
    items, typed = store.typed_items()
    assert typed == store.feature_kinds("item")  # title has no recorded kind
    assert items["released"].dtype == "datetime64[s]" and items["year"].dtype == "float64"
    assert items.loc["i3", "released"] == pd.Timestamp("2021-05-06 07:08:09")
    assert items.loc["i2", "genres"] == [] and items.loc["i4", "title"] == "Later"
    store.upsert_items(pd.DataFrame({"title": ["T"]}, index=["i5"]), kinds={"year": "text"})
    assert store.feature_kinds()["year"] is FeatureKind.TEXT  # given again: replaced
    assert store.typed_items()[0].loc["i3", "year"] == "2005.5"


def test_values_must_fit_the_kinds_recorded(store: EventStore) -> None:
    store.upsert_items(_catalogue(), kinds={"released": "date"})
    with pytest.raises(DataError, match="column 'released': item 'i4': 'soon' is not a date"):
        store.upsert_items(pd.DataFrame({"released": ["soon"]}, index=["i4"]))
    with pytest.raises(DataError, match="column 'title': item 'i1': 'Ünïcode' is not a number"):
        store.upsert_items(pd.DataFrame({"title": ["7"]}, index=["i4"]),
                           kinds={"title": "numeric"})  # a new kind: stored values checked
    store.upsert_items(pd.DataFrame({"title": ["7"]}, index=["i1"]),
                       kinds={"year": "numeric"})  # i1's old title is replaced, not checked
    with pytest.raises(DataError, match="column 'year': 'when' is not a kind of item feature"):
        store.upsert_items(_catalogue(), kinds={"year": "when"})
    assert "i4" not in store.items().index
    assert store.feature_kinds() == {"released": FeatureKind.DATE, "year": FeatureKind.NUMERIC}


# --- ingest ------------------------------------------------------------------------------------


RECORDS = [
    {"user_id": "u1", "item_id": "i1", "event_type": "rating", "value": 4,
     "timestamp": 1_700_000_000, "event_id": 101},
    {"user_id": "u1", "item_id": "i2", "event_type": "rating", "value": 9, "event_id": 102},
    {"user_id": "", "item_id": "i3", "event_type": "view", "event_id": 103},
    {"user_id": "u2", "item_id": "i3", "event_type": "teleport", "event_id": 104},
    "not a record",
    {"user_id": "u2", "item_id": "i4", "event_type": "view",
     "timestamp": "2024-01-02T03:04:05Z", "event_id": 106},
    {"user_id": "u2", "item_id": "i5", "event_type": "view", "event_id": 106},
]


def test_ingest_reports_bad_records_and_stores_the_good(store: EventStore) -> None:
    result, report = store.ingest(RECORDS)
    assert result == AppendResult(accepted=2, duplicates=0)
    assert (report.file, report.rows_read, report.rows_accepted) == ("request", 7, 2)
    assert [(i.row, i.column, i.problem) for i in report.issues] == [
        (2, "value", "value out of range"), (3, "user_id", "missing id"),
        (4, "event_type", "unknown event type"), (5, None, "malformed record"),
        (7, "event_id", "duplicate")]
    assert str(report.issues[0]) == "request, row 2, column 'value': rating value 9 is outside 1..5"
    stored = store.events()
    assert stored[["user_id", "item_id", "event_type"]].values.tolist() == [
        ["u1", "i1", "rating"], ["u2", "i4", "view"]]
    assert stored["value"].tolist() == [4.0, 1.0]  # a view without a value counts once
    assert stored["timestamp"].tolist() == [pd.Timestamp("2023-11-14 22:13:20"),
                                            pd.Timestamp("2024-01-02 03:04:05")]


def test_ingest_is_idempotent_by_event_id(store: EventStore) -> None:
    store.ingest(RECORDS)
    again, _ = store.ingest(RECORDS)
    assert again == AppendResult(accepted=0, duplicates=2)
    as_text = [{**RECORDS[0], "event_id": "101"}]  # the number 101 was stored as "101"
    assert store.ingest(as_text)[0] == AppendResult(accepted=0, duplicates=1)
    assert store.count() == 2


def test_ingest_takes_a_data_frame(store: EventStore) -> None:
    frame = pd.DataFrame({"user_id": ["u1", "u2"], "item_id": ["i1", "i1"],
                          "event_type": ["view", "play"], "value": [np.nan, 3.0],
                          "event_id": [1, 2]})
    result, report = store.ingest(frame)
    assert result == AppendResult(2, 0) and report.ok
    assert store.ingest(frame.iloc[1:])[0] == AppendResult(0, 1)


def test_strict_ingest_raises_and_stores_nothing(store: EventStore) -> None:
    with pytest.raises(DataError, match="request, row 2, column 'value'"):
        store.ingest(RECORDS, strict=True)
    assert store.count() == 0


def test_ingest_rejects_text_no_database_stores(store: EventStore,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A NUL or a lone surrogate is its record's issue, validated record by record or with
    pandas alike, and the other records are stored."""
    records = [{"user_id": "u\x00", "item_id": "i1"}, {"user_id": "u1", "item_id": "\ud800"},
               {"user_id": "u1", "item_id": "i1", "event_type": "click", "event_id": "\x00"},
               {"user_id": "u1", "item_id": "i1", "event_type": "click"}]
    for record_by_record in (1000, 0):
        monkeypatch.setattr(events_module, "_RECORD_BY_RECORD", record_by_record)
        result, report = store.ingest(records)
        assert result == AppendResult(accepted=1, duplicates=0)
        assert [(i.row, i.column, i.problem) for i in report.issues] == [
            (1, "user_id", "unstorable text"), (2, "item_id", "unstorable text"),
            (3, "event_id", "unstorable text")]
        assert str(report.issues[1]) == ("request, row 2, column 'item_id': contains '\\ud800', "
                                         "which no database stores as text (NUL or a lone UTF-16 "
                                         "surrogate)")
    assert store.count() == 2


def test_ingest_follows_the_schema_given(store: EventStore) -> None:
    schema = EventSchema().with_rating_range(0, 10)
    result, report = store.ingest(RECORDS[:2], schema)
    assert result.accepted == 2 and report.ok


# --- dataset -----------------------------------------------------------------------------------


def test_dataset_holds_everything_typed_by_kind(store: EventStore) -> None:
    batch = make_events(6)
    store.append(batch)
    store.upsert_items(_catalogue())
    kinds = {"genres": FeatureKind.MULTI, "year": FeatureKind.NUMERIC,
             "title": FeatureKind.CATEGORICAL, "released": FeatureKind.DATE}
    schema = EventSchema().with_rating_range(0, 5)
    fifth = int(store.events()["id"].iloc[4])
    data = store.dataset("live", schema, item_features=kinds, until_id=fifth)
    assert isinstance(data, Dataset) and data.name == "live" and data.schema == schema
    pd.testing.assert_frame_equal(data.events, canonical(batch.iloc[:5]))
    items = data.items
    assert items.index.name == "item_id" and list(items.columns) == list(kinds)
    assert items["year"].dtype == "float64" and np.isnan(items.loc["i2", "year"])
    assert items["released"].dtype == "datetime64[s]"
    assert items.loc["i3", "released"] == pd.Timestamp("2021-05-06 07:08:09")
    assert items.loc["i1", "genres"] == ["drama", "war"] and items.loc["i2", "genres"] == []
    assert data.item_features == kinds
    assert data.users.index.tolist() == ["u0", "u1", "u2"]  # no users stored: those seen
    assert data.users.index.name == "user_id"


def test_dataset_names_a_missing_feature(store: EventStore) -> None:
    store.upsert_items(_catalogue())
    with pytest.raises(DataError, match="no stored item has the feature 'colour'"):
        store.dataset(item_features={"colour": FeatureKind.CATEGORICAL})


# --- errors ------------------------------------------------------------------------------------


def _no_traceback_of_the_driver(error: StoreError) -> None:
    assert error.__suppress_context__ and error.__cause__ is None


def test_a_url_that_is_not_one_is_named() -> None:
    with pytest.raises(StoreError, match=r"not a database URL: 'events\.db'; use sqlite:///"):
        EventStore("events.db")


def test_an_unsupported_database_is_named_without_its_password() -> None:
    with pytest.raises(StoreError) as caught:
        EventStore("mysql://me:hunter2@db.example/events")
    assert "unsupported database 'mysql' in mysql://me:***@db.example/events" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_an_sqlite_file_that_cannot_be_opened_is_named(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/no/such/folder/events.db"
    store = EventStore(url)
    with pytest.raises(StoreError) as caught:
        store.count()
    assert str(caught.value) == f"cannot count events in {url}: unable to open database file"
    _no_traceback_of_the_driver(caught.value)


def test_an_unreachable_server_is_named_without_the_password() -> None:
    url = f"postgresql+psycopg://me:hunter2@127.0.0.1:{_free_port()}/events"
    with pytest.raises(StoreError) as caught:
        EventStore(url).append(make_events(1))
    message = str(caught.value)
    assert message.startswith("cannot append events in postgresql+psycopg://me:***@127.0.0.1:")
    assert "hunter2" not in message and "Connection refused" in message
    _no_traceback_of_the_driver(caught.value)


def test_a_wrong_password_is_reported_masked(postgres_server: PostgresServer) -> None:
    url = postgres_server.url("postgres", password="wrong-pw")
    with pytest.raises(StoreError) as caught:
        EventStore(url).count()
    message = str(caught.value)
    assert "password authentication failed" in message
    assert "wrong-pw" not in message and ":***@127.0.0.1" in message
    _no_traceback_of_the_driver(caught.value)


# --- ingest: small batches are validated record by record, with the same outcome ---------------


NOW = pd.Timestamp("2025-06-01 12:00:00")
ABSENT = object()  # the field is left out of the record
#: Per field: usual values, then unusual and bad ones (taken one time in eight).
FIELDS: dict[str, tuple[list[object], list[object]]] = {
    "user_id": (["u1", "u2", " u2 ", 7], ["", "  ", None, ABSENT, "u\x00"]),
    "item_id": (["i1", "i2", 3.5], ["", None, ABSENT, "\ud800"]),
    "event_type": ([ABSENT, "view", "rating", " play ", "watch", "dwell"], ["", "teleport"]),
    "value": ([ABSENT, None, 4, 4.5, 0.5, "2e-3", "  3 ", True],
              ["9", -1, "", 1e300, "1e400", "abc", "nan", "-0", "+5"]),
    "timestamp": ([ABSENT, 1_700_000_000, 1_700_000_000.7, "1700000000", -1.5,
                   "2024-01-02T03:04:05Z", "2024-01-02 03:04:05.999+02:00", "2024-01-02",
                   "1969-12-31T23:59:59.5", "2025-06-01T12:04:00",
                   pd.Timestamp("2024-05-06 07:08:09")],
                  ["2025-06-01T12:06:00Z", 99_999_999_999, 12_345_678_901_234, "", None,
                   "2024-02-30", "next tuesday", "1e9", "2024-01-02T03:04"]),
    "event_id": ([ABSENT, "e1", "e1 ", "e2", "e3", 3, "3"], ["", "e\udfff"]),
}


def _random_records(rng: np.random.Generator, n: int, *, with_ids: bool) -> list[object]:
    records: list[object] = []
    for _ in range(n):
        record = {}
        for name, (usual, unusual) in FIELDS.items():
            pool = unusual if rng.random() < 1 / 8 else usual
            record[name] = pool[rng.integers(len(pool))]
        records.append({k: v for k, v in record.items()
                        if v is not ABSENT and (with_ids or k != "event_id")})
    if rng.random() < 0.1:
        records.insert(int(rng.integers(len(records) + 1)), "not a record")
    return records


def _validated_both_ways(records: list[object]) -> tuple[object, object]:
    """(columns, report) from the record-by-record twin (None if it defers) and from pandas."""
    raw = events_module._raw_records(records)  # type: ignore[arg-type]
    mapping = ColumnMapping(event_id="event_id" if "event_id" in raw.columns else None)
    twin = validate_event_records(raw, mapping, now=NOW)
    frame, report = validate_events(raw.table(), mapping, now=NOW)
    return twin, (events_module._event_columns(frame), report)


@pytest.mark.parametrize("records", [
    pytest.param([{"item_id": "i1"}, {"user_id": " ", "item_id": "i1"}], id="missing user_id"),
    pytest.param([{"user_id": "u1", "item_id": "i1", "timestamp": "2024-13-01T00:00:00"},
                  {"user_id": "u1", "item_id": "i2", "timestamp": 1e12}], id="bad timestamp"),
    pytest.param([{"user_id": "u", "item_id": "i", "event_type": "teleport"}], id="unknown type"),
    pytest.param([{"user_id": "u", "item_id": "i", "event_type": "rating", "value": 9},
                  {"user_id": "u", "item_id": "i", "event_type": "rating"},
                  {"user_id": "u", "item_id": "i", "event_type": "view", "value": -2}],
                 id="bad value"),
    pytest.param([{"user_id": "u", "item_id": "i", "timestamp": "2025-06-01T13:00:00Z"}],
                 id="future timestamp"),
    pytest.param([{"user_id": "u", "item_id": "i", "event_id": "e"},
                  {"user_id": "v", "item_id": "j", "event_id": " e"},
                  {"user_id": "w", "item_id": "k"}], id="repeated event_id"),
    pytest.param([{"user_id": "u", "item_id": "i", "timestamp": 1},
                  {"user_id": "u", "item_id": "i", "timestamp": "1970-01-01T00:00:01"}],
                 id="same event without ids"),
    pytest.param([{"user_id": "u", "item_id": "i", "device": " tv "},
                  {"user_id": "u", "item_id": "j", "device": ""},
                  {"user_id": "u", "item_id": "k", "device": "x" * 65},
                  {"user_id": "u", "item_id": "l", "device": "\x00"}], id="devices"),
    pytest.param([{"user_id": "u", "item_id": "i", "event_type": "rating", "value": 4,
                   "timestamp": 1_700_000_000, "event_id": "ok"}, 42], id="good and malformed"),
    pytest.param(RECORDS, id="RECORDS"),
    pytest.param([{"user_id": "u\x00", "item_id": "\ud800"}, {"user_id": "u", "item_id": "i",
                   "event_type": "\x00", "event_id": "\udc80"}], id="unstorable text"),
])
def test_the_record_by_record_twin_decides_like_pandas(records: list[object]) -> None:
    twin, (columns, report) = _validated_both_ways(records)
    assert twin is not None, "these forms are the twin's to decide"
    assert repr(twin) == repr((columns, report))  # repr: -0.0 and 0.0 differ, so must they


def test_the_twin_agrees_with_pandas_on_random_records() -> None:
    rng = np.random.default_rng(0)
    decided = 0
    for k in range(400):
        records = _random_records(rng, int(rng.integers(1, 12)), with_ids=k % 3 != 0)
        twin, expected = _validated_both_ways(records)
        if twin is not None:
            decided += 1
            assert repr(twin) == repr(expected), records
    assert decided > 100  # the forms it leaves to pandas are the rare ones


@pytest.mark.parametrize("text", ["+5", "1_000", "-0", "abc", "nan", "0x10"])
def test_the_twin_leaves_unusual_numbers_to_pandas(text: str) -> None:
    twin, _ = _validated_both_ways([{"user_id": "u", "item_id": "i", "value": text}])
    assert twin is None


def test_strict_twin_raises_the_first_issue_as_pandas_does() -> None:
    raw = events_module._raw_records(RECORDS)
    mapping = ColumnMapping(event_id="event_id")
    with pytest.raises(DataError) as twin:
        validate_event_records(raw, mapping, strict=True)
    with pytest.raises(DataError) as pandas:
        validate_events(raw.table(), mapping, strict=True)
    assert str(twin.value) == str(pandas.value) == (
        "request, row 2, column 'value': rating value 9 is outside 1..5")


def test_small_batches_skip_pandas_and_large_ones_use_it(
        store: EventStore, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def counting(table: RawTable, *args: object, **kwargs: object) -> object:
        calls.append(len(table.frame))
        return validate_events(table, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(events_module, "validate_events", counting)
    monkeypatch.setattr(events_module, "_RECORD_BY_RECORD", 3)
    click = {"user_id": "u", "item_id": "i", "event_type": "click"}
    assert store.ingest([{**click, "event_id": f"s{k}"} for k in range(3)])[0].accepted == 3
    assert calls == []
    assert store.ingest([{**click, "event_id": f"l{k}"} for k in range(4)])[0].accepted == 4
    assert store.ingest([{**click, "value": "+1"}])[0].accepted == 1  # a form left to pandas
    assert calls == [4, 1]
