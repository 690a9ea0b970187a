"""A registry with two real fitted versions and a SQLite event store holding their events."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from recengine.data.synthetic import generate
from recengine.data.training_data import TrainingData
from recengine.data.weighting import aggregate
from recengine.models import WALS, Popularity
from recengine.models.fallback import FallbackChain
from recengine.pipeline.prepare import events_of, training_data
from recengine.serving.app import create_app
from recengine.serving.settings import Settings
from recengine.serving.state import ServingState
from recengine.store.events import EventStore
from recengine.store.registry import ModelRegistry

WRITE_KEY = "write-key-for-tests"
READ_KEY = "read-key-for-tests"


@dataclass
class World:
    registry_root: Path
    database_url: str
    versions: tuple[str, str]
    users: list[str]
    items: list[str]


@pytest.fixture(scope="session")
def world_data() -> TrainingData:
    """The world's events as training data, with the ordered log (for models of order)."""
    dataset = generate(n_users=200, n_items=100, seed=0)
    return training_data(dataset, aggregate(dataset.events, dataset.schema),
                         events=events_of(dataset))


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("serving")
    dataset = generate(n_users=200, n_items=100, seed=0)
    data = training_data(dataset, aggregate(dataset.events, dataset.schema))
    registry = ModelRegistry(root / "registry")
    wals = WALS(factors=8, iterations=5).fit(data)
    v1 = registry.publish({"wals": wals, "popularity": Popularity().fit(data)},
                          data={"count": len(dataset.events)}, metrics={})
    v2 = registry.publish({"wals": WALS(factors=4, iterations=3).fit(data)},
                          data={"count": len(dataset.events)}, metrics={})
    registry.activate(v1)
    url = f"sqlite:///{root / 'events.db'}"
    with EventStore(url) as store:
        store.ingest(dataset.events.astype({"timestamp": str}).to_dict("records"))
        store.upsert_items(dataset.items)
    return World(root / "registry", url, (v1, v2), [str(u) for u in data.users.ids],
                 [str(i) for i in data.items.ids])


@pytest.fixture
def state(world: World, tmp_path: Path) -> ServingState:
    """A fresh state per test over a private copy of the registry and the database."""
    import shutil

    registry = tmp_path / "registry"
    shutil.copytree(world.registry_root, registry)
    db = tmp_path / "events.db"
    shutil.copy(world.database_url.removeprefix("sqlite:///"), db)
    serving = ServingState(ModelRegistry(registry), EventStore(f"sqlite:///{db}"),
                           cache_users=1000)
    serving.load_current()
    yield serving
    serving.store.close()


@pytest.fixture
def settings() -> Settings:
    return Settings(write_keys=WRITE_KEY, max_request_bytes=64 * 1024, max_k=200, max_batch=50)


@pytest.fixture
def client(settings: Settings, state: ServingState) -> TestClient:
    return TestClient(create_app(settings, state))


@pytest.fixture
def write() -> dict[str, str]:
    return {"X-API-Key": WRITE_KEY}


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list:
    """Every query the served chain is asked, in order (a cached answer asks nothing)."""
    queries = []
    original = FallbackChain.recommend

    def spy(self, query, *args, **kwargs):
        queries.append(query)
        return original(self, query, *args, **kwargs)

    monkeypatch.setattr(FallbackChain, "recommend", spy)
    return queries
