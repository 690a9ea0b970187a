"""A durable, append-only event log with item and user catalogues, in SQLite or PostgreSQL.

Files are how recengine starts; a running service needs somewhere to put events as they arrive,
that survives a crash, answers "what came in since the last training run" and can be read back as
a :class:`~recengine.data.dataset.Dataset`. :class:`EventStore` is that place:

- **Durable before acknowledged**: :meth:`EventStore.append` returns only after its transaction
  has committed (SQLite in WAL mode with ``synchronous=FULL``; PostgreSQL's default durability).
  Appends from concurrent threads share transactions (:mod:`recengine.store.group_commit`), so a
  server pays for one durable commit per group of requests, not per request.
- **All or nothing**: one batch is one transaction; a batch that fails, or a process killed midway,
  leaves the store as it was before the batch.
- **Idempotent**: an event's optional ``event_id`` is unique, so a client that retries a batch
  gets ``duplicates`` back instead of twice the events. Files rarely carry event ids, so an
  append may ask for rows without one to be identified by their content instead
  (``identify_by_content``, what ``recengine ingest`` does): a hash of
  :data:`~recengine.data.validation.EVENT_IDENTITY`, unique too, so a file ingested again, or
  again after a crash midway, adds nothing.
- **Ordered**: every event gets the store's own increasing ``id`` (never reused, with gaps where
  a duplicate was skipped), so a trainer can ask for ``events(since_id=N)`` and record
  :meth:`EventStore.snapshot` of exactly what it saw.
  On PostgreSQL appends take a table lock so ids are committed in order, and a reader that has
  seen id N can never later find a smaller id appear.

The item and user catalogues keep two more things a server needs:

- **Deleted items**: :meth:`EventStore.delete_item` removes an item's row and records its id in
  ``deleted_items``, in one transaction; an upsert of that id removes the record in the same
  transaction as the row's write, so an id is listed, deleted or unknown, never two at once.
  The events stay (they still describe their users), but :meth:`EventStore.dataset` leaves them
  out of training, and a server never recommends an id of :meth:`EventStore.deleted_items`.
- **Feature kinds**: values alone cannot say that ``"2026-06-01"`` is a date or a long string a
  text to search, so whoever knows the kinds passes them to :meth:`EventStore.upsert_items`;
  they are kept per feature (``feature_kinds``) and every value written, then or later, is
  checked against them. :meth:`EventStore.typed_items` reads the catalogue typed by them.

Validation is not repeated here: :meth:`EventStore.ingest` runs records through
:func:`~recengine.data.validation.validate_events`, the same checks as file ingestion (a few
records through its record-by-record twin, which answers the same in microseconds rather than
milliseconds), and :meth:`EventStore.append` trusts events that were already validated.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from recengine._extras import require
from recengine.data.dataset import Dataset
from recengine.data.schema import EVENT_COLUMNS, EventSchema, FeatureKind
from recengine.data.validation import (
    EVENT_IDENTITY,
    ColumnMapping,
    Issue,
    RawRecords,
    ValidationReport,
    parse_numbers,
    parse_timestamps,
    validate_event_records,
    validate_events,
)
from recengine.errors import DataError, StoreError
from recengine.store.group_commit import BatchFailed, GroupCommit

__all__ = ["AppendResult", "Change", "EventStore", "Listed", "StoreError", "StoredEvent",
           "is_store_url", "mask_url"]

#: Rows sent to the database per statement; a batch is still one transaction.
_CHUNK_ROWS = 10_000
#: Events :meth:`EventStore.event_rows` returns per call by default.
_READ_ROWS = 10_000
#: Up to this many records, ingest validates record by record (pandas' cost is per call).
_RECORD_BY_RECORD = 1000
#: Seconds a SQLite writer waits for another writer's lock before giving up.
_SQLITE_BUSY_SECONDS = 30
#: PostgreSQL advisory lock held while creating the tables ("recengine" in ASCII).
_DDL_LOCK_KEY = 0x72_65_63_65_6E_67_69_6E
_URL_HELP = "use sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST:PORT/DATABASE"

_metadata = sa.MetaData()

_EVENTS = sa.Table(
    "events",
    _metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("event_id", sa.String(), nullable=True, unique=True),
    sa.Column("user_id", sa.String(), nullable=False),
    sa.Column("item_id", sa.String(), nullable=False),
    sa.Column("event_type", sa.String(), nullable=False),
    sa.Column("value", sa.Double(), nullable=True),
    sa.Column("timestamp", sa.DateTime(), nullable=True),
    sa.Column("ingested_at", sa.DateTime(), nullable=False),
    sa.Column("content_key", sa.String(), nullable=True),
    sa.Column("device", sa.String(), nullable=True),
    sa.Index("ix_events_user_id", "user_id"),
    sa.Index("ix_events_timestamp", "timestamp"),
    sqlite_autoincrement=True,  # never reuse the id of a deleted last row: "since N" stays exact
)
#: The identity of events stored by content (see :func:`_content_keys`). An index of its own,
#: not a table constraint, so that stores created before it existed get the very same.
_CONTENT_KEY = sa.Index("ux_events_content_key", _EVENTS.c.content_key, unique=True)


def _catalogue_table(name: str) -> sa.Table:
    return sa.Table(
        name,
        _metadata,
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("features", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )


_ITEMS = _catalogue_table("items")
_USERS = _catalogue_table("users")

#: Ids of deleted items: a record, not a flag on the item's row, so that tables created before
#: it existed need no migration, and the row (with its features) really is gone.
_DELETED = sa.Table(
    "deleted_items",
    _metadata,
    sa.Column("id", sa.String(), primary_key=True),
    sa.Column("deleted_at", sa.DateTime(), nullable=False),
)

#: The kind of each feature of a catalogue ("items" or "users"): one per feature, not per row,
#: so that two rows cannot disagree.
_KINDS = sa.Table(
    "feature_kinds",
    _metadata,
    sa.Column("catalogue", sa.String(), primary_key=True),
    sa.Column("name", sa.String(), primary_key=True),
    sa.Column("kind", sa.String(), nullable=False),
)

#: A log of catalogue writes, one row per user written or deleted and one per items write: what
#: a server process reads to learn what another one (or a command) changed (see
#: :meth:`EventStore.changes`). Events need no such log: their ids are one.
_CHANGES = sa.Table(
    "changes",
    _metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("catalogue", sa.String(), nullable=False),
    sa.Column("id", sa.String(), nullable=True),
    sa.Column("changed_at", sa.DateTime(), nullable=False),
    sqlite_autoincrement=True,
)

#: Leases: which process holds a deployment-wide duty (the retraining scheduler) until when.
_LEASES = sa.Table(
    "leases",
    _metadata,
    sa.Column("name", sa.String(), primary_key=True),
    sa.Column("holder", sa.String(), nullable=False),
    sa.Column("expires_at", sa.Float(), nullable=False),
)

#: From this many users in one write on, the change log records one row for the whole catalogue.
_CHANGE_ROWS = 1000

#: SQLAlchemy keeps the row count of INSERTs only when asked to.
_ROWCOUNT = {"preserve_rowcount": True}
#: The columns an append writes, in the order of PostgreSQL's COPY.
_WRITTEN = ("event_id", "user_id", "item_id", "event_type", "value", "timestamp", "ingested_at",
            "content_key", "device")
#: What a read returns of each event, after its id: the canonical fields, then the device.
_READ = (*EVENT_COLUMNS, "device")
_WRITTEN_NAMES = ", ".join(f'"{name}"' for name in _WRITTEN)

#: SQLite appends go to the driver directly: SQLAlchemy's processing of every value doubled the
#: time an append holds the write lock, which every other writer (an API request during a large
#: ingest) waits for. Skips rows whose event_id or content_key is stored.
_SQLITE_INSERT = (f"INSERT INTO events ({_WRITTEN_NAMES}) VALUES "
                  f"({', '.join('?' * len(_WRITTEN))}) ON CONFLICT DO NOTHING")

#: From this many rows on, PostgreSQL appends COPY to a staging table rather than INSERT: COPY
#: is many times faster, but the staging table costs a few milliseconds per transaction.
_COPY_ROWS = 1000
#: Where large PostgreSQL appends land first, per transaction.
_INCOMING = sa.Table(
    "recengine_incoming",
    sa.MetaData(),
    sa.Column("ord", sa.BigInteger(), sa.Identity(always=True)),
    *(sa.Column(c.name, c.type) for c in _EVENTS.columns if c.name in _WRITTEN),
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DROP",
)


@dataclass(frozen=True)
class AppendResult:
    """What one batch did: events stored, and events skipped because their event_id (or, when
    identified by content, their content) was stored already.

    ``duplicate_ids`` names the batch's event ids that were stored before it (by an earlier
    call, or an earlier batch of the same transaction), so a caller can leave them out of what it
    does next: a retried request must not count twice in a user's live history. (An id repeated
    inside the batch counts in ``duplicates`` but is not named: its first row was stored.)
    """

    accepted: int
    duplicates: int
    duplicate_ids: frozenset[str] = field(default=frozenset(), repr=False, compare=False)


class Change(NamedTuple):
    """One entry of the catalogue change log: ``id`` None means the whole catalogue."""

    seq: int
    catalogue: Literal["items", "users"]
    id: str | None


class StoredEvent(NamedTuple):
    """One stored event as plain values (``timestamp`` None when it had none)."""

    id: int
    user_id: str
    item_id: str
    event_type: str
    value: float | None
    timestamp: datetime | None
    device: str | None = None


class Listed(NamedTuple):
    """A user or an item as :meth:`EventStore.listed` pages through them: its id, its number
    of stored events and the time of its latest (None without events or times)."""

    id: str
    events: int
    last_event_at: datetime | None


@dataclass(frozen=True)
class _Batch:
    """One caller's validated events, as Python values per column (see :func:`_event_columns`)."""

    columns: dict[str, list[Any]]
    size: int


