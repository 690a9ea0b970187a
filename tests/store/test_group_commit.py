"""Group commit: concurrent appends share transactions, and each caller gets its own outcome.

Grouping is made deterministic by holding the first transaction open until the other callers have
queued behind it; the stress test at the end asserts only what holds under any interleaving.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pandas as pd
import pytest

from recengine.store import AppendResult, EventStore, StoreError
from recengine.store.events import _Batch
from recengine.store.group_commit import BatchFailed, GroupCommit


def _wait_until(condition: Callable[[], bool], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


def events(ids: Sequence[str | None], *, user: str = "u") -> pd.DataFrame:
    """One view per id, its item named after the id (so reads can count events by id)."""
    return pd.DataFrame({
        "user_id": pd.Series([user] * len(ids), dtype=object),
        "item_id": pd.Series([f"i-{i}" for i in ids], dtype=object),
        "event_type": "view", "value": 1.0,
        "timestamp": pd.Series([pd.NaT] * len(ids), dtype="datetime64[s]"),
        "event_id": pd.Series(list(ids), dtype=object),
    })


class HeldLeader:
    """Submits a first batch whose commit waits until released, so that others queue behind it."""

    def __init__(self, group: GroupCommit[Any, Any], pool: ThreadPoolExecutor,
                 submit: Callable[[Any], Any]) -> None:
        self.group, self.pool, self.submit = group, pool, submit
        self.held, self.release = threading.Event(), threading.Event()
        self.first: Future[Any] | None = None

    def hold(self, batch: Any) -> None:
        self.first = self.pool.submit(self.submit, batch)
        assert self.held.wait(10), "the first commit did not start"

    def queue(self, batch: Any) -> Future[Any]:
        """Submit from another thread and wait until the batch is queued behind the leader."""
        queued = len(self.group._queue)
        future = self.pool.submit(self.submit, batch)
        _wait_until(lambda: len(self.group._queue) == queued + 1)
        return future

    def wait_if_first(self) -> None:
        """Called inside the commit: the first call waits for the release."""
        if not self.held.is_set():
            self.held.set()
            assert self.release.wait(10), "never released"


# --- the mechanism -----------------------------------------------------------------------------


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=8) as executor:
        yield executor


def held_group(pool: ThreadPoolExecutor, answer: Callable[[Sequence[str], int], list[str]]
               ) -> tuple[HeldLeader, list[list[str]]]:
    """A group commit whose first commit is held, and the batches of each of its commits.

    ``answer(batches, n)`` makes the results of the ``n``-th commit, or raises.
    """
    groups: list[list[str]] = []

    def commit(batches: Sequence[str]) -> list[str]:
        held.wait_if_first()
        groups.append(list(batches))
        return answer(batches, len(groups))

    group: GroupCommit[str, str] = GroupCommit(commit)
    held = HeldLeader(group, pool, group.submit)
    return held, groups


def test_waiting_batches_are_committed_together(pool: ThreadPoolExecutor) -> None:
    held, groups = held_group(pool, lambda batches, _n: [f"committed {b}" for b in batches])
    held.hold("a")
    others = [held.queue(name) for name in ("b", "c", "d")]
    assert groups == []  # nobody returns before their transaction commits
    held.release.set()
    assert held.first is not None and held.first.result(10) == "committed a"
    assert [f.result(10) for f in others] == ["committed b", "committed c", "committed d"]
    assert groups == [["a"], ["b", "c", "d"]]


def test_a_failed_batch_is_retried_alone_and_fails_only_its_caller(
        pool: ThreadPoolExecutor) -> None:
    def answer(batches: Sequence[str], _n: int) -> list[str]:
        if "bad" in batches:
            raise BatchFailed(ValueError(f"cannot store {len(batches)} batches"))
        return list(batches)

    held, groups = held_group(pool, answer)
    held.hold("a")
    good1, bad, good2 = (held.queue(name) for name in ("b", "bad", "c"))
    held.release.set()
    assert good1.result(10) == "b" and good2.result(10) == "c"
    with pytest.raises(ValueError, match="cannot store 1 batches"):  # its own error, alone
        bad.result(10)
    assert groups == [["a"], ["b", "bad", "c"], ["b"], ["bad"], ["c"]]


def test_a_failure_of_the_transaction_itself_reaches_every_caller_once(
        pool: ThreadPoolExecutor) -> None:
    def answer(batches: Sequence[str], n: int) -> list[str]:
        if n > 1:  # as a failed COMMIT: not retried, its outcome may be unknown
            raise OSError("disk full")
        return list(batches)

    held, groups = held_group(pool, answer)
    held.hold("a")
    others = [held.queue(name) for name in ("b", "c")]
    held.release.set()
    errors = [f.exception(10) for f in others]
    assert all(isinstance(e, OSError) and str(e) == "disk full" for e in errors)
    assert errors[0] is not errors[1]  # each caller raises its own copy
    assert groups == [["a"], ["b", "c"]]


# --- in the event store ------------------------------------------------------------------------


@pytest.fixture
def held_store(store_url: str, monkeypatch: pytest.MonkeyPatch,
               pool: ThreadPoolExecutor) -> Iterator[tuple[EventStore, HeldLeader, list[int]]]:
    """A store whose first append holds its transaction open; the sizes of its transactions."""
    sizes: list[int] = []
    commit_batches = EventStore._commit_batches

    def holding(self: EventStore, batches: Sequence[_Batch]) -> list[AppendResult]:
        held.wait_if_first()
        sizes.append(len(batches))
        return commit_batches(self, batches)

    monkeypatch.setattr(EventStore, "_commit_batches", holding)
    with EventStore(store_url) as store:
        store.count()  # tables created before anyone holds a transaction
        held = HeldLeader(store._appends, pool, store.append)
        yield store, held, sizes


def test_concurrent_appends_share_one_transaction_first_come_first_stored(
        held_store: tuple[EventStore, HeldLeader, list[int]]) -> None:
    store, held, sizes = held_store
    held.hold(events(["a1"]))
    first = held.queue(events(["x1", "x2"]))
    second = held.queue(events(["x2", "x3", None]))  # x2 also in the batch queued before
    third = held.queue(events(["a1", "x4"]))  # a1 is in the held transaction
    held.release.set()
    assert held.first is not None and held.first.result(10) == AppendResult(1, 0)
    assert first.result(10) == AppendResult(2, 0)
    assert second.result(10) == AppendResult(2, 1)
    assert third.result(10) == AppendResult(1, 1)
    assert sizes == [1, 3]
    assert store.events()["item_id"].tolist() == [
        "i-a1", "i-x1", "i-x2", "i-x3", "i-None", "i-x4"]


def test_a_bad_batch_fails_alone_while_the_others_are_stored(
        held_store: tuple[EventStore, HeldLeader, list[int]]) -> None:
    store, held, sizes = held_store
    held.hold(events(["a1"]))
    bad_batch = events(["b1", "b2"])
    bad_batch.loc[1, "user_id"] = None  # slipped past validation: violates NOT NULL
    good1, bad, good2 = (held.queue(batch) for batch in (
        events(["g1"]), bad_batch, events(["g2", "g3"])))
    held.release.set()
    assert good1.result(10) == AppendResult(1, 0) and good2.result(10) == AppendResult(2, 0)
    with pytest.raises(StoreError, match="cannot append events"):
        bad.result(10)
    assert sizes == [1, 3, 1, 1, 1]
    assert sorted(store.events()["item_id"]) == ["i-a1", "i-g1", "i-g2", "i-g3"]
    assert store.append(bad_batch.iloc[:1]) == AppendResult(1, 0)  # b1 was not stored


def test_many_threads_appending_lose_and_duplicate_nothing(store_url: str) -> None:
    n_threads, n_batches, n_ids = 8, 15, 120

    def batch(thread: int, k: int) -> pd.DataFrame:  # overlaps batches of this and other threads
        start = thread * 29 + k * 3
        return events([*(f"e{(start + j) % n_ids}" for j in range(4)), None],
                      user=f"t{thread}")

    with EventStore(store_url) as store, ThreadPoolExecutor(n_threads) as pool:
        def writer(thread: int) -> list[AppendResult]:
            return [store.append(batch(thread, k)) for k in range(n_batches)]

        results = [r for f in [pool.submit(writer, t) for t in range(n_threads)]
                   for r in f.result(120)]
        stored = store.events()
    assert all(r.accepted + r.duplicates == 5 for r in results)
    ids = {f"i-e{k}" for t in range(n_threads) for b in range(n_batches)
           for k in ((t * 29 + b * 3 + j) % n_ids for j in range(4))}
    without_id = n_threads * n_batches
    assert sum(r.accepted for r in results) == len(stored) == len(ids) + without_id
    with_id = stored[stored["item_id"] != "i-None"]["item_id"]
    assert with_id.is_unique and set(with_id) == ids
    assert stored["id"].is_unique and stored["id"].is_monotonic_increasing
