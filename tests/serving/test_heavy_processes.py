"""Heavy requests computed in worker processes (serving/heavy.py): the same answers and errors
as in threads, the budget's 429, a dead worker answered with 503 and replaced, live histories
and model swaps followed through the store and the bell.

Every worker here is a real spawned process (each takes a few seconds to import and load its
model), so one server with its workers serves the module's tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
import pytest
from fastapi import HTTPException
from fastapi.testclient import TestClient

from recengine.errors import (
    DataError,
    MissingExtraError,
    ModelLoadError,
    UnknownIdError,
)
from recengine.serving.app import create_app
from recengine.serving.heavy import HeavyWorkers, WorkerLostError
from recengine.serving.limits import HeavyBudget
from recengine.serving.settings import Settings
from recengine.serving.state import NoActiveModelError, ServingState
from recengine.store.events import EventStore
from recengine.store.registry import ModelRegistry
from tests.serving.conftest import WRITE_KEY, World
from tests.serving.test_real_server import _free_port, served

HEADERS = {"X-API-Key": WRITE_KEY}


@dataclass
class Servers:
    """One state served twice: heavy requests in a worker process, and in threads."""

    state: ServingState
    processes: TestClient
    threads: TestClient
    workers: HeavyWorkers


def _copy(world: World, folder: Path) -> ServingState:
    shutil.copytree(world.registry_root, folder / "registry")
    shutil.copy(world.database_url.removeprefix("sqlite:///"), folder / "events.db")
    state = ServingState(ModelRegistry(folder / "registry"),
                         EventStore(f"sqlite:///{folder / 'events.db'}"), cache_users=1000)
    state.load_current()
    return state


@pytest.fixture(scope="module")
def servers(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    state = _copy(world, tmp_path_factory.mktemp("heavy"))
    processes = create_app(Settings(write_keys=WRITE_KEY, heavy_processes=1), state)
    threads = create_app(Settings(write_keys=WRITE_KEY, heavy_processes=0), state)
    workers = processes.state.context.guard.heavy.workers
    assert isinstance(workers, HeavyWorkers) and threads.state.context.guard.heavy.workers is None
    with TestClient(processes) as a, TestClient(threads) as b:
        yield Servers(state, a, b, workers)
    assert not workers.pids()  # the server's shutdown stopped them
    state.store.close()


def _both(servers: Servers, method: str, url: str, **kwargs: object) -> httpx.Response:
    """The same request to both servers: the same status and the same bytes."""
    one = servers.processes.request(method, url, **kwargs)  # type: ignore[arg-type]
    other = servers.threads.request(method, url, **kwargs)  # type: ignore[arg-type]
    assert (one.status_code, one.content) == (other.status_code, other.content)
    return one


def test_heavy_answers_from_a_process_are_those_from_a_thread(servers: Servers,
                                                              world: World) -> None:
    users, items = world.users, world.items
    rules = json.dumps([{"kind": "max_per", "field": "region", "n": 1}])
    answers = [
        _both(servers, "POST", "/v1/recommendations", json={"users": users[:20], "k": 10}),
        _both(servers, "POST", "/v1/recommendations",
              json={"users": users[:5], "k": 5, "explain": True}),
        _both(servers, "GET", f"/v1/users/{users[1]}/recommendations",
              params={"k": 5, "explain": "true"}),
        _both(servers, "GET", f"/v1/users/{users[2]}/recommendations",
              params={"k": 5, "rules": rules}),
        _both(servers, "GET", f"/v1/users/{users[3]}/recommendations",
              params={"k": 5, "constraint": "bedrooms >= 2"}),
        _both(servers, "POST", "/v1/similar", json={"items": items[:4], "k": 5}),
        _both(servers, "POST", "/v1/audience", json={"items": items[:3], "n": 5}),
        _both(servers, "POST", "/v1/sessions/recommendations",
              json={"items": items[:3], "k": 5, "explain": True}),
    ]
    assert all(answer.status_code == 200 for answer in answers), [a.text for a in answers]
    assert answers[1].json()["data"][0]["items"][0]["reason"]
    assert servers.workers.pids() and os.getpid() not in servers.workers.pids()


def test_the_openapi_description_says_so(servers: Servers) -> None:
    schema = servers.processes.get("/openapi.json").json()
    assert schema["info"]["x-limits"]["heavy_processes"] == 1
    assert schema["info"]["x-limits"]["heavy_concurrency"] == 1  # one request per process
    batch = schema["paths"]["/v1/recommendations"]["post"]["responses"]
    assert "a new one is starting" in batch["503"]["description"]
    threads = servers.threads.get("/openapi.json").json()["info"]["x-limits"]
    assert (threads["heavy_processes"], threads["heavy_concurrency"]) == (0, 2)


def test_errors_pass_through_unchanged(servers: Servers, world: World) -> None:
    user = world.users[0]
    bad = [
        _both(servers, "GET", f"/v1/users/{user}/recommendations",
              params={"constraint": "bedrooms >="}),
        _both(servers, "GET", f"/v1/users/{user}/recommendations",
              params={"rules": json.dumps([{"kind": "max_per", "field": "nope", "n": 1}])}),
        _both(servers, "POST", "/v1/recommendations",
              json={"users": [user], "k": 3, "model": "nope", "explain": True}),
        _both(servers, "POST", "/v1/similar", json={"items": ["no-such-item"], "k": 3}),
    ]
    assert [b.status_code for b in bad] == [422, 422, 404, 404]
    assert bad[0].json()["field"] == "constraint" and bad[1].json()["field"] == "rules"


def test_a_worker_hears_new_events_and_swaps_before_answering(servers: Servers,
                                                              world: World) -> None:
    user, url = world.users[7], "/v1/recommendations"
    body = {"users": [user], "k": 10, "explain": True}
    before = _both(servers, "POST", url, json=body).json()["data"][0]["items"]
    posted = [item["item_id"] for item in before[:3]]
    events = [{"user_id": user, "item_id": item, "event_type": "booking"} for item in posted]
    assert servers.processes.post("/v1/events", json={"events": events},
                                  headers=HEADERS).status_code == 200
    after = _both(servers, "POST", url, json=body).json()["data"][0]["items"]
    assert after != before and not {i["item_id"] for i in after} & set(posted)
    # A version activated through the server: the next heavy answer comes from it.
    v2 = world.versions[1]
    assert servers.processes.post(f"/v1/models/{v2}/activate",
                                  headers=HEADERS).status_code == 200
    swapped = _both(servers, "POST", url, json={"users": [user], "k": 3})
    assert swapped.json()["data"][0]["model_version"] == v2
    assert servers.processes.post("/v1/models/rollback", headers=HEADERS).status_code == 200
    assert _both(servers, "POST", url, json={"users": [user], "k": 3}
                 ).json()["data"][0]["model_version"] == world.versions[0]


def test_a_killed_worker_answers_503_and_is_replaced(servers: Servers, world: World) -> None:
    (pid,) = servers.workers.pids()
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    body = {"users": world.users[:2], "k": 3, "explain": True}
    lost = servers.processes.post("/v1/recommendations", json=body)
    assert lost.status_code == 503 and "retry" in lost.json()["detail"]
    (fresh,) = servers.workers.pids()
    assert fresh != pid
    assert _both(servers, "POST", "/v1/recommendations", json=body).status_code == 200


def test_every_error_crosses_the_pipe_whole() -> None:
    """A worker's error is raised again in the server: pickled, with what the handlers read."""
    sent = [DataError("bad", column="k"), ModelLoadError("cut short", path="registry/v1"),
            MissingExtraError("tuning", extra="tune", reason="no optuna"),
            UnknownIdError("no item x"), NoActiveModelError("none"), WorkerLostError("gone")]
    for error in sent:
        back = pickle.loads(pickle.dumps(error))
        assert (type(back), str(back), vars(back)) == (type(error), str(error), vars(error))