class EventStore:
    """Events, items and users in one database: SQLite by default, PostgreSQL by URL.

    Tables are created on first use. Every method but :meth:`dataset` is one transaction (appends
    from concurrent threads may share one); the store may be shared by threads, and by processes
    on the same database.

    Examples
    --------
    >>> store = EventStore("sqlite://")  # in memory; "sqlite:///recengine.db" for a file
    >>> click = {"user_id": "u1", "item_id": "i1", "event_type": "click", "event_id": "e1"}
    >>> result, report = store.ingest([click, {**click, "event_id": "e2", "value": "-1"}])
    >>> result
    AppendResult(accepted=1, duplicates=0)
    >>> [str(issue) for issue in report.issues]
    ["request, row 2, column 'value': click value -1 is negative"]
    >>> store.ingest([click])[0]  # a retry is recognised by its event_id
    AppendResult(accepted=0, duplicates=1)
    >>> store.events()[["id", "user_id", "item_id", "event_type", "value"]]
       id user_id item_id event_type  value
    0   1      u1      i1      click    1.0
    >>> store.close()
    """

    def __init__(self, url: str = "sqlite:///recengine.db") -> None:
        self.url = url
        self._engine = _create_engine(url)
        self._ready = False
        self._appends = GroupCommit(self._commit_batches)

    def __repr__(self) -> str:
        return f"EventStore({mask_url(self.url)!r})"

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def backend(self) -> Literal["sqlite", "postgresql"]:
        """The kind of database behind the store."""
        return "sqlite" if self._engine.dialect.name == "sqlite" else "postgresql"

    def close(self) -> None:
        """Close the store's database connections (it reconnects if used again)."""
        self._engine.dispose()

    # --- events ---------------------------------------------------------------------------

    def append(self, events: pd.DataFrame, *, identify_by_content: bool = False) -> AppendResult:
        """Store validated events in one transaction and return once they are durable.

        ``events`` has the canonical columns (see :data:`~recengine.data.schema.EVENT_COLUMNS`) and
        optionally ``device`` and ``event_id``: a row whose event_id is already stored, or repeated
        earlier in the batch, is skipped and counted as a duplicate. Rows without one are always
        stored, unless ``identify_by_content``: then a row without an event_id whose user, item,
        type and time (:data:`~recengine.data.validation.EVENT_IDENTITY`) were stored before by such
        an append is a duplicate too. If anything fails, nothing of the batch is stored. Batches
        appended at the same time by other threads may share the transaction; an event_id in two of
        them is stored for the batch that came first and counts as a duplicate in the other.

        >>> store = EventStore("sqlite://")
        >>> view = pd.DataFrame({"user_id": ["u1"], "item_id": ["i1"], "event_type": ["view"],
        ...                      "value": [1.0], "timestamp": [pd.Timestamp("2024-05-01")]})
        >>> store.append(view, identify_by_content=True)
        AppendResult(accepted=1, duplicates=0)
        >>> store.append(view.assign(value=2.0), identify_by_content=True)  # the same event
        AppendResult(accepted=0, duplicates=1)
        """
        return self._append(_batch(_event_columns(events), identify_by_content))

    def ingest(
        self,
        raw: Sequence[Mapping[str, Any]] | pd.DataFrame,
        schema: EventSchema | None = None,
        *,
        strict: bool = False,
    ) -> tuple[AppendResult, ValidationReport]:
        """Validate records (such as JSON from an API) as file ingestion does, then store the valid.

        Each record has ``user_id``, ``item_id`` and optionally ``event_type``, ``value``,
        ``timestamp`` (unix seconds or ISO 8601), ``device`` and ``event_id``. Bad records are
        reported by record number (1-based) and field and left out; with ``strict=True`` the first
        one raises :class:`~recengine.errors.DataError` and nothing is stored. An event_id repeated
        within the records is such an issue; one already stored counts in ``duplicates``.
        """
        records = _raw_records(raw)
        mapping = ColumnMapping(event_id="event_id" if "event_id" in records.columns else None)
        checked = None
        if len(records.records) <= _RECORD_BY_RECORD:
            checked = validate_event_records(records, mapping, schema, strict=strict)
        if checked is None:
            events, report = validate_events(records.table(), mapping, schema, strict=strict)
            return self.append(events), report
        columns, report = checked
        return self._append(_batch(columns, identify_by_content=False)), report

    def events(self, since_id: int = 0, until_id: int | None = None) -> pd.DataFrame:
        """Events with ``since_id < id <= until_id``, in id order, in the canonical format.

        The columns are ``id``, those of :data:`~recengine.data.schema.EVENT_COLUMNS` and
        ``device`` (None where unknown), with the dtypes of :class:`~recengine.data.dataset.
        Dataset` events.
        """
        query = (sa.select(_EVENTS.c.id, *(_EVENTS.c[c] for c in _READ))
                 .where(_id_range(since_id, until_id)).order_by(_EVENTS.c.id))
        with self._read("read events") as conn:
            return _event_frame(conn.execute(query).partitions(_FRAME_STEP))

    def event_rows(self, since_id: int = 0, *, limit: int = _READ_ROWS,
                   user_id: str | None = None) -> list[StoredEvent]:
        """Up to ``limit`` events with an id above ``since_id``, in id order, as plain values.

        Without pandas, so a server catching up on a few new events pays microseconds, not a
        frame's construction. With ``user_id``, that user's *last* ``limit`` events.
        """
        columns = (_EVENTS.c.id, *(_EVENTS.c[c] for c in _READ))
        query = sa.select(*columns).where(_EVENTS.c.id > int(since_id))
        if user_id is None:
            query = query.order_by(_EVENTS.c.id).limit(limit)
        else:
            query = query.where(_EVENTS.c.user_id == user_id).order_by(
                _EVENTS.c.id.desc()).limit(limit)
        with self._read("read events") as conn:
            rows = [StoredEvent(*row) for row in conn.execute(query)]
        return rows if user_id is None else rows[::-1]

    def last_id(self) -> int:
        """The largest event id stored, 0 when there are none."""
        with self._read("read the last event id") as conn:
            return int(conn.execute(sa.select(sa.func.max(_EVENTS.c.id))).scalar() or 0)

    def count(self, since_id: int = 0) -> int:
        """The number of events stored, or of those with an id above ``since_id``."""
        query = sa.select(sa.func.count()).select_from(_EVENTS).where(_EVENTS.c.id > since_id)
        with self._read("count events") as conn:
            return int(conn.execute(query).scalar() or 0)

    def snapshot(self, until_id: int | None = None) -> dict[str, Any]:
        """A fingerprint of the events (up to ``until_id``), for a training run to record.

        ``sha256`` hashes the canonical fields of every event in id order, so it is the same
        whenever the same events are stored, in SQLite or PostgreSQL, and changes with any
        append, delete or edit. Empty stores have ``last_id`` 0 and None for the other bounds.
        """
        with self._read("take a snapshot", consistent=True) as conn:
            stats = conn.execute(sa.select(
                sa.func.min(_EVENTS.c.id), sa.func.max(_EVENTS.c.id), sa.func.count(),
                sa.func.min(_EVENTS.c.timestamp), sa.func.max(_EVENTS.c.timestamp),
            ).where(_id_range(0, until_id))).one()
            last_id = int(stats[1] or 0)
            digest = _digest(conn, last_id)
        return {
            "first_id": None if stats[0] is None else int(stats[0]),
            "last_id": last_id,
            "count": int(stats[2]),
            "min_timestamp": _iso(stats[3]),
            "max_timestamp": _iso(stats[4]),
            "sha256": digest,
        }

    # --- items and users ------------------------------------------------------------------

    def upsert_items(self, frame: pd.DataFrame,
                     kinds: Mapping[str, FeatureKind | str] | None = None) -> int:
        """Insert or replace items: ``frame`` indexed by item id, one column per feature.

        A stored item's features are replaced as a whole. Values may be numbers, strings, lists
        of labels or dates (stored as ISO strings); missing values are stored as absent.
        ``kinds`` records the :class:`~recengine.data.schema.FeatureKind` of features (a kind
        given again replaces the one recorded). Values must fit the kinds recorded: those of
        ``frame``, and, when a kind is new or changes, those already stored; otherwise
        :class:`~recengine.errors.DataError` names the item and the feature, and nothing is
        written. A deleted item written again is no longer deleted. Returns the number of items
        written.

        >>> store = EventStore("sqlite://")
        >>> listing = pd.DataFrame({"listed": ["2026-06-01"]}, index=["i1"])
        >>> store.upsert_items(listing, kinds={"listed": "date"})
        1
        >>> store.upsert_items(pd.DataFrame({"listed": ["soon"]}, index=["i2"]))
        Traceback (most recent call last):
        recengine.errors.DataError: column 'listed': item 'i2': 'soon' is not a date
        """
        return self._upsert(_ITEMS, frame, "item", kinds)

    def upsert_users(self, frame: pd.DataFrame,
                     kinds: Mapping[str, FeatureKind | str] | None = None) -> int:
        """Insert or replace users, as :meth:`upsert_items` does for items."""
        return self._upsert(_USERS, frame, "user", kinds)

    def items(self) -> pd.DataFrame:
        """Stored items indexed by ``item_id``, each feature as stored (lists, numbers, strings).

        Dates come back as ISO strings and absent values as None: :meth:`dataset` and
        :meth:`typed_items` type the columns by their :class:`~recengine.data.schema.FeatureKind`.
        Deleted items are not among them.
        """
        return self._catalogue(_ITEMS, "item_id")

    def users(self) -> pd.DataFrame:
        """Stored users indexed by ``user_id``, as :meth:`items` returns items."""
        return self._catalogue(_USERS, "user_id")

    def typed_items(self) -> tuple[pd.DataFrame, dict[str, FeatureKind]]:
        """Stored items, each feature of a recorded kind typed by it (as :meth:`dataset` does),
        and those kinds; features without a recorded kind come as stored. One read transaction,
        so the columns and the kinds agree.

        >>> store = EventStore("sqlite://")
        >>> _ = store.upsert_items(pd.DataFrame({"listed": ["2026-06-01"], "beds": [2]},
        ...                                     index=["i1"]), kinds={"listed": "date"})
        >>> items, kinds = store.typed_items()
        >>> items.dtypes.astype(str).to_dict(), kinds
        ({'listed': 'datetime64[s]', 'beds': 'object'}, {'listed': <FeatureKind.DATE: 'date'>})
        """
        with self._read("read items", consistent=True) as conn:
            stored = _catalogue_frame(conn, _ITEMS, "item_id")
            kinds = _recorded_kinds(conn, _ITEMS)
        typed = {name: _typed_column(stored[name], kind, "item", name)
                 for name, kind in kinds.items() if name in stored.columns}
        return stored.assign(**typed), {n: k for n, k in kinds.items() if n in stored.columns}

    def feature_kinds(self, what: Literal["item", "user"] = "item") -> dict[str, FeatureKind]:
        """The kinds recorded for item (or user) features, by feature name."""
        with self._read(f"read {what} feature kinds") as conn:
            return _recorded_kinds(conn, _USERS if what == "user" else _ITEMS)

    def delete_item(self, item_id: str) -> bool:
        """Remove an item from the catalogue and record it as deleted, in one transaction.

        Its events stay (they describe their users too), but :meth:`dataset` leaves them out
        and a server hides the item. An id never seen may be deleted too, ahead of its events.
        Returns False when the item was already deleted (and not written since).
        """
        item_id = str(item_id)
        dialect = postgresql if self.backend == "postgresql" else sqlite
        with self._write("delete an item") as conn:
            self._lock_catalogue(conn, _ITEMS)
            conn.execute(sa.delete(_ITEMS).where(_ITEMS.c.id == item_id))
            record = (dialect.insert(_DELETED).values(id=item_id, deleted_at=_utcnow())
                      .on_conflict_do_nothing(index_elements=[_DELETED.c.id]))
            deleted = conn.execute(record, execution_options=_ROWCOUNT).rowcount > 0
            self._log_changes(conn, _ITEMS, [item_id])
            return deleted

    def changes(self, since: int = 0) -> list[Change]:
        """Catalogue writes logged after sequence number ``since``, oldest first."""
        query = (sa.select(_CHANGES.c.seq, _CHANGES.c.catalogue, _CHANGES.c.id)
                 .where(_CHANGES.c.seq > int(since)).order_by(_CHANGES.c.seq))
        with self._read("read the change log") as conn:
            return [Change(*row) for row in conn.execute(query)]

    def last_change(self) -> int:
        """The sequence number of the last catalogue write logged, 0 when there is none."""
        with self._read("read the change log") as conn:
            return int(conn.execute(sa.select(sa.func.max(_CHANGES.c.seq))).scalar() or 0)

    def user(self, user_id: str) -> dict[str, Any] | None:
        """One stored user's features, None when the user is not stored."""
        query = sa.select(_USERS.c.features).where(_USERS.c.id == str(user_id))
        with self._read("read a user") as conn:
            text = conn.execute(query).scalar()
        return None if text is None else json.loads(text)

    def hold_lease(self, name: str, holder: str, seconds: float) -> bool:
        """Take or renew the lease ``name`` for ``holder`` for ``seconds``; whether it holds it.

        The lease is taken when it is free, expired or already ``holder``'s, so one process of a
        deployment does a duty at a time and another takes over once the holder stops renewing.
        """
        now = time.time()
        with self._write("take a lease") as conn:
            if self.backend == "postgresql":
                conn.execute(sa.text("LOCK TABLE leases IN SHARE ROW EXCLUSIVE MODE"))
            row = conn.execute(sa.select(_LEASES.c.holder, _LEASES.c.expires_at)
                               .where(_LEASES.c.name == name)).first()
            if row is not None and row.holder != holder and row.expires_at > now:
                return False
            dialect = postgresql if self.backend == "postgresql" else sqlite
            statement = dialect.insert(_LEASES).values(name=name, holder=holder,
                                                       expires_at=now + seconds)
            conn.execute(statement.on_conflict_do_update(
                index_elements=[_LEASES.c.name],
                set_={"holder": holder, "expires_at": now + seconds}))
        return True

    def release_lease(self, name: str, holder: str) -> None:
        """Give up the lease ``name`` if ``holder`` holds it."""
        with self._write("release a lease") as conn:
            conn.execute(sa.delete(_LEASES).where((_LEASES.c.name == name)
                                                  & (_LEASES.c.holder == holder)))

    def deleted_items(self) -> set[str]:
        """The ids of deleted items: never to be recommended until written again."""
        with self._read("read deleted items") as conn:
            return set(conn.execute(sa.select(_DELETED.c.id)).scalars())

    def delete_user(self, user_id: str) -> int:
        """Remove a user and all their events in one transaction; the number of events deleted."""
        with self._write("delete a user") as conn:
            deleted = conn.execute(sa.delete(_EVENTS).where(_EVENTS.c.user_id == str(user_id)))
            conn.execute(sa.delete(_USERS).where(_USERS.c.id == str(user_id)))
            self._log_changes(conn, _USERS, [str(user_id)])
            return int(deleted.rowcount)

    # --- browsing (the console and the paged read API) -----------------------------------

    def listed(self, what: Literal["user", "item"], *, q: str = "", limit: int = 50,
               offset: int = 0) -> tuple[list[Listed], int]:
        """A page of the users (items) that have events or a catalogue row, in id order,
        those whose id contains ``q`` (any case), and how many match in all.

        The events are counted for the page's ids only, so a page costs the same whatever the
        size of the log.

        >>> store = EventStore("sqlite://")
        >>> _ = store.ingest([{"user_id": u, "item_id": i, "event_type": "view"}
        ...                   for u, i in (("u1", "i1"), ("u2", "i1"), ("u2", "i2"))])
        >>> page, total = store.listed("user", q="U2")
        >>> [(row.id, row.events) for row in page], total
        ([('u2', 2)], 1)
        """
        column = _EVENTS.c.user_id if what == "user" else _EVENTS.c.item_id
        table = _USERS if what == "user" else _ITEMS
        ids = sa.union(sa.select(column.label("id")), sa.select(table.c.id.label("id"))).subquery()
        match = (ids.c.id.ilike(f"%{_like_escaped(q)}%", escape="\\") if q else sa.true())
        page = sa.select(ids.c.id).where(match).order_by(ids.c.id).limit(limit).offset(offset)
        total = sa.select(sa.func.count()).select_from(ids).where(match)
        with self._read(f"list {what}s", consistent=True) as conn:
            found = [str(row[0]) for row in conn.execute(page)]
            counted = {row[0]: (int(row[1]), row[2]) for row in conn.execute(
                sa.select(column, sa.func.count(), sa.func.max(_EVENTS.c.timestamp))
                .where(column.in_(found)).group_by(column))} if found else {}
            matching = int(conn.execute(total).scalar() or 0)
        return [Listed(i, *counted.get(i, (0, None))) for i in found], matching

    def user_events(self, user_id: str, *, limit: int = 50, offset: int = 0,
                    newest_first: bool = False) -> tuple[list[StoredEvent], int]:
        """A page of ``user_id``'s events in time order (ties in the order they were stored;
        events without a time first), and how many they have in all."""
        where = _EVENTS.c.user_id == str(user_id)
        order = [_EVENTS.c.timestamp, _EVENTS.c.id]
        query = (sa.select(_EVENTS.c.id, *(_EVENTS.c[c] for c in _READ)).where(where)
                 .order_by(*(c.desc() for c in order) if newest_first else order)
                 .limit(limit).offset(offset))
        with self._read("read a user's events", consistent=True) as conn:
            rows = [StoredEvent(*row) for row in conn.execute(query)]
            total = int(conn.execute(sa.select(sa.func.count()).where(where)).scalar() or 0)
        return rows, total

    def events_per_minute(self, since: datetime) -> list[tuple[datetime, str, int]]:
        """Events stored since ``since`` (UTC), counted per minute of arrival and event type:
        ``(minute, event_type, count)`` in time order. Arrival, not the events' own times: what
        the store received, as a dashboard watches it."""
        if self.backend == "postgresql":
            minute: sa.ColumnElement[Any] = sa.func.to_char(
                sa.func.date_trunc("minute", _EVENTS.c.ingested_at), "YYYY-MM-DD HH24:MI")
        else:
            minute = sa.func.strftime("%Y-%m-%d %H:%M", _EVENTS.c.ingested_at)
        query = (sa.select(minute, _EVENTS.c.event_type, sa.func.count())
                 .where(_EVENTS.c.ingested_at >= since.replace(tzinfo=None))
                 .group_by(minute, _EVENTS.c.event_type).order_by(minute, _EVENTS.c.event_type))
        with self._read("count events per minute") as conn:
            return [(datetime.strptime(m, "%Y-%m-%d %H:%M"), str(kind), int(n))
                    for m, kind, n in conn.execute(query)]

    def item(self, item_id: str) -> dict[str, Any] | None:
        """One stored item's features, None when the catalogue has no such item."""
        query = sa.select(_ITEMS.c.features).where(_ITEMS.c.id == str(item_id))
        with self._read("read an item") as conn:
            text = conn.execute(query).scalar()
        return None if text is None else json.loads(text)

    # --- everything -----------------------------------------------------------------------

    def dataset(
        self,
        name: str = "store",
        schema: EventSchema | None = None,
        item_features: Mapping[str, FeatureKind] | None = None,
        user_features: Mapping[str, FeatureKind] | None = None,
        *,
        until_id: int | None = None,
    ) -> Dataset:
        """Everything servable, as a :class:`~recengine.data.dataset.Dataset` for training.

        Only the features named in ``item_features`` and ``user_features`` are kept, typed by
        their kind. Without stored items (users), the ids seen in the events make the catalogue.
        Pass ``until_id=store.snapshot()["last_id"]`` to train on exactly what a snapshot saw.

        The events of deleted items are left out. A model trained on them would spend a row of
        its vocabulary, popularity and neighbourhoods on an item the server must hide, and pull
        other items towards it; what the users' rows lose is one item each that no one can be
        offered any more. The events stay stored, so an item written again (revived) is trained
        on with its whole history.
        """
        events = self.events(until_id=until_id).drop(columns="id")
        if events["device"].isna().all():  # as a source without devices validates
            events = events.drop(columns="device")
        deleted = self.deleted_items()
        if deleted:
            events = events[~events["item_id"].isin(deleted)].reset_index(drop=True)
        item_kinds, user_kinds = dict(item_features or {}), dict(user_features or {})
        items = _typed(self.items(), item_kinds, events["item_id"], "item")
        users = _typed(self.users(), user_kinds, events["user_id"], "user")
        return Dataset(name=name, events=events, items=items, users=users,
                       item_features=item_kinds, user_features=user_kinds,
                       schema=schema or EventSchema())

    # --- private --------------------------------------------------------------------------

    def _append(self, batch: _Batch) -> AppendResult:
        return self._appends.submit(batch) if batch.size else AppendResult(0, 0)

    def _commit_batches(self, batches: Sequence[_Batch]) -> list[AppendResult]:
        """Append batches in one transaction and return each one's result once committed.

        A failed insert raises :class:`~recengine.store.group_commit.BatchFailed`, so that the
        batches are retried one by one; failing to begin or to commit concerns them all.
        """
        with self._write("append events") as conn:
            if self.backend == "postgresql":
                _prepare_postgres_append(conn)
            ingested_at = _utcnow()
            try:
                results = [self._insert_batch(conn, batch, ingested_at) for batch in batches]
            except Exception as exc:
                raise BatchFailed(self._failure("append events", exc)) from None
        return results

    def _insert_batch(self, conn: sa.Connection, batch: _Batch,
                      ingested_at: datetime) -> AppendResult:
        """Insert one batch in the open transaction, chunk by chunk.

        The event ids already stored are read first, in the same transaction (it holds the
        write lock), so the result names the duplicates exactly.
        """
        accepted, known = 0, set()
        for start in range(0, batch.size, _CHUNK_ROWS):
            stop = min(start + _CHUNK_ROWS, batch.size)
            rows = _event_rows(batch.columns, start, stop, ingested_at,
                               times_as_text=self.backend == "sqlite")
            ids = [i for i in batch.columns["event_id"][start:stop] if i is not None]
            known |= _stored_ids(conn, ids)
            accepted += self._insert_chunk(conn, rows)
        return AppendResult(accepted, batch.size - accepted, frozenset(known))

    def _insert_chunk(self, conn: sa.Connection, rows: list[tuple[Any, ...]]) -> int:
        """Insert rows (see :func:`_event_rows`) in the open transaction, skipping known event ids
        and content keys; the number inserted."""
        if self.backend == "postgresql":
            return _insert_postgres(conn, rows)
        return int(conn.exec_driver_sql(_SQLITE_INSERT, rows,
                                        execution_options=_ROWCOUNT).rowcount)

    def _upsert(self, table: sa.Table, frame: pd.DataFrame, what: str,
                kinds: Mapping[str, FeatureKind | str] | None) -> int:
        """Write rows, their kinds and (for items) revive deleted ids: one transaction.

        The kinds recorded are read and checked inside the write transaction, under the
        catalogue's lock, so a value and a kind written at the same time cannot disagree.
        """
        declared = _declared_kinds(kinds, what)
        ids, records = _catalogue_records(frame, what)
        updated_at = _utcnow()
        rows = [{"id": i, "features": json.dumps(r, ensure_ascii=False, allow_nan=False),
                 "updated_at": updated_at} for i, r in zip(ids, records, strict=True)]
        dialect = postgresql if self.backend == "postgresql" else sqlite
        statement = dialect.insert(table)
        statement = statement.on_conflict_do_update(
            index_elements=[table.c.id],
            set_={"features": statement.excluded.features,
                  "updated_at": statement.excluded.updated_at})
        with self._write(f"write {what}s") as conn:
            self._lock_catalogue(conn, table)
            recorded = _recorded_kinds(conn, table)
            _check_kinds(_records_frame(ids, records), recorded | declared, what)
            changed = {n: k for n, k in declared.items() if recorded.get(n) != k}
            if changed:
                stored = _catalogue_frame(conn, table, "id")
                _check_kinds(stored.drop(index=ids, errors="ignore"), changed, what)
            for start in range(0, len(rows), _CHUNK_ROWS):
                conn.execute(statement, rows[start:start + _CHUNK_ROWS])
            if changed:
                kind_rows = [{"catalogue": table.name, "name": n, "kind": k.value}
                             for n, k in changed.items()]
                record = dialect.insert(_KINDS)
                conn.execute(record.on_conflict_do_update(
                    index_elements=[_KINDS.c.catalogue, _KINDS.c.name],
                    set_={"kind": record.excluded.kind}), kind_rows)
            if table is _ITEMS:
                for start in range(0, len(ids), _CHUNK_ROWS):
                    conn.execute(sa.delete(_DELETED).where(
                        _DELETED.c.id.in_(ids[start:start + _CHUNK_ROWS])))
            self._log_changes(conn, table, ids)
        return len(rows)

    def _log_changes(self, conn: sa.Connection, table: sa.Table, ids: Sequence[str]) -> None:
        """Log a catalogue write in its transaction: one row per user (up to
        :data:`_CHANGE_ROWS`), else one for the whole catalogue, as for every items write (a
        server re-reads the item catalogue whole). On PostgreSQL the log is locked, so sequence
        numbers become visible in order, as event ids do."""
        if self.backend == "postgresql":
            conn.execute(sa.text("LOCK TABLE changes IN SHARE ROW EXCLUSIVE MODE"))
        per_id = table is _USERS and len(ids) <= _CHANGE_ROWS
        changed_at = _utcnow()
        conn.execute(sa.insert(_CHANGES), [
            {"catalogue": table.name, "id": i, "changed_at": changed_at}
            for i in (ids if per_id else [None])])

    def _lock_catalogue(self, conn: sa.Connection, table: sa.Table) -> None:
        """Serialise writes to a catalogue (SQLite's BEGIN IMMEDIATE already does; readers pass).

        Without it, on PostgreSQL, a delete and an upsert of one id could each miss the other's
        uncommitted write and leave the id both listed and deleted, or a new kind could be checked
        against the stored values while another transaction writes one that does not fit.
        """
        if self.backend == "postgresql":
            conn.execute(sa.text(f"LOCK TABLE {table.name} IN SHARE ROW EXCLUSIVE MODE"))

    def _catalogue(self, table: sa.Table, index_name: str) -> pd.DataFrame:
        with self._read(f"read {table.name}") as conn:
            return _catalogue_frame(conn, table, index_name)

    @contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        """Turn the database's errors into a :class:`StoreError` naming the store."""
        try:
            yield
        except self._database_errors() as exc:
            raise self._failure(action, exc) from None

    def _database_errors(self) -> tuple[type[Exception], ...]:
        driver_error = self._engine.dialect.loaded_dbapi.Error  # raised by COPY, outside Core
        return sa.exc.SQLAlchemyError, driver_error

    def _failure(self, action: str, exc: Exception) -> Exception:
        """A database's error as a :class:`StoreError` naming the store; others unchanged."""
        if not isinstance(exc, self._database_errors()):
            return exc
        return StoreError(f"cannot {action} in {mask_url(self.url)}: {_reason(exc, self.url)}")

    def _ensure_tables(self) -> None:
        if not self._ready:
            with self._transaction() as conn:
                if self.backend == "postgresql":  # two processes starting on an empty database
                    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_DDL_LOCK_KEY)))
                _metadata.create_all(conn)
                _add_columns(conn)
            self._ready = True

    @contextmanager
    def _transaction(self) -> Iterator[sa.Connection]:
        """A write transaction, committed on leaving.

        On SQLite it takes the write lock as it begins (BEGIN IMMEDIATE), where the busy timeout
        applies; a transaction that read first and then wrote would fail at once instead.
        """
        with self._engine.connect() as conn:
            conn.execution_options(recengine_begin="IMMEDIATE")
            with conn.begin():
                yield conn

    @contextmanager
    def _write(self, action: str) -> Iterator[sa.Connection]:
        """A connection in a write transaction, with errors reported as ``cannot {action}``."""
        with self._guard(action):
            self._ensure_tables()
            with self._transaction() as conn:
                yield conn

    @contextmanager
    def _read(self, action: str, *, consistent: bool = False) -> Iterator[sa.Connection]:
        """A connection in a read transaction; ``consistent``: one snapshot for all statements."""
        with self._guard(action):
            self._ensure_tables()
            with self._engine.connect() as conn:
                if consistent and self.backend == "postgresql":
                    conn.execution_options(isolation_level="REPEATABLE READ")
                with conn.begin():
                    yield conn


