"""Where events live between requests and training runs: a durable, idempotent event store.

A service appends events as they arrive (validated like files, deduplicated by event id, durable
before acknowledged); training reads them back as a :class:`~recengine.data.dataset.Dataset` and
records a :meth:`~recengine.store.events.EventStore.snapshot` of exactly what it saw. SQLite by
default, PostgreSQL by URL.
"""

from recengine.store.events import AppendResult, EventStore, StoreError

__all__ = ["AppendResult", "EventStore", "StoreError"]
