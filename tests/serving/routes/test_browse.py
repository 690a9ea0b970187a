"""The paged read API of the console (issue 15): users, items, a user's history, activity."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi.testclient import TestClient

from recengine.serving.app import create_app
from recengine.serving.settings import Settings
from recengine.serving.state import ServingState
from tests.serving.conftest import READ_KEY, WRITE_KEY, World


def test_users_page_by_page_in_id_order_with_the_total(client: TestClient, world: World
                                                       ) -> None:
    first = client.get("/v1/users", params={"limit": 7}).json()
    second = client.get("/v1/users", params={"limit": 7, "offset": 7}).json()
    assert first["total"] == len(world.users) and first["count"] == 7 and first["offset"] == 0
    ids = [u["user_id"] for u in first["data"] + second["data"]]
    assert ids == sorted(world.users)[:14]
    stored = client.get(f"/v1/users/{ids[0]}/events", params={"limit": 1000}).json()
    assert first["data"][0]["events"] == stored["total"] > 0


def test_search_matches_ids_containing_the_text_in_any_case(client: TestClient, world: World
                                                            ) -> None:
    body = client.get("/v1/items", params={"q": world.items[3].upper(), "limit": 1000}).json()
    assert world.items[3] in [i["item_id"] for i in body["data"]]
    assert all(world.items[3] in i["item_id"] for i in body["data"])
    assert body["total"] == body["count"]
    assert client.get("/v1/users", params={"q": "%"}).json()["total"] == 0  # literal, no pattern


def test_a_deleted_item_is_listed_as_deleted(client: TestClient, world: World,
                                             write: dict[str, str]) -> None:
    item = world.items[0]
    assert client.delete(f"/v1/items/{item}", headers=write).status_code == 200
    row = client.get("/v1/items", params={"q": item}).json()["data"][0]
    assert row["item_id"] == item and row["deleted"] is True and row["events"] > 0


def test_a_users_history_is_in_time_order_both_ways(client: TestClient, world: World,
                                                    write: dict[str, str]) -> None:
    user = world.users[5]
    oldest = client.get(f"/v1/users/{user}/events", params={"limit": 1000}).json()
    times = [e["timestamp"] for e in oldest["data"]]
    assert times == sorted(times) and oldest["count"] == oldest["total"] > 1
    newest = client.get(f"/v1/users/{user}/events", params={"order": "desc", "limit": 2}).json()
    assert [e["id"] for e in newest["data"]] == [e["id"] for e in oldest["data"][::-1][:2]]
    now = datetime.now(UTC).replace(microsecond=0, tzinfo=None)
    posted = client.post("/v1/events", headers=write, json={
        "user_id": user, "item_id": world.items[1], "event_type": "view",
        "timestamp": now.isoformat()})
    assert posted.json()["accepted"] == 1, posted.text
    latest = client.get(f"/v1/users/{user}/events", params={"order": "desc", "limit": 1}).json()
    assert latest["total"] == oldest["total"] + 1
    assert latest["data"][0]["timestamp"] == now.isoformat()
    nobody = client.get("/v1/users/nobody-at-all/events").json()
    assert nobody["data"] == [] and nobody["total"] == 0


def test_metrics_history_counts_events_per_minute_and_requests(client: TestClient,
                                                               world: World,
                                                               write: dict[str, str]) -> None:
    events = [{"user_id": world.users[0], "item_id": i, "event_type": "click"}
              for i in world.items[:3]]
    assert client.post("/v1/events", headers=write, json={"events": events}).status_code == 200
    for _ in range(4):
        client.get(f"/v1/users/{world.users[0]}/recommendations")
    body = client.get("/v1/metrics/history", params={"minutes": 5}).json()
    assert body["minutes"] == 5 and len(body["requests"]) == 5
    clicks = sum(e["count"] for e in body["events"] if e["event_type"] == "click")
    assert clicks == 3  # arrived now; the world's events were stored long before
    assert sum(m["count"] for m in body["requests"]) >= 5
    busy = [m for m in body["requests"] if m["count"]]
    assert all(0 < m["p50_ms"] <= m["p99_ms"] for m in busy)


def test_bad_parameters_are_a_422_naming_the_field(client: TestClient) -> None:
    for path, params, field in [("/v1/users", {"limit": 0}, "limit"),
                                ("/v1/items", {"limit": 5000}, "limit"),
                                ("/v1/users", {"offset": -1}, "offset"),
                                ("/v1/users", {"q": "x" * 201}, "q"),
                                ("/v1/users", {"q": "a\x00b"}, "q"),
                                ("/v1/users/u1/events", {"order": "sideways"}, "order"),
                                ("/v1/metrics/history", {"minutes": 61}, "minutes")]:
        response = client.get(path, params=params)
        assert response.status_code == 422, (path, params, response.text)
        assert response.json()["field"] == field


def test_with_read_keys_the_lists_need_one(state: ServingState) -> None:
    app = create_app(Settings(read_keys=READ_KEY, write_keys=WRITE_KEY), state)
    with TestClient(app) as client:
        for path in ("/v1/users", "/v1/items", "/v1/users/u1/events", "/v1/metrics/history"):
            assert client.get(path).status_code == 401
            assert client.get(path, headers={"X-API-Key": READ_KEY}).status_code == 200
        schema = client.get("/openapi.json", headers={"X-API-Key": READ_KEY}).json()
    for path in ("/v1/users", "/v1/items", "/v1/users/{user_id}/events", "/v1/metrics/history"):
        assert "get" in schema["paths"][path]  # public, described
