"""Row-level validation: every bad row is named by file, row and column; never a traceback.

Readers hand over a :class:`RawTable` of strings (so nothing is lost to a parser's guess); the
checks here are vectorised over the whole table and either skip bad rows, counting them in a
:class:`ValidationReport`, or, in strict mode, raise :class:`~recengine.errors.DataError` for the
first one in file order.

Vectorised checks cost a few milliseconds per call whatever the size, which is all of an API
request's budget; :func:`validate_event_records` is their record-by-record twin for a few records.
Both take each rule's problem and message from the same :class:`_Rule` constants, and the twin
defers to :func:`validate_events` whenever a text is in a form only pandas' parsers decide.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from recengine.data.dataset import empty_events
from recengine.data.schema import EVENT_COLUMNS, UNSTORABLE, EventSchema, EventType, FeatureKind
from recengine.errors import DataError

__all__ = [
    "EVENT_IDENTITY",
    "LISTED_ISSUES",
    "MAX_DEVICE_LENGTH",
    "ColumnMapping",
    "Issue",
    "RawRecords",
    "RawTable",
    "ValidationReport",
    "parse_labels",
    "validate_event_records",
    "validate_events",
    "validate_metadata",
]

#: Issues a report built chunk by chunk lists; it counts the others (far more than anyone reads).
LISTED_ISSUES = 1000

#: Clock skew tolerated before a timestamp counts as "in the future".
FUTURE_TOLERANCE = pd.Timedelta(minutes=5)

#: What makes two events without an event id the same event: one user did one thing to one item
#: at one time. The value is left out on purpose: two rows that differ only in it disagree about
#: one event (a rating corrected later), and the first one read is kept. Validation reports the
#: later rows as duplicates, and the event store's content identity uses the same fields.
EVENT_IDENTITY = ("user_id", "item_id", "event_type", "timestamp")


@dataclass(frozen=True)
class _Rule:
    """A check's problem name and message, the same whichever validator applies it."""

    problem: str
    template: str

    def message(self, **fields: object) -> str:
        return self.template.format(**fields)


_MISSING_ID = _Rule("missing id", "missing {what} id")
_UNKNOWN_TYPE = _Rule("unknown event type", "unknown event type {name!r} (known: {known})")
_NOT_A_NUMBER = _Rule("unparsable value", "{text!r} is not a number")
_NOT_FINITE = _Rule("unparsable value", "{text!r} is not a finite number")
_NO_VALUE = _Rule("missing value", "{name} needs a value")
_NOT_A_TIME = _Rule("unparsable timestamp",
                    "{text!r} is not a timestamp (use unix seconds or ISO 8601)")
_FUTURE = _Rule("future timestamp", "timestamp {stamp} is in the future")
_DUPLICATE = _Rule("duplicate", "duplicate of row {row}")
_LONG_DEVICE = _Rule("device too long",
                     "device {text!r} is longer than {limit} characters (a device is a kind, "
                     "such as mobile or tv, not a user agent)")
#: The longest device name accepted: a small vocabulary of kinds, which a ranker can learn.
MAX_DEVICE_LENGTH = 64
_UNSTORABLE_TEXT = _Rule("unstorable text",
                         "contains {char!r}, which no database stores as text (NUL or a lone "
                         "UTF-16 surrogate)")


@dataclass(frozen=True)
class Issue:
    """One problem with one row (``column`` is None when the row as a whole is malformed)."""

    file: str
    row: int
    column: str | None
    problem: str
    message: str

    def as_error(self) -> DataError:
        return DataError(self.message, file=self.file, row=self.row, column=self.column)

    def __str__(self) -> str:
        return str(self.as_error())


@dataclass
class RawTable:
    """A source table as strings, before validation.

    ``rows`` holds each record's row number in the source as a person would count it (the line
    number in a text file, the 1-based record number in Parquet). ``issues`` are records the reader
    could not even split into fields; they are already left out of ``frame``.
    """

    file: str
    frame: pd.DataFrame
    rows: np.ndarray
    issues: list[Issue] = field(default_factory=list)


