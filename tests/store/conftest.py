"""Fixtures for the event store: each test on a SQLite file and on the real PostgreSQL server
started by ``tests/conftest.py``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from recengine.store import EventStore

# test_events.py imports these names from here.
from recengine.store.local_postgres import PostgresServer  # noqa: F401
from recengine.store.local_postgres import free_port as _free_port  # noqa: F401


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """The URL of a SQLite file in this test's folder."""
    return f"sqlite:///{tmp_path / 'events.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest) -> str:
    """An empty store's URL: each test using it runs once on SQLite, once on PostgreSQL."""
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def store(store_url: str) -> Iterator[EventStore]:
    """An empty event store, closed after the test."""
    with EventStore(store_url) as opened:
        yield opened
