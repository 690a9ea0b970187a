"""Readers and validation: each bad row is named by file, row and column; strict stops first."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recengine.data.readers import iter_events, read_events, read_metadata
from recengine.data.schema import EventSchema, FeatureKind
from recengine.data.validation import LISTED_ISSUES, ColumnMapping, ValidationReport
from recengine.errors import DataError

NOW = pd.Timestamp("2026-01-01")
HEADER = "user_id,item_id,event_type,value,timestamp"


def write(tmp_path: Path, name: str, lines: list[str]) -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def problems(report) -> list[tuple[int, str | None, str]]:
    return [(i.row, i.column, i.problem) for i in report.issues]


def test_valid_rows_become_canonical_events(tmp_path):
    f = write(tmp_path, "e.csv", [HEADER, "u1,i1,rating,4,1700000000",
                                  "u1,i2,view,,2024-05-01T10:00:00Z", "u2,i1,play,7,1700000100"])
    events, report = read_events(f, now=NOW)
    assert report.ok and report.rows_read == 3 and report.rows_accepted == 3
    assert events["user_id"].tolist() == ["u1", "u1", "u2"]
    assert events["value"].tolist() == [4.0, 1.0, 7.0]  # a view's missing value defaults to 1
    assert events["timestamp"].dtype == "datetime64[s]"
    assert events["timestamp"].iloc[1] == pd.Timestamp("2024-05-01 10:00:00")


@pytest.mark.parametrize(("line", "column", "problem"), [
    (",i1,view,,1700000000", "user_id", "missing id"),
    ("u1,,view,,1700000000", "item_id", "missing id"),
    ("u1,i1,like,,1700000000", "event_type", "unknown event type"),
    ("u1,i1,rating,abc,1700000000", "value", "unparsable value"),
    ("u1,i1,rating,6,1700000000", "value", "value out of range"),
    ("u1,i1,rating,0,1700000000", "value", "value out of range"),
    ("u1,i1,play,-2,1700000000", "value", "negative value"),
    ("u1,i1,watch,1.5,1700000000", "value", "value out of range"),
    ("u1,i1,dwell,,1700000000", "value", "missing value"),
    ("u1,i1,view,,yesterday", "timestamp", "unparsable timestamp"),
    ("u1,i1,view,,2030-01-01", "timestamp", "future timestamp"),
    ("u1,i1,view,1700000000", None, "wrong field count"),
])
def test_each_bad_row_is_reported_with_file_row_and_column(tmp_path, line, column, problem):
    f = write(tmp_path, "e.csv", [HEADER, "u0,i0,view,,1700000000", line])
    events, report = read_events(f, now=NOW)
    assert problems(report) == [(3, column, problem)]
    assert len(events) == 1 and report.rows_skipped == 1
    message = str(report.issues[0])
    assert message.startswith(f"{f}, row 3")
    if column:
        assert f"column '{column}'" in message


def test_a_device_column_is_read_and_an_overlong_device_named_by_row(tmp_path):
    f = write(tmp_path, "e.csv", [f"{HEADER},device", "u1,i1,view,,1700000000, tv ",
                                  "u1,i2,view,,1700000000,", f"u1,i3,view,,1700000000,{'x' * 65}"])
    events, report = read_events(f, now=NOW)
    assert events["device"].iloc[0] == "tv" and pd.isna(events["device"].iloc[1])
    assert problems(report) == [(4, "device", "device too long")]
    assert "longer than 64 characters" in str(report.issues[0])
    plain, _ = read_events(write(tmp_path, "p.csv", [HEADER, "u1,i1,view,,1700000000"]), now=NOW)
    assert "device" not in plain.columns  # a source without devices: none invented


def test_duplicates_name_the_first_occurrence(tmp_path):
    f = write(tmp_path, "e.csv", [HEADER, "u1,i1,view,,1700000000", "u1,i2,view,,1700000000",
                                  "u1,i1,view,,1700000000"])
    events, report = read_events(f, now=NOW)
    assert problems(report) == [(4, None, "duplicate")]
    assert "duplicate of row 2" in str(report.issues[0])
    assert len(events) == 2


def test_event_ids_make_ingestion_idempotent(tmp_path):
    f = write(tmp_path, "e.csv", ["eid,user_id,item_id,event_type", "a,u1,i1,view", "b,u1,i1,view",
                                  "a,u2,i2,view"])
    events, report = read_events(f, columns=ColumnMapping(event_id="eid"), now=NOW)
    assert problems(report) == [(4, "eid", "duplicate")]
    assert len(events) == 2  # same pair twice is fine with distinct ids


def test_strict_mode_stops_at_the_first_bad_row(tmp_path):
    f = write(tmp_path, "e.csv", [HEADER, "u1,i1,rating,4,1700000000", "u1,i1,rating,9,1",
                                  ",i1,rating,3,1"])
    with pytest.raises(DataError) as err:
        read_events(f, strict=True, now=NOW)
    assert (err.value.row, err.value.column) == (3, "value")


def test_column_mapping_and_default_event_type(tmp_path):
    f = write(tmp_path, "r.csv", ["userId,movieId,rating,ts", "1,10,4.5,964982703"])
    mapping = ColumnMapping.parse("user_id=userId,item_id=movieId,value=rating,timestamp=ts")
    events, report = read_events(f, columns=mapping, schema=EventSchema().with_rating_range(0.5, 5),
                                 now=NOW)
    assert report.ok
    assert events.iloc[0][["user_id", "item_id", "event_type", "value"]].tolist() == [
        "1", "10", "rating", 4.5]


def test_missing_required_column_is_one_clear_error(tmp_path):
    f = write(tmp_path, "e.csv", ["user,item", "u1,i1"])
    with pytest.raises(DataError, match="no column 'user_id' for user_id"):
        read_events(f)


def test_bad_column_mapping_names_the_option():
    with pytest.raises(DataError, match="bad column mapping 'usr=x'"):
        ColumnMapping.parse("usr=x")


# -- a malformed file of each supported format --------------------------------------------------

def test_malformed_tsv_reports_rows(tmp_path):
    f = write(tmp_path, "e.tsv", ["user_id\titem_id\tevent_type", "u1\ti1\tview", "u1\ti2",
                                  "u2\ti3\tclick\textra"])
    events, report = read_events(f, now=NOW)
    assert problems(report) == [(3, None, "wrong field count"), (4, None, "wrong field count")]
    assert len(events) == 1


def test_malformed_jsonl_reports_rows(tmp_path):
    first = json.dumps({"user_id": "u1", "item_id": "i1", "event_type": "view"})
    f = write(tmp_path, "e.jsonl", [first,
                                    "{not json", "[1, 2]",
                                    json.dumps({"user_id": "u2", "item_id": "i1",
                                                "event_type": "rating", "value": 11})])
    events, report = read_events(f, now=NOW)
    assert problems(report) == [(2, None, "malformed record"), (3, None, "malformed record"),
                                (4, "value", "value out of range")]
    assert len(events) == 1


def test_gzipped_jsonl_is_read(tmp_path):
    f = tmp_path / "e.jsonl.gz"
    with gzip.open(f, "wt") as handle:
        handle.write(json.dumps({"user_id": "u1", "item_id": "i1", "event_type": "click"}) + "\n")
    events, report = read_events(f, now=NOW)
    assert report.ok and len(events) == 1


def test_parquet_rows_are_validated(tmp_path):
    f = tmp_path / "e.parquet"
    pq.write_table(pa.table({"user_id": ["u1", None, "u3"], "item_id": ["i1", "i2", "i3"],
                             "event_type": ["play", "play", "play"], "value": [3.0, 1.0, -1.0]}), f)
    events, report = read_events(f, now=NOW)
    assert problems(report) == [(2, "user_id", "missing id"), (3, "value", "negative value")]
    assert events["user_id"].tolist() == ["u1"]


def test_a_file_that_is_not_parquet_is_one_clear_error(tmp_path):
    f = write(tmp_path, "e.parquet", ["this is not parquet"])
    with pytest.raises(DataError, match="not a readable Parquet file") as err:
        read_events(f)
    assert err.value.file == str(f)


@pytest.mark.parametrize(("name", "content", "message"), [
    ("missing.csv", None, "file not found"),
    ("e.xyz", "a,b\n", "cannot tell the format"),
    ("empty.csv", "", "the file is empty"),
    ("latin.csv", "user_id,item_id\nJos\xe9,i1\n".encode("latin-1"), "not utf-8 text"),
    ("e.csv.gz", b"not gzip", "cannot read the file"),
])
def test_unreadable_files_raise_one_data_error_naming_the_file(tmp_path, name, content, message):
    f = tmp_path / name
    if isinstance(content, bytes):
        f.write_bytes(content)
    elif content is not None:
        f.write_text(content)
    with pytest.raises(DataError, match=message) as err:
        read_events(f)
    assert err.value.file == str(f)


JSON_PQ = '"[""p"", ""q""]"'  # the JSON list ["p", "q"] quoted as a CSV cell


def test_metadata_kinds_and_checks(tmp_path):
    f = write(tmp_path, "items.csv", ["id,genres,price,listed,region", "a,x|y,10,2024-01-01,north",
                                      "b,,abc,2024-01-02,south", "a,z,5,2024-01-01,north",
                                      f"c,{JSON_PQ},7,not-a-date,east", f"d,{JSON_PQ},7,,east"])
    kinds = {"genres": FeatureKind.MULTI, "price": FeatureKind.NUMERIC,
             "listed": FeatureKind.DATE, "region": FeatureKind.CATEGORICAL}
    items, report = read_metadata(f, "id", kinds)
    assert problems(report) == [(3, "price", "unparsable value"), (4, "id", "duplicate"),
                                (5, "listed", "unparsable date")]
    assert items.index.tolist() == ["a", "d"]
    assert items.loc["a", "genres"] == ["x", "y"] and items.loc["a", "price"] == 10.0
    assert items.loc["d", "genres"] == ["p", "q"]  # a JSON list, as JSON Lines exports write it


# -- streaming, and what hostile files hold ---------------------------------------------------

@pytest.mark.parametrize("name", ["e.csv", "e.jsonl", "e.parquet"])
def test_chunks_read_as_the_whole_file_with_its_row_numbers(tmp_path, name):
    rows = [{"user_id": f"u{k}", "item_id": "i1", "event_type": "rating",
             "value": "9" if k == 3 else "4"} for k in range(7)]
    f = tmp_path / name
    if name.endswith(".csv"):
        f.write_text("user_id,item_id,event_type,value\n"
                     + "".join(",".join(r.values()) + "\n" for r in rows))
    elif name.endswith(".jsonl"):
        f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        pq.write_table(pa.Table.from_pylist(rows), f)
    whole, report = read_events(f, now=NOW)
    chunks = list(iter_events(f, now=NOW, chunk_rows=3))
    assert [len(events) for events, _ in chunks] == [3, 2, 1]  # row 5 (k=3) was bad
    pd.testing.assert_frame_equal(pd.concat([e for e, _ in chunks], ignore_index=True), whole)
    bad_row = {"e.csv": 5, "e.jsonl": 4, "e.parquet": 4}[name]
    assert [str(i) for _, r in chunks for i in r.issues] == [str(i) for i in report.issues] == [
        f"{f}, row {bad_row}, column 'value': rating value 9 is outside 1..5"]


def test_strict_stops_at_a_bad_row_without_reading_the_rest(tmp_path):
    f = tmp_path / "e.csv"
    good = "".join(f"u{k},i1,view\n" for k in range(30_000))
    f.write_bytes(b"user_id,item_id,event_type\nu1,,view\n" + good.encode() + b"\xff\xfe\n")
    with pytest.raises(DataError, match="row 2, column 'item_id': missing item id"):
        for _ in iter_events(f, strict=True):
            pass


@pytest.mark.parametrize(("name", "content", "row", "column", "char"), [
    pytest.param("e.csv", b"user_id,item_id,event_type\nu1,i1,view\nu\x002,i1,view\n", 3,
                 "user_id", "\x00", id="NUL in a CSV user id"),
    pytest.param("e.jsonl", b'{"user_id": "u1", "item_id": "i1", "event_type": "view"}\n'
                 b'{"user_id": "u2", "item_id": "i\\ud800", "event_type": "view"}\n',
                 2, "item_id", "\ud800", id="lone surrogate in a JSON item id"),
    pytest.param("e.jsonl",
                 b'{"user_id": "u1", "item_id": "i1", "event_type": "view", "event_id": "a"}\n'
                 b'{"user_id": "u2", "item_id": "i2", "event_type": "view", '
                 b'"event_id": "\\u0000"}\n',
                 2, "event_id", "\x00", id="NUL in a JSON event id"),
])
def test_ids_no_database_stores_are_rejected_by_row_and_column(tmp_path, name, content, row,
                                                               column, char):
    f = tmp_path / name
    f.write_bytes(content)
    mapping = ColumnMapping(event_id="event_id") if b"event_id" in content else None
    events, report = read_events(f, columns=mapping, now=NOW)
    assert len(events) == 1 and problems(report) == [(row, column, "unstorable text")]
    assert repr(char) in report.issues[0].message
    with pytest.raises(DataError, match=f"row {row}, column '{column}'"):
        read_events(f, columns=mapping, strict=True, now=NOW)


def test_metadata_ids_no_database_stores_are_rejected(tmp_path):
    f = write(tmp_path, "items.csv", ["id,genre", "a,x", "b\x00,y"])
    items, report = read_metadata(f, "id", {"genre": FeatureKind.CATEGORICAL})
    assert items.index.tolist() == ["a"] and problems(report) == [(3, "id", "unstorable text")]


def test_a_field_over_the_csv_limit_is_one_bad_row(tmp_path):
    f = write(tmp_path, "e.csv", ["user_id,item_id,event_type", "u1,i1,view",
                                  "u2," + "i" * 131_073 + ",view", "u3,i1,view"])
    events, report = read_events(f, now=NOW)
    assert events["user_id"].tolist() == ["u1", "u3"]
    assert problems(report) == [(3, None, "malformed record")]
    assert "field larger than field limit" in report.issues[0].message


def test_a_bare_year_is_that_year_not_seconds_after_1970(tmp_path):
    f = write(tmp_path, "e.csv", [HEADER, "u1,i1,view,,2024", "u1,i2,view,,1700000000"])
    events, report = read_events(f, now=NOW)
    assert report.ok
    assert events["timestamp"].tolist() == [pd.Timestamp("2024-01-01"),
                                            pd.Timestamp("2023-11-14 22:13:20")]


def test_an_unknown_encoding_is_one_data_error(tmp_path):
    f = write(tmp_path, "e.csv", ["user_id,item_id", "u1,i1"])
    with pytest.raises(DataError, match="unknown encoding 'nope'") as err:
        read_events(f, encoding="nope")
    assert (err.value.file, err.value.column) == (str(f), "--encoding")


def test_paths_that_are_not_files_say_what_they_are(tmp_path):
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    for path, what in [(tmp_path, "a directory"), (Path("/dev/null"), "a character device"),
                       (fifo, "a FIFO")]:
        with pytest.raises(DataError, match=f"this is {what}") as err:
            read_events(path, format="csv")
        assert err.value.file == str(path)


def test_a_file_of_bad_rows_lists_the_first_issues_and_counts_them_all(tmp_path):
    f = write(tmp_path, "e.csv", ["user_id,item_id,event_type",
                                  *(f"u{k},,view" for k in range(LISTED_ISSUES + 500))])
    report = ValidationReport(str(f))
    for _, chunk in iter_events(f, now=NOW, chunk_rows=300):
        report.extend(chunk)
    assert len(report.issues) == LISTED_ISSUES and report.issues[-1].row == LISTED_ISSUES + 1
    assert report.counts() == {"missing id": LISTED_ISSUES + 500} and not report.ok
    assert report.rows_skipped == LISTED_ISSUES + 500