@dataclass
class RawRecords:
    """A few records as text, before validation: what :func:`validate_event_records` checks.

    Every record has the keys ``columns`` (empty text where the source had nothing), so a column
    is present exactly as it would be in the :class:`RawTable` of :meth:`table`. ``rows`` and
    ``issues`` are as in a :class:`RawTable`.
    """

    file: str
    columns: list[str]
    records: list[dict[str, str]]
    rows: list[int]
    issues: list[Issue] = field(default_factory=list)

    def table(self) -> RawTable:
        """The same records as a :class:`RawTable`, for :func:`validate_events`."""
        frame = pd.DataFrame({name: pd.Series([r[name] for r in self.records], dtype=object)
                              for name in self.columns})
        return RawTable(self.file, frame, np.asarray(self.rows, dtype=np.int64), self.issues)


@dataclass
class ValidationReport:
    """What validation read, kept and skipped, and why (one issue per row skipped).

    A report built chunk by chunk (:meth:`extend`) lists the first :data:`LISTED_ISSUES` issues
    and only counts the others, by problem, in ``unlisted``.
    """

    file: str
    rows_read: int = 0
    rows_accepted: int = 0
    issues: list[Issue] = field(default_factory=list)
    unlisted: Counter[str] = field(default_factory=Counter)

    @property
    def rows_skipped(self) -> int:
        return self.rows_read - self.rows_accepted

    @property
    def ok(self) -> bool:
        return not self.issues

    def counts(self) -> dict[str, int]:
        """Number of issues per kind of problem."""
        return dict(Counter(i.problem for i in self.issues) + self.unlisted)

    def to_dict(self, max_issues: int = 50) -> dict[str, object]:
        return {
            "file": self.file,
            "rows_read": self.rows_read,
            "rows_accepted": self.rows_accepted,
            "rows_skipped": self.rows_skipped,
            "problems": self.counts(),
            "issues": [str(i) for i in self.issues[:max_issues]],
        }

    def merge(self, other: ValidationReport) -> ValidationReport:
        """One report for several files (a dataset's ratings and its tags, say)."""
        return ValidationReport(
            file=f"{self.file}, {other.file}",
            rows_read=self.rows_read + other.rows_read,
            rows_accepted=self.rows_accepted + other.rows_accepted,
            issues=self.issues + other.issues,
            unlisted=self.unlisted + other.unlisted,
        )

    def extend(self, chunk: ValidationReport) -> None:
        """Count a later chunk of the same file (see :func:`~recengine.data.readers.iter_events`)
        in this report, listing its issues while fewer than :data:`LISTED_ISSUES` are: a file of
        bad rows then takes no more memory than a good one."""
        self.rows_read += chunk.rows_read
        self.rows_accepted += chunk.rows_accepted
        room = max(LISTED_ISSUES - len(self.issues), 0)
        self.issues.extend(chunk.issues[:room])
        self.unlisted.update(issue.problem for issue in chunk.issues[room:])


@dataclass(frozen=True)
class ColumnMapping:
    """Which source column holds each event field.

    A field mapped to None, or to a column the source lacks, takes its default: every event gets
    ``default_event_type``; the value, the timestamp and the device are absent. ``event_id`` makes
    ingestion idempotent: a repeated id is a duplicate (rows without one are told apart by
    :data:`EVENT_IDENTITY`).
    """

    user_id: str = "user_id"
    item_id: str = "item_id"
    event_type: str | None = "event_type"
    value: str | None = "value"
    timestamp: str | None = "timestamp"
    event_id: str | None = None
    default_event_type: str = "rating"
    #: The device the event was logged from (mobile, tv, ...): optional context, which the
    #: hybrid's ranker learns from; absent or empty is unknown.
    device: str | None = "device"

    @classmethod
    def parse(cls, text: str, **defaults: str) -> ColumnMapping:
        """Read ``"user_id=userId,item_id=movieId"`` (the command line's form)."""
        fields = {f for f in cls.__dataclass_fields__}
        values: dict[str, str | None] = dict(defaults)
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, sep, column = part.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or key not in fields:
                raise DataError(f"bad column mapping {part!r}: use FIELD=COLUMN with FIELD one of "
                                f"{', '.join(sorted(fields))}", column="--columns")
            values[key] = column.strip() or None
        return cls(**values)  # type: ignore[arg-type]


