"""Row-level validation: every bad row is named by file, row and column; never a traceback.

Readers hand over a :class:`RawTable` of strings (so nothing is lost to a parser's guess); the
checks here are vectorised over the whole table and either skip bad rows, counting them in a
:class:`ValidationReport`, or, in strict mode, raise :class:`~recengine.errors.DataError` for the
first one in file order.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from recengine.data.dataset import empty_events
from recengine.data.schema import EVENT_COLUMNS, EventSchema, FeatureKind
from recengine.errors import DataError

__all__ = [
    "ColumnMapping",
    "Issue",
    "RawTable",
    "ValidationReport",
    "parse_labels",
    "validate_events",
    "validate_metadata",
]

#: Clock skew tolerated before a timestamp counts as "in the future".
FUTURE_TOLERANCE = pd.Timedelta(minutes=5)


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
class ValidationReport:
    """What validation read, kept and skipped, and why."""

    file: str
    rows_read: int = 0
    rows_accepted: int = 0
    issues: list[Issue] = field(default_factory=list)

    @property
    def rows_skipped(self) -> int:
        return self.rows_read - self.rows_accepted

    @property
    def ok(self) -> bool:
        return not self.issues

    def counts(self) -> dict[str, int]:
        """Number of issues per kind of problem."""
        return dict(Counter(i.problem for i in self.issues))

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
        )


@dataclass(frozen=True)
class ColumnMapping:
    """Which source column holds each event field.

    A field mapped to None, or to a column the source lacks, takes its default: every event gets
    ``default_event_type``; the value is absent; the timestamp is absent. ``event_id`` makes
    ingestion idempotent: a repeated id is a duplicate.
    """

    user_id: str = "user_id"
    item_id: str = "item_id"
    event_type: str | None = "event_type"
    value: str | None = "value"
    timestamp: str | None = "timestamp"
    event_id: str | None = None
    default_event_type: str = "rating"

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

    def finish(self, strict: bool, accepted: int | None = None) -> ValidationReport:
        self.issues.sort(key=lambda i: i.row)
        if strict and self.issues:
            raise self.issues[0].as_error()
        n_read = len(self.table.frame) + len(self.table.issues)
        kept = int((~self.bad).sum()) if accepted is None else accepted
        return ValidationReport(self.table.file, n_read, kept, self.issues)


def _column(table: RawTable, name: str | None) -> pd.Series | None:
    if name is None or name not in table.frame.columns:
        return None
    column = table.frame[name].astype(object)
    return column.where(column.notna(), "").astype(str).str.strip()


def _require_columns(table: RawTable, mapping: ColumnMapping) -> None:
    for field_name in ("user_id", "item_id"):
        column = getattr(mapping, field_name)
        if column not in table.frame.columns:
            found = ", ".join(map(str, table.frame.columns)) or "none"
            raise DataError(f"no column {column!r} for {field_name} (columns found: {found}); "
                            f"map it with --columns {field_name}=NAME", file=table.file)


def parse_numbers(text: pd.Series) -> pd.Series:
    """Floats from strings; empty and unparsable become NaN (callers tell the two apart)."""
    return pd.to_numeric(text.where(text != "", None), errors="coerce").astype("float64")


def parse_timestamps(text: pd.Series) -> pd.Series:
    """UTC ``datetime64[s]`` from unix seconds or ISO 8601 strings; unparsable become NaT."""
    out = pd.Series(pd.NaT, index=text.index, dtype="datetime64[s]")
    numeric = pd.to_numeric(text.where(text != "", None), errors="coerce")
    is_num = numeric.notna() & np.isfinite(numeric.astype("float64"))
    in_range = is_num & (numeric.abs() < 1e11)  # larger is no plausible unix time in seconds
    seconds = numeric[in_range].astype("int64")
    out[in_range] = pd.to_datetime(seconds, unit="s").astype("datetime64[s]")
    rest = (text != "") & ~is_num
    if rest.any():
        parsed = pd.to_datetime(text[rest], errors="coerce", utc=True, format="ISO8601")
        out[rest] = parsed.dt.tz_convert(None).astype("datetime64[s]")
    return out


def validate_events(
    table: RawTable,
    mapping: ColumnMapping | None = None,
    schema: EventSchema | None = None,
    *,
    strict: bool = False,
    now: pd.Timestamp | None = None,
) -> tuple[pd.DataFrame, ValidationReport]:
    """Check every row of ``table`` and return the valid events in canonical form, and a report.

    The events have the columns of :data:`EVENT_COLUMNS`, plus ``event_id`` when the mapping
    names an event-id column.

    Checks: a missing user or item id; an unknown event type; a value that is not a number, missing
    where its type requires one, or outside its type's range (a rating out of range, a negative
    count); a timestamp that is unparsable or in the future; a duplicate (same event id, or same
    user, item, type and time as an earlier row).
    """
    mapping = mapping or ColumnMapping()
    schema = schema or EventSchema()
    now = pd.Timestamp.now(tz="UTC").tz_convert(None) if now is None else now
    _require_columns(table, mapping)
    check = _Checker(table)

    users, items = _column(table, mapping.user_id), _column(table, mapping.item_id)
    assert users is not None and items is not None
    check.flag((users == "").to_numpy(), mapping.user_id, "missing id", lambda i: "missing user id")
    check.flag((items == "").to_numpy(), mapping.item_id, "missing id", lambda i: "missing item id")

    types_text = _column(table, mapping.event_type)
    if types_text is None:
        types = pd.Series(mapping.default_event_type, index=table.frame.index, dtype=object)
    else:
        types = types_text.where(types_text != "", mapping.default_event_type)
        known = sorted(schema.event_types)
        unknown = ~types.isin(known).to_numpy()
        check.flag(unknown, mapping.event_type, "unknown event type",
                   lambda i: f"unknown event type {types.iloc[i]!r} (known: {', '.join(known)})")

    values = _check_values(check, table, mapping, schema, types)
    timestamps = _check_timestamps(check, table, mapping, now)

    events = pd.DataFrame({"user_id": users.astype(object), "item_id": items.astype(object),
                           "event_type": types.astype(object), "value": values,
                           "timestamp": timestamps})
    _check_duplicates(check, table, mapping, events)
    report = check.finish(strict)
    columns = list(EVENT_COLUMNS)
    ids = _column(table, mapping.event_id)
    if ids is not None:  # kept, so that the event store can be idempotent by it
        events["event_id"] = ids.where(ids != "", None).astype(object)
        columns.append("event_id")
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
    check.flag(((text != "") & values.isna()).to_numpy(), column, "unparsable value",
               lambda i: f"{text.iloc[i]!r} is not a number")
    check.flag((values.notna() & ~np.isfinite(values)).to_numpy(), column, "unparsable value",
               lambda i: f"{text.iloc[i]!r} is not a finite number")
    for name, spec in schema.event_types.items():
        of_type = (types == name).to_numpy()
        if not of_type.any():
            continue
        missing = of_type & (text == "").to_numpy()
        if spec.value_required:
            check.flag(missing, column, "missing value", lambda i, n=name: f"{n} needs a value")
        else:
            values[missing] = spec.default_value
        v = values.to_numpy()
        if spec.min_value is not None:
            low = of_type & (v < spec.min_value)
            problem = "negative value" if spec.min_value == 0 else "value out of range"
            check.flag(low, column, problem,
                       lambda i, n=name, s=spec, v=v: _range_message(n, v[i], s))
        if spec.max_value is not None:
            high = of_type & (v > spec.max_value)
            check.flag(high, column, "value out of range",
                       lambda i, n=name, s=spec, v=v: _range_message(n, v[i], s))
    return values


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
    check.flag(((text != "") & stamps.isna()).to_numpy(), column, "unparsable timestamp",
               lambda i: f"{text.iloc[i]!r} is not a timestamp (use unix seconds or ISO 8601)")
    future = (stamps > now + FUTURE_TOLERANCE).to_numpy()
    check.flag(future, column, "future timestamp",
               lambda i: f"timestamp {stamps.iloc[i]} is in the future")
    return stamps


def _check_duplicates(check: _Checker, table: RawTable, mapping: ColumnMapping,
                      events: pd.DataFrame) -> None:
    ids = _column(table, mapping.event_id)
    if ids is not None:
        keys, eligible = ids.to_frame("event_id"), ~check.bad & (ids != "").to_numpy()
        column: str | None = mapping.event_id
    else:
        keys, eligible = events[["user_id", "item_id", "event_type", "timestamp"]], ~check.bad
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
    check.flag(dup, column, "duplicate",
               lambda i: f"duplicate of row {int(table.rows[first_of[i]])}")


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
) -> tuple[pd.DataFrame, ValidationReport]:
    """Check item or user metadata and return it indexed by id, each column typed by its kind.

    Checks: a missing or repeated id, a numeric feature that is not a number, a date that is not a
    date. Multi-valued features are split on ``list_separator`` into lists of labels.
    """
    if id_column not in table.frame.columns:
        raise DataError(f"no id column {id_column!r}", file=table.file)
    check = _Checker(table)
    ids = _column(table, id_column)
    assert ids is not None
    check.flag((ids == "").to_numpy(), id_column, "missing id", lambda i: "missing id")
    repeated = ids.duplicated(keep="first").to_numpy() & (ids != "").to_numpy()
    check.flag(repeated, id_column, "duplicate", lambda i: f"id {ids.iloc[i]!r} appears twice")
    columns: dict[str, pd.Series] = {}
    for name, kind in kinds.items():
        text = _column(table, name)
        if text is None:
            raise DataError(f"no feature column {name!r}", file=table.file)
        if kind == FeatureKind.NUMERIC:
            parsed = parse_numbers(text)
            check.flag(((text != "") & parsed.isna()).to_numpy(), name, "unparsable value",
                       lambda i, t=text: f"{t.iloc[i]!r} is not a number")
        elif kind == FeatureKind.DATE:
            parsed = parse_timestamps(text)
            check.flag(((text != "") & parsed.isna()).to_numpy(), name, "unparsable date",
                       lambda i, t=text: f"{t.iloc[i]!r} is not a date")
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
