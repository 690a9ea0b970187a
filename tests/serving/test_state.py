"""Live histories outlive the process: rebuilt from the events a version was not trained on."""

from __future__ import annotations

import shutil
from pathlib import Path

from recengine.models.base import Recommender
from recengine.serving.bell import Ring
from recengine.serving.state import ServingState
from recengine.store.events import EventStore
from recengine.store.registry import ModelRegistry
from tests.serving.conftest import World


def _world_copy(world: World, tmp_path: Path) -> tuple[ModelRegistry, EventStore]:
    shutil.copytree(world.registry_root, tmp_path / "registry")
    shutil.copy(world.database_url.removeprefix("sqlite:///"), tmp_path / "events.db")
    return ModelRegistry(tmp_path / "registry"), EventStore(f"sqlite:///{tmp_path / 'events.db'}")


def _publish_through_now(registry: ModelRegistry, store: EventStore, version: str) -> str:
    """Republish ``version``'s models as trained on every event stored so far."""
    models = {name: registry.load(version, name) for name in registry.show(version)["models"]}
    new = registry.publish(models, data=store.snapshot(), metrics={})
    registry.activate(new)
    return new


def test_a_restarted_server_folds_in_what_arrived_after_training(world: World,
                                                                 tmp_path: Path) -> None:
    registry, store = _world_copy(world, tmp_path)
    _publish_through_now(registry, store, world.versions[0])
    user, item = world.users[5], world.items[-1]
    first = ServingState(registry, store)
    first.load_current()
    assert first.live_events(user) is None
    store.ingest([{"user_id": user, "item_id": item, "event_type": "booking"},
                  {"user_id": "newcomer", "item_id": item, "event_type": "booking"}])

    restarted = ServingState(registry, store)  # never saw the events through the API
    restarted.load_current()
    history = restarted.live_events(user)
    assert history is not None and item in [e.item_id for e in history]
    assert item not in [r.item for r in restarted.recommend(user, 10)[1]]
    assert {r.source for r in restarted.recommend("newcomer", 5)[1]} == {"wals"}


def test_a_version_trained_on_the_events_does_not_count_them_again(world: World,
                                                                  tmp_path: Path) -> None:
    registry, store = _world_copy(world, tmp_path)
    _publish_through_now(registry, store, world.versions[0])
    state = ServingState(registry, store)
    state.load_current()
    user, item = world.users[6], world.items[-2]
    records = [{"user_id": user, "item_id": item, "event_type": "booking"}]
    store.ingest(records)
    state.changed(Ring.EVENTS)
    state.catch_up()
    assert state.live_events(user) is not None
    state.swap(_publish_through_now(registry, store, world.versions[0]))
    assert state.live_events(user) is None


def test_versions_without_a_snapshot_keep_the_live_histories(state: ServingState,
                                                             world: World) -> None:
    user = world.users[7]
    state.store.ingest([{"user_id": user, "item_id": world.items[0], "event_type": "view"}])
    state.changed(Ring.EVENTS)
    state.catch_up()
    state.swap(world.versions[1])  # published with an event count only
    assert state.live_events(user) is not None


def test_a_loaded_version_has_answered_each_kind_of_request(world: World, monkeypatch) -> None:
    """Off the request path: the first call of each compiled kernel is slow (numba's cache)."""
    called: list[str] = []
    for name in ("recommend", "recommend_history", "similar_items", "explain"):
        original = getattr(Recommender, name)

        def spy(self, *args, _name=name, _original=original, **kwargs):
            called.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(Recommender, name, spy)
    state = ServingState(ModelRegistry(world.registry_root), EventStore(world.database_url))
    state.load_current()
    assert set(called) == {"recommend", "recommend_history", "similar_items", "explain"}
