"""Readers for CSV/TSV, Parquet and JSON Lines (optionally gzipped), all ending in validation.

A reader only splits a file into records of strings; :mod:`recengine.data.validation` decides
what is valid. Records that cannot be split (wrong number of fields, broken JSON, a field longer
than the CSV module's limit) become issues with their line number; a file that cannot be read at
all raises :class:`~recengine.errors.DataError` naming it.

Readers stream: :func:`iter_tables` and :func:`iter_events` hand over a file in chunks of
``chunk_rows`` records, so memory is bounded by the chunk, not the file, and the first bad row is
known as soon as its chunk is read. :func:`read_table` and :func:`read_events` read the whole
file as one chunk.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any, Literal

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

__all__ = ["CHUNK_ROWS", "Format", "detect_format", "iter_events", "iter_metadata", "iter_tables",
           "read_events", "read_metadata", "read_table"]

#: Records per chunk when streaming: a few megabytes of strings at most. ``recengine ingest``
#: commits each chunk in its own transaction; on SQLite, 5,000 events hold the write lock for
#: about 0.1 s (0.2 s on a loaded machine; 10,000 held it twice as long), and that is how long
#: an API write may wait for its turn.
CHUNK_ROWS = 5_000

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
    [table] = iter_tables(path, format, delimiter=delimiter, encoding=encoding, header=header,
                          names=names, chunk_rows=None)
    return table


def iter_tables(
    path: str | Path,
    format: Format | None = None,
    *,
    chunk_rows: int | None = CHUNK_ROWS,
    delimiter: str | None = None,
    encoding: str = "utf-8",
    header: bool = True,
    names: list[str] | None = None,
) -> Iterator[RawTable]:
    """:func:`read_table` in chunks of up to ``chunk_rows`` records (None: one chunk), in file
    order; always at least one chunk, so that a file of no records still shows its columns.

    A file that cannot be opened fails as the first chunk is asked for; one that turns out
    unreadable later (text not in ``encoding``, a truncated gzip) fails at the chunk where that
    shows.
    """
    path = Path(path)
    _check_readable(path)
    fmt = format or detect_format(path)
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise DataError(f"unknown encoding {encoding!r}: use one Python knows, such as utf-8, "
                        "utf-16 or latin-1", file=str(path), column="--encoding") from None
    try:
        if fmt == "parquet":
            yield from _read_parquet(path, chunk_rows)
        elif fmt == "jsonl":
            yield from _read_jsonl(path, encoding, chunk_rows)
        else:
            sep = delimiter or ("\t" if fmt == "tsv" else ",")
            yield from _read_delimited(path, sep, encoding, header, names, chunk_rows)
    except UnicodeDecodeError as exc:
        raise DataError(f"not {encoding} text ({exc.reason}); pass the right --encoding",
                        file=str(path)) from None
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"cannot read the file: {exc}", file=str(path)) from None


#: What a path is when it is not a regular file, for the message that says so.
_NOT_FILES = ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
              (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
              (stat.S_ISSOCK, "a socket"))


def _check_readable(path: Path) -> None:
    """DataError saying what ``path`` is when it is not a regular file.

    Only regular files are read: a device or a pipe may never end, and strict ingestion reads
    a file twice.
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise DataError("file not found", file=str(path)) from None
    except OSError as exc:
        raise DataError(f"cannot read the file: {exc.strerror}", file=str(path)) from None
    for test, what in _NOT_FILES:
        if test(mode):
            raise DataError(f"this is {what}, not a file: give the path of an event file",
                            file=str(path))


def _read_delimited(path: Path, sep: str, encoding: str, header: bool,
                    names: list[str] | None, limit: int | None) -> Iterator[RawTable]:
    file = str(path)
    kind = "TSV" if sep == "\t" else "CSV"
    with _open_text(path, encoding) as handle:
        reader = csv.reader(handle, delimiter=sep)
        columns = names
        if header:
            try:
                first = next(reader, None)
            except csv.Error as exc:
                raise DataError(f"malformed {kind} header: {exc}", file=file, row=1) from None
            if first is None:
                raise DataError("the file is empty (no header line)", file=file)
            columns = [c.strip().lstrip("\ufeff") for c in first]
        if not columns:
            raise DataError("no column names: the file needs a header line", file=file)
        width = len(columns)
        chunk = _Chunk(file)
        while True:
            try:
                record = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:  # the reader goes on at the next line
                chunk.issue(reader.line_num, "malformed record", f"malformed {kind}: {exc}")
            else:
                if not record or record == [""]:
                    continue
                if len(record) == width:
                    chunk.add(reader.line_num, record)
                else:
                    chunk.issue(reader.line_num, "wrong field count",
                                f"expected {width} fields, found {len(record)}")
            if chunk.full(limit):
                yield chunk.table(columns)
                chunk = _Chunk(file)
        yield chunk.table(columns)


