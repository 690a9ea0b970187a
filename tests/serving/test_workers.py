"""Several server processes over one store and registry answer alike.

Two applications with their own :class:`ServingState` stand for two processes (each has only its
own memory); the last test runs ``recengine serve --workers 2`` for real.
"""

from __future__ import annotations

import multiprocessing
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from recengine.serving.app import create_app
from recengine.serving.bell import Bell, Ring
from recengine.serving.settings import Settings
from recengine.serving.state import ServingState
from recengine.store.events import EventStore
from recengine.store.registry import ModelRegistry
from tests.serving.conftest import WRITE_KEY, World
from tests.serving.test_real_server import _free_port, served

HEADERS = {"X-API-Key": WRITE_KEY}


def _copy(world: World, tmp_path: Path) -> tuple[Path, str]:
    shutil.copytree(world.registry_root, tmp_path / "registry")
    shutil.copy(world.database_url.removeprefix("sqlite:///"), tmp_path / "events.db")
    return tmp_path / "registry", f"sqlite:///{tmp_path / 'events.db'}"


@pytest.fixture
def two(world: World, tmp_path: Path) -> Iterator[tuple[TestClient, TestClient]]:
    """Two "processes": separate states (memory) over the same store and registry."""
    registry, url = _copy(world, tmp_path)
    settings = Settings(write_keys=WRITE_KEY, cache_users=1000)
    states = [ServingState(ModelRegistry(registry), EventStore(url), cache_users=1000)
              for _ in range(2)]
    for state in states:
        state.load_current()
    with TestClient(create_app(settings, states[0])) as a, \
            TestClient(create_app(settings, states[1])) as b:
        yield a, b
    for state in states:
        state.store.close()


def _items(client: TestClient, user: str, k: int = 10) -> list[str]:
    response = client.get(f"/v1/users/{user}/recommendations", params={"k": k})
    assert response.status_code == 200, response.text
    return [item["item_id"] for item in response.json()["items"]]


def test_an_event_posted_to_one_process_changes_the_next_answer_of_the_other(
        two: tuple[TestClient, TestClient], world: World) -> None:
    a, b = two
    user = world.users[3]
    before = _items(b, user)  # kept in b's answer cache
    assert _items(a, user) == before
    posted = before[:3]
    events = [{"user_id": user, "item_id": item, "event_type": "booking"} for item in posted]
    assert a.post("/v1/events", json={"events": events}, headers=HEADERS).status_code == 200
    after_b, after_a = _items(b, user), _items(a, user)
    assert after_b == after_a != before
    assert not set(posted) & set(after_b)


def test_catalogue_and_user_writes_reach_the_other_process(
        two: tuple[TestClient, TestClient], world: World) -> None:
    a, b = two
    user = world.users[4]
    top = _items(b, user)[0]
    assert a.delete(f"/v1/items/{top}", headers=HEADERS).status_code == 200
    assert top not in _items(b, user)
    other: ServingState = b.app.state.context.state  # type: ignore[attr-defined]
    assert a.put(f"/v1/users/{user}", json={"features": {"segment": "x"}},
                 headers=HEADERS).status_code == 200
    assert _items(b, user)
    assert other.query(user).user_features == {"segment": "x"}
    assert a.post("/v1/events", headers=HEADERS, json={
        "user_id": user, "item_id": world.items[0], "event_type": "view"}).status_code == 200
    assert a.delete(f"/v1/users/{user}", headers=HEADERS).status_code == 200
    assert _items(b, user)  # answered, as a user the store no longer knows
    assert other.query(user).user_features == {}
    assert other.live_events(user) is None  # their events went with them


def test_a_version_activated_in_one_process_is_served_by_the_other(
        two: tuple[TestClient, TestClient], world: World) -> None:
    a, b = two
    assert a.post(f"/v1/models/{world.versions[1]}/activate", headers=HEADERS).status_code == 200
    deadline = time.monotonic() + 10  # the other loads it in the background
    while b.get("/readyz").json()["model_version"] != world.versions[1]:
        assert time.monotonic() < deadline, "the other process never swapped"
        time.sleep(0.05)


