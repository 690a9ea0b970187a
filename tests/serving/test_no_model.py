"""A server with no active version answers recommendations from what the store has."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from recengine.serving.app import create_app
from recengine.serving.settings import Settings
from recengine.serving.state import ServingState
from recengine.store.events import EventStore
from recengine.store.registry import ModelRegistry
from tests.serving.conftest import WRITE_KEY, World

WRITE = {"X-API-Key": WRITE_KEY}


@pytest.fixture
def stored(world: World, tmp_path: Path) -> Iterator[ServingState]:
    """The world's events in a store, and an empty registry: nothing trained yet."""
    db = tmp_path / "events.db"
    shutil.copy(world.database_url.removeprefix("sqlite:///"), db)
    state = ServingState(ModelRegistry(tmp_path / "registry"), EventStore(f"sqlite:///{db}"))
    state.load_current()
    yield state
    state.store.close()


@pytest.fixture
def empty(tmp_path: Path) -> Iterator[ServingState]:
    state = ServingState(ModelRegistry(tmp_path / "registry"),
                         EventStore(f"sqlite:///{tmp_path / 'empty.db'}"))
    state.load_current()
    yield state
    state.store.close()


def test_an_empty_store_gives_an_empty_list_with_its_reason(empty: ServingState) -> None:
    client = TestClient(create_app(Settings(write_keys=WRITE_KEY), empty))
    answer = client.get("/v1/users/u1/recommendations")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"user_id": "u1", "model_version": None, "items": [], "count": 0,
                             "reason": "no model version is active yet and the store holds "
                                       "no events: nothing to recommend until some arrive"}
    batch = client.post("/v1/recommendations", json={"users": ["u1", "u2"], "k": 3})
    assert batch.status_code == 200 and [d["count"] for d in batch.json()["data"]] == [0, 0]


def test_stored_events_give_popularity_without_the_users_own_items(
        stored: ServingState, world: World) -> None:
    client = TestClient(create_app(Settings(write_keys=WRITE_KEY), stored))
    user = world.users[0]
    answer = client.get(f"/v1/users/{user}/recommendations", params={"k": 5,
                                                                       "explain": True}).json()
    events = stored.store.events()
    counts = events.groupby("item_id")["user_id"].nunique()
    own = set(events.loc[events["user_id"] == user, "item_id"])
    expected = counts.drop(list(own), errors="ignore").sort_values(ascending=False)
    assert answer["model_version"] is None and answer["count"] == 5
    assert f"the most popular items of the {len(events)} events stored" in answer["reason"]
    assert [i["score"] for i in answer["items"]] == expected.iloc[:5].astype(float).tolist()
    assert not own & {i["item_id"] for i in answer["items"]}
    assert {i["source"] for i in answer["items"]} == {"popularity"}
    assert answer["items"][0]["reason"].startswith("popular: ")
    batch = client.post("/v1/recommendations", json={"users": [user], "k": 5}).json()
    assert batch["data"][0]["items"] == [dict(i, reason=None) for i in answer["items"]]


def test_events_posted_count_at_once_and_deleted_items_are_never_served(
        stored: ServingState) -> None:
    client = TestClient(create_app(Settings(write_keys=WRITE_KEY), stored))
    crowd = [{"user_id": f"fan-{n}", "item_id": "new-hit", "event_type": "view"}
             for n in range(300)]
    assert client.post("/v1/events", json={"events": crowd}, headers=WRITE).status_code == 200
    top = client.get("/v1/users/someone/recommendations", params={"k": 3}).json()["items"]
    assert top[0]["item_id"] == "new-hit" and top[0]["score"] == 300
    assert client.get("/v1/users/fan-1/recommendations").json()["items"][0]["item_id"] != (
        "new-hit")  # their own item is left out
    assert client.delete("/v1/items/new-hit", headers=WRITE).status_code == 200
    after = client.get("/v1/users/someone/recommendations", params={"k": 3}).json()["items"]
    assert "new-hit" not in {i["item_id"] for i in after}


def test_what_needs_a_trained_model_still_says_none_is_loaded(stored: ServingState,
                                                              world: World) -> None:
    client = TestClient(create_app(Settings(write_keys=WRITE_KEY), stored))
    assert client.get(f"/v1/items/{world.items[0]}/similar").status_code == 503
    assert client.get("/readyz").status_code == 503
    named = client.get("/v1/users/u/recommendations", params={"model": "wals"})
    assert named.status_code == 404 and "no model version is active" in named.json()["detail"]


def test_a_store_in_memory_serves_but_leaves_the_first_version_to_an_operator(
        tmp_path: Path) -> None:
    """A child process could not read it, so no first version is trained in the background."""
    state = ServingState(ModelRegistry(tmp_path / "registry"), EventStore("sqlite://"))
    with TestClient(create_app(Settings(write_keys=WRITE_KEY), state)) as client:
        assert client.get("/v1/users/u/recommendations").status_code == 200
        assert client.get("/v1/models/retraining").json() == {"enabled": False}
    state.store.close()
