"""Event files → validated events → weighted per-pair feedback, on Spark, with the local rules.

The local path reads a file into strings (:mod:`recengine.data.readers`), validates it
(:func:`recengine.data.validation.validate_events`), weighs each event and aggregates per pair
(:mod:`recengine.data.weighting`). This module does the same on a Spark DataFrame:

- **Reading.** CSV (with a header) and JSON Lines are read as text, Parquet's columns are cast
  to text, so every format meets the same checks. Each record gets its row number as the local
  readers count it for a file of one record per line (the line, the header being line 1; a
  Parquet record's 1-based number), without collecting the file: per-partition counts, then
  offsets. A record Spark cannot split (broken JSON, a CSV line with too many fields) is a
  ``malformed record``.
- **Validation.** The same checks, in the same order, with the same problem names; each bad
  row gets its first problem. Spark decides which rows are bad; the driver writes the messages
  of the first :data:`~recengine.data.validation.LISTED_ISSUES` with the local validator's own
  templates, and counts the rest. A missing column, a file that cannot be read, and (with
  ``strict``) the first bad row are :class:`~recengine.errors.DataError`, as locally.
- **Weighing and aggregating.** ``alpha_t · f_t(value)`` per event type (``median`` with the
  exact median of the type's values), time decay from the newest event, then per pair: the
  latest rating (ties in time go to the later row), the summed feedback, the last time and the
  number of events: :func:`recengine.data.weighting.aggregate`'s table, equal to it within
  floating-point summation order.

Where number and time parsing may differ from pandas': Spark's text-to-double cast and ISO 8601
parser decide unusual forms (``+5``, ``1_000``, week dates); unix seconds, decimals and the ISO
8601 forms of ``parse_timestamps`` read alike.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from recengine.data.readers import Format, detect_format
from recengine.data.schema import EventSchema, Feedback, Transform
from recengine.data.validation import (
    _DUPLICATE,
    _FUTURE,
    _MISSING_ID,
    _NO_VALUE,
    _NOT_A_NUMBER,
    _NOT_A_TIME,
    _NOT_FINITE,
    _UNSTORABLE_TEXT,
    FUTURE_TOLERANCE,
    LISTED_ISSUES,
    ColumnMapping,
    Issue,
    ValidationReport,
    _range_message,
    _range_problem,
    _require_columns,
    _unknown_type,
)
from recengine.data.weighting import INTERACTION_COLUMNS, Weighting
from recengine.errors import DataError
from recengine.spark.session import failure, spark_errors

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

__all__ = ["aggregate", "pairs_to_pandas", "read_events", "weighted_events"]

#: The record number column added on reading (1-based, the local readers' row numbers).
ROW = "_row"
#: Where Spark puts a record it could not split.
_CORRUPT = "_corrupt_record"
#: The readers' problems for records that cannot be split (JSON; CSV), and the problems of
#: a whole row (no column to name).
_MALFORMED = "malformed record"
_WRONG_WIDTH = "wrong field count"
_WHOLE_ROW = (_MALFORMED, _WRONG_WIDTH, _DUPLICATE.problem)
#: Largest magnitude read as unix seconds (as :func:`~recengine.data.validation.parse_timestamps`).
_UNIX_RANGE = 1e11


@dataclass(frozen=True)
class _Check:
    """One validation rule on Spark: when it fails, on which column, with which problem."""

    problem: str
    column: str | None
    failed: Column


def read_events(session: SparkSession, path: str | Path, *, format: Format | None = None,
                columns: ColumnMapping | None = None, schema: EventSchema | None = None,
                strict: bool = False, now: pd.Timestamp | None = None,
                allow_duplicates: bool = False) -> tuple[DataFrame, ValidationReport]:
    """The valid events of an event file as a DataFrame (``user_id, item_id, event_type,
    value, timestamp`` and the row number), and the report of the rows skipped.

    The same rules, problems and messages as :func:`recengine.data.readers.read_events`;
    ``path`` may also be a folder of files of one format (then name it).
    """
    from pyspark.sql import functions as F

    mapping = columns or ColumnMapping()
    schema = schema or EventSchema()
    now = pd.Timestamp.now(tz="UTC").tz_convert(None) if now is None else now
    file = str(path)
    fmt = _format(Path(path), format)
    raw, header = _read_text(session, Path(path), fmt)
    names = [c for c in raw.columns if c not in (ROW, _CORRUPT)]
    _require_columns(file, names, mapping)
    text = {name: _text(raw, name) for name in (mapping.user_id, mapping.item_id,
                                                mapping.event_type, mapping.value,
                                                mapping.timestamp)
            if name is not None and name in names}
    frame = raw.select(ROW, *([_CORRUPT] if _CORRUPT in raw.columns else []),
                       *[column.alias(f"t_{name}") for name, column in text.items()])
    frame = _numbered(frame, header)
    event_type = (F.coalesce(F.nullif(F.col(f"t_{mapping.event_type}"), F.lit("")),
                             F.lit(mapping.default_event_type))
                  if mapping.event_type in text else F.lit(mapping.default_event_type))
    frame = frame.withColumn("event_type", event_type)
    frame = _with_values(frame, mapping, schema, text)
    frame = _with_timestamps(frame, mapping, text)
    checks = _checks(frame, mapping, schema, text, now, fmt)
    problem = F.lit(None).cast("string")
    column = F.lit(None).cast("string")
    for check in reversed(checks):  # the first check that fails names the row's problem
        problem = F.when(check.failed, F.lit(check.problem)).otherwise(problem)
        column = F.when(check.failed, F.lit(check.column)).otherwise(column)
    frame = frame.withColumn("problem", problem).withColumn("problem_column", column)
    if not allow_duplicates:
        frame = _flag_duplicates(frame, mapping)
    try:
        frame = frame.persist()
        report = _report(frame, file, _Messages(mapping, schema, fmt, len(names)), strict)
    except spark_errors() as exc:
        raise DataError(f"cannot read the file: {failure(exc)}", file=file) from None
    events = frame.where(F.col("problem").isNull()).select(
        F.col(f"t_{mapping.user_id}").alias("user_id"),
        F.col(f"t_{mapping.item_id}").alias("item_id"),
        "event_type", "value", "timestamp", ROW)
    return events, report


def _format(path: Path, format: Format | None) -> Format:
    if not path.exists():
        raise DataError("file not found", file=str(path))
    if format is None and path.is_dir():
        raise DataError("a folder of event files needs --format (csv, tsv, parquet or jsonl)",
                        file=str(path))
    return format or detect_format(path)


def _read_text(session: SparkSession, path: Path, fmt: Format) -> tuple[DataFrame, int]:
    """The file's records with every column as text, and the lines before the first record."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    reader = session.read
    try:
        if fmt == "parquet":
            frame = reader.parquet(str(path))
            frame = frame.select(*[F.col(c).cast("string").alias(c) for c in frame.columns])
            return frame.withColumn(ROW, F.monotonically_increasing_id()), 0
        if fmt == "jsonl":
            frame = reader.json(str(path), primitivesAsString=True, mode="PERMISSIVE",
                                columnNameOfCorruptRecord=_CORRUPT)
            return frame.withColumn(ROW, F.monotonically_increasing_id()), 0
        sep = "\t" if fmt == "tsv" else ","
        names = reader.csv(str(path), sep=sep, header=True).columns
        fields = [T.StructField(n.strip().lstrip("\ufeff"), T.StringType()) for n in names]
        frame = reader.csv(str(path), sep=sep, header=True, mode="PERMISSIVE",
                           enforceSchema=True, columnNameOfCorruptRecord=_CORRUPT,
                           schema=T.StructType([*fields,
                                                T.StructField(_CORRUPT, T.StringType())]))
        return frame.withColumn(ROW, F.monotonically_increasing_id()), 1
    except spark_errors() as exc:
        raise DataError(f"cannot read the file: {failure(exc)}", file=str(path)) from None