def _ring(path: str, times: int) -> None:
    bell = Bell(path)
    for _ in range(times):
        bell.ring(Ring.EVENTS)


def test_the_bell_loses_no_ring_between_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "bell")
    context = multiprocessing.get_context("fork")  # the ringing function is already loaded
    rings = [context.Process(target=_ring, args=(path, 300)) for _ in range(3)]
    for process in rings:
        process.start()
    for process in rings:
        process.join(60)
    assert Bell(path).read() == (900, 0, 0)


def test_live_histories_stay_bounded_and_evicted_users_are_read_back(
        world: World, tmp_path: Path) -> None:
    registry, url = _copy(world, tmp_path)
    store = EventStore(url)
    state = ServingState(ModelRegistry(registry), store, live_per_user=2, live_max_events=6)
    state.load_current()
    first = world.users[10]
    booked = state.recommend(first, 3)[1][0].item
    store.ingest([{"user_id": first, "item_id": booked, "event_type": "booking"}])
    for user in world.users[11:20]:  # others write after: the first user is evicted
        store.ingest([{"user_id": user, "item_id": world.items[i], "event_type": "view"}
                      for i in range(3)])
    state.changed(Ring.EVENTS)
    state.catch_up()
    assert state._live.events <= 6
    assert all(len(state.live_events(u) or []) <= 2 for u in world.users[11:20])
    assert state.live_events(first) is None and not state.ready(first)
    assert booked not in [r.item for r in state.recommend(first, 10)[1]]  # read back
    assert [e.item_id for e in state.live_events(first) or []] == [booked]
    store.close()


def test_serve_with_two_workers_answers_alike_from_every_process(world: World,
                                                                  tmp_path: Path) -> None:
    """The contract: an event posted to either process changes the next answer of all."""
    registry, url = _copy(world, tmp_path)
    port = _free_port()
    command = [sys.executable, "-m", "recengine", "serve", "--workers", "2", "--port",
               str(port), "--registry", str(registry), "--database-url", url]
    user = world.users[5]
    with served(command, {"RECENGINE_WRITE_KEYS": WRITE_KEY}, port) as base:
        url_of = f"{base}/v1/users/{user}/recommendations"
        before = {tuple(_ids(httpx.get(url_of, timeout=10))) for _ in range(20)}
        assert len(before) == 1  # every process the same
        posted = next(iter(before))[:2]
        for item in posted:  # one connection each: either process may take it
            assert httpx.post(f"{base}/v1/events", headers=HEADERS, timeout=10, json={
                "user_id": user, "item_id": item, "event_type": "booking"}).status_code == 200
        after = {tuple(_ids(httpx.get(url_of, timeout=10))) for _ in range(40)}
        assert len(after) == 1 and after != before
        assert not set(posted) & set(next(iter(after)))
        metrics = httpx.get(f"{base}/metrics", timeout=10).text  # every process's, summed
        assert ('recengine_http_requests_total{method="GET",route='
                '"/v1/users/{user_id}/recommendations",status="200"} 60.0') in metrics


def _ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["item_id"] for item in response.json()["items"]]


def test_while_a_catch_up_reads_the_bell_stays_heard(world: World, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A request arriving during the background poll's reads must wait for them, not answer
    from the histories they are about to replace."""
    registry, url = _copy(world, tmp_path)
    state = ServingState(ModelRegistry(registry), EventStore(url))
    state.load_current()
    state.store.ingest([{"user_id": world.users[0], "item_id": world.items[0],
                         "event_type": "view"}])
    state.changed(Ring.EVENTS)
    reading, release = threading.Event(), threading.Event()
    read = state.store.event_rows

    def slow(*args: object, **kwargs: object) -> object:
        reading.set()
        release.wait(10)
        return read(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(state.store, "event_rows", slow)
    poll = threading.Thread(target=state.poll)
    poll.start()
    assert reading.wait(10)
    assert state.heard() and not state.ready(world.users[0])
    release.set()
    poll.join(10)
    assert not state.heard() and state.ready(world.users[0])
    state.store.close()
