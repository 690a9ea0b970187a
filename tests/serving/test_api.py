"""The HTTP API's contracts, through TestClient."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from recengine.serving.app import create_app
from recengine.serving.settings import Settings
from recengine.serving.state import ServingState
from tests.serving.conftest import READ_KEY, WRITE_KEY, World


def _ids(body: dict) -> list[str]:
    return [item["item_id"] for item in body["items"]]


# -- recommendations ----------------------------------------------------------------------
def test_recommendations_contract(client: TestClient, world: World) -> None:
    user = world.users[0]
    response = client.get(f"/v1/users/{user}/recommendations", params={"k": 5})
    assert response.status_code == 200
    body = response.json()
    assert body["user_id"] == user
    assert body["model_version"] == world.versions[0]
    assert body["count"] == 5 == len(body["items"])
    assert {item["source"] for item in body["items"]} == {"wals"}
    assert all(item["reason"] is None for item in body["items"])
    scores = [item["score"] for item in body["items"]]
    assert scores == sorted(scores, reverse=True)


def test_explain_and_offset(client: TestClient, world: World) -> None:
    url = f"/v1/users/{world.users[1]}/recommendations"
    full = client.get(url, params={"k": 6, "explain": "true"}).json()
    assert all(isinstance(item["reason"], str) and item["reason"] for item in full["items"])
    page = client.get(url, params={"k": 3, "offset": 3}).json()
    assert _ids(page) == _ids(full)[3:6]


def test_different_users_get_their_own_lists(client: TestClient, world: World) -> None:
    lists = {tuple(_ids(client.get(f"/v1/users/{u}/recommendations").json()))
             for u in world.users[:10]}
    assert len(lists) > 1


def test_cold_user_gets_popularity(client: TestClient, state: ServingState) -> None:
    response = client.get("/v1/users/nobody-ever/recommendations", params={"k": 5})
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 5
    assert {item["source"] for item in body["items"]} == {"popularity"}
    counts = state.active.popularity.item_counts_
    top = [str(state.active.popularity.items_.ids[i]) for i in counts.argsort(kind="stable")[::-1]]
    assert set(_ids(body)) <= set(top[:10])


def test_constraint_filters_items(client: TestClient, state: ServingState, world: World) -> None:
    response = client.get(f"/v1/users/{world.users[2]}/recommendations",
                          params={"k": 5, "constraint": "bedrooms >= 4"})
    assert response.status_code == 200, response.text
    items = state.store.items()
    assert _ids(response.json())
    assert all(items.loc[i, "bedrooms"] >= 4 for i in _ids(response.json()))


def test_bad_constraint_is_422_naming_the_field(client: TestClient, world: World) -> None:
    url = f"/v1/users/{world.users[0]}/recommendations"
    for bad in ("bedrooms => 3", "no_such_field == 1"):
        response = client.get(url, params={"constraint": bad})
        assert response.status_code == 422, (bad, response.text)
        assert response.json()["field"] == "constraint"


def test_bad_k_is_422_naming_k(client: TestClient, world: World) -> None:
    url = f"/v1/users/{world.users[0]}/recommendations"
    for k in ("0", "abc", "100000"):
        response = client.get(url, params={"k": k})
        assert response.status_code == 422, k
        assert response.json()["field"] == "k"


def test_unknown_named_model_is_404(client: TestClient, world: World) -> None:
    response = client.get(f"/v1/users/{world.users[0]}/recommendations",
                          params={"model": "nope"})
    assert response.status_code == 404


def test_named_model(client: TestClient, world: World) -> None:
    response = client.get(f"/v1/users/{world.users[0]}/recommendations",
                          params={"model": "popularity", "k": 3})
    assert response.status_code == 200
    assert {item["source"] for item in response.json()["items"]} == {"popularity"}


def test_batch_recommendations(client: TestClient, world: World) -> None:
    users = [world.users[0], "cold-user"]
    body = client.post("/v1/recommendations", json={"users": users, "k": 4}).json()
    assert body["count"] == 2
    assert [entry["user_id"] for entry in body["data"]] == users
    single = client.get(f"/v1/users/{users[0]}/recommendations", params={"k": 4}).json()
    assert _ids(body["data"][0]) == _ids(single)


def test_bad_body_is_422_naming_the_field(client: TestClient) -> None:
    response = client.post("/v1/recommendations", json={"users": "u1", "k": 4})
    assert response.status_code == 422
    assert response.json()["field"] == "users"
    response = client.post("/v1/recommendations", json={"users": ["u"] * 51})
    assert response.status_code == 422
    assert response.json()["field"] == "users"


# -- items --------------------------------------------------------------------------------
def test_similar_items(client: TestClient, world: World) -> None:
    item = world.items[0]
    body = client.get(f"/v1/items/{item}/similar", params={"k": 5}).json()
    assert body["count"] == 5
    assert item not in _ids(body)
    batch = client.post("/v1/similar", json={"items": [item, world.items[1]], "k": 5}).json()
    assert batch["count"] == 2
    assert _ids(batch["data"][0]) == _ids(body)


def test_unknown_item_is_404(client: TestClient) -> None:
    assert client.get("/v1/items/no-such-item/similar").status_code == 404
    assert client.get("/v1/items/no-such-item/audience").status_code == 404


def test_audience(client: TestClient, world: World) -> None:
    item = world.items[0]
    body = client.get(f"/v1/items/{item}/audience", params={"n": 7}).json()
    assert body["count"] == 7
    assert all(user["user_id"] in world.users for user in body["users"])
    combined = client.post("/v1/audience",
                           json={"items": world.items[:2], "n": 5, "combine": True}).json()
    assert combined["count"] == 1
    assert combined["data"][0]["items"] == world.items[:2]
    separate = client.post("/v1/audience", json={"items": world.items[:2], "n": 5}).json()
    assert separate["count"] == 2


def test_item_catalogue_writes(client: TestClient, state: ServingState,
                               write: dict[str, str]) -> None:
    response = client.put("/v1/items/new-item", json={"features": {"bedrooms": 9}}, headers=write)
    assert response.status_code == 200
    assert state.store.items().loc["new-item", "bedrooms"] == 9
    assert client.delete("/v1/items/new-item", headers=write).status_code == 200
    assert client.delete("/v1/items/new-item", headers=write).status_code == 404


def test_delete_user_deletes_events(client: TestClient, state: ServingState, world: World,
                                    write: dict[str, str]) -> None:
    user = world.users[3]
    assert client.put(f"/v1/users/{user}", json={"features": {"age": 30}},
                      headers=write).status_code == 200
    before = (state.store.events()["user_id"] == user).sum()
    response = client.delete(f"/v1/users/{user}", headers=write)
    assert response.status_code == 200
    assert response.json()["events_deleted"] == before > 0
    assert (state.store.events()["user_id"] == user).sum() == 0


def test_user_features_keep_their_kinds(client: TestClient, state: ServingState,
                                        write: dict[str, str]) -> None:
    body = {"features": {"age": 41, "joined": "2025-02-03"},
            "kinds": {"age": "numeric", "joined": "date"}}
    response = client.put("/v1/users/kinded", json=body, headers=write)
    assert response.status_code == 200 and response.json()["kinds"] == body["kinds"]
    assert state.store.feature_kinds("user") == {"age": "numeric", "joined": "date"}
    misfit = client.put("/v1/users/other", json={"features": {"joined": "someday"}},
                        headers=write)
    assert misfit.status_code == 422 and misfit.json()["field"] == "joined"


# -- auth and limits ----------------------------------------------------------------------
def test_writes_need_a_write_key(client: TestClient, world: World) -> None:
    event = {"user_id": world.users[0], "item_id": world.items[0], "event_type": "view"}
    assert client.post("/v1/events", json=event).status_code == 401
    assert client.post("/v1/events", json=event, headers={"X-API-Key": "wrong"}).status_code \
        == 403
    assert client.put("/v1/items/x", json={}).status_code == 401
    assert client.delete("/v1/users/x").status_code == 401
    assert client.post("/v1/models/rollback").status_code == 401
    assert client.post("/v1/events", json=event, headers={"X-API-Key": WRITE_KEY}).status_code \
        == 200


def test_read_keys_close_reads(state: ServingState, world: World) -> None:
    settings = Settings(read_keys=READ_KEY, write_keys=WRITE_KEY)
    client = TestClient(create_app(settings, state))
    url = f"/v1/users/{world.users[0]}/recommendations"
    assert client.get(url).status_code == 401
    assert client.get(url, headers={"X-API-Key": "wrong"}).status_code == 403
    assert client.get(url, headers={"X-API-Key": READ_KEY}).status_code == 200
    assert client.get(url, headers={"X-API-Key": WRITE_KEY}).status_code == 200
    assert client.get("/healthz").status_code == 200


def test_anonymous_writes_for_demos(state: ServingState, world: World) -> None:
    client = TestClient(create_app(Settings(allow_anonymous_writes=True), state))
    event = {"user_id": world.users[0], "item_id": world.items[0], "event_type": "view"}
    assert client.post("/v1/events", json=event).status_code == 200


def test_oversized_body_is_413(client: TestClient, write: dict[str, str]) -> None:
    events = [{"user_id": f"u{i}", "item_id": "i00", "event_type": "view"} for i in range(2000)]
    response = client.post("/v1/events", json={"events": events}, headers=write)
    assert response.status_code == 413


def test_streamed_oversized_body_is_413(client: TestClient, write: dict[str, str]) -> None:
    """No Content-Length to check up front: the limit applies to the bytes as they arrive."""
    chunk = b'{"events": [' + b'{"user_id": "u", "item_id": "i", "event_type": "view"},' * 200

    def body():
        for _ in range(20):  # 20 × ~11 KB, over the 64 KB limit
            yield chunk

    response = client.post("/v1/events", content=body(),
                           headers={**write, "Content-Type": "application/json"})
    assert "content-length" not in {k.lower() for k in response.request.headers}
    assert response.status_code == 413
    assert response.json()["field"] == "body"


def test_settings_refuse_default_secrets() -> None:
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        Settings(write_keys="changeme")
    with pytest.raises(ValidationError):
        Settings(max_k=0)


# -- events and live fold-in --------------------------------------------------------------
def test_events_response_and_partial_rejection(client: TestClient, world: World,
                                               write: dict[str, str]) -> None:
    good = {"user_id": world.users[0], "item_id": world.items[0], "event_type": "view",
            "event_id": "evt-1"}
    bad = {"user_id": world.users[0], "item_id": world.items[0], "event_type": "view",
           "value": "-1"}
    response = client.post("/v1/events", json={"events": [good, bad]}, headers=write)
    assert response.status_code == 200
    body = response.json()
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (1, 0, 1)
    assert body["issues"][0]["row"] == 2
    assert body["issues"][0]["field"] == "value"
    again = client.post("/v1/events", json=good, headers=write).json()
    assert (again["accepted"], again["duplicates"]) == (0, 1)


def test_timestamps_no_database_can_hold_are_422(client: TestClient, world: World,
                                                 write: dict[str, str]) -> None:
    for stamp in (-99999999999, "-99999999999", "-62135596801"):
        event = {"user_id": world.users[0], "item_id": world.items[0], "event_type": "view",
                 "timestamp": stamp}
        response = client.post("/v1/events", json=event, headers=write)
        assert response.status_code == 422, (stamp, response.text)
        assert response.json()["field"] == "timestamp"


def test_an_events_device_is_stored_and_shown_and_an_overlong_one_is_422(
        client: TestClient, world: World, write: dict[str, str]) -> None:
    user = world.users[1]
    event = {"user_id": user, "item_id": world.items[0], "event_type": "view", "device": "tv"}
    assert client.post("/v1/events", json=event, headers=write).status_code == 200
    stored = client.get(f"/v1/users/{user}/events", params={"limit": 1000}).json()["data"]
    assert [e["device"] for e in stored].count("tv") == 1
    for body in ({**event, "device": "x" * 65}, {"events": [{**event, "device": "x" * 65}]}):
        response = client.post("/v1/events", json=body, headers=write)
        assert response.status_code == 422, response.text
        assert response.json()["field"].endswith("device")
    asked = client.get(f"/v1/users/{user}/recommendations", params={"device": "x" * 65})
    assert asked.status_code == 422 and asked.json()["field"] == "device"


def test_all_bad_events_is_422(client: TestClient, world: World, write: dict[str, str]) -> None:
    bad = {"user_id": world.users[0], "item_id": world.items[0], "event_type": "no-such-type"}
    response = client.post("/v1/events", json={"events": [bad]}, headers=write)
    assert response.status_code == 422
    assert response.json()["rejected"] == 1
    missing = client.post("/v1/events", json={"item_id": "i00"}, headers=write)
    assert missing.status_code == 422


def test_live_fold_in(client: TestClient, world: World, write: dict[str, str]) -> None:
    user = world.users[4]
    url = f"/v1/users/{user}/recommendations"
    before = _ids(client.get(url, params={"k": 10}).json())
    new = before[:3]
    events = [{"user_id": user, "item_id": item, "event_type": "booking"} for item in new]
    assert client.post("/v1/events", json={"events": events}, headers=write).status_code == 200
    after = _ids(client.get(url, params={"k": 10}).json())
    assert after != before
    assert not set(new) & set(after)


def test_a_retried_event_counts_once_in_the_live_history(client: TestClient, state: ServingState,
                                                         world: World,
                                                         write: dict[str, str]) -> None:
    user, item = "retrying-user", world.items[3]
    event = {"user_id": user, "item_id": item, "event_type": "booking", "event_id": "retry-1"}
    other = {"user_id": user, "item_id": item, "event_type": "view"}  # no id: always new
    for _ in range(3):  # the client did not see the reply, and sent it again
        assert client.post("/v1/events", json={"events": [event, other]},
                           headers=write).status_code == 200
    state.catch_up()  # as the next request does
    live = state.live_events(user)  # 1 booking + 3 views, in order
    assert live is not None and [e.item_id for e in live] == [item] * 4
    assert [e.event_type for e in live] == ["booking", "view", "view", "view"]


def test_cold_user_fold_in(client: TestClient, world: World, write: dict[str, str]) -> None:
    url = "/v1/users/brand-new/recommendations"
    cold = client.get(url, params={"k": 10}).json()
    event = {"user_id": "brand-new", "item_id": _ids(cold)[0], "event_type": "booking"}
    assert client.post("/v1/events", json=event, headers=write).status_code == 200
    warm = client.get(url, params={"k": 10}).json()
    assert _ids(cold)[0] not in _ids(warm)
    assert "wals" in {item["source"] for item in warm["items"]}


# -- models, hot swap ---------------------------------------------------------------------
def test_models_list_activate_rollback(client: TestClient, world: World,
                                       write: dict[str, str]) -> None:
    v1, v2 = world.versions
    listing = client.get("/v1/models").json()
    assert listing["count"] == 2
    assert {m["version"]: m["active"] for m in listing["data"]} == {v1: True, v2: False}
    url = f"/v1/users/{world.users[0]}/recommendations"
    assert client.post(f"/v1/models/{v2}/activate", headers=write).json() == {
        "model_version": v2}
    assert client.get(url).json()["model_version"] == v2
    assert client.post("/v1/models/rollback", headers=write).json() == {"model_version": v1}
    assert client.get(url).json()["model_version"] == v1
    assert client.post("/v1/models/v9999/activate", headers=write).status_code == 404


def _cut_factors(state: ServingState, version: str) -> Path:
    """Cut ``version``'s WALS item factors to 10 rows, as a damaged copy would be; its folder."""
    folder = state.registry.path(version) / "wals"
    with np.load(folder / "state.npz", allow_pickle=False) as z:
        arrays = dict(z)
    np.savez(folder / "state.npz", allow_pickle=False,
             **arrays | {"item_factors_": arrays["item_factors_"][:10]})
    return folder