def _numbered(frame: DataFrame, header: int) -> DataFrame:
    """Replace the monotonic id by the record's 1-based number in read order, plus ``header``.

    The id is the partition number in its upper bits and the position within the partition
    below: counting each partition's records gives every partition's offset.
    """
    from pyspark.sql import functions as F

    part = F.shiftright(F.col(ROW), 33)
    counts = sorted((int(r["p"]), int(r["n"])) for r in
                    frame.groupBy(part.alias("p")).agg(F.count(F.lit(1)).alias("n")).collect())
    starts, total = [], 0
    for p, n in counts:
        starts.append((p, total))
        total += n
    offsets = frame.sparkSession.createDataFrame(starts, "p long, start long")
    numbered = frame.withColumn("p", part).join(F.broadcast(offsets), "p")
    position = F.col(ROW) - F.shiftleft(F.col("p"), 33)
    return numbered.withColumn(ROW, F.col("start") + position + F.lit(1 + header)).drop(
        "p", "start")


def _text(frame: DataFrame, name: str) -> Column:
    """A column as stripped text, missing as ``""`` (the local validator's view of a cell)."""
    from pyspark.sql import functions as F

    return F.coalesce(F.trim(F.col(f"`{name}`")), F.lit(""))


def _with_values(frame: DataFrame, mapping: ColumnMapping, schema: EventSchema,
                 text: dict[str, Column]) -> DataFrame:
    """``value`` parsed (NaN where unparsable); absent optional values take their default."""
    from pyspark.sql import functions as F

    raw = F.col(f"t_{mapping.value}") if mapping.value in text else F.lit("")
    parsed = F.when(raw == "", F.lit(None)).otherwise(raw.try_cast("double"))
    default = F.lit(None).cast("double")
    for name, spec in schema.event_types.items():
        if not spec.value_required:
            default = F.when(F.col("event_type") == name,
                             F.lit(float(spec.default_value))).otherwise(default)
    return frame.withColumn("t_value", raw).withColumn(
        "value", F.when(raw == "", default).otherwise(parsed))


