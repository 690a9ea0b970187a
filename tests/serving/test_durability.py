"""A killed server loses no acknowledged event, and retries store nothing twice.

A real ``recengine serve`` on a SQLite store takes events from several threads as fast as they
can send them, single events and small batches, each with a unique event id; after about a second
it is killed with SIGKILL, in the middle of whatever it was doing. Restarted on the same files, it
must hold every event it acknowledged, exactly once; then every event is sent again, acknowledged
or not, and each must be stored exactly once. Each event's item is named after its event id, so
the events read back through :class:`~recengine.store.events.EventStore` count by event id.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from recengine.store import EventStore
from tests.serving.conftest import WRITE_KEY, World

RECENGINE = Path(sys.executable).with_name("recengine")
N_THREADS = 6
LOAD_SECONDS = 1.0


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"X-API-Key": WRITE_KEY}, timeout=10)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(database: Path, registry: Path, log: Path) -> Iterator[Server]:
    """``recengine serve`` on a free port, once it answers; killed on leaving if still running."""
    port = _free_port()
    env = {**os.environ, "RECENGINE_DATABASE_URL": f"sqlite:///{database}",
           "RECENGINE_REGISTRY": str(registry), "RECENGINE_WRITE_KEYS": WRITE_KEY}
    with log.open("ab") as out:  # a file, not a pipe: nobody reads the access log as it grows
        process = subprocess.Popen([str(RECENGINE), "serve", "--port", str(port)], env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
    server = Server(process, f"http://127.0.0.1:{port}")
    try:
        _wait_until_up(server, log)
        yield server
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def _wait_until_up(server: Server, log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        assert server.process.poll() is None, log.read_text()
        try:
            if httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"server did not come up in 30 s:\n{log.read_text()}"
        time.sleep(0.05)


def event(event_id: str, user: str) -> dict[str, str]:
    return {"user_id": user, "item_id": event_id, "event_type": "view", "event_id": event_id}


class Load:
    """Threads posting events until the server stops answering; what was sent and acknowledged."""

    def __init__(self, server: Server, users: list[str]) -> None:
        self.server, self.users = server, users
        self.sent: list[list[dict[str, str]]] = []
        self.acknowledged: set[str] = set()
        self.wrong: list[str] = []  # answers that are neither an acknowledgement nor no answer
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._post, args=(t,)) for t in range(N_THREADS)]

    def _post(self, thread: int) -> None:
        sizes = itertools.cycle([1, 1, 3, 1, 5, 2])  # single events and small batches
        with self.server.client() as client:
            for n in itertools.count():
                batch = [event(f"t{thread}-{n}-{k}", self.users[(thread + n) % len(self.users)])
                         for k in range(next(sizes))]
                with self._lock:
                    self.sent.append(batch)
                body = batch[0] if len(batch) == 1 else {"events": batch}
                try:
                    response = client.post("/v1/events", json=body)
                except httpx.TransportError:  # killed: this batch may or may not be stored
                    return
                self._record(batch, response)

    def _record(self, batch: list[dict[str, str]], response: httpx.Response) -> None:
        with self._lock:
            if response.status_code == 200 and response.json()["accepted"] == len(batch):
                self.acknowledged.update(e["event_id"] for e in batch)
            else:
                self.wrong.append(f"{response.status_code} {response.text}")


def stored_counts(database: Path) -> Counter[str]:
    """How many times each event of the test (items named t...) is stored."""
    with EventStore(f"sqlite:///{database}") as store:
        items = store.events()["item_id"]
    return Counter(item for item in items if item.startswith("t"))


def test_a_killed_server_keeps_what_it_acknowledged_and_retries_are_idempotent(
        world: World, tmp_path: Path) -> None:
    registry, database, log = tmp_path / "registry", tmp_path / "events.db", tmp_path / "log"
    shutil.copytree(world.registry_root, registry)
    shutil.copy(world.database_url.removeprefix("sqlite:///"), database)
    with serving(database, registry, log) as server:
        load = Load(server, world.users)
        for thread in load.threads:
            thread.start()
        time.sleep(LOAD_SECONDS)
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=10)
        for thread in load.threads:
            thread.join(timeout=20)
    assert server.process.returncode == -signal.SIGKILL
    assert not any(t.is_alive() for t in load.threads)
    assert not load.wrong, load.wrong[:3]
    assert len(load.acknowledged) > 50, "too little load to mean anything"

    with serving(database, registry, log) as server:
        counts = stored_counts(database)
        assert {i: counts[i] for i in load.acknowledged if counts[i] != 1} == {}
        assert max(counts.values()) == 1  # nothing at all stored twice

        every = [e for batch in load.sent for e in batch]
        with server.client() as client:
            answers = [client.post("/v1/events", json={"events": every[k:k + 200]})
                       for k in range(0, len(every), 200)]
        assert all(a.status_code == 200 for a in answers), [a.text for a in answers][:1]
        totals: Counter[str] = Counter()
        for answer in answers:
            totals.update({k: answer.json()[k] for k in ("accepted", "duplicates", "rejected")})
        assert totals["rejected"] == 0
        assert totals["duplicates"] == len(counts)  # exactly those stored before the retry
        assert totals["accepted"] + totals["duplicates"] == len(every)
        assert stored_counts(database) == Counter({e["event_id"]: 1 for e in every})
