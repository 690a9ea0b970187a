"""Background retraining in the server: events posted through the API trigger a hot swap."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from recengine.pipeline.retrain import retrain
from recengine.serving.app import create_app
from recengine.serving.settings import Settings
from recengine.serving.state import ServingState
from recengine.store.events import EventStore
from recengine.store.registry import ModelRegistry
from tests.serving.conftest import WRITE_KEY, World


@pytest.fixture
def make_state(world: World, tmp_path: Path) -> Iterator[Callable[..., ServingState]]:
    """States over a copy of the world's events: ``make(models, behind)`` trains ``models`` on
    all but the newest ``behind`` events and activates them as v0001 (none for None)."""
    made: list[ServingState] = []

    def make(models: dict[str, dict] | None, behind: int = 0) -> ServingState:
        db = tmp_path / "events.db"
        shutil.copy(world.database_url.removeprefix("sqlite:///"), db)
        store = EventStore(f"sqlite:///{db}")
        registry = ModelRegistry(tmp_path / "registry")
        if models is not None:
            until = store.last_id() - behind
            first = retrain(store.dataset(until_id=until), registry, models=models,
                            data_snapshot=store.snapshot(until_id=until))
            assert first.version == "v0001" and first.activated
        made.append(ServingState(registry, store))
        made[-1].load_current()
        return made[-1]

    yield make
    for state in made:
        state.store.close()


@pytest.fixture
def popular_state(make_state: Callable[..., ServingState]) -> ServingState:
    """The world's events, and a registry whose active v0001 is what the trigger retrains."""
    return make_state({"popularity": {}})


def wait_for_status(client: TestClient, done: Callable[[dict[str, Any]], bool],
                    timeout: float = 30) -> dict[str, Any]:
    """The retraining status once ``done`` holds, or when ``timeout`` s have passed."""
    deadline = time.monotonic() + timeout
    status = client.get("/v1/models/retraining").json()
    while not done(status) and time.monotonic() < deadline:
        time.sleep(0.05)
        status = client.get("/v1/models/retraining").json()
    return status


def test_posted_events_trigger_a_retrain_and_a_hot_swap(popular_state: ServingState,
                                                        world: World) -> None:
    settings = Settings(write_keys=WRITE_KEY, retrain_after_events=30,
                        retrain_models="popularity")
    url = f"/v1/users/{world.users[0]}/recommendations"
    statuses: list[int] = []
    versions: list[str] = []
    with TestClient(create_app(settings, popular_state)) as client:
        status = client.get("/v1/models/retraining").json()
        assert status["enabled"] is True and status["after_events"] == 30
        assert status["runs"] == 0 and status["events_since_last_training"] == 0
        assert client.get(url).json()["model_version"] == "v0001"
        assert "brand-new-item" not in popular_state.active.model.items_
        for n in range(3):  # 30 events for one new item: enough to fire the trigger
            batch = [{"user_id": f"new-user-{n}-{i}", "item_id": "brand-new-item",
                      "event_type": "view"} for i in range(10)]
            response = client.post("/v1/events", json={"events": batch},
                                   headers={"X-API-Key": WRITE_KEY})
            assert response.status_code == 200 and response.json()["accepted"] == 10
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            response = client.get(url)
            statuses.append(response.status_code)
            versions.append(response.json().get("model_version", ""))
            if versions[-1] == "v0002":
                break
            time.sleep(0.02)
        # Served as soon as it is active (the store poller may swap before the run reports).
        status = client.get("/v1/models/retraining").json()
        while status["runs"] == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
            status = client.get("/v1/models/retraining").json()
    assert versions[-1] == "v0002", status
    assert set(statuses) == {200}
    assert status["runs"] == 1 and status["last_version"] == "v0002"
    assert status["last_error"] is None and status["events_since_last_training"] == 0
    assert popular_state.registry.current() == "v0002"
    # the new version saw the posted events: it knows the new item, v0001 did not
    assert "brand-new-item" in popular_state.active.model.items_
    assert "brand-new-item" not in popular_state.registry.load("v0001").items_


def test_by_default_the_served_configuration_is_retrained_from_its_snapshot(
        world: World, make_state: Callable[..., ServingState]) -> None:
    """A server restarted 40 events after its version's snapshot retrains it at once, as is."""
    served = {"wals": {"model": "wals", "factors": 6, "iterations": 2}, "popularity": {}}
    state = make_state(served, behind=40)
    settings = Settings(write_keys=WRITE_KEY, retrain_after_events=30)
    url = f"/v1/users/{world.users[0]}/recommendations"
    with TestClient(create_app(settings, state)) as client:
        status = wait_for_status(client, lambda s: s["runs"] >= 1 and not s["busy"])
        version = client.get(url).json()["model_version"]
    assert status["last_trigger"] == "events" and status["published"] == 1, status
    assert status["models"] is None and version == "v0002"
    before, after = (state.registry.show(v)["models"] for v in ("v0001", "v0002"))
    assert after["wals"]["config"]["factors"] == 6 and after == before
    assert status["counted_after_id"] == state.registry.show("v0002")["data"]["last_id"]


