"""Readers for CSV/TSV, Parquet and JSON Lines (optionally gzipped), all ending in validation.

A reader only splits a file into records of strings; :mod:`recengine.data.validation` decides
what is valid. Records that cannot be split (wrong number of fields, broken JSON) become issues
with their line number; a file that cannot be read at all raises
:class:`~recengine.errors.DataError` naming it.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Literal

import numpy as np
import pandas as pd

from recengine.data.schema import EventSchema, FeatureKind
from recengine.data.validation import (
    ColumnMapping,
    Issue,
    RawTable,
    ValidationReport,
    validate_events,
    validate_metadata,
)
from recengine.errors import DataError

__all__ = ["Format", "detect_format", "read_events", "read_metadata", "read_table"]

Format = Literal["csv", "tsv", "parquet", "jsonl"]

_SUFFIXES: dict[str, Format] = {
    ".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".parquet": "parquet", ".pq": "parquet",
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
}


def detect_format(path: Path) -> Format:
    """The format named by the file's suffix (``.gz`` is looked through)."""
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    if suffixes and suffixes[-1] in _SUFFIXES:
        return _SUFFIXES[suffixes[-1]]
    known = ", ".join(sorted(_SUFFIXES))
    raise DataError(f"cannot tell the format from the name; use one of {known} or pass --format",
                    file=str(path))


def _open_text(path: Path, encoding: str) -> IO[str]:
    if path.suffix.lower() == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding=encoding, newline="")
    return path.open(encoding=encoding, newline="")


def read_table(
    path: str | Path,
    format: Format | None = None,
    *,
    delimiter: str | None = None,
    encoding: str = "utf-8",
    header: bool = True,
    names: list[str] | None = None,
) -> RawTable:
    """Split a file into a table of strings with each record's row number.

    ``header=False`` reads files without a header line, with column ``names`` given.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", file=str(path))
    fmt = format or detect_format(path)
    try:
        if fmt == "parquet":
            return _read_parquet(path)
        if fmt == "jsonl":
            return _read_jsonl(path, encoding)
        sep = delimiter or ("\t" if fmt == "tsv" else ",")
        return _read_delimited(path, sep, encoding, header, names)
    except UnicodeDecodeError as exc:
        raise DataError(f"not {encoding} text ({exc.reason}); pass the right --encoding",
                        file=str(path)) from None
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"cannot read the file: {exc}", file=str(path)) from None


def _read_delimited(path: Path, sep: str, encoding: str, header: bool,
                    names: list[str] | None) -> RawTable:
    file = str(path)
    issues: list[Issue] = []
    records: list[list[str]] = []
    rows: list[int] = []
    with _open_text(path, encoding) as handle:
        reader = csv.reader(handle, delimiter=sep)
        columns = names
        try:
            if header:
                first = next(reader, None)
                if first is None:
                    raise DataError("the file is empty (no header line)", file=file)
                columns = [c.strip().lstrip("\ufeff") for c in first]
            if not columns:
                raise DataError("no column names: the file needs a header line", file=file)
            width = len(columns)
            for record in reader:
                if not record or record == [""]:
                    continue
                if len(record) != width:
                    issues.append(Issue(file, reader.line_num, None, "wrong field count",
                                        f"expected {width} fields, found {len(record)}"))
                    continue
                records.append(record)
                rows.append(reader.line_num)
        except csv.Error as exc:
            raise DataError(f"malformed {'TSV' if sep == chr(9) else 'CSV'}: {exc}", file=file,
                            row=reader.line_num + 1) from None
    frame = pd.DataFrame(records, columns=columns, dtype=object)
    return RawTable(file, frame, np.asarray(rows, dtype=np.int64), issues)


def _read_jsonl(path: Path, encoding: str) -> RawTable:
    file = str(path)
    issues: list[Issue] = []
    records: list[dict[str, object]] = []
    rows: list[int] = []
    with _open_text(path, encoding) as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                issues.append(Issue(file, line_no, None, "malformed record",
                                    f"not valid JSON ({exc.msg} at character {exc.pos})"))
                continue
            if not isinstance(record, dict):
                issues.append(Issue(file, line_no, None, "malformed record",
                                    f"expected a JSON object, found {type(record).__name__}"))
                continue
            records.append(record)
            rows.append(line_no)
    frame = pd.DataFrame.from_records(records) if records else pd.DataFrame()
    frame = frame.map(_as_text).astype(object)
    return RawTable(file, frame, np.asarray(rows, dtype=np.int64), issues)


def _as_text(value: object) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def _read_parquet(path: Path) -> RawTable:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"not a readable Parquet file ({exc})", file=str(path)) from None
    frame = table.to_pandas().astype(object).map(_as_text)
    rows = np.arange(1, len(frame) + 1, dtype=np.int64)
    return RawTable(str(path), frame, rows)


def read_events(
    path: str | Path,
    *,
    format: Format | None = None,
    columns: ColumnMapping | None = None,
    schema: EventSchema | None = None,
    strict: bool = False,
    encoding: str = "utf-8",
    now: pd.Timestamp | None = None,
) -> tuple[pd.DataFrame, ValidationReport]:
    """Read and validate an event log.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "events.csv"
    >>> _ = f.write_text("user_id,item_id,event_type,value,timestamp\\n"
    ...                  "u1,i1,rating,4,1700000000\\nu1,i2,rating,9,1700000001\\n")
    >>> events, report = read_events(f)
    >>> len(events), report.rows_skipped, str(report.issues[0]).split(", ", 1)[1]
    (1, 1, "row 3, column 'value': rating value 9 is outside 1..5")
    """
    table = read_table(path, format, encoding=encoding)
    return validate_events(table, columns, schema, strict=strict, now=now)


def read_metadata(
    path: str | Path,
    id_column: str,
    kinds: Mapping[str, FeatureKind],
    *,
    format: Format | None = None,
    list_separator: str = "|",
    strict: bool = False,
    encoding: str = "utf-8",
) -> tuple[pd.DataFrame, ValidationReport]:
    """Read and validate an item or user table: an id column plus features of the given kinds."""
    table = read_table(path, format, encoding=encoding)
    return validate_metadata(table, id_column, kinds, list_separator=list_separator,
                             strict=strict)