def test_a_version_that_cannot_load_is_refused_and_the_old_one_keeps_serving(
        client: TestClient, state: ServingState, world: World, write: dict[str, str]) -> None:
    v1, v2 = world.versions
    url = f"/v1/users/{world.users[0]}/recommendations"
    folder = _cut_factors(state, v2)
    refused = client.post(f"/v1/models/{v2}/activate", headers=write)
    assert refused.status_code == 409, refused.text
    assert str(folder) in refused.json()["detail"] and "item_factors_" in refused.json()["detail"]
    assert client.get(url).json()["model_version"] == v1 and state.registry.current() == v1


def test_a_rollback_onto_a_version_that_cannot_load_keeps_the_one_served(
        client: TestClient, state: ServingState, world: World, write: dict[str, str]) -> None:
    v1, v2 = world.versions
    url = f"/v1/users/{world.users[0]}/recommendations"
    assert client.post(f"/v1/models/{v2}/activate", headers=write).status_code == 200
    state._previous = None  # the copy of v1 kept for instant rollbacks: load it from disk
    _cut_factors(state, v1)
    assert client.post("/v1/models/rollback", headers=write).status_code == 409
    assert state.registry.current() == v2 and client.get(url).json()["model_version"] == v2


def test_swapping_back_reuses_the_loaded_version(state: ServingState, world: World) -> None:
    v1, v2 = world.versions
    first = state.active
    assert state.swap(v2).version == v2
    assert state.swap(v1) is first  # kept loaded: no second load or index build
    assert state.swap(v1) is first
    assert state.swap(v2) is not first


