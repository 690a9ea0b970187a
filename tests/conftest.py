"""Fixtures shared by every test: where the public datasets live, a real PostgreSQL server and
a Spark session.

The PostgreSQL server is :mod:`recengine.store.local_postgres`: the machine's own binaries on a
free loopback port, its data in a temporary folder, started once per test session (per xdist
worker) and stopped at the end; each test gets a fresh schema on it. Without the binaries (or
psycopg) the PostgreSQL tests skip, saying why; with ``RECENGINE_REQUIRE_POSTGRES=1`` (as in CI,
where the server must be there) they fail instead.

Spark runs as one ``local[2]`` session per test session (per xdist worker): starting a JVM takes
seconds, so every Spark test shares it. Without pyspark (the ``spark`` extra) or Java the Spark
tests skip, saying why; with ``RECENGINE_REQUIRE_SPARK=1`` (as in CI) they fail.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from recengine.store.local_postgres import PostgresServer, find_bin_dir, start

# Heavy requests in worker threads (RECENGINE_HEAVY_PROCESSES=0) unless a test asks for heavy
# worker processes: each would start, import and load its model for every app a test builds.
# tests/serving/test_heavy_processes.py starts the processes it needs.
os.environ.setdefault("RECENGINE_HEAVY_PROCESSES", "0")

#: The project's datasets, next to the repository: <repo>/../shared/datasets.
DEFAULT_DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    """The datasets folder: ``$RECENGINE_DATASETS``, else the shared folder beside the repo."""
    return Path(os.environ.get("RECENGINE_DATASETS", DEFAULT_DATASETS))


@pytest.fixture(scope="session")
def require_dataset(datasets_dir: Path) -> Callable[[str], Path]:
    """``require_dataset("ml-100k")``: that dataset's folder, or skip the test when it is missing.

    With ``RECENGINE_REQUIRE_DATASETS=1`` (as in CI, where the data must be there) a missing
    folder fails the test instead.
    """

    def require(name: str) -> Path:
        folder = datasets_dir / name
        if not folder.is_dir():
            reason = f"dataset folder missing: {folder}"
            if os.environ.get("RECENGINE_REQUIRE_DATASETS") == "1":
                pytest.fail(reason)
            pytest.skip(reason)
        return folder

    return require


@pytest.fixture(scope="session")
def synthetic_pairs():
    """Per-pair interactions of a small synthetic rental log (seeded)."""
    from recengine.data.synthetic import generate
    from recengine.data.weighting import aggregate

    dataset = generate(n_users=300, n_items=150, seed=11)
    return aggregate(dataset.events, dataset.schema)


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


_REQUIRE_SPARK = "RECENGINE_REQUIRE_SPARK"


@pytest.fixture(scope="session")
def spark_ready() -> None:
    """Skip (or, with ``RECENGINE_REQUIRE_SPARK=1``, fail) unless pyspark and Java are here."""
    from recengine.spark.session import unavailable

    reason = unavailable()
    if reason is not None:
        if os.environ.get(_REQUIRE_SPARK) == "1":
            pytest.fail(f"{reason} ({_REQUIRE_SPARK}=1)")
        pytest.skip(reason)


@pytest.fixture(scope="session")
def spark(spark_ready: None) -> Iterator[Any]:
    """This test session's SparkSession on ``local[2]``: two shuffle partitions, no web UI.

    Models and jobs that ask for ``local[2]`` get this one (the active session is reused).
    """
    from recengine.spark.session import spark_session

    session = spark_session("local[2]", conf={"spark.sql.shuffle.partitions": "2",
                                              "spark.default.parallelism": "2"})
    yield session
    session.stop()
