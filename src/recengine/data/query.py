"""What a recommender is asked: who, what they did in order, and when and where they ask.

A model scores a block of :class:`Queries` at once (one row per user asking). Each row carries

- ``users``: the user's training index, or -1 for a user the model has not trained on;
- ``bag``: the user's feedback per item (a sparse row: the seen items, and how strongly), for
  models that want an unordered history;
- ``sequences``: the same history as *ordered events* (item, event type, raw value, weight,
  timestamp), oldest first, for models that use order (next-item prediction);
- ``session``: the items of the current session, in order (may be empty);
- ``user_features``: the user's features as known at request time (a table, one row per query);
- ``times`` and ``context``: when the request is made (int64 seconds, as event timestamps are,
  so a model reads the time since each event by subtraction), and free-form context (device,
  page, ...).

Histories come from one place: :meth:`~recengine.data.training_data.TrainingData.queries` for
training users, or the server's history store. A model never keeps its own copy of the training
matrix. :class:`Query` is the one-user form people and the server build by id.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, Protocol

import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = ["NO_TIME", "Event", "HistorySource", "Queries", "Query", "Sequences", "take",
           "take_ranges"]

#: A timestamp that is not known (int64 seconds): sorts before every real time.
NO_TIME = np.iinfo(np.int64).min
_EPOCH = datetime(1970, 1, 1)
_SECOND = timedelta(seconds=1)


def seconds_of(time: datetime) -> int:
    """``time`` as int64 seconds since the epoch, as event timestamps are stored (a naive time
    is UTC, an aware one is converted).

    >>> seconds_of(datetime(1970, 1, 2))
    86400
    """
    if time.tzinfo is not None:
        time = time.astimezone(UTC).replace(tzinfo=None)
    return (time - _EPOCH) // _SECOND


def _seconds(times: pd.Series | np.ndarray) -> np.ndarray:
    """Timestamps as int64 seconds since the epoch, :data:`NO_TIME` where missing."""
    values = pd.to_datetime(pd.Series(np.asarray(times)), utc=False)
    out = np.full(len(values), NO_TIME, dtype=np.int64)
    known = values.notna().to_numpy()
    out[known] = values[known].astype("datetime64[s]").astype(np.int64).to_numpy()
    return out


@dataclass(frozen=True)
class Sequences:
    """Ordered events of several rows (users), ragged like CSR: row ``k``'s events are
    ``[indptr[k], indptr[k + 1])``, oldest first.

    ``items`` are item indices, ``weights`` each event's feedback contribution (what the bag
    sums), ``values`` the raw event value (stars, seconds, plays; NaN where none), ``timestamps``
    int64 seconds (:data:`NO_TIME` where unknown), ``kinds`` codes into ``event_types``, and
    ``devices`` codes into ``device_names`` (the device an event was logged from, when the log
    says: code 0, ``""``, where it does not). A model that reads the request's context learns
    from them what people choose on each device.

    Examples
    --------
    >>> seqs = Sequences.from_rows([[3, 1, 3], [2]])
    >>> seqs.row_items(0).tolist(), seqs.last_items().tolist()
    ([3, 1, 3], [3, 2])
    >>> seqs.bag(4).toarray().tolist()
    [[0.0, 1.0, 0.0, 2.0], [0.0, 0.0, 1.0, 0.0]]
    """

    indptr: np.ndarray
    items: np.ndarray
    weights: np.ndarray
    values: np.ndarray
    timestamps: np.ndarray
    kinds: np.ndarray
    event_types: tuple[str, ...] = ("",)
    devices: np.ndarray = None  # type: ignore[assignment]  # None: every event's unknown
    device_names: tuple[str, ...] = ("",)

    def __post_init__(self) -> None:
        if self.devices is None:
            object.__setattr__(self, "devices", np.zeros(len(self.items), np.int32))

    def __len__(self) -> int:
        return len(self.indptr) - 1

    @property
    def n_events(self) -> int:
        return int(self.indptr[-1])

    @classmethod
    def empty(cls, n_rows: int = 0) -> Sequences:
        """``n_rows`` rows without events."""
        return cls.from_rows([[] for _ in range(n_rows)])

    @classmethod
    def from_rows(cls, rows: Sequence[Sequence[int]],
                  weights: Sequence[Sequence[float]] | None = None) -> Sequences:
        """Rows of item indices (weight 1 each unless given), in order, without times."""
        lengths = np.array([len(r) for r in rows], dtype=np.int64)
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        items = (np.concatenate([np.asarray(r, dtype=np.int32) for r in rows])
                 if len(rows) and indptr[-1] else np.zeros(0, np.int32))
        w = (np.concatenate([np.asarray(r, dtype=np.float32) for r in weights])
             if weights is not None and indptr[-1] else np.ones(len(items), np.float32))
        n = len(items)
        return cls(indptr, items, w, np.full(n, np.nan, np.float32),
                   np.full(n, NO_TIME, np.int64), np.zeros(n, np.int16))

    @classmethod
    def from_table(cls, table: pd.DataFrame, rows: np.ndarray, items: np.ndarray,
                   n_rows: int) -> Sequences:
        """From an event table whose events belong to row ``rows[e]`` and item ``items[e]``.

        ``table`` may have ``weight``, ``value``, ``event_type``, ``timestamp`` and ``device``
        columns (defaults: 1, NaN, ``""``, unknown, unknown). Events are ordered per row by
        time; events of the same second keep the table's order (the order they were logged
        in).
        """
        n = len(table)
        times = _seconds(table["timestamp"]) if "timestamp" in table else np.full(
            n, NO_TIME, np.int64)
        order = np.lexsort((np.arange(n), times, rows))
        codes, types = _coded(table, "event_type")
        devices, device_names = _coded(table, "device", unknown_first=True)
        weights = (table["weight"].to_numpy(np.float32) if "weight" in table
                   else np.ones(n, np.float32))
        values = (table["value"].to_numpy(np.float32) if "value" in table
                  else np.full(n, np.nan, np.float32))
        indptr = np.zeros(n_rows + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=n_rows), out=indptr[1:])
        return cls(indptr, np.asarray(items, np.int32)[order], weights[order], values[order],
                   times[order], codes.astype(np.int16)[order], types, devices[order],
                   device_names)

    # -- reading --------------------------------------------------------------------------
    def row_items(self, row: int) -> np.ndarray:
        """Row ``row``'s items, oldest first."""
        return self.items[self.indptr[row]:self.indptr[row + 1]]

    def last_items(self) -> np.ndarray:
        """Each row's most recent item, -1 for rows without events."""
        ends = self.indptr[1:]
        has = ends > self.indptr[:-1]
        out = np.full(len(self), -1, dtype=np.int32)
        out[has] = self.items[ends[has] - 1]
        return out

    def bag(self, n_items: int) -> sp.csr_array:
        """The unordered view: each row's summed weight per item (explicit zeros kept)."""
        rows = np.repeat(np.arange(len(self), dtype=np.int64), np.diff(self.indptr))
        keys, slot = np.unique(rows * n_items + self.items, return_inverse=True)
        sums = np.bincount(slot, weights=self.weights, minlength=len(keys))
        indptr = np.zeros(len(self) + 1, dtype=np.int64)
        np.cumsum(np.bincount(keys // n_items, minlength=len(self)) if len(keys)
                  else np.zeros(len(self), np.int64), out=indptr[1:])
        return sp.csr_array((sums.astype(np.float32), (keys % n_items).astype(np.int32),
                             indptr), shape=(len(self), n_items))

    def take(self, rows: np.ndarray) -> Sequences:
        """The sequences of ``rows`` (in that order)."""
        indptr, pick = take_ranges(self.indptr, rows)
        return Sequences(indptr, take(self.items, pick), take(self.weights, pick),
                         take(self.values, pick), take(self.timestamps, pick),
                         take(self.kinds, pick), self.event_types, take(self.devices, pick),
                         self.device_names)

    def keep(self, mask: np.ndarray) -> Sequences:
        """Only the events where ``mask`` is True (every row kept, events in order).

        >>> Sequences.from_rows([[1, 2], [3]]).keep(np.array([True, False, True])).items.tolist()
        [1, 3]
        """
        owner = np.repeat(np.arange(len(self)), np.diff(self.indptr))
        indptr = np.zeros(len(self) + 1, dtype=np.int64)
        np.cumsum(np.bincount(owner[mask], minlength=len(self)), out=indptr[1:])
        return Sequences(indptr, self.items[mask], self.weights[mask], self.values[mask],
                         self.timestamps[mask], self.kinds[mask], self.event_types,
                         self.devices[mask], self.device_names)

    def append(self, other: Sequences) -> Sequences:
        """Row ``k`` of ``self`` followed by row ``k`` of ``other`` (newer events)."""
        if len(other) != len(self):
            raise ValueError(f"cannot append {len(other)} rows to {len(self)}")
        names, devices = list(self.event_types), list(self.device_names)
        remap: dict[str, np.ndarray] = {
            "kinds": np.array([_code(names, t) for t in other.event_types], np.int16),
            "devices": np.array([_code(devices, d) for d in other.device_names], np.int32)}
        indptr = self.indptr + other.indptr
        own_len, new_len = np.diff(self.indptr), np.diff(other.indptr)
        total = int(indptr[-1])
        slot_own = np.repeat(indptr[:-1], own_len) + _ranks(own_len)
        slot_new = np.repeat(indptr[:-1] + own_len, new_len) + _ranks(new_len)
        out = {}
        for name in ("items", "weights", "values", "timestamps", "kinds", "devices"):
            a, b = getattr(self, name), getattr(other, name)
            if name in remap:
                b = remap[name][b] if len(b) else b
            column = np.empty(total, dtype=a.dtype)
            column[slot_own], column[slot_new] = a, b
            out[name] = column
        return Sequences(indptr, **out, event_types=tuple(names), device_names=tuple(devices))

    # -- saving ---------------------------------------------------------------------------
    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        arrays = {f"{prefix}{n}": getattr(self, n) for n in _ARRAYS}
        for names in ("event_types", "device_names"):
            arrays[f"{prefix}{names}"] = np.asarray(getattr(self, names), dtype=str)
        return arrays

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], prefix: str) -> Sequences:
        """What :meth:`to_arrays` wrote (without devices, as versions saved before events
        carried them: every event's device unknown)."""
        def column(name: str) -> np.ndarray:
            return np.asarray(arrays[f"{prefix}{name}"])

        def names(name: str) -> tuple[str, ...]:
            saved = arrays.get(f"{prefix}{name}")
            return ("",) if saved is None else tuple(str(t) for t in saved)

        items = column("items")
        devices = (column("devices") if f"{prefix}devices" in arrays
                   else np.zeros(len(items), np.int32))
        return cls(column("indptr"), items, column("weights"), column("values"),
                   column("timestamps"), column("kinds"), names("event_types"), devices,
                   names("device_names"))