class _Checker:
    """Collects issues and the mask of rejected rows for one table."""

    def __init__(self, table: RawTable) -> None:
        self.table = table
        self.bad = np.zeros(len(table.frame), dtype=bool)
        self.issues: list[Issue] = list(table.issues)

    def flag(self, mask: np.ndarray, column: str | None, problem: str,
             message: Callable[[int], str]) -> None:
        """Record ``message(i)`` for every row ``i`` in ``mask`` not already rejected."""
        for i in np.flatnonzero(mask & ~self.bad):
            self.issues.append(Issue(self.table.file, int(self.table.rows[i]), column, problem,
                                     message(int(i))))
        self.bad |= mask

    def check_text(self, columns: Sequence[str | None]) -> None:
        """Flag rows whose text in ``columns`` no database stores, and blank those cells.

        Checked before anything else reads the table: pandas' Arrow strings cannot even hold a
        lone surrogate, so every later step (stripping, parsing numbers and times) sees blanks.
        """
        frame = self.table.frame
        for name in dict.fromkeys(c for c in columns if c is not None and c in frame.columns):
            column = frame[name].astype(object)
            found = column.str.contains(UNSTORABLE, na=False).to_numpy(dtype=bool)
            if not found.any():
                continue
            def char(i: int, column: pd.Series = column) -> str:
                return _UNSTORABLE_TEXT.message(char=UNSTORABLE.findall(column.iloc[i])[0])
            self.flag(found, name, _UNSTORABLE_TEXT.problem, char)
            if frame is self.table.frame:  # the caller's frame stays as it was
                frame = frame.copy()
            frame.loc[found, name] = ""
        self.table = replace(self.table, frame=frame)

    def finish(self, strict: bool) -> ValidationReport:
        n_read = len(self.table.frame) + len(self.table.issues)
        return _report(self.table.file, n_read, int((~self.bad).sum()), self.issues, strict)


def _report(file: str, n_read: int, kept: int, issues: list[Issue],
            strict: bool) -> ValidationReport:
    """Issues in row order; in strict mode the first one raised."""
    issues.sort(key=lambda i: i.row)
    if strict and issues:
        raise issues[0].as_error()
    return ValidationReport(file, n_read, kept, issues)


def _defaults(mapping: ColumnMapping | None, schema: EventSchema | None,
              now: pd.Timestamp | None) -> tuple[ColumnMapping, EventSchema, pd.Timestamp]:
    """An event validation's mapping, schema and clock (UTC, naive), defaulted."""
    return (mapping or ColumnMapping(), schema or EventSchema(),
            pd.Timestamp.now(tz="UTC").tz_convert(None) if now is None else now)


def _column(table: RawTable, name: str | None) -> pd.Series | None:
    if name is None or name not in table.frame.columns:
        return None
    column = table.frame[name].astype(object)
    return column.where(column.notna(), "").astype(str).str.strip()


def _require_columns(file: str, columns: Sequence[object], mapping: ColumnMapping) -> None:
    for field_name in ("user_id", "item_id"):
        column = getattr(mapping, field_name)
        if column not in columns:
            found = ", ".join(map(str, columns)) or "none"
            raise DataError(f"no column {column!r} for {field_name} (columns found: {found}); "
                            f"map it with --columns {field_name}=NAME", file=file)


def parse_numbers(text: pd.Series) -> pd.Series:
    """Floats from strings; empty and unparsable become NaN (callers tell the two apart)."""
    return pd.to_numeric(text.where(text != "", None), errors="coerce").astype("float64")


#: A year alone (ISO 8601's reduced precision): a time, not a number of seconds.
_YEAR = re.compile(r"\d{4}", re.ASCII)
#: The earliest time a stored event may have (Python's datetime and SQL start at year 1).
_YEAR_ONE = np.datetime64("0001-01-01T00:00:00", "s")


