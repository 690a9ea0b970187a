"""Heavy reads are bounded (issue 11, finding 3): every limit published in the OpenAPI
description and enforced, rate limits per key answering 429 with Retry-After, and a concurrency
budget for heavy requests that light ones never wait on."""

from __future__ import annotations

import threading
import time

import pytest
from fastapi.testclient import TestClient

from recengine.serving.app import create_app
from recengine.serving.settings import Settings
from recengine.serving.state import ServingState
from tests.serving.conftest import READ_KEY, WRITE_KEY, World


def test_every_limit_is_in_the_openapi_description(client: TestClient,
                                                   settings: Settings) -> None:
    schema = client.get("/openapi.json").json()
    limits = schema["info"]["x-limits"]
    assert limits["max_k"] == settings.max_k == 200
    assert limits["max_batch_results"] == settings.max_batch_results
    assert limits["max_request_bytes"] == settings.max_request_bytes
    assert limits["rate_limit_per_second"] is None  # off by default
    get = schema["paths"]["/v1/users/{user_id}/recommendations"]["get"]
    maxima = {p["name"]: p["schema"].get("maximum") for p in get["parameters"]}
    assert maxima["k"] == maxima["offset"] == 200
    assert "429" in get["responses"]
    components = schema["components"]["schemas"]
    batch = components["RecommendationBatch"]
    assert batch["properties"]["users"]["maxItems"] == settings.max_batch
    assert batch["properties"]["k"]["maximum"] == settings.max_k
    assert f"At most {settings.max_batch_results} results" in batch["description"]
    assert f"at most {settings.max_explained} explained" in batch["description"]
    assert components["EventBatch"]["properties"]["events"]["maxItems"] == settings.max_batch
    assert components["AudienceBatch"]["properties"]["n"]["maximum"] == settings.max_k
    post = schema["paths"]["/v1/events"]["post"]
    assert str(settings.max_request_bytes) in post["responses"]["413"]["description"]


def test_a_batch_over_its_result_budget_is_422(state: ServingState, world: World) -> None:
    client = TestClient(create_app(Settings(max_batch_results=100, max_explained=20), state))
    users = world.users[:11]
    too_many = client.post("/v1/recommendations", json={"users": users, "k": 10})
    assert too_many.status_code == 422 and too_many.json()["field"] == "users"
    assert client.post("/v1/recommendations", json={"users": users[:10], "k": 10}
                       ).status_code == 200
    similar = client.post("/v1/similar", json={"items": world.items[:11], "k": 10})
    assert similar.status_code == 422 and similar.json()["field"] == "items"
    explained = client.post("/v1/recommendations", json={"users": users[:3], "k": 10,
                                                         "explain": True})
    assert explained.status_code == 422 and explained.json()["field"] == "explain"
    one = client.get(f"/v1/users/{users[0]}/recommendations", params={"k": 21, "explain": True})
    assert one.status_code == 422 and one.json()["field"] == "explain"
    assert client.get(f"/v1/users/{users[0]}/recommendations",
                      params={"k": 20, "explain": True}).status_code == 200