# --- engine ------------------------------------------------------------------------------------


def _create_engine(url: str) -> sa.Engine:
    """An engine for ``url``, configured for durability; StoreError for anything unusable."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise StoreError(f"not a database URL: {mask_url(url)!r}; {_URL_HELP}") from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise StoreError(f"unsupported database {backend!r} in {mask_url(url)}: {_URL_HELP}")
    if parsed.get_driver_name() == "psycopg":  # the driver the postgres extra brings
        require("psycopg", extra="postgres", feature="a PostgreSQL store")
    try:
        if backend == "sqlite":
            engine = sa.create_engine(parsed, connect_args={"timeout": _SQLITE_BUSY_SECONDS})
            _configure_sqlite(engine)
        else:
            engine = sa.create_engine(parsed, pool_pre_ping=True,
                                      connect_args={"connect_timeout": 10})
    except (sa.exc.ArgumentError, ImportError) as exc:
        raise StoreError(f"cannot use {mask_url(url)}: {exc}; {_URL_HELP}") from None
    return engine


def _use_wal(cursor: Any) -> None:
    """Switch the file to WAL. The first connections to a new file race for it, and SQLite
    tells the loser "database is locked" at once, without its busy timeout (two writers
    opening a new store failed so about one time in three): retried until that timeout."""
    import sqlite3

    deadline = time.monotonic() + _SQLITE_BUSY_SECONDS
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _configure_sqlite(engine: sa.Engine) -> None:
    """WAL, fsync on every commit, foreign keys, a busy timeout; BEGIN issued by us.

    pysqlite's own transaction handling skips BEGIN before reads and cannot BEGIN IMMEDIATE, so
    it is turned off and each transaction starts with the mode its connection asks for.
    """

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_SECONDS * 1000}")
        _use_wal(cursor)
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        mode = conn.get_execution_options().get("recengine_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


def _add_columns(conn: sa.Connection) -> None:
    """Give a store created before content identity, or before devices, those columns (and
    content identity its unique index).

    Cheap on a store of any size: a nullable column without a default rewrites no row, and the
    index starts with NULLs only. Run in the transaction that creates the tables, which holds
    the write lock, so two processes opening an old store do not both add a column.
    """
    present = {c["name"] for c in sa.inspect(conn).get_columns("events")}
    if "content_key" not in present:
        conn.execute(sa.text("ALTER TABLE events ADD COLUMN content_key VARCHAR"))
        _CONTENT_KEY.create(conn)
    if "device" not in present:
        conn.execute(sa.text("ALTER TABLE events ADD COLUMN device VARCHAR"))


def _prepare_postgres_append(conn: sa.Connection) -> None:
    """Serialise appends, so ids become visible in order ("since N" is exact)."""
    conn.execute(sa.text("LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE"))


def _stored_ids(conn: sa.Connection, ids: list[str]) -> set[str]:
    """Which of ``ids`` (at most a chunk) are stored already."""
    if not ids:
        return set()
    query = sa.select(_EVENTS.c.event_id).where(_EVENTS.c.event_id.in_(ids))
    return {row[0] for row in conn.execute(query)}


def _insert_postgres(conn: sa.Connection, rows: list[tuple[Any, ...]]) -> int:
    """Few rows: INSERT. Many: COPY to the staging table, move the new ones in order, clear it.

    Either skips rows whose event_id or content_key is stored.
    """
    if len(rows) < _COPY_ROWS:
        statement = postgresql.insert(_EVENTS).on_conflict_do_nothing()
        values = [dict(zip(_WRITTEN, row, strict=True)) for row in rows]
        return int(conn.execute(statement, values, execution_options=_ROWCOUNT).rowcount)
    _INCOMING.create(conn, checkfirst=True)
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor, cursor.copy(f"COPY recengine_incoming ({_WRITTEN_NAMES}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
    staged = sa.select(*(_INCOMING.c[name] for name in _WRITTEN)).order_by(_INCOMING.c.ord)
    move = (postgresql.insert(_EVENTS).from_select(list(_WRITTEN), staged)
            .on_conflict_do_nothing())
    inserted = int(conn.execute(move, execution_options=_ROWCOUNT).rowcount)
    conn.execute(sa.text("TRUNCATE recengine_incoming"))
    return inserted


def is_store_url(text: str) -> bool:
    """Whether a place of events (``--events``) names an event store, by its database URL,
    rather than a file.

    >>> is_store_url("postgresql+psycopg://u:p@db:5432/events"), is_store_url("events.csv")
    (True, False)
    >>> is_store_url("sqlite:///recengine.db"), is_store_url("s3a://bucket/events.parquet")
    (True, False)
    """
    return re.match(r"(postgresql|sqlite)(\+\w+)?://", text) is not None


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***``."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def _reason(exc: Exception, url: str) -> str:
    """The first line of what the driver said, without the password should it echo it."""
    original = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(original).splitlines() if line.strip()]
    reason = lines[0] if lines else type(original).__name__
    password = sa.make_url(url).password
    return reason.replace(str(password), "***") if password else reason


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


# --- events: frames to rows and back -------------------------------------------------------


def _event_columns(events: pd.DataFrame) -> dict[str, list[Any]]:
    """The batch as Python values per column, None where absent (trusting validation)."""
    missing = [c for c in EVENT_COLUMNS if c not in events.columns]
    if missing:
        raise DataError(f"events lack the columns {', '.join(missing)}: append takes validated "
                        f"events (see recengine.data.validation), ingest validates raw records")
    event_ids = events["event_id"] if "event_id" in events.columns else None
    devices = events["device"] if "device" in events.columns else None
    values = events["value"].astype("float64")
    stamps = pd.to_datetime(events["timestamp"])
    return {
        "user_id": _strings(events["user_id"]),
        "item_id": _strings(events["item_id"]),
        "event_type": _strings(events["event_type"]),
        "value": [None if math.isnan(v) else v for v in values.tolist()],
        "timestamp": [None if pd.isna(t) else t.to_pydatetime() for t in stamps],
        "event_id": [None] * len(events) if event_ids is None else _strings(event_ids, blank=True),
        "device": [None] * len(events) if devices is None else _strings(devices, blank=True),
    }


def _batch(columns: dict[str, list[Any]], identify_by_content: bool) -> _Batch:
    """Validated events (see :func:`_event_columns`) with their content keys, as a batch."""
    size = len(columns["user_id"])
    keys = _content_keys(columns) if identify_by_content else [None] * size
    return _Batch(columns | {"content_key": keys}, size)


def _content_keys(columns: Mapping[str, list[Any]]) -> list[str | None]:
    """Each event's identity from its content, None for events with an event_id (their identity).

    A BLAKE2b hash (128 bits: no collision in any plausible store) of the JSON list of
    :data:`~recengine.data.validation.EVENT_IDENTITY`, with the timestamp in ISO 8601 to the
    second. Canonical values, not source text: the same event read from CSV, JSON Lines or
    Parquet, as unix seconds or ISO text, has the same key.
    """
    stamps = [None if t is None else t.isoformat() for t in columns["timestamp"]]
    fields = [stamps if name == "timestamp" else columns[name] for name in EVENT_IDENTITY]
    return [None if event_id is not None else
            hashlib.blake2b(json.dumps(identity).encode(), digest_size=16).hexdigest()
            for event_id, identity in zip(columns["event_id"], zip(*fields, strict=True),
                                          strict=True)]


def _strings(column: pd.Series, *, blank: bool = False) -> list[str | None]:
    """Values as str, None where missing (or empty, with ``blank``)."""
    out = [None if absent else str(v) for v, absent in zip(column.tolist(), column.isna(),
                                                             strict=True)]
    return [None if v == "" else v for v in out] if blank else out


def _event_rows(columns: dict[str, list[Any]], start: int, stop: int, ingested_at: datetime, *,
                times_as_text: bool) -> list[tuple[Any, ...]]:
    """Rows ``start:stop`` of a batch as tuples in the order of :data:`_WRITTEN`.

    ``times_as_text`` writes times as SQLAlchemy's SQLite DateTime does (and reads back), for
    :data:`_SQLITE_INSERT`, which bypasses it.
    """
    values = {name: columns[name][start:stop] for name in _WRITTEN if name != "ingested_at"}
    values["ingested_at"] = [ingested_at] * (stop - start)
    if times_as_text:
        for name in ("timestamp", "ingested_at"):
            values[name] = [None if t is None else t.isoformat(" ", "microseconds")
                            for t in values[name]]
    return list(zip(*(values[name] for name in _WRITTEN), strict=True))


def _id_range(since_id: int, until_id: int | None) -> sa.ColumnElement[bool]:
    condition = _EVENTS.c.id > int(since_id)
    return condition if until_id is None else condition & (_EVENTS.c.id <= int(until_id))


#: Rows fetched and transposed per step in :func:`_event_frame`. Fetching the whole store at once
#: (one C call in the driver) and one ``zip(*rows)`` each held the GIL for over half a second at
#: 423,000 events, stalling every request of a server that retrains in the background; in steps,
#: other threads run in between.
_FRAME_STEP = 20_000


def _event_frame(parts: Iterable[Sequence[sa.Row[Any]]]) -> pd.DataFrame:
    """Rows of (id, user, item, type, value, timestamp, device), in parts, as a canonical event
    frame with ``id`` and ``device``."""
    columns: tuple[list[Any], ...] = ([], [], [], [], [], [], [])
    ids, users, items, types, values, stamps, devices = columns
    for rows in parts:
        for column, part in zip(columns, zip(*rows, strict=True), strict=True):
            column.extend(part)
    return pd.DataFrame({
        "id": np.asarray(ids, dtype=np.int64),
        "user_id": pd.Series(users, dtype=object),
        "item_id": pd.Series(items, dtype=object),
        "event_type": pd.Series(types, dtype=object),
        "value": pd.Series(values, dtype="float64"),
        "timestamp": pd.Series(stamps, dtype="datetime64[s]"),
        "device": pd.Series(devices, dtype=object),
    })


def _like_escaped(text: str) -> str:
    """``text`` matched literally inside a LIKE pattern (escape character ``\\``)."""
    return re.sub(r"([\\%_])", r"\\\1", text)


def _digest(conn: sa.Connection, last_id: int) -> str:
    """SHA-256 of the canonical fields of events up to ``last_id``, one JSON line each (with
    the device last where there is one: a store without devices keeps the digest it had)."""
    digest = hashlib.sha256()
    query = (sa.select(*(_EVENTS.c[c] for c in _READ))
             .where(_EVENTS.c.id <= last_id).order_by(_EVENTS.c.id))
    for user, item, kind, value, stamp, device in conn.execution_options(
            yield_per=_CHUNK_ROWS).execute(query):
        line = [user, item, kind, None if value is None else float(value), _iso(stamp)]
        if device is not None:
            line.append(device)
        digest.update(json.dumps(line, ensure_ascii=False).encode() + b"\n")
    return digest.hexdigest()


def _iso(stamp: datetime | None) -> str | None:
    return None if stamp is None else stamp.isoformat()


# --- ingest: records as text ------------------------------------------------------------------


def _raw_records(raw: Sequence[Mapping[str, Any]] | pd.DataFrame) -> RawRecords:
    """Records as text, numbered 1..n; records that are not objects are issues."""
    if isinstance(raw, pd.DataFrame):
        records: list[Any] = raw.to_dict(orient="records")
    elif isinstance(raw, Sequence) and not isinstance(raw, str | bytes):
        records = list(raw)
    else:
        raise TypeError(f"ingest takes a list of records or a DataFrame, not {type(raw).__name__}")
    issues = [Issue("request", n, None, "malformed record",
                    f"a record must be an object, not {type(r).__name__}")
              for n, r in enumerate(records, start=1) if not isinstance(r, Mapping)]
    good = [(n, r) for n, r in enumerate(records, start=1) if isinstance(r, Mapping)]
    names = list(dict.fromkeys(["user_id", "item_id", *(k for _, r in good for k in r)]))
    texts = [{name: _cell(r.get(name)) for name in names} for _, r in good]
    return RawRecords("request", names, texts, [n for n, _ in good], issues)


def _cell(value: Any) -> str:
    """A field as validation reads it: text, with absent values empty."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return ""
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