#: The per-event arrays of :class:`Sequences`, besides ``indptr``.
_ARRAYS = ("indptr", "items", "weights", "values", "timestamps", "kinds", "devices")


def _coded(table: pd.DataFrame, column: str, *,
           unknown_first: bool = False) -> tuple[np.ndarray, tuple[str, ...]]:
    """A text column as int32 codes into its sorted names (``("",)`` without the column);
    ``unknown_first``: missing or empty text is code 0, ``""``, whatever else the column
    holds."""
    if column not in table:
        return np.zeros(len(table), np.int32), ("",)
    text = table[column].astype(object).where(table[column].notna(), "").astype(str)
    if not unknown_first:
        codes, uniques = pd.factorize(text, sort=True)
        return codes.astype(np.int32), tuple(str(u) for u in uniques) or ("",)
    known = (text != "").to_numpy()
    codes = np.zeros(len(text), np.int32)
    found, uniques = pd.factorize(text[known], sort=True)
    codes[known] = found + 1
    return codes, ("", *(str(u) for u in uniques))


def take_ranges(indptr: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | slice]:
    """The ``indptr`` of ``rows`` taken from a ragged (CSR-like) layout, and the positions of
    their entries: row slicing without scipy's fancy indexing (ten times slower for one row).

    For one row the positions are a slice, so the caller takes views (:func:`take`): a
    request's one user costs no copy.
    """
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) == 1:
        start, stop = int(indptr[rows[0]]), int(indptr[rows[0] + 1])
        return np.array([0, stop - start], dtype=np.int64), slice(start, stop)
    starts = indptr[rows]
    lengths = indptr[rows + 1] - starts
    out = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    pick = (np.repeat(starts - out[:-1], lengths) + np.arange(out[-1])
            if out[-1] else np.zeros(0, np.int64))
    return out, pick


