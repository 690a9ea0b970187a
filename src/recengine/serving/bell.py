"""A doorbell shared by the server processes of one host: "the store changed, catch up".

Every process of a deployment reads the same store, but each keeps what it serves from in memory
(live histories, users' features, the catalogue's deleted items, the loaded version). A process
that writes (an event posted, a user or item written, a version activated) rings the bell after
its transaction committed; every process compares the bell with what it last saw before it
answers, and reads the store's news first when it rang. Reading three counters from a shared
memory map costs well under a microsecond, so a request pays for a query only when something
changed, and a user's event posted to one process changes their next answer from every process.

The bell is a 24-byte file of three counters (events, catalogues, models), in the registry's
folder, which the processes of a deployment share. Increments hold an exclusive ``flock``, so
none is lost; readers take no lock: a counter read while it changes still differs from the last
one seen, which is all a reader asks. Processes on other hosts do not hear it; they poll the
store instead (``RECENGINE_SYNC_SECONDS``).
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from enum import IntEnum
from pathlib import Path

__all__ = ["Bell", "Ring"]

_LAYOUT = struct.Struct("<3Q")


class Ring(IntEnum):
    """What changed: the slot of the bell rung."""

    EVENTS = 0
    CATALOGUES = 1
    MODELS = 2


class Bell:
    """The three counters in ``path`` (created when missing), shared by processes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._locked() as fd:
            if os.fstat(fd).st_size < _LAYOUT.size:
                os.ftruncate(fd, _LAYOUT.size)
        # Mapped through a descriptor of its own, which the map keeps (a duplicate of a locked
        # one would hold that lock for as long as the map lives); none stays open besides.
        fd = os.open(self.path, os.O_RDWR)
        try:
            self._map = mmap.mmap(fd, _LAYOUT.size)
        finally:
            os.close(fd)

    def read(self) -> tuple[int, int, int]:
        """The counters now: compare with the last read to learn what changed."""
        return _LAYOUT.unpack_from(self._map)

    def ring(self, what: Ring) -> None:
        """Tell every process that ``what`` changed (after the change is committed)."""
        with self._locked():
            counters = list(_LAYOUT.unpack_from(self._map))
            counters[what] += 1
            _LAYOUT.pack_into(self._map, 0, *counters)

    def close(self) -> None:
        self._map.close()

    @contextmanager
    def _locked(self) -> Iterator[int]:
        """The file, open and locked (an increment is rare: opening it each time is cheap)."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield fd
        finally:
            os.close(fd)  # closing releases the lock