def parse_timestamps(text: pd.Series) -> pd.Series:
    """UTC ``datetime64[s]`` from unix seconds or ISO 8601 strings; unparsable become NaT.

    Four digits alone are a year, as ISO 8601 reads them: ``2024`` is 2024-01-01, not 2,024
    seconds after 1970 (when nobody recorded events), the reading that would pass silently.

    >>> parse_timestamps(pd.Series(["2024", "1700000000", "2024-05-01T10:00:00Z"])).tolist()
    [Timestamp('2024-01-01 00:00:00'), Timestamp('2023-11-14 22:13:20'), \
Timestamp('2024-05-01 10:00:00')]
    """
    out = pd.Series(pd.NaT, index=text.index, dtype="datetime64[s]")
    numeric = pd.to_numeric(text.where(text != "", None), errors="coerce")
    year = text.str.fullmatch(_YEAR.pattern).to_numpy(dtype=bool)
    is_num = numeric.notna() & np.isfinite(numeric.astype("float64")) & ~year
    in_range = is_num & (numeric.abs() < 1e11)  # larger is no plausible unix time in seconds
    seconds = numeric[in_range].astype("int64")
    out[in_range] = pd.to_datetime(seconds, unit="s").astype("datetime64[s]")
    rest = (text != "") & ~is_num
    if rest.any():
        parsed = pd.to_datetime(text[rest], errors="coerce", utc=True, format="ISO8601")
        out[rest] = parsed.dt.tz_convert(None).astype("datetime64[s]")
    out[out.to_numpy() < _YEAR_ONE] = pd.NaT  # no database or datetime holds them
    return out


def validate_events(
    table: RawTable,
    mapping: ColumnMapping | None = None,
    schema: EventSchema | None = None,
    *,
    strict: bool = False,
    now: pd.Timestamp | None = None,
    allow_duplicates: bool = False,
) -> tuple[pd.DataFrame, ValidationReport]:
    """Check every row of ``table`` and return the valid events in canonical form, and a report.

    The events have the columns of :data:`EVENT_COLUMNS`, plus ``event_id`` when the mapping
    names an event-id column and ``device`` when the source has a device column (None where a
    row gives none).

    Checks: text no database stores (NUL, a lone surrogate); a missing user or item id; an unknown
    event type; a value that is not a number, missing where its type requires one, or outside its
    type's range (a rating out of range, a negative count); a timestamp that is unparsable or in the
    future; a device name longer than :data:`MAX_DEVICE_LENGTH`; a duplicate (same event id, or, for
    rows without an event id column, the same :data:`EVENT_IDENTITY` as an earlier row).
    ``allow_duplicates`` keeps every row of the same identity (events that really happened twice); a
    repeated event id is still a duplicate.
    """
    mapping, schema, now = _defaults(mapping, schema, now)
    _require_columns(table.file, list(table.frame.columns), mapping)
    check = _Checker(table)
    check.check_text(_mapped(mapping))
    table = check.table

    users, items = _column(table, mapping.user_id), _column(table, mapping.item_id)
    assert users is not None and items is not None
    check.flag((users == "").to_numpy(), mapping.user_id, _MISSING_ID.problem,
               lambda i: _MISSING_ID.message(what="user"))
    check.flag((items == "").to_numpy(), mapping.item_id, _MISSING_ID.problem,
               lambda i: _MISSING_ID.message(what="item"))

    types_text = _column(table, mapping.event_type)
    if types_text is None:
        types = pd.Series(mapping.default_event_type, index=table.frame.index, dtype=object)
    else:
        types = types_text.where(types_text != "", mapping.default_event_type)
        unknown = ~types.isin(list(schema.event_types)).to_numpy()
        check.flag(unknown, mapping.event_type, _UNKNOWN_TYPE.problem,
                   lambda i: _unknown_type(types.iloc[i], schema))

    values = _check_values(check, table, mapping, schema, types)
    timestamps = _check_timestamps(check, table, mapping, now)
    devices = _column(table, mapping.device)
    if devices is not None:
        check.flag((devices.str.len() > MAX_DEVICE_LENGTH).to_numpy(), mapping.device,
                   _LONG_DEVICE.problem, lambda i: _long_device(devices.iloc[i]))

    events = pd.DataFrame({"user_id": users.astype(object), "item_id": items.astype(object),
                           "event_type": types.astype(object), "value": values,
                           "timestamp": timestamps})
    _check_duplicates(check, table, mapping, events, allow_duplicates)
    report = check.finish(strict)
    columns = list(EVENT_COLUMNS)
    ids = _column(table, mapping.event_id)
    if ids is not None:  # kept, so that the event store can be idempotent by it
        events["event_id"] = ids.where(ids != "", None).astype(object)
        columns.append("event_id")
    if devices is not None:
        events["device"] = devices.where(devices != "", None).astype(object)
        columns.append("device")
    if report.rows_accepted == 0:
        return empty_events().reindex(columns=columns), report
    return events.loc[~check.bad, columns].reset_index(drop=True), report