def take(array: np.ndarray, pick: np.ndarray | slice) -> np.ndarray:
    """``array[pick]``; a slice gives a read-only view (a query must not write into the data
    it was taken from)."""
    out = array[pick]
    if isinstance(pick, slice):
        out.flags.writeable = False
    return out


def _take_sequences(queries: Queries, rows: np.ndarray) -> Sequences:
    return queries.sequences.take(rows)


def _code(names: list[str], name: str) -> int:
    if name not in names:
        names.append(name)
    return names.index(name)


def _ranks(lengths: np.ndarray) -> np.ndarray:
    """0, 1, ..., n-1 for each length n, concatenated."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.arange(total) - starts


class Queries:
    """A block of requests, one row per user asking (see the module docstring).

    ``bag`` and ``sequences`` describe the same history; ``bag`` is what seen-item exclusion
    removes. Build with :meth:`TrainingData.queries` or :meth:`from_bag`. The bag may be given
    as its CSR parts (``rows``: indptr, indices, data, number of items), and the sequences as a
    function that takes them: each is then built only when a model reads it. A request's
    approximate top-k needs only the seen indices (:meth:`seen`), and building the two cost a
    fifth of such a request.
    """

    def __init__(self, users: np.ndarray, bag: sp.csr_array | None,
                 sequences: Sequences | Callable[[], Sequences], *,
                 session: Sequences | None = None, user_features: pd.DataFrame | None = None,
                 times: np.ndarray | None = None,
                 context: tuple[Mapping[str, Any], ...] | None = None,
                 rows: tuple[np.ndarray, np.ndarray, np.ndarray, int] | None = None) -> None:
        if bag is not None:
            if rows is not None:
                raise ValueError("give the bag or its rows, not both")
            self.__dict__["bag"] = bag
            rows = (bag.indptr, bag.indices, bag.data, bag.shape[1])
        elif rows is None:
            raise ValueError("give the bag or its rows")
        self._rows: tuple[np.ndarray, np.ndarray, np.ndarray, int] = rows
        self._source = sequences
        self.users = users
        self.session = session
        self.user_features = user_features
        self.times = times
        self.context = context

    def __len__(self) -> int:
        return len(self.users)

    @functools.cached_property
    def sequences(self) -> Sequences:
        """The same history as ordered events, oldest first."""
        source = self._source
        return source if isinstance(source, Sequences) else source()

    @functools.cached_property
    def bag(self) -> sp.csr_array:
        """Feedback per item, one row per query (CSR)."""
        indptr, indices, data, n_items = self._rows
        return sp.csr_array((data, indices, indptr), shape=(len(self.users), n_items))

    def seen(self) -> tuple[np.ndarray, np.ndarray]:
        """The bag's ``indptr`` and item ``indices``, without building it."""
        return self._rows[0], self._rows[1]

    @classmethod
    def from_bag(cls, users: np.ndarray, bag: sp.csr_array) -> Queries:
        """Queries from an unordered history only (each item one event, in item order)."""
        bag = sp.csr_array(bag, dtype=np.float32)
        bag.sort_indices()
        seqs = Sequences(bag.indptr.astype(np.int64), bag.indices.astype(np.int32),
                         bag.data.astype(np.float32), np.full(bag.nnz, np.nan, np.float32),
                         np.full(bag.nnz, NO_TIME, np.int64), np.zeros(bag.nnz, np.int16))
        return cls(np.asarray(users, dtype=np.int32), bag, seqs)

    def __getitem__(self, rows: slice | np.ndarray) -> Queries:
        """The queries of ``rows`` (a slice or indices), every field kept aligned."""
        picked = np.arange(len(self))[rows]
        indptr, pick = take_ranges(self._rows[0], picked)
        return Queries(
            self.users[picked], None, functools.partial(_take_sequences, self, picked),
            rows=(indptr, take(self._rows[1], pick), take(self._rows[2], pick), self._rows[3]),
            session=None if self.session is None else self.session.take(picked),
            user_features=(None if self.user_features is None
                           else self.user_features.iloc[picked].reset_index(drop=True)),
            times=None if self.times is None else self.times[picked],
            context=None if self.context is None else tuple(self.context[i] for i in picked))

    def events(self) -> Sequences:
        """Every event of each query, oldest first: the history, then the session (the most
        recent). What models of order read beyond the last item."""
        seqs = self.sequences
        return seqs if self.session is None else seqs.append(self.session)

    def recent_items(self) -> np.ndarray:
        """Each row's most recent item: the session's last, else the history's last (-1 if
        neither has one). What next-item models start from."""
        last = self.sequences.last_items()
        if self.session is not None:
            in_session = self.session.last_items()
            last = np.where(in_session >= 0, in_session, last)
        return last