def test_a_follower_counts_the_same_events_as_live(state: ServingState, world: World) -> None:
    """Versions that do not record their last training event: live histories start where the
    server's did, not when the worker happened to load (events stored between the two)."""
    user = world.users[5]
    with EventStore(state.store.url) as store:
        store.ingest([{"user_id": user, "item_id": world.items[0], "event_type": "booking"}])
    follower = state.recipe().build()
    follower.load_current()  # loaded after the event: it would take it for training data
    assert follower.live_events(user) is None
    follower.follow(state.serves())
    state.catch_up()
    assert state.serves() == follower.serves()
    assert state.live_events(user) is None  # loaded before the event, it has not heard it yet
    state.poll()
    follower.poll()
    assert state.live_events(user) == follower.live_events(user) is not None
    follower.store.close()


# -- the budget over processes, with jobs of this module (a worker imports it by name) ----------
def slow(_state: ServingState, seconds: float) -> bytes:
    time.sleep(seconds)
    return b'"slept"'


def crash(_state: ServingState) -> bytes:
    os._exit(3)


@pytest.fixture
def budget(state: ServingState) -> Iterator[HeavyBudget]:
    """One worker process, no queue."""
    workers = HeavyWorkers(state.recipe(), 1)
    workers.start()
    yield HeavyBudget(slots=8, queue=0, workers=workers)
    workers.close()


