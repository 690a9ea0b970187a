"""The item catalogue through the API: deleted items are never served, recorded kinds are used."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from recengine.serving.state import ServingState
from recengine.store.events import EventStore
from recengine.store.registry import ModelRegistry
from tests.serving.conftest import World

COLD = "nobody-ever"


def _ids(body: dict) -> list[str]:
    return [item["item_id"] for item in body["items"]]


def _recommended(client: TestClient, user: str, **params: object) -> list[str]:
    response = client.get(f"/v1/users/{user}/recommendations", params={"k": 10, **params})
    assert response.status_code == 200, response.text
    assert response.json()["count"] == 10
    return _ids(response.json())


def _similar(client: TestClient, item: str) -> list[str]:
    return _ids(client.get(f"/v1/items/{item}/similar", params={"k": 10}).json())


@pytest.fixture
def gone(client: TestClient, world: World, write: dict[str, str]) -> list[str]:
    """The first item of a user's list (now kept in the answer cache), of a cold user's list
    (popularity) and of an item's similar items, deleted through the API."""
    firsts = [_recommended(client, world.users[0])[0], _recommended(client, COLD)[0],
              _similar(client, world.items[0])[0]]
    items = list(dict.fromkeys(firsts))
    for item in items:
        assert client.delete(f"/v1/items/{item}", headers=write).status_code == 200
    return items


def test_a_deleted_item_is_never_served(client: TestClient, world: World,
                                        gone: list[str]) -> None:
    user = world.users[0]
    pin = json.dumps([{"kind": "pin", "item": gone[0], "position": 1}])
    lists = [
        _recommended(client, user),  # its answer was cached before the delete
        _recommended(client, user),  # and is cached again now
        _recommended(client, user, explain="true"),
        _recommended(client, user, constraint="bedrooms >= 0"),
        _recommended(client, user, rules=pin),
        _recommended(client, COLD),
        _similar(client, world.items[0]),
        _similar(client, gone[-1]),  # a deleted item still has similar ones
    ]
    batch = client.post("/v1/recommendations", json={"users": [user, COLD], "k": 10}).json()
    lists += [_ids(entry) for entry in batch["data"]]
    similar = client.post("/v1/similar", json={"items": world.items[:2], "k": 10}).json()
    lists += [_ids(entry) for entry in similar["data"]]
    assert all(len(found) == 10 for found in lists)
    assert not set(gone) & {item for found in lists for item in found}


def test_a_deleted_item_has_no_audience(client: TestClient, world: World,
                                        gone: list[str]) -> None:
    response = client.get(f"/v1/items/{gone[0]}/audience", params={"n": 5})
    assert response.status_code == 404 and gone[0] in response.json()["detail"]
    batch = client.post("/v1/audience", json={"items": [world.items[5], gone[1]], "n": 5})
    assert batch.status_code == 404
    kept = next(i for i in world.items if i not in gone)
    assert client.get(f"/v1/items/{kept}/audience", params={"n": 5}).json()["count"] == 5


def test_deleted_items_stay_hidden_across_restarts_and_swaps(state: ServingState, world: World,
                                                             gone: list[str]) -> None:
    restarted = ServingState(ModelRegistry(state.registry.root), EventStore(state.store.url))
    restarted.load_current()
    other = restarted.swap(world.versions[1])  # another version hides them in its vocabulary
    back = restarted.swap(world.versions[0])  # the version kept for rollback too
    for active in (other, back):
        for user in (world.users[0], COLD):
            served = restarted.recommend(user, 10, active=active)[1]
            assert len(served) == 10 and not set(gone) & {r.item for r in served}
    restarted.store.close()


def test_put_revives_a_deleted_item(client: TestClient, state: ServingState, world: World,
                                    write: dict[str, str], gone: list[str]) -> None:
    assert client.delete(f"/v1/items/{gone[0]}", headers=write).status_code == 404
    assert client.put(f"/v1/items/{gone[0]}", json={"features": {"bedrooms": 2}},
                      headers=write).status_code == 200
    assert state.store.deleted_items() == set(gone[1:])
    assert _recommended(client, world.users[0])[0] == gone[0]


def test_deleted_items_leave_plain_requests_on_the_graph(world: World, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "events.db"
    shutil.copy(world.database_url.removeprefix("sqlite:///"), db)
    state = ServingState(ModelRegistry(world.registry_root), EventStore(f"sqlite:///{db}"),
                         approximate_min_items=len(world.items))
    state.load_current()
    user = world.users[0]
    top = [r.item for r in state.recommend(user, 10)[1]]
    for item in top[:3]:
        state.store.delete_item(item)
    state.catalogue_changed()

    def brute_force(*args: object, **kwargs: object) -> None:
        raise AssertionError("a plain request scored every item")

    monkeypatch.setattr(state.active.model, "_recommend_exact", brute_force)
    served = [r.item for r in state.recommend(user, 10)[1]]
    assert served[:7] == top[3:] and not set(top[:3]) & set(served)
    state.store.close()


# -- feature kinds ------------------------------------------------------------------------------
DATE = 'listed_date >= "2023-06-01"'
TEXT = 'description contains "fireplace" and amenities has "wifi"'


def test_kinds_put_through_the_api_open_date_and_text_constraints(
        client: TestClient, state: ServingState, world: World, write: dict[str, str]) -> None:
    url = f"/v1/users/{world.users[2]}/recommendations"
    for constraint in (DATE, TEXT):  # guessed from the values, both look categorical
        assert client.get(url, params={"constraint": constraint}).status_code == 422
    item = world.items[0]
    features = {k: v for k, v in state.store.items().loc[item].items() if v is not None}
    response = client.put(f"/v1/items/{item}", headers=write, json={
        "features": features, "kinds": {"listed_date": "date", "description": "text"}})
    assert response.status_code == 200, response.text
    assert response.json()["kinds"] == {"listed_date": "date", "description": "text"}
    _check_constraints(client, state, url)


def test_kinds_stored_by_a_publish_are_used(client: TestClient, state: ServingState,
                                            world: World) -> None:
    state.store.upsert_items(state.store.items(), kinds={"listed_date": "date",
                                                         "description": "text"})
    state.catalogue_changed()
    _check_constraints(client, state, f"/v1/users/{world.users[2]}/recommendations")


def _check_constraints(client: TestClient, state: ServingState, url: str) -> None:
    items = state.store.items()
    dated = _ids(client.get(url, params={"k": 10, "constraint": DATE}).json())
    assert dated and all(items.loc[i, "listed_date"] >= "2023-06-01" for i in dated)
    texts = _ids(client.get(url, params={"k": 10, "constraint": TEXT}).json())
    assert texts and all("fireplace" in items.loc[i, "description"].lower()
                         and "wifi" in items.loc[i, "amenities"] for i in texts)


@pytest.mark.parametrize(("body", "field"), [
    ({"features": {"listed_date": "2026-01-01"}, "kinds": {"listed_date": "when"}},
     "kinds.listed_date"),
    ({"features": {"listed_date": "soon"}, "kinds": {"listed_date": "date"}}, "listed_date"),
])
def test_bad_kinds_and_values_are_422_naming_the_field(client: TestClient, state: ServingState,
                                                       write: dict[str, str], body: dict,
                                                       field: str) -> None:
    response = client.put("/v1/items/new-item", json=body, headers=write)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert "new-item" not in state.store.items().index
