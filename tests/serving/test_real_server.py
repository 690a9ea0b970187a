"""One real server: uvicorn in a subprocess on a free loopback port, configured by env vars."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import httpx

from tests.serving.conftest import WRITE_KEY, World


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def served(command: list[str], env: dict[str, str], port: int, *,
           seconds: float = 60, sink: IO[bytes] | IO[str] | None = None) -> Iterator[str]:
    """A server started by ``command`` in a subprocess, once ``/readyz`` answers: its base
    URL; stopped (killed if it must be) on leaving. Its output goes to ``sink`` if given (a
    long-lived server fills a pipe nobody reads), else to a pipe read if it dies."""
    process = subprocess.Popen(command, env={**os.environ, **env},
                               stdout=sink if sink is not None else subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + seconds
        while True:
            assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"server did not come up within {seconds} s"
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def test_uvicorn_serves_recommendations(world: World, tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    shutil.copytree(world.registry_root, registry)
    db = tmp_path / "events.db"
    shutil.copy(world.database_url.removeprefix("sqlite:///"), db)
    port = _free_port()
    env = {"RECENGINE_DATABASE_URL": f"sqlite:///{db}", "RECENGINE_REGISTRY": str(registry),
           "RECENGINE_WRITE_KEYS": WRITE_KEY}
    command = [sys.executable, "-m", "uvicorn", "--factory", "recengine.serving.app:create_app",
               "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    with served(command, env, port) as base:
        response = httpx.get(f"{base}/v1/users/{world.users[0]}/recommendations",
                             params={"k": 3}, timeout=10)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model_version"] == world.versions[0]
        assert body["count"] == 3
        assert httpx.get(f"{base}/readyz", timeout=5).status_code == 200