def test_a_full_queue_is_429_with_retry_after(budget: HeavyBudget, state: ServingState) -> None:
    assert budget.slots == 1  # one request per process
    results: list[bytes] = []

    async def main() -> None:
        async def first() -> None:
            results.append(await budget.run(state, slow, 1.0))

        async with anyio.create_task_group() as group:
            group.start_soon(first)
            await anyio.sleep(0.2)
            with pytest.raises(HTTPException) as refused:
                await budget.run(state, slow, 0.0)
            assert refused.value.status_code == 429
            assert refused.value.headers == {"Retry-After": "1"}

    anyio.run(main)
    assert results == [b'"slept"']


def test_a_crash_mid_request_is_an_error_never_a_hang(budget: HeavyBudget,
                                                       state: ServingState) -> None:
    started = time.monotonic()
    with pytest.raises(WorkerLostError, match="exit code 3"):
        anyio.run(budget.run, state, crash)
    assert time.monotonic() - started < 60  # the worker's start, not a hang
    assert anyio.run(budget.run, state, slow, 0.0) == b'"slept"'  # the new worker


def test_recengine_serve_workers_each_compute_heavy_requests_in_a_process(
        world: World, tmp_path: Path) -> None:
    """``recengine serve --workers 2`` with heavy processes: an event posted to the server
    changes the user's next heavy answer, and the workers leave with the server."""
    shutil.copytree(world.registry_root, tmp_path / "registry")
    shutil.copy(world.database_url.removeprefix("sqlite:///"), tmp_path / "events.db")
    port = _free_port()
    env = {"RECENGINE_DATABASE_URL": f"sqlite:///{tmp_path / 'events.db'}",
           "RECENGINE_REGISTRY": str(tmp_path / "registry"), "RECENGINE_WRITE_KEYS": WRITE_KEY,
           "RECENGINE_HEAVY_PROCESSES": "1"}
    command = [sys.executable, "-m", "recengine", "serve", "--port", str(port),
               "--workers", "2"]
    user = world.users[11]
    body = {"users": [user], "k": 10, "explain": True}
    others = set(_heavy_workers())  # this module's other servers'
    with served(command, env, port, seconds=120) as base:
        before = httpx.post(f"{base}/v1/recommendations", json=body, timeout=60)
        assert before.status_code == 200, before.text
        top = [item["item_id"] for item in before.json()["data"][0]["items"][:3]]
        events = [{"user_id": user, "item_id": item, "event_type": "booking"} for item in top]
        assert httpx.post(f"{base}/v1/events", json={"events": events}, headers=HEADERS,
                          timeout=30).status_code == 200
        for _ in range(4):  # either server process, each with its own heavy worker
            after = httpx.post(f"{base}/v1/recommendations", json=body, timeout=60)
            assert after.status_code == 200
            assert not {i["item_id"] for i in after.json()["data"][0]["items"]} & set(top)
        heavy = set(_heavy_workers()) - others
        assert len(heavy) == 2, heavy  # one per server process
    deadline = time.monotonic() + 20
    while any(map(_alive, heavy)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(map(_alive, heavy)), "heavy workers outlived their server"


def _heavy_workers() -> list[int]:
    """Process ids of the running heavy workers that descend from this process."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _alive(int(entry.name)) and _descends(int(entry.name)):
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == "recengine-heavy":
                    found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().split(") ")[-1][0] != "Z"
    except (OSError, IndexError):
        return False


def _descends(pid: int) -> bool:
    """Whether ``pid`` descends from this process."""
    me = os.getpid()
    while pid > 1:
        try:
            pid = int((Path("/proc") / str(pid) / "stat").read_text().split(") ")[-1].split()[1])
        except (OSError, ValueError, IndexError):
            return False
        if pid == me:
            return True
    return False