# --- items and users: frames to JSON and back ---------------------------------------------


def _catalogue_records(frame: pd.DataFrame, what: str) -> tuple[list[str], list[dict[str, Any]]]:
    """The ids, and each row's features as JSON-ready values."""
    ids = [str(i) for i in frame.index]
    if frame.index.hasnans:
        raise DataError(f"a {what} without an id: index the frame by {what} id", column="id")
    repeated = frame.index[frame.index.duplicated()]
    if len(repeated):
        raise DataError(f"{what} id {str(repeated[0])!r} appears twice in one upsert", column="id")
    records = frame.to_dict(orient="records")
    return ids, [_features(record, what, i) for i, record in zip(ids, records, strict=True)]


def _features(record: Mapping[Any, Any], what: str, ident: str) -> dict[str, Any]:
    features = {}
    for name, value in record.items():
        try:
            features[str(name)] = _jsonable(value)
        except TypeError as exc:
            raise DataError(f"{what} {ident!r}: {exc}", column=str(name)) from None
    return features


def _records_frame(ids: Sequence[str], records: Sequence[Mapping[str, Any]],
                   index_name: str = "id") -> pd.DataFrame:
    """Features as stored (JSON values, None where absent), one row per id."""
    names = list(dict.fromkeys(name for record in records for name in record))
    index = pd.Index(list(ids), dtype=object, name=index_name)
    return pd.DataFrame({name: pd.Series([r.get(name) for r in records], index=index,
                                         dtype=object) for name in names}, index=index)


