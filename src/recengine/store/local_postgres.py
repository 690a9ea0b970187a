"""A throwaway PostgreSQL cluster on loopback: for tests, benchmarks, trying the PostgreSQL store.

:func:`start` runs the machine's own server binaries (``initdb``, ``pg_ctl``; Debian's package
``postgresql``) on a free ``127.0.0.1`` port with its data in a new temporary folder, and creates
the database ``recengine`` owned by the user ``recengine``. TCP connections need the password
(``scram-sha-256``, as a real deployment would), the cluster's own Unix socket in that folder is
trusted (for :meth:`PostgresServer.psql`). :meth:`PostgresServer.stop` shuts it down and deletes
the folder; the server is also a context manager::

    from recengine.store import EventStore
    from recengine.store.local_postgres import start

    with start() as server, EventStore(server.url()) as store:
        ...

Nothing is installed or configured system-wide, so the cluster is safe to start anywhere, and
several may run at once. ``initdb`` and ``postgres`` refuse to run as root, so as root they run
as the ``postgres`` system user (else ``nobody``) through ``runuser``.

By default the server does not fsync (``-F``): its data is thrown away, and tests are faster.
``durable=True`` keeps PostgreSQL's default, fsync on every commit, for measuring what a real
server would do.
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

__all__ = ["DATABASE", "PASSWORD", "USER", "PostgresServer", "find_bin_dir", "free_port",
           "start"]

PASSWORD = "s3cret-pw"
USER = "recengine"
DATABASE = "recengine"


def find_bin_dir() -> Path | None:
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


def free_port() -> int:
    """A loopback TCP port nobody listens on right now (another process may take it later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PostgresServer:
    """A running throwaway server: ``url()`` of its database, ``new_url()`` of a new schema."""

    bin_dir: Path
    folder: Path
    port: int
    run_as: list[str]
    _numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def url(self, database: str = DATABASE, password: str = PASSWORD) -> str:
        """A SQLAlchemy URL (psycopg 3) of ``database``, connecting over TCP with ``password``."""
        return f"postgresql+psycopg://{USER}:{password}@127.0.0.1:{self.port}/{database}"

    def new_url(self) -> str:
        """A fresh schema, made the connection's search path: as good as a new database, faster."""
        schema = f"schema_{next(self._numbers)}"
        self.psql(f"CREATE SCHEMA {schema}")
        return f"{self.url()}?options=-csearch_path%3D{schema}"

    def psql(self, command: str) -> None:
        """Run one SQL command as the owner, over the trusted Unix socket."""
        self.run("psql", "-h", str(self.folder), "-p", str(self.port), "-U", USER, "-d", DATABASE,
                 "-v", "ON_ERROR_STOP=1", "-q", "-c", command)

    def run(self, program: str, *args: str) -> subprocess.CompletedProcess[str]:
        """Run one of the server's programs (as the server's system user when we are root)."""
        return subprocess.run([*self.run_as, str(self.bin_dir / program), *args],
                              capture_output=True, text=True, timeout=60, check=True)

    def stop(self) -> None:
        """Stop the server at once (its data is thrown away) and delete its folder."""
        with contextlib.suppress(subprocess.SubprocessError):
            self.run("pg_ctl", "-D", str(self.folder / "data"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)


def start(bin_dir: Path | None = None, *, durable: bool = False) -> PostgresServer:
    """Start a new cluster (see the module docstring); stop it with :meth:`PostgresServer.stop`.

    ``bin_dir`` defaults to :func:`find_bin_dir`; :class:`FileNotFoundError` when there is none.
    A server that does not start raises :class:`RuntimeError` with its log, or
    :class:`subprocess.CalledProcessError` from ``initdb`` (its ``stderr`` says why).
    """
    bin_dir = bin_dir or find_bin_dir()
    if bin_dir is None:
        raise FileNotFoundError("PostgreSQL server binaries not found (apt-get install "
                                "postgresql, or set RECENGINE_PG_BIN)")
    run_as, user = _run_as()
    folder = Path(tempfile.mkdtemp(prefix="recengine-pg-"))  # /tmp: short socket path, readable
    server = PostgresServer(bin_dir, folder, 0, run_as)
    try:
        return _start_in(server, user, durable=durable)
    except BaseException:
        server.stop()  # a server started before a later step failed must not outlive us
        raise


def _run_as() -> tuple[list[str], str | None]:
    """How to run the server's programs: as ourselves, or (as root) as a system user."""
    if os.geteuid() != 0:
        return [], None
    for user in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(user)
            return ["runuser", "-u", user, "--"], user
    raise RuntimeError("running as root, and no 'postgres' or 'nobody' user to run PostgreSQL as")


def _start_in(server: PostgresServer, user: str | None, *, durable: bool) -> PostgresServer:
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
        server.port = free_port()
        options = (f"-k {folder} -p {server.port} -h 127.0.0.1 -c max_connections=200"
                   + ("" if durable else " -F"))
        try:
            server.run("pg_ctl", "-D", data, "-l", str(folder / "log"), "-w", "-t", "30",
                       "-o", options, "start")
        except subprocess.CalledProcessError:
            continue
        server.run("createdb", "-h", str(folder), "-p", str(server.port), "-U", USER, DATABASE)
        return server
    log = (folder / "log").read_text() if (folder / "log").exists() else "(no log)"
    raise RuntimeError(f"PostgreSQL did not start:\n{log}")