def _with_timestamps(frame: DataFrame, mapping: ColumnMapping,
                     text: dict[str, Column]) -> DataFrame:
    """``timestamp`` in whole UTC seconds: unix seconds, a year alone, or ISO 8601."""
    from pyspark.sql import functions as F

    raw = F.col(f"t_{mapping.timestamp}") if mapping.timestamp in text else F.lit("")
    number = raw.try_cast("double")
    year = raw.rlike(r"^\d{4}$")
    numeric = number.isNotNull() & ~F.isnan(number) & (F.abs(number) != float("inf")) & ~year
    seconds = (F.when(raw == "", F.lit(None))
               .when(year, F.unix_seconds(F.try_to_timestamp(raw, F.lit("yyyy"))))
               .when(numeric & (F.abs(number) < _UNIX_RANGE), number.cast("long"))
               .when(numeric, F.lit(None))
               .otherwise(F.unix_seconds(F.try_to_timestamp(raw))))
    return frame.withColumn("t_timestamp", raw).withColumn("seconds", seconds).withColumn(
        "timestamp", F.timestamp_seconds(F.col("seconds")))


def _checks(frame: DataFrame, mapping: ColumnMapping, schema: EventSchema,
            text: dict[str, Column], now: pd.Timestamp, fmt: Format) -> list[_Check]:
    """The local validator's checks, in its order (see ``validate_events``)."""
    from pyspark.sql import functions as F

    checks = []
    if _CORRUPT in frame.columns:  # CSV: Spark marks lines of another number of fields
        checks.append(_Check(_WRONG_WIDTH if fmt in ("csv", "tsv") else _MALFORMED, None,
                             F.col(_CORRUPT).isNotNull()))
    for name in dict.fromkeys(text):
        checks.append(_Check(_UNSTORABLE_TEXT.problem, name,
                             F.instr(F.col(f"t_{name}"), "\x00") > 0))
    checks.append(_Check(_MISSING_ID.problem, mapping.user_id,
                         F.col(f"t_{mapping.user_id}") == ""))
    checks.append(_Check(_MISSING_ID.problem, mapping.item_id,
                         F.col(f"t_{mapping.item_id}") == ""))
    known = list(schema.event_types)
    checks.append(_Check("unknown event type", mapping.event_type,
                         ~F.col("event_type").isin(known)))
    raw, value, kind = F.col("t_value"), F.col("value"), F.col("event_type")
    unparsed = (raw != "") & (value.isNull() | F.isnan(value))
    checks.append(_Check(_NOT_A_NUMBER.problem, mapping.value, unparsed))
    checks.append(_Check(_NOT_FINITE.problem, mapping.value,
                         (raw != "") & (F.abs(value) == float("inf"))))
    for name, spec in schema.event_types.items():
        of_type = kind == name
        if spec.value_required:
            checks.append(_Check(_NO_VALUE.problem, mapping.value, of_type & (raw == "")))
        if spec.min_value is not None:
            checks.append(_Check(_range_problem(spec, low=True), mapping.value,
                                 of_type & (value < spec.min_value)))
        if spec.max_value is not None:
            checks.append(_Check(_range_problem(spec, low=False), mapping.value,
                                 of_type & (value > spec.max_value)))
    stamp_text, seconds = F.col("t_timestamp"), F.col("seconds")
    checks.append(_Check(_NOT_A_TIME.problem, mapping.timestamp,
                         (stamp_text != "") & seconds.isNull()))
    latest = int((now + FUTURE_TOLERANCE).timestamp())
    checks.append(_Check(_FUTURE.problem, mapping.timestamp, seconds > latest))
    return [_Check(c.problem, c.column, F.coalesce(c.failed, F.lit(False))) for c in checks]