def _check_values(check: _Checker, table: RawTable, mapping: ColumnMapping,
                  schema: EventSchema, types: pd.Series) -> pd.Series:
    text = _column(table, mapping.value)
    if text is None:
        text = pd.Series("", index=table.frame.index, dtype=object)
    values = parse_numbers(text)
    column = mapping.value
    check.flag(((text != "") & values.isna()).to_numpy(), column, _NOT_A_NUMBER.problem,
               lambda i: _NOT_A_NUMBER.message(text=text.iloc[i]))
    check.flag((values.notna() & ~np.isfinite(values)).to_numpy(), column, _NOT_FINITE.problem,
               lambda i: _NOT_FINITE.message(text=text.iloc[i]))
    for name, spec in schema.event_types.items():
        of_type = (types == name).to_numpy()
        if not of_type.any():
            continue
        missing = of_type & (text == "").to_numpy()
        if spec.value_required:
            def no_value(i: int, n: str = name) -> str:
                return _NO_VALUE.message(name=n)
            check.flag(missing, column, _NO_VALUE.problem, no_value)
        else:
            values[missing] = spec.default_value
        v = values.to_numpy()
        def out_of_range(i: int, n: str = name, s: EventType = spec, v: np.ndarray = v) -> str:
            return _range_message(n, v[i], s)
        if spec.min_value is not None:
            low = of_type & (v < spec.min_value)
            check.flag(low, column, _range_problem(spec, low=True), out_of_range)
        if spec.max_value is not None:
            high = of_type & (v > spec.max_value)
            check.flag(high, column, _range_problem(spec, low=False), out_of_range)
    return values


def _long_device(text: str) -> str:
    return _LONG_DEVICE.message(text=text[:MAX_DEVICE_LENGTH] + "...", limit=MAX_DEVICE_LENGTH)


def _unknown_type(name: str, schema: EventSchema) -> str:
    return _UNKNOWN_TYPE.message(name=name, known=", ".join(sorted(schema.event_types)))


def _range_problem(spec: EventType, *, low: bool) -> str:
    """Below a minimum of 0 is "negative"; any other bound crossed is "out of range"."""
    return "negative value" if low and spec.min_value == 0 else "value out of range"


def _range_message(name: str, value: float, spec: object) -> str:
    low, high = getattr(spec, "min_value", None), getattr(spec, "max_value", None)
    if low == 0 and value < 0:
        return f"{name} value {value:g} is negative"
    bounds = f"{low:g}..{high:g}" if low is not None and high is not None else (
        f">= {low:g}" if low is not None else f"<= {high:g}")
    return f"{name} value {value:g} is outside {bounds}"


def _check_timestamps(check: _Checker, table: RawTable, mapping: ColumnMapping,
                      now: pd.Timestamp) -> pd.Series:
    text = _column(table, mapping.timestamp)
    if text is None:
        return pd.Series(pd.NaT, index=table.frame.index, dtype="datetime64[s]")
    stamps = parse_timestamps(text)
    column = mapping.timestamp
    check.flag(((text != "") & stamps.isna()).to_numpy(), column, _NOT_A_TIME.problem,
               lambda i: _NOT_A_TIME.message(text=text.iloc[i]))
    future = (stamps > now + FUTURE_TOLERANCE).to_numpy()
    check.flag(future, column, _FUTURE.problem, lambda i: _FUTURE.message(stamp=stamps.iloc[i]))
    return stamps


