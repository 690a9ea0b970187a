"""The background retrain scheduler: what it retrains, its triggers, failures, prompt stop."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from recengine.pipeline.retrain import retrain
from recengine.pipeline.schedule import FIRST_MODELS, RetrainScheduler
from recengine.store.events import EventStore
from recengine.store.registry import ModelRegistry


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Whether ``condition`` holds within ``timeout`` s (generous where runs start child
    processes: a loaded machine takes seconds to start one)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def scheduler(store: EventStore, registry: ModelRegistry, published: list[str],
              **kwargs) -> RetrainScheduler:
    options = {"models": {"popularity": {}}, "every_seconds": None, "after_events": None,
               "on_published": published.append, "poll_seconds": 0.05, **kwargs}
    return RetrainScheduler(store, registry, **options)


def publish_until(store: EventStore, registry: ModelRegistry, models: dict[str, dict],
                  behind: int) -> str:
    """Retrain ``models`` on all but the newest ``behind`` events and activate them."""
    until = store.last_id() - behind
    result = retrain(store.dataset(until_id=until), registry, models=models,
                     data_snapshot=store.snapshot(until_id=until))
    assert result.activated and result.version is not None
    return result.version


def test_the_active_configuration_is_retrained(store, registry):
    served = {"wals": {"model": "wals", "factors": 6, "iterations": 2}, "popularity": {}}
    first = publish_until(store, registry, served, behind=0)
    store.ingest([{"user_id": "u-new", "item_id": "i-new", "event_type": "view"}])
    published: list[str] = []
    s = scheduler(store, registry, published, models=None, every_seconds=60)
    assert s.run_once() and published == ["v0002"], s.last_error
    before, after = registry.show(first)["models"], registry.show("v0002")["models"]
    assert after["wals"]["config"]["factors"] == 6 and after == before
    assert s.status()["models"] is None
    assert s.status()["last_models"]["wals"] == {"model": "wals", **before["wals"]["config"]}


def test_the_count_starts_from_the_active_snapshot(store, registry):
    publish_until(store, registry, {"popularity": {}}, behind=40)
    s = scheduler(store, registry, [], models=None, after_events=30, poll_seconds=60)
    s.start()  # a restart: the 40 events the active version did not see count at once
    try:
        status = s.status()
        assert s.due() == "events" and status["events_since_last_training"] == 40
        assert status["counted_after_id"] == store.last_id() - 40
        publish_until(store, registry, {"popularity": {}}, behind=0)  # activated by hand
        assert s.due() is None and s.status()["events_since_last_training"] == 0
        registry.rollback()  # back to the version that saw 40 events fewer
        assert s.due() == "events"
    finally:
        s.stop()


def test_a_rejected_candidate_is_not_retried_at_every_poll(store, registry):
    first = publish_until(store, registry, {"popularity": {}}, behind=40)
    published: list[str] = []
    s = scheduler(store, registry, published, models=None, after_events=30,
                  retrain_options={"tolerance": -0.5})  # demands +50 %: the same model fails
    assert s.due() == "events" and s.run_once("events")
    assert published == [] and registry.current() == first and s.last_error is None
    assert s.last_reason is not None and "kept v0001" in s.last_reason
    assert s.due() is None and s.status()["counted_after_id"] == store.last_id()


def test_a_version_without_snapshot_counts_from_the_start(store, registry, records):
    # no data_snapshot: the manifest records the dataset's hash, not event ids (as from a file)
    assert retrain(store.dataset(), registry, models={"popularity": {}}).activated
    s = scheduler(store, registry, [], models=None, after_events=30, poll_seconds=60)
    s.start()
    try:
        assert s.due() is None
        store.ingest(records[-200:-170])
        assert s.due() == "events"
    finally:
        s.stop()


def test_no_active_version_and_no_models_is_reported(store, registry):
    published: list[str] = []
    s = scheduler(store, registry, published, models=None, after_events=10)
    assert s.due() == "events" and s.run_once("events")
    status = s.status()
    assert status["failures"] == 1 and "no active version" in status["last_error"]
    assert published == [] and registry.current() is None
    assert s.due() is None  # the failed run counts: no retry at every poll


def test_the_first_version_waits_for_enough_stored_events(store, registry, records):
    """Every stored event counts towards the first version; the schedule does not jump it."""
    published: list[str] = []
    stored = store.count()
    s = scheduler(store, registry, published, models=None, every_seconds=0.01,
                  bootstrap_after_events=stored + 30, isolated=False)
    time.sleep(0.02)
    assert s.due() is None and s.status()["bootstrap_after_events"] == stored + 30
    store.ingest(records[-200:-170])
    assert s.due() == "bootstrap" and s.models_to_train() == FIRST_MODELS
    assert s.run_once("bootstrap") and published == ["v0001"], s.last_error
    assert set(registry.show("v0001")["models"]) == {"wals", "popularity"}
    assert s.due() == "schedule"  # a version is active: the usual triggers apply


def test_a_failed_first_version_waits_for_new_events(store, registry, records):
    s = scheduler(store, registry, [], models={"no-such-model": {}}, bootstrap_after_events=30)
    assert s.due() == "bootstrap" and s.run_once("bootstrap") and s.failures == 1
    assert s.due() is None  # not retried at every poll ...
    store.ingest(records[-200:-170])
    assert s.due() == "bootstrap"  # ... but once as many events arrived again


def test_data_trigger_waits_for_enough_new_events(store, registry, records):
    published: list[str] = []
    s = scheduler(store, registry, published, after_events=50)
    s.start()
    try:
        store.ingest(records[-200:-170])  # 30 new events: below the trigger
        time.sleep(0.5)
        assert s.runs == 0 and published == [] and registry.current() is None
        assert s.status()["events_since_last_training"] == 30
        store.ingest(records[-170:-140])  # 60 in all
        assert wait_for(lambda: published != [], timeout=30)
        time.sleep(0.3)  # no second run: the trained events are no longer "new"
        assert s.runs == 1 and published == ["v0001"] and registry.current() == "v0001"
        assert registry.show("v0001")["data"]["last_id"] == store.last_id()
        status = s.status()
        assert status["events_since_last_training"] == 0 and status["last_error"] is None
        assert status["last_trigger"] == "events" and status["last_version"] == "v0001"
        assert status["last_reason"].startswith("first version")
    finally:
        s.stop()


def test_time_trigger_retrains_on_schedule(store, registry):
    published: list[str] = []
    s = scheduler(store, registry, published, every_seconds=0.2)
    start = time.monotonic()
    s.start()
    try:
        assert wait_for(lambda: s.runs >= 2, timeout=60)
        assert time.monotonic() - start >= 0.4
    finally:
        s.stop()
    assert published[0] == "v0001"
    assert s.status()["last_trigger"] == "schedule" and s.last_error is None


def test_schedule_is_not_due_before_its_time(store, registry):
    now = [0.0]
    s = scheduler(store, registry, [], every_seconds=60, clock=lambda: now[0])
    assert s.due() is None
    now[0] = 59.9
    assert s.due() is None
    now[0] = 60.0
    assert s.due() == "schedule"


def test_a_failing_retrain_is_recorded_and_the_thread_lives_on(store, registry):
    published: list[str] = []
    s = scheduler(store, registry, published, every_seconds=0.1,
                  models={"no-such-model": {}})
    s.start()
    try:
        assert wait_for(lambda: s.failures >= 2, timeout=60)
        assert s.running
        assert "no-such-model" in (s.status()["last_error"] or "")
        assert published == [] and registry.current() is None
    finally:
        s.stop()


def test_a_failing_swap_is_recorded_too(store, registry):
    def broken(_version: str) -> None:
        raise RuntimeError("swap exploded")

    s = RetrainScheduler(store, registry, models={"popularity": {}}, every_seconds=0.1,
                         after_events=None, on_published=broken, poll_seconds=0.05)
    s.start()
    try:
        assert wait_for(lambda: s.failures >= 1, timeout=60)
        assert s.last_error == "RuntimeError: swap exploded" and s.running
    finally:
        s.stop()


def test_stop_returns_promptly(store, registry):
    s = scheduler(store, registry, [], after_events=10**9, poll_seconds=None)
    s.start()
    assert s.running and s.poll_seconds == 1.0
    start = time.monotonic()
    s.stop()
    assert time.monotonic() - start < 0.5
    assert not s.running


def test_one_retrain_at_a_time(store, registry):
    s = scheduler(store, registry, [], after_events=1)
    with s._run_lock:
        assert s.run_once() is False
    assert s.runs == 0


def test_needs_a_trigger(store, registry):
    with pytest.raises(ValueError, match="every_seconds, after_events or bootstrap"):
        scheduler(store, registry, [])
    with pytest.raises(ValueError, match="bootstrap_after_events must be at least 1"):
        scheduler(store, registry, [], bootstrap_after_events=0)


def test_of_several_schedulers_on_one_store_exactly_one_retrains(store, registry):
    """Server processes each start one: the store's lease lets one run at a time."""
    published: list[str] = []
    several = [scheduler(store, registry, published, every_seconds=0.2, lease_seconds=1.0)
               for _ in range(3)]
    for s in several:
        s.start()
    try:
        assert wait_for(lambda: sum(s.runs for s in several) >= 3, timeout=60)
        assert [s.leading for s in several].count(True) == 1
        assert sum(s.runs > 0 for s in several) == 1
        leader = next(s for s in several if s.leading)
        leader.stop()  # it gives the lease up: another takes over
        assert wait_for(lambda: any(s.runs > 0 for s in several if s is not leader), timeout=60)
    finally:
        for s in several:
            s.stop()


def test_a_lease_expires_when_its_holder_stops_renewing(store, registry):
    assert store.hold_lease("duty", "a", 0.2)
    assert not store.hold_lease("duty", "b", 10)
    assert store.hold_lease("duty", "a", 0.2)  # renewed by its holder
    time.sleep(0.3)
    assert store.hold_lease("duty", "b", 10)
    store.release_lease("duty", "a")  # not its holder any more: nothing happens
    assert not store.hold_lease("duty", "a", 10)