def _flag_duplicates(frame: DataFrame, mapping: ColumnMapping) -> DataFrame:
    """Rows repeating an earlier valid row's identity (user, item, type, time): duplicates,
    naming the first row in ``duplicate_of``."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    identity = [f"t_{mapping.user_id}", f"t_{mapping.item_id}", "event_type", "seconds"]
    valid = F.col("problem").isNull()
    first = F.min(F.when(valid, F.col(ROW))).over(Window.partitionBy(*identity))
    frame = frame.withColumn("duplicate_of", F.when(valid & (F.col(ROW) > first), first))
    duplicate = F.col("duplicate_of").isNotNull()
    return frame.withColumn("problem", F.when(duplicate, F.lit(_DUPLICATE.problem))
                            .otherwise(F.col("problem")))


def _report(frame: DataFrame, file: str, messages: _Messages,
            strict: bool) -> ValidationReport:
    """Counts on Spark; the first bad rows' messages written here, in row order."""
    from pyspark.sql import functions as F

    counts = {r["problem"]: int(r["count"]) for r in
              frame.groupBy("problem").count().collect()}
    read = sum(counts.values())
    bad = frame.where(F.col("problem").isNotNull()).orderBy(ROW)
    listed = bad.limit(1 if strict else LISTED_ISSUES).collect()
    issues = [Issue(file, int(r[ROW]), None if r["problem"] in _WHOLE_ROW else
                    r["problem_column"], r["problem"], messages.of(r.asDict())) for r in listed]
    if strict and issues:
        raise issues[0].as_error()
    problems = {k: v for k, v in counts.items() if k is not None}
    unlisted = dict(problems)
    for issue in issues:
        unlisted[issue.problem] -= 1
    report = ValidationReport(file, read, counts.get(None, 0), issues)
    report.unlisted.update({k: v for k, v in unlisted.items() if v})
    return report


@dataclass(frozen=True)
class _Messages:
    """Messages of bad rows from the local validator's and readers' templates."""

    mapping: ColumnMapping
    schema: EventSchema
    fmt: Format
    width: int

    def of(self, row: dict[str, Any]) -> str:
        problem, column = row["problem"], row["problem_column"]
        value_text, event_type = row.get("t_value") or "", row["event_type"]
        if problem == _DUPLICATE.problem:
            return _DUPLICATE.message(row=int(row["duplicate_of"]))
        if problem in (_MALFORMED, _WRONG_WIDTH):
            return self._malformed(row.get(_CORRUPT) or "")
        if problem == _UNSTORABLE_TEXT.problem:
            return _UNSTORABLE_TEXT.message(char="\x00")
        if problem == _MISSING_ID.problem:
            return _MISSING_ID.message(what="user" if column == self.mapping.user_id else "item")
        if problem == "unknown event type":
            return _unknown_type(event_type, self.schema)
        if problem == _NOT_A_NUMBER.problem:
            nan = row["value"] is None or np.isnan(row["value"])
            return (_NOT_A_NUMBER if nan else _NOT_FINITE).message(text=value_text)
        if problem == _NO_VALUE.problem:
            return _NO_VALUE.message(name=event_type)
        if problem in ("negative value", "value out of range"):
            return _range_message(event_type, float(row["value"]),
                                  self.schema.event_types[event_type])
        if problem == _NOT_A_TIME.problem:
            return _NOT_A_TIME.message(text=row.get("t_timestamp") or "")
        return _FUTURE.message(stamp=pd.Timestamp(int(row["seconds"]), unit="s"))

    def _malformed(self, line: str) -> str:
        """As the local readers say it: the number of fields, or why the JSON is not an
        object."""
        if self.fmt in ("csv", "tsv"):
            fields = next(csv.reader([line], delimiter="\t" if self.fmt == "tsv" else ","), [])
            return f"expected {self.width} fields, found {len(fields)}"
        try:  # the local reader parses each line with its newline: positions count it
            record = json.loads(line + "\n")
        except json.JSONDecodeError as exc:
            return f"not valid JSON ({exc.msg} at character {exc.pos})"
        return f"expected a JSON object, found {type(record).__name__}"