def _mapped(mapping: ColumnMapping) -> list[str | None]:
    """The columns an event is read from, in the order their checks run."""
    return [mapping.user_id, mapping.item_id, mapping.event_type, mapping.value,
            mapping.timestamp, mapping.device, mapping.event_id]


def _check_duplicates(check: _Checker, table: RawTable, mapping: ColumnMapping,
                      events: pd.DataFrame, allow_duplicates: bool) -> None:
    ids = _column(table, mapping.event_id)
    if ids is not None:
        keys, eligible = ids.to_frame("event_id"), ~check.bad & (ids != "").to_numpy()
        column: str | None = mapping.event_id
    elif allow_duplicates:
        return
    else:
        keys, eligible = events[list(EVENT_IDENTITY)], ~check.bad
        column = None
    live = keys[eligible]
    dup_live = live.duplicated(keep="first").to_numpy()
    if not dup_live.any():
        return
    group = live.groupby(list(live.columns), dropna=False, sort=False).ngroup().to_numpy()
    positions = np.flatnonzero(eligible)
    first = pd.Series(positions).groupby(group).transform("first").to_numpy()
    first_of = dict(zip(positions, first, strict=True))
    dup = np.zeros(len(eligible), dtype=bool)
    dup[positions[dup_live]] = True
    check.flag(dup, column, _DUPLICATE.problem,
               lambda i: _DUPLICATE.message(row=int(table.rows[first_of[i]])))


#: Numbers that ``float`` reads exactly as ``pd.to_numeric`` does in any column: no sign "+"
#: (pandas reads those less precisely), no "_", no words, integers that fit in int64.
_PLAIN_NUMBER = re.compile(r"-?(?:\d{1,18}|\d{0,18}\.\d{1,18}|\d{1,18}\.)(?:[eE][+-]?\d{1,3})?",
                           re.ASCII)
#: ISO 8601 as ``datetime.fromisoformat`` and pandas read it alike (an offset needs a time).
_PLAIN_ISO = re.compile(r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?"
                        r"(?:Z|[+-]\d{2}:[0-5]\d)?)?", re.ASCII)
_EPOCH = datetime(1970, 1, 1)
_UNIX_RANGE = 1e11  # seconds; as in parse_timestamps


class _PandasDecides(Exception):
    """A text whose reading only pandas' parsers settle (and may depend on the whole column)."""


def validate_event_records(
    raw: RawRecords,
    mapping: ColumnMapping | None = None,
    schema: EventSchema | None = None,
    *,
    strict: bool = False,
    now: pd.Timestamp | None = None,
) -> tuple[dict[str, list[Any]], ValidationReport] | None:
    """:func:`validate_events` record by record, for a few records: the same issues and events.

    The valid events come as Python values per column (those of :data:`EVENT_COLUMNS`, ``device``
    and ``event_id``, None where absent), the form the event store writes. Returns None when a value
    or timestamp is in a form this twin leaves to pandas (``+5``, ``1_000``, ``-0``, ``1e3`` as a
    date, an ISO 8601 variant...): then call :func:`validate_events` on ``raw.table()``.
    """
    mapping, schema, now = _defaults(mapping, schema, now)
    _require_columns(raw.file, raw.columns, mapping)
    try:
        outcomes = [_check_record(r, mapping, schema, now + FUTURE_TOLERANCE)
                    for r in raw.records]
    except _PandasDecides:
        return None
    by_id = mapping.event_id in raw.columns
    first_row: dict[object, int] = {}  # of each event id (or event) among the valid records
    events: dict[str, list[Any]] = {name: [] for name in (*EVENT_COLUMNS, "event_id", "device")}
    issues = list(raw.issues)
    for row, outcome in zip(raw.rows, outcomes, strict=True):
        if isinstance(outcome, dict):
            key = outcome["event_id"] if by_id else tuple(outcome[c] for c in EVENT_IDENTITY)
            if key is not None and key in first_row:
                outcome = (mapping.event_id if by_id else None, _DUPLICATE.problem,
                           _DUPLICATE.message(row=first_row[key]))
            elif key is not None:
                first_row[key] = row
        if isinstance(outcome, tuple):
            issues.append(Issue(raw.file, row, *outcome))
        else:
            for name, values in events.items():
                values.append(outcome[name])
    n_read = len(raw.records) + len(raw.issues)
    return events, _report(raw.file, n_read, len(events["user_id"]), issues, strict)