def test_hot_swap_under_load(client: TestClient, world: World, write: dict[str, str]) -> None:
    v1, v2 = world.versions
    failures: list[str] = []
    seen: set[str] = set()
    stop = threading.Event()

    def hammer(user: str) -> None:
        while not stop.is_set():
            response = client.get(f"/v1/users/{user}/recommendations", params={"k": 5})
            if response.status_code != 200 or response.json()["count"] != 5:
                failures.append(response.text)
            else:
                seen.add(response.json()["model_version"])

    threads = [threading.Thread(target=hammer, args=(u,)) for u in world.users[:4]]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 20
        while not seen and not failures and time.monotonic() < deadline:
            time.sleep(0.01)
        for version in (v2, v1, v2, v1, v2):
            assert client.post(f"/v1/models/{version}/activate", headers=write).status_code \
                == 200
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert not failures
    assert seen == {v1, v2}


# -- health -------------------------------------------------------------------------------
def test_health_and_readiness(client: TestClient, world: World, tmp_path) -> None:
    from recengine.store.events import EventStore
    from recengine.store.registry import ModelRegistry

    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["model_version"] == world.versions[0]
    empty = ServingState(ModelRegistry(tmp_path / "empty"), EventStore("sqlite://"))
    empty.load_current()
    cold = TestClient(create_app(Settings(), empty))
    assert cold.get("/healthz").status_code == 200
    assert cold.get("/readyz").status_code == 503  # no model version loaded yet ...
    assert cold.get("/v1/users/u/recommendations").status_code == 200  # ... yet it answers


def test_metrics_text(client: TestClient, world: World, write: dict[str, str]) -> None:
    client.get(f"/v1/users/{world.users[0]}/recommendations")
    client.get("/v1/users/users/recommendations")  # an id equal to a segment: same template
    client.get("/v1/items/nope/similar")
    events = [{"user_id": world.users[0], "item_id": item, "event_type": "view"}
              for item in world.items[:2]]
    client.post("/v1/events", json={"events": events}, headers=write)
    text = client.get("/metrics").text
    assert ('recengine_http_requests_total{method="GET",'
            'route="/v1/users/{user_id}/recommendations",status="200"} 2.0') in text
    assert 'route="/v1/items/{item_id}/similar",status="404"} 1.0' in text
    assert "recengine_http_request_duration_seconds_count{" in text
    assert "recengine_events_ingested_total 2.0" in text
    assert f'recengine_model_info{{version="{world.versions[0]}"}} 1.0' in text
