"""The pipeline tests' store (synthetic events in SQLite, the newest 200 held back) and registry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from recengine.data.synthetic import generate
from recengine.store.events import EventStore
from recengine.store.registry import ModelRegistry


@pytest.fixture(scope="module")
def records() -> list[dict]:
    events = generate(n_users=150, n_items=80, seed=0).events
    return events.astype({"timestamp": str}).to_dict("records")


@pytest.fixture
def store(tmp_path: Path, records: list[dict]) -> Iterator[EventStore]:
    with EventStore(f"sqlite:///{tmp_path / 'events.db'}") as s:
        s.ingest(records[:-200])
        yield s


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "registry")