_Found = tuple[str | None, str, str]


def _check_record(record: Mapping[str, str], mapping: ColumnMapping, schema: EventSchema,
                  latest: pd.Timestamp) -> dict[str, Any] | _Found:
    """One record's event, or its first issue in :func:`validate_events`' order of checks."""
    for name in dict.fromkeys(_mapped(mapping)):
        match = None if name is None else UNSTORABLE.search(record.get(name, ""))
        if match:
            return name, _UNSTORABLE_TEXT.problem, _UNSTORABLE_TEXT.message(char=match.group())
    user, item = _text(record, mapping.user_id), _text(record, mapping.item_id)
    if not user:
        return mapping.user_id, _MISSING_ID.problem, _MISSING_ID.message(what="user")
    if not item:
        return mapping.item_id, _MISSING_ID.problem, _MISSING_ID.message(what="item")
    typed = _text(record, mapping.event_type)
    kind = typed or mapping.default_event_type
    if typed is not None and kind not in schema.event_types:
        return mapping.event_type, _UNKNOWN_TYPE.problem, _unknown_type(kind, schema)
    value, problem = _record_value(_text(record, mapping.value) or "", kind, schema)
    if problem is not None:
        return mapping.value, *problem
    stamp, problem = _record_timestamp(_text(record, mapping.timestamp), latest)
    if problem is not None:
        return mapping.timestamp, *problem
    device = _text(record, mapping.device) or None
    if device is not None and len(device) > MAX_DEVICE_LENGTH:
        return mapping.device, _LONG_DEVICE.problem, _long_device(device)
    return {"user_id": user, "item_id": item, "event_type": kind, "value": value,
            "timestamp": stamp, "device": device,
            "event_id": _text(record, mapping.event_id) or None}


def _text(record: Mapping[str, str], name: str | None) -> str | None:
    """A field as :func:`_column` reads it: stripped text, None without such a column."""
    return None if name is None or name not in record else record[name].strip()


def _record_value(text: str, kind: str,
                  schema: EventSchema) -> tuple[float | None, tuple[str, str] | None]:
    """:func:`_check_values` for one record: its value (defaulted) or its problem and message."""
    value = _plain_float(text) if text else None
    if value is not None and not math.isfinite(value):
        return None, (_NOT_FINITE.problem, _NOT_FINITE.message(text=text))
    spec = schema.event_types.get(kind)
    if spec is None:
        return value, None
    if value is None:
        if spec.value_required:
            return None, (_NO_VALUE.problem, _NO_VALUE.message(name=kind))
        value = spec.default_value
    for low, bound in ((True, spec.min_value), (False, spec.max_value)):
        if bound is not None and (value < bound if low else value > bound):
            return None, (_range_problem(spec, low=low), _range_message(kind, value, spec))
    return value, None


def _record_timestamp(text: str | None, latest: pd.Timestamp
                      ) -> tuple[datetime | None, tuple[str, str] | None]:
    """:func:`_check_timestamps` for one record: its time or its problem and message."""
    if not text:
        return None, None
    stamp = _plain_timestamp(text)
    if stamp is None:
        return None, (_NOT_A_TIME.problem, _NOT_A_TIME.message(text=text))
    if stamp > latest:
        return None, (_FUTURE.problem, _FUTURE.message(stamp=stamp))
    return stamp, None


def _plain_float(text: str) -> float:
    """:func:`parse_numbers` of one non-empty text in a plain form."""
    if not _PLAIN_NUMBER.fullmatch(text):
        raise _PandasDecides(text)
    value = float(text)
    if value == 0 and text.startswith("-"):  # -0 is 0 in a column of integers, else -0.0
        raise _PandasDecides(text)
    return value