def weighted_events(events: DataFrame, schema: EventSchema | None = None,
                    weighting: Weighting | None = None) -> DataFrame:
    """The events with their ``weight`` (see :func:`recengine.data.weighting.weighted_events`)."""
    from pyspark.sql import functions as F

    schema = schema or EventSchema()
    weighting = weighting or Weighting()
    value, kind = F.col("value"), F.col("event_type")
    medians: dict[str, float] = {}
    median_types = [n for n, t in schema.event_types.items() if t.transform == Transform.MEDIAN]
    if median_types:
        medians = {r["event_type"]: float(r["m"]) for r in events.where(
            kind.isin(median_types)).groupBy("event_type").agg(
            F.percentile(value, 0.5).alias("m")).collect()}
    weight = F.lit(0.0)
    for name, spec in schema.event_types.items():
        if spec.transform == Transform.ONE:
            f = F.lit(1.0)
        elif spec.transform == Transform.IDENTITY:
            f = value
        elif spec.transform == Transform.LOG1P:
            f = F.log1p(value)
        else:
            median = medians.get(name, 1.0)
            f = F.least(value / F.lit(median if median > 0 else 1.0), F.lit(1.0))
        weight = F.when(kind == name, F.lit(spec.alpha) * f).otherwise(weight)
    if weighting.half_life_days is not None:
        seconds = F.unix_seconds(F.col("timestamp"))
        missing = events.where(F.col("timestamp").isNull()).limit(1).count()
        if missing:
            raise DataError("time decay needs a timestamp on every event; this log has events "
                            "without one: drop half_life_days", column="timestamp")
        newest = events.agg(F.max(F.unix_seconds(F.col("timestamp")))).first()
        age_days = (F.lit(newest[0] if newest else 0) - seconds) / 86400.0
        weight = weight * F.pow(F.lit(0.5), age_days / weighting.half_life_days)
    return events.withColumn("weight", weight)


def aggregate(events: DataFrame, schema: EventSchema | None = None,
              weighting: Weighting | None = None) -> DataFrame:
    """One row per (user, item), as :func:`recengine.data.weighting.aggregate`: the latest
    rating (ties in time: the later row), summed feedback, last time, number of events."""
    from pyspark.sql import functions as F

    schema = schema or EventSchema()
    explicit = [n for n, t in schema.event_types.items() if t.feedback == Feedback.EXPLICIT]
    frame = weighted_events(events, schema, weighting)
    rating = F.when(F.col("event_type").isin(explicit), F.col("value"))
    # Later is larger: time (events without one first), then the row.
    order = F.struct(F.coalesce(F.unix_seconds(F.col("timestamp")), F.lit(-(2 ** 62))),
                     F.col(ROW))
    return frame.groupBy("user_id", "item_id").agg(
        F.max_by(rating, F.when(rating.isNotNull(), order)).alias("rating"),
        F.sum("weight").alias("feedback"),
        F.max("timestamp").alias("timestamp"),
        F.count(F.lit(1)).alias("n_events"),
    )


def pairs_to_pandas(pairs: DataFrame) -> pd.DataFrame:
    """The aggregated pairs on the driver, in :func:`recengine.data.weighting.aggregate`'s
    form: sorted by user and item id, its columns and dtypes."""
    table = pairs.orderBy("user_id", "item_id").toArrow()
    frame = table.to_pandas()
    return pd.DataFrame({
        "user_id": frame["user_id"].to_numpy(dtype=object),
        "item_id": frame["item_id"].to_numpy(dtype=object),
        "rating": frame["rating"].to_numpy(dtype=np.float64, na_value=np.nan),
        "feedback": frame["feedback"].to_numpy(dtype=np.float64),
        "timestamp": pd.to_datetime(frame["timestamp"]).dt.tz_localize(None).astype(
            "datetime64[s]") if len(frame) else pd.Series([], dtype="datetime64[s]"),
        "n_events": frame["n_events"].to_numpy(dtype=np.int64),
    })[list(INTERACTION_COLUMNS)]