class _Chunk:
    """The records (lists of strings, or JSON objects) and issues of one chunk being read."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.records: list[Any] = []
        self.rows: list[int] = []
        self.issues: list[Issue] = []

    def add(self, row: int, record: Any) -> None:
        self.records.append(record)
        self.rows.append(row)

    def issue(self, row: int, problem: str, message: str) -> None:
        self.issues.append(Issue(self.file, row, None, problem, message))

    def full(self, limit: int | None) -> bool:
        return limit is not None and len(self.records) + len(self.issues) >= limit

    def table(self, columns: list[str]) -> RawTable:
        """The chunk as text; records as lists of fields, or JSON objects (``columns`` keys)."""
        if self.records and isinstance(self.records[0], dict):  # object dtype: no inference
            frame = pd.DataFrame({name: pd.Series([_as_text(r.get(name)) for r in self.records],
                                                  dtype=object) for name in columns},
                                 columns=columns)
        else:
            frame = pd.DataFrame(self.records, columns=columns, dtype=object)
        return RawTable(self.file, frame, np.asarray(self.rows, dtype=np.int64), self.issues)


def _read_jsonl(path: Path, encoding: str, limit: int | None) -> Iterator[RawTable]:
    """JSON objects, one a line; a chunk's columns are the keys seen so far in the file."""
    file = str(path)
    columns: dict[str, None] = {}
    chunk = _Chunk(file)
    with _open_text(path, encoding) as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                chunk.issue(line_no, "malformed record",
                            f"not valid JSON ({exc.msg} at character {exc.pos})")
            else:
                if isinstance(record, dict):
                    columns.update(dict.fromkeys(record))
                    chunk.add(line_no, record)
                else:
                    chunk.issue(line_no, "malformed record",
                                f"expected a JSON object, found {type(record).__name__}")
            if chunk.full(limit) and chunk.records:  # a chunk with records knows the columns
                yield chunk.table(list(columns))
                chunk = _Chunk(file)
    yield chunk.table(list(columns))


def _as_text(value: object) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def _read_parquet(path: Path, limit: int | None) -> Iterator[RawTable]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        source = pq.ParquetFile(path)
        columns = source.schema_arrow.names
        start = 1
        for batch in source.iter_batches(batch_size=limit or max(source.metadata.num_rows, 1)):
            frame = pd.DataFrame({name: pd.Series([_as_text(v) for v in column.to_pylist()],
                                                  dtype=object)
                                  for name, column in zip(columns, batch.columns, strict=True)},
                                 columns=columns)
            rows = np.arange(start, start + len(frame), dtype=np.int64)
            start += len(frame)
            yield RawTable(str(path), frame, rows)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"not a readable Parquet file ({exc})", file=str(path)) from None
    if start == 1:  # no batch: the columns alone
        yield RawTable(str(path), pd.DataFrame(columns=columns, dtype=object),
                       np.zeros(0, dtype=np.int64))


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
    [(events, report)] = iter_events(path, format=format, columns=columns, schema=schema,
                                     strict=strict, encoding=encoding, now=now, chunk_rows=None)
    return events, report


def iter_events(
    path: str | Path,
    *,
    format: Format | None = None,
    columns: ColumnMapping | None = None,
    schema: EventSchema | None = None,
    strict: bool = False,
    encoding: str = "utf-8",
    now: pd.Timestamp | None = None,
    allow_duplicates: bool = False,
    chunk_rows: int | None = CHUNK_ROWS,
) -> Iterator[tuple[pd.DataFrame, ValidationReport]]:
    """:func:`read_events` chunk by chunk: each chunk's valid events and report, in file order.

    ``strict`` raises at the first bad row having read only the chunks up to it. Duplicates
    (see :func:`~recengine.data.validation.validate_events`) are found within a chunk; the event
    store's identities find those in different chunks. Add the reports up with
    :meth:`~recengine.data.validation.ValidationReport.extend`.

    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "events.csv"
    >>> _ = f.write_text("user_id,item_id,event_type\\nu1,i1,view\\nu1,i2,view\\nu2,i1,view\\n")
    >>> [(len(events), report.rows_read) for events, report in iter_events(f, chunk_rows=2)]
    [(2, 2), (1, 1)]
    """
    now = pd.Timestamp.now(tz="UTC").tz_convert(None) if now is None else now  # one clock
    for table in iter_tables(path, format, encoding=encoding, chunk_rows=chunk_rows):
        yield validate_events(table, columns, schema, strict=strict, now=now,
                              allow_duplicates=allow_duplicates)


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
    [(frame, report)] = iter_metadata(path, id_column, kinds, format=format,
                                      list_separator=list_separator, strict=strict,
                                      encoding=encoding, chunk_rows=None)
    return frame, report


def iter_metadata(
    path: str | Path,
    id_column: str,
    kinds: Mapping[str, FeatureKind],
    *,
    format: Format | None = None,
    list_separator: str = "|",
    strict: bool = False,
    encoding: str = "utf-8",
    chunk_rows: int | None = CHUNK_ROWS,
) -> Iterator[tuple[pd.DataFrame, ValidationReport]]:
    """:func:`read_metadata` chunk by chunk, as :func:`iter_events` reads events: memory is a
    chunk's plus the ids read so far (an id repeated in a later chunk is reported there).

    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "items.csv"
    >>> _ = f.write_text("id,price\\na,1\\nb,2\\na,3\\n")
    >>> chunks = list(iter_metadata(f, "id", {"price": FeatureKind.NUMERIC}, chunk_rows=2))
    >>> [len(frame) for frame, _ in chunks], str(chunks[1][1].issues[0]).split(", ", 1)[1]
    ([2, 0], "row 4, column 'id': id 'a' appears twice")
    """
    seen: set[str] = set()
    for table in iter_tables(path, format, encoding=encoding, chunk_rows=chunk_rows):
        yield validate_metadata(table, id_column, kinds, list_separator=list_separator,
                                strict=strict, seen=seen)