def _plain_timestamp(text: str) -> datetime | None:
    """:func:`parse_timestamps` of one non-empty text in a plain form, None if unparsable."""
    if _YEAR.fullmatch(text):
        raise _PandasDecides(text)  # a year; rare enough in requests to leave to pandas
    if not _PLAIN_ISO.fullmatch(text):
        seconds = _plain_float(text)  # unix seconds, truncated as astype("int64") does
        if not (math.isfinite(seconds) and abs(seconds) < _UNIX_RANGE):
            return None
        try:
            return _EPOCH + timedelta(seconds=int(seconds))
        except OverflowError:  # before year 1: not a time anyone stores (parse_timestamps too)
            return None
    try:
        stamp = datetime.fromisoformat(text)
        if stamp.tzinfo is not None:
            stamp = stamp.astimezone(UTC).replace(tzinfo=None)
    except (ValueError, OverflowError):  # 2024-02-30, 24:00:00, a year 1 shifted before 1
        raise _PandasDecides(text) from None
    return stamp.replace(microsecond=0)  # whole seconds, floored as astype("datetime64[s]")


def parse_labels(text: str, separator: str = "|") -> list[str]:
    """A multi-valued cell: a JSON list (from JSON Lines or Parquet) or ``a|b|c``.

    >>> parse_labels('["x", "y"]'), parse_labels("x| y"), parse_labels("")
    (['x', 'y'], ['x', 'y'], [])
    """
    if text.startswith("["):
        try:
            values = json.loads(text)
        except json.JSONDecodeError:
            values = None
        if isinstance(values, list):
            return [str(v).strip() for v in values if v is not None and str(v).strip()]
    return [p.strip() for p in text.split(separator) if p.strip()]


def validate_metadata(
    table: RawTable,
    id_column: str,
    kinds: Mapping[str, FeatureKind],
    *,
    list_separator: str = "|",
    strict: bool = False,
    seen: set[str] | None = None,
) -> tuple[pd.DataFrame, ValidationReport]:
    """Check item or user metadata and return it indexed by id, each column typed by its kind.

    Checks: a missing or repeated id, a numeric feature that is not a number, a date that is not a
    date. Multi-valued features are split on ``list_separator`` into lists of labels. ``seen``
    (for a file read in chunks) holds the ids of the chunks before: an id in it is a repeat,
    and this chunk's ids are added to it.
    """
    if id_column not in table.frame.columns:
        raise DataError(f"no id column {id_column!r}", file=table.file)
    check = _Checker(table)
    check.check_text([id_column, *kinds])
    table = check.table
    ids = _column(table, id_column)
    assert ids is not None
    check.flag((ids == "").to_numpy(), id_column, "missing id", lambda i: "missing id")
    repeated = ids.duplicated(keep="first").to_numpy() & (ids != "").to_numpy()
    if seen is not None:  # looked up one by one: isin would copy the whole set every chunk
        repeated |= np.fromiter((i in seen for i in ids), dtype=bool, count=len(ids))
        seen.update(ids[ids != ""])
    check.flag(repeated, id_column, "duplicate", lambda i: f"id {ids.iloc[i]!r} appears twice")
    columns: dict[str, pd.Series] = {}
    for name, kind in kinds.items():
        text = _column(table, name)
        if text is None:
            raise DataError(f"no feature column {name!r}", file=table.file)
        if kind == FeatureKind.NUMERIC:
            def not_a_number(i: int, t: pd.Series = text) -> str:
                return f"{t.iloc[i]!r} is not a number"
            parsed = parse_numbers(text)
            check.flag(((text != "") & parsed.isna()).to_numpy(), name, "unparsable value",
                       not_a_number)
        elif kind == FeatureKind.DATE:
            def not_a_date(i: int, t: pd.Series = text) -> str:
                return f"{t.iloc[i]!r} is not a date"
            parsed = parse_timestamps(text)
            check.flag(((text != "") & parsed.isna()).to_numpy(), name, "unparsable date",
                       not_a_date)
        elif kind == FeatureKind.MULTI:
            parsed = text.map(lambda s: parse_labels(s, list_separator))
        else:
            parsed = text.where(text != "", None)
        columns[name] = parsed
    report = check.finish(strict)
    frame = pd.DataFrame(columns, index=table.frame.index)
    frame.index = pd.Index(ids.to_numpy(dtype=object), name="id")
    frame = frame.loc[~check.bad]
    return frame, report
