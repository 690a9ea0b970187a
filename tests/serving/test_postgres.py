"""The API over a PostgreSQL event store (the tests' own server): the same contract as SQLite."""

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


@pytest.fixture
def client(world: World, postgres_url: str, tmp_path: Path) -> Iterator[TestClient]:
    shutil.copytree(world.registry_root, tmp_path / "registry")
    store = EventStore(postgres_url)
    with EventStore(world.database_url) as sqlite:
        store.append(sqlite.events().drop(columns="id"))
        store.upsert_items(sqlite.items())
    state = ServingState(ModelRegistry(tmp_path / "registry"), store, cache_users=100)
    state.load_current()
    yield TestClient(create_app(Settings(write_keys=WRITE_KEY), state))
    store.close()


def test_events_fold_in_and_deletes_on_postgres(client: TestClient, world: World) -> None:
    write = {"X-API-Key": WRITE_KEY}
    user = world.users[2]
    url = f"/v1/users/{user}/recommendations"
    before = [i["item_id"] for i in client.get(url, params={"k": 5}).json()["items"]]
    event = {"user_id": user, "item_id": before[0], "event_type": "booking", "event_id": "pg-1"}
    first = client.post("/v1/events", json=event, headers=write).json()
    again = client.post("/v1/events", json=event, headers=write).json()
    assert (first["accepted"], again["duplicates"]) == (1, 1)
    after = [i["item_id"] for i in client.get(url, params={"k": 5}).json()["items"]]
    assert before[0] not in after
    deleted = client.delete(f"/v1/users/{user}", headers=write).json()
    assert deleted["events_deleted"] > 1
    assert client.get("/readyz").json()["status"] == "ready"