class Event(NamedTuple):
    """One event of an id-level history (:attr:`Query.history`); ``timestamp`` in seconds."""

    item_id: str
    event_type: str = ""
    value: float = float("nan")
    timestamp: int = NO_TIME
    weight: float = 1.0


@dataclass(frozen=True)
class Query:
    """One request, by id: what the server and people build (see :class:`Queries`).

    ``history`` holds the user's events after those of the model's history source, in order:
    :class:`Event` s, or a table (``item_id``, and optionally ``event_type``, ``value``,
    ``weight``, ``timestamp``); None: the history source's alone (training users).
    ``candidates`` restrict the answer, ``exclude`` removes items from it.
    """

    user: str | None = None
    history: Sequence[Event] | pd.DataFrame | None = None
    session: Sequence[str] = ()
    user_features: Mapping[str, Any] = field(default_factory=dict)
    time: datetime | None = None
    context: Mapping[str, Any] = field(default_factory=dict)
    candidates: Sequence[str] | None = None
    exclude: Sequence[str] = ()


class HistorySource(Protocol):
    """Where training users' histories come from (training data, a served version's log)."""

    def queries(self, users: np.ndarray) -> Queries:
        """New queries for training user indices, with their bag and ordered events (new
        each call: the caller adds the request's session, features, time and context)."""
        ...

    def item_users(self, items: np.ndarray) -> sp.csr_array:
        """``[len(items), n_users]``: which training users chose each item (audiences)."""
        ...
