"""Nothing slow runs on the event loop: loading a model, reading the catalogue or catching up
with the store happen in worker threads, even for a plain request."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from recengine.models.rules import Exclude
from recengine.serving.app import create_app
from recengine.serving.settings import Settings
from recengine.serving.state import ServingState
from recengine.store.events import EventStore
from recengine.store.registry import ModelRegistry
from tests.serving.conftest import WRITE_KEY, World


def _record_threads(monkeypatch: pytest.MonkeyPatch, owner: object, name: str,
                    threads: list[str]) -> None:
    original: Callable[..., Any] = getattr(owner, name)

    def spy(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.current_thread().name)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, spy)


def _loop_thread(client: TestClient) -> str:
    """The name of the thread the app's event loop runs in."""
    names: list[str] = []

    async def probe() -> None:
        names.append(threading.current_thread().name)

    client.portal.call(probe)  # type: ignore[union-attr]
    return names[0]


def test_a_model_named_for_the_first_time_loads_off_the_loop(
        state: ServingState, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[str] = []
    _record_threads(monkeypatch, state.registry, "load", threads)
    with TestClient(create_app(Settings(write_keys=WRITE_KEY), state)) as client:
        loop = _loop_thread(client)
        response = client.get(f"/v1/users/{world.users[0]}/recommendations",
                              params={"model": "popularity"})
        assert response.status_code == 200
    assert threads and loop not in threads


def test_the_catalogue_is_read_off_the_loop_after_a_write(
        world: World, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    shutil.copytree(world.registry_root, tmp_path / "registry")
    shutil.copy(world.database_url.removeprefix("sqlite:///"), tmp_path / "events.db")
    state = ServingState(ModelRegistry(tmp_path / "registry"),
                         EventStore(f"sqlite:///{tmp_path / 'events.db'}"),
                         rules=[Exclude(items=[world.items[0]])])
    state.load_current()
    threads: list[str] = []
    _record_threads(monkeypatch, state.store, "typed_items", threads)
    with TestClient(create_app(Settings(write_keys=WRITE_KEY), state)) as client:
        loop = _loop_thread(client)
        url = f"/v1/users/{world.users[0]}/recommendations"
        assert client.get(url).status_code == 200
        assert client.put(f"/v1/items/{world.items[1]}", json={"features": {"x": 1}},
                          headers={"X-API-Key": WRITE_KEY}).status_code == 200
        assert client.get(url).status_code == 200  # the rules are bound to the new catalogue
    assert threads and loop not in threads
    state.store.close()
