"""Fixtures for the event store: a SQLite file, and a real PostgreSQL server started for the tests.

The PostgreSQL server is :mod:`recengine.store.local_postgres`: the machine's own binaries on a
free loopback port, its data in a temporary folder, started once per test session (per xdist
worker) and stopped at the end; each test gets a fresh schema on it. Without the binaries (or
psycopg) the PostgreSQL tests skip, saying why; with ``RECENGINE_REQUIRE_POSTGRES=1`` (as in CI,
where the server must be there) they fail instead.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from recengine.store import EventStore
from recengine.store.local_postgres import PostgresServer, find_bin_dir, start

# test_events.py imports this name from here.
from recengine.store.local_postgres import free_port as _free_port  # noqa: F401

_REQUIRE = "RECENGINE_REQUIRE_POSTGRES"


def _unavailable(reason: str) -> None:
    if os.environ.get(_REQUIRE) == "1":
        pytest.fail(f"{reason} ({_REQUIRE}=1)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this session (skips, or fails under the env var, if unavailable)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _unavailable("psycopg is not installed")
    bin_dir = find_bin_dir()
    if bin_dir is None:
        _unavailable("PostgreSQL server binaries not found (apt-get install postgresql)")
    try:
        server = start(bin_dir)
    except (subprocess.CalledProcessError, RuntimeError, OSError) as exc:
        detail = getattr(exc, "stderr", "") or ""
        pytest.fail(f"cannot start PostgreSQL from {bin_dir}: {exc}\n{detail}")
    with server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The URL of a new, empty schema on the session's server."""
    return postgres_server.new_url()


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