def test_no_active_version_and_no_models_is_reported(
        make_state: Callable[..., ServingState]) -> None:
    """With the first version left to an operator (no bootstrap), retraining has nothing to
    retrain until one is active, and says so."""
    state = make_state(None)
    settings = Settings(write_keys=WRITE_KEY, retrain_every_seconds=0.05,
                        bootstrap_after_events=0)
    with TestClient(create_app(settings, state)) as client:
        status = wait_for_status(client, lambda s: s["failures"] >= 1)
        assert client.get("/healthz").status_code == 200
    assert status["running"] and status["published"] == 0
    assert "no active version and no models are configured" in status["last_error"]


def test_a_server_with_no_version_trains_its_first_once_enough_events_arrived(
        make_state: Callable[..., ServingState], world: World) -> None:
    state = make_state(None)
    threshold = state.store.count() + 20
    settings = Settings(write_keys=WRITE_KEY, bootstrap_after_events=threshold,
                        retrain_models="popularity")
    url = f"/v1/users/{world.users[0]}/recommendations"
    with TestClient(create_app(settings, state)) as client:
        before = client.get(url).json()
        assert before["model_version"] is None and before["reason"].startswith("no model")
        time.sleep(0.3)  # polls that find too few events: nothing trained
        status = client.get("/v1/models/retraining").json()
        assert status["enabled"] and status["runs"] == 0, status
        assert status["bootstrap_after_events"] == threshold
        batch = [{"user_id": f"new-{n}", "item_id": world.items[n], "event_type": "view"}
                 for n in range(20)]
        assert client.post("/v1/events", json={"events": batch},
                           headers={"X-API-Key": WRITE_KEY}).status_code == 200
        status = wait_for_status(client, lambda s: s["published"] >= 1 and not s["busy"])
        after = client.get(url).json()
    assert status["last_trigger"] == "bootstrap" and status["last_version"] == "v0001", status
    assert after["model_version"] == "v0001" and after["reason"] is None
    assert state.registry.current() == "v0001"
    assert state.registry.show("v0001")["data"]["last_id"] == state.store.last_id()


def test_no_trigger_no_scheduler(popular_state: ServingState) -> None:
    with TestClient(create_app(Settings(write_keys=WRITE_KEY), popular_state)) as client:
        assert client.get("/v1/models/retraining").json() == {"enabled": False}
        assert client.app.state.retraining is None


def test_the_scheduler_stops_with_the_app(popular_state: ServingState) -> None:
    settings = Settings(write_keys=WRITE_KEY, retrain_every_seconds=3600,
                        retrain_models="popularity")
    app = create_app(settings, popular_state)
    with TestClient(app):
        scheduler = app.state.retraining
        assert scheduler is not None and scheduler.running
    assert not scheduler.running


def test_background_retraining_trains_on_the_engine_the_settings_name(
        popular_state: ServingState, monkeypatch: pytest.MonkeyPatch) -> None:
    """RECENGINE_RETRAIN_ENGINE=spark reaches every run's retrain (tests/spark/test_retrain.py
    runs one on Spark end to end); the default trains locally."""
    monkeypatch.setenv("RECENGINE_RETRAIN_ENGINE", "spark")
    monkeypatch.setenv("RECENGINE_RETRAIN_SPARK_MASTER", "spark://10.0.0.1:7077")
    app = create_app(Settings(write_keys=WRITE_KEY, retrain_every_seconds=3600,
                              retrain_models="wals"), popular_state)
    with TestClient(app):
        assert app.state.retraining.retrain_options == {"engine": "spark",
                                                        "master": "spark://10.0.0.1:7077"}
    monkeypatch.delenv("RECENGINE_RETRAIN_ENGINE")
    local = create_app(Settings(write_keys=WRITE_KEY, retrain_every_seconds=3600),
                       popular_state)
    with TestClient(local):
        assert local.state.retraining.retrain_options["engine"] == "local"
    with pytest.raises(ValueError, match="retrain_engine"):
        Settings(retrain_engine="flink")


def test_retrain_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="unknown model"):
        Settings(retrain_models="popularity, nope")
    with pytest.raises(ValueError):
        Settings(retrain_after_events=0)
    assert Settings(retrain_models="wals, popularity").retrain_model_configs == {
        "wals": {}, "popularity": {}}
    assert Settings(retrain_models=" , ").retrain_model_configs is None
    assert not Settings().retraining and Settings(retrain_every_seconds=5).retraining
    assert Settings().bootstrap_after_events == 1000
    with pytest.raises(ValueError):
        Settings(bootstrap_after_events=-1)