def _catalogue_frame(conn: sa.Connection, table: sa.Table, index_name: str) -> pd.DataFrame:
    rows = conn.execute(sa.select(table.c.id, table.c.features).order_by(table.c.id)).all()
    return _records_frame([row[0] for row in rows], [json.loads(row[1]) for row in rows],
                          index_name)


def _recorded_kinds(conn: sa.Connection, table: sa.Table) -> dict[str, FeatureKind]:
    query = (sa.select(_KINDS.c.name, _KINDS.c.kind).where(_KINDS.c.catalogue == table.name)
             .order_by(_KINDS.c.name))
    return {name: FeatureKind(kind) for name, kind in conn.execute(query)}


def _declared_kinds(kinds: Mapping[str, FeatureKind | str] | None,
                    what: str) -> dict[str, FeatureKind]:
    """``kinds`` as FeatureKind; DataError naming the feature for a kind that is none."""
    out = {}
    for name, kind in (kinds or {}).items():
        try:
            out[str(name)] = FeatureKind(kind)
        except ValueError:
            known = ", ".join(k.value for k in FeatureKind)
            raise DataError(f"{kind!r} is not a kind of {what} feature; use one of {known}",
                            column=str(name)) from None
    return out


def _check_kinds(stored: pd.DataFrame, kinds: Mapping[str, FeatureKind], what: str) -> None:
    """DataError naming the first value of ``stored`` that does not fit its feature's kind."""
    for name, kind in kinds.items():
        if name in stored.columns:
            _typed_column(stored[name], kind, what, name)


