"""Fixtures for the event store: a SQLite file, and a real PostgreSQL server started for the tests.

The PostgreSQL server is the machine's own binaries (``initdb``, ``pg_ctl``) on a free loopback
port, its data in a temporary folder, started once per test session (per xdist worker) and
stopped at the end; each test gets a fresh database on it. Without the binaries (or psycopg) the
PostgreSQL tests skip, saying why; with ``RECENGINE_REQUIRE_POSTGRES=1`` (as in CI, where the
server must be there) they fail instead.

``initdb`` and ``postgres`` refuse to run as root, so as root they run as the ``postgres`` system
user (else ``nobody``) through ``runuser``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from recengine.store import EventStore

PASSWORD = "s3cret-pw"
USER = "recengine"
DATABASE = "recengine"
_REQUIRE = "RECENGINE_REQUIRE_POSTGRES"


def _bin_dir() -> Path | None:
    """Where ``initdb`` and ``pg_ctl`` are: $RECENGINE_PG_BIN, the newest Debian install, PATH."""
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                    key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
                    reverse=True)
    on_path = shutil.which("initdb")
    candidates = [os.environ.get("RECENGINE_PG_BIN", ""), *map(str, debian),
                  str(Path(on_path).parent) if on_path else ""]
    for folder in filter(None, candidates):
        if (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    return None


def _unavailable(reason: str) -> None:
    if os.environ.get(_REQUIRE) == "1":
        pytest.fail(f"{reason} ({_REQUIRE}=1)")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PostgresServer:
    """A running throwaway server: ``new_url()`` gives the URL of a new, empty schema."""

    bin_dir: Path
    folder: Path
    port: int
    run_as: list[str]
    _numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def url(self, database: str = DATABASE, password: str = PASSWORD) -> str:
        return f"postgresql+psycopg://{USER}:{password}@127.0.0.1:{self.port}/{database}"

    def new_url(self) -> str:
        """A fresh schema, made the connection's search path: as good as a new database, faster."""
        schema = f"test_{next(self._numbers)}"
        self.psql(f"CREATE SCHEMA {schema}")
        return f"{self.url()}?options=-csearch_path%3D{schema}"

    def psql(self, command: str) -> None:
        self.run("psql", "-h", str(self.folder), "-p", str(self.port), "-U", USER, "-d", DATABASE,
                 "-v", "ON_ERROR_STOP=1", "-q", "-c", command)  # the Unix socket trusts

    def run(self, program: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.run_as, str(self.bin_dir / program), *args],
                              capture_output=True, text=True, timeout=60, check=True)

    def stop(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError):
            self.run("pg_ctl", "-D", str(self.folder / "data"), "-m", "immediate", "-w", "stop")


def _run_as() -> tuple[list[str], str | None]:
    """How to run the server's programs: as ourselves, or (as root) as a system user."""
    if os.geteuid() != 0:
        return [], None
    for user in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(user)
            return ["runuser", "-u", user, "--"], user
    raise RuntimeError("running as root, and no 'postgres' or 'nobody' user to run PostgreSQL as")


def _start(bin_dir: Path) -> PostgresServer:
    run_as, user = _run_as()
    folder = Path(tempfile.mkdtemp(prefix="recengine-pg-"))  # /tmp: short socket path, readable
    try:
        return _start_in(PostgresServer(bin_dir, folder, 0, run_as), user)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _start_in(server: PostgresServer, user: str | None) -> PostgresServer:
    """initdb (password auth over TCP, trust on the socket), start on a free port, createdb."""
    folder, data, password = server.folder, str(server.folder / "data"), server.folder / "pw"
    password.write_text(PASSWORD + "\n")
    if user is not None:
        ids = pwd.getpwnam(user)
        for path in (folder, password):
            os.chown(path, ids.pw_uid, ids.pw_gid)
    server.run("initdb", "-D", data, "-U", USER, "--pwfile", str(password), "-E", "UTF8",
               "--auth-local=trust", "--auth-host=scram-sha-256", "--locale=C", "--no-sync",
               "--no-instructions")
    for _attempt in range(3):  # another process may take the free port before the server does
        server.port = _free_port()
        # -F: no fsync, as the data is thrown away (the store's durability is tested on SQLite)
        options = f"-k {folder} -p {server.port} -h 127.0.0.1 -F -c max_connections=200"
        try:
            server.run("pg_ctl", "-D", data, "-l", str(folder / "log"), "-w", "-t", "30",
                       "-o", options, "start")
        except subprocess.CalledProcessError:
            continue
        server.run("createdb", "-h", str(folder), "-p", str(server.port), "-U", USER, DATABASE)
        return server
    log = (folder / "log").read_text() if (folder / "log").exists() else "(no log)"
    raise RuntimeError(f"PostgreSQL did not start:\n{log}")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this session (skips, or fails under the env var, if unavailable)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _unavailable("psycopg is not installed")
    bin_dir = _bin_dir()
    if bin_dir is None:
        _unavailable("PostgreSQL server binaries not found (apt-get install postgresql)")
    assert bin_dir is not None
    try:
        server = _start(bin_dir)
    except (subprocess.CalledProcessError, RuntimeError, OSError) as exc:
        detail = getattr(exc, "stderr", "") or ""
        pytest.fail(f"cannot start PostgreSQL from {bin_dir}: {exc}\n{detail}")
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.folder, ignore_errors=True)


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