def test_rate_limits_are_per_key_with_retry_after(state: ServingState, world: World) -> None:
    settings = Settings(read_keys=READ_KEY, write_keys=WRITE_KEY, rate_limit_per_second=0.5,
                        rate_limit_burst=2)
    client = TestClient(create_app(settings, state))
    url = f"/v1/users/{world.users[0]}/recommendations"
    statuses = [client.get(url, headers={"X-API-Key": READ_KEY}).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    limited = client.get(url, headers={"X-API-Key": READ_KEY})
    assert limited.headers["retry-after"] == "2"
    assert client.get(url, headers={"X-API-Key": WRITE_KEY}).status_code == 200  # its own


def test_anonymous_rate_limits_are_per_address(state: ServingState, world: World) -> None:
    app = create_app(Settings(rate_limit_per_second=0.5, rate_limit_burst=1), state)
    url = f"/v1/users/{world.users[0]}/recommendations"
    one, other = TestClient(app), TestClient(app, client=("10.0.0.9", 1))
    assert [one.get(url).status_code for _ in range(2)] == [200, 429]
    assert one.get(url, headers={"X-API-Key": "made-up-key-for-a-new-bucket"}).status_code \
        == 429  # an unknown key is the same anonymous client
    assert other.get(url).status_code == 200


def test_no_rate_limit_by_default(client: TestClient, world: World) -> None:
    url = f"/v1/users/{world.users[0]}/recommendations"
    assert {client.get(url).status_code for _ in range(60)} == {200}


def test_heavy_requests_wait_for_the_budget_and_light_ones_do_not(
        state: ServingState, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """One heavy slot, one waiting: a third heavy request is refused at once, and plain reads
    are answered while the slot is held."""
    app = create_app(Settings(heavy_concurrency=1, heavy_queue=1), state)
    release, entered = threading.Event(), threading.Semaphore(0)
    recommend = state.recommend

    def held(*args, **kwargs):
        if kwargs.get("explain"):
            entered.release()
            assert release.wait(30)
        return recommend(*args, **kwargs)

    monkeypatch.setattr(state, "recommend", held)
    heavy = {"users": world.users[:1], "k": 3, "explain": True}
    url = f"/v1/users/{world.users[1]}/recommendations"
    with TestClient(app) as client:  # one event loop for every request
        results: list[int] = []
        threads = [threading.Thread(target=lambda: results.append(
            client.post("/v1/recommendations", json=heavy).status_code)) for _ in range(2)]
        for thread in threads:
            thread.start()
            time.sleep(0.3)
        assert entered.acquire(timeout=10)  # the first holds the slot, the second waits
        refused = client.post("/v1/recommendations", json=heavy)
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
        started = time.perf_counter()
        assert client.get(url, params={"k": 5}).status_code == 200
        assert time.perf_counter() - started < 5
        release.set()
        for thread in threads:
            thread.join(30)
    assert results == [200, 200]


def test_a_server_process_hands_the_interpreter_lock_on_sooner() -> None:
    """Light requests wait for the lock while heavy ones compute in threads: each server
    process shortens Python's 5 ms switch interval to the setting."""
    import gc
    import sys

    from threadpoolctl import threadpool_limits

    from recengine.serving.app import _settle_process

    before = sys.getswitchinterval()
    assert Settings().switch_interval_ms == 0.5
    try:
        with threadpool_limits(limits=None):  # restores this process's BLAS threads
            _settle_process(Settings(switch_interval_ms=2))
        assert sys.getswitchinterval() == pytest.approx(0.002)
    finally:
        sys.setswitchinterval(before)
        gc.unfreeze()


def test_a_server_process_computes_each_request_on_one_thread(monkeypatch) -> None:
    """BLAS and torch get one thread each per request: torch where it is already imported,
    and through OMP_NUM_THREADS and MKL_NUM_THREADS where a neural model will import it later
    (in this process, and in a request's thread)."""
    import os
    import subprocess
    import sys

    from threadpoolctl import threadpool_info, threadpool_limits

    from recengine.serving.app import pin_compute_threads

    torch = pytest.importorskip("torch")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)  # restored as it was when it ends
    before = torch.get_num_threads()
    try:
        # restores this process's threads when it ends (an OpenMP BLAS shares torch's
        # runtime, so torch is checked inside)
        with threadpool_limits(limits=None):
            pin_compute_threads()
            blas = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
            assert blas and set(blas) == {1}
            assert torch.get_num_threads() == 1 and os.environ["OMP_NUM_THREADS"] == "1"
    finally:
        torch.set_num_threads(before)
    later = subprocess.run(
        [sys.executable, "-c", "from recengine.serving.app import pin_compute_threads\n"
         "pin_compute_threads()\nimport threading, torch\nprint(torch.get_num_threads())\n"
         "t = threading.Thread(target=lambda: print(torch.get_num_threads()))\n"
         "t.start(); t.join()"],
        capture_output=True, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert later.stdout.split() == ["1", "1"]


def test_answers_off_the_event_loop_run_one_per_core_at_once(monkeypatch) -> None:
    import anyio

    from recengine.serving import limits

    monkeypatch.setattr(limits.os, "cpu_count", lambda: 2)
    running, most = [0], [0]
    lock = threading.Lock()

    def answer() -> int:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        return 1

    async def eight_at_once() -> int:
        results: list[int] = []

        async def one() -> None:
            results.append(await limits.off_the_loop(answer))

        async with anyio.create_task_group() as group:
            for _ in range(8):
                group.start_soon(one)
        return sum(results)

    assert anyio.run(eight_at_once) == 8
    assert most[0] == 2