def _jsonable(value: Any) -> Any:
    """A feature value as JSON: lists stay lists, dates become ISO strings, NaN becomes null."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, float):
        return None if not math.isfinite(value) else value
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list | tuple | set | frozenset | np.ndarray | pd.Series):
        return [_jsonable(v) for v in value]
    raise TypeError(f"a {type(value).__name__} cannot be stored as a feature "
                    f"(use numbers, strings, lists or dates)")


def _typed(stored: pd.DataFrame, kinds: Mapping[str, FeatureKind], seen: pd.Series,
           what: str) -> pd.DataFrame:
    """The stored catalogue with only the features of ``kinds``, each typed by its kind."""
    index_name = f"{what}_id"
    if len(stored.index) == 0:
        stored = pd.DataFrame(index=pd.Index(sorted(seen.unique()), dtype=object,
                                             name=index_name))
    columns = {}
    for name, kind in kinds.items():
        if name not in stored.columns:
            if len(stored.columns):
                raise DataError(f"no stored {what} has the feature {name!r} (stored: "
                                f"{', '.join(map(str, stored.columns))})", column=name)
            column = pd.Series(None, index=stored.index, dtype=object)
        else:
            column = stored[name]
        columns[name] = _typed_column(column, FeatureKind(kind), what, name)
    return pd.DataFrame(columns, index=stored.index)


def _typed_column(column: pd.Series, kind: FeatureKind, what: str, name: str) -> pd.Series:
    present = column.notna().to_numpy()
    if kind is FeatureKind.MULTI:
        return column.map(lambda v: [] if v is None else
                          [str(x) for x in v] if isinstance(v, list) else [str(v)])
    if kind not in (FeatureKind.NUMERIC, FeatureKind.DATE):
        return column.map(lambda v: None if v is None else str(v)).astype(object)
    text = column.map(lambda v: "" if v is None else str(v)).astype(object)
    parsed = parse_numbers(text) if kind is FeatureKind.NUMERIC else parse_timestamps(text)
    bad = present & parsed.isna().to_numpy()
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise DataError(f"{what} {column.index[first]!r}: {text.iloc[first]!r} is not a "
                        f"{'number' if kind is FeatureKind.NUMERIC else 'date'}", column=name)
    return parsed
