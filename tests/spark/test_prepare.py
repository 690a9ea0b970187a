"""Event files prepared on Spark against the local path: the same reports, the same pairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recengine.data.readers import read_events as read_locally
from recengine.data.synthetic import generate
from recengine.data.weighting import Weighting
from recengine.data.weighting import aggregate as aggregate_locally
from recengine.errors import DataError
from recengine.pipeline.prepare import file_training_data
from recengine.spark.prepare import aggregate, pairs_to_pandas, read_events

#: A fixed clock, so that "in the future" means the same to both paths.
NOW = pd.Timestamp("2026-01-01")

BAD_CSV = """user_id,item_id,event_type,value,timestamp
u1,i1,rating,4,1700000000
u1,i2,rating,9,1700000001
,i3,view,,1700000002
u2,i1,purchase,abc,1700000003
u2,i2,teleport,1,1700000004
u2,i3,dwell,,1700000005
u3,i1,rating,4,1700000000
u1,i1,rating,5,1700000000
u3,i2,view,,not-a-time
u3,i3,view,,2999-01-01T00:00:00Z
u3,i4,view,,2024
u3,i5,play,3,2024-05-01T10:00:00Z
u4,i5,dwell,30,2024-05-01T10:00:00+02:00
u4,i6,dwell,10,1700000000.7
u4,i7,view,,
u4,i1,view,inf,1700000000
u5,i1,rating,-1,1700000000
u5,i2,watch,2,1700000000
u5,i2,view,1,1700000000,extra
u5,i3,view
"""

BAD_JSONL = """{"user_id": "u1", "item_id": "i1", "event_type": "view", "timestamp": 1700000000}
{"user_id": "u1", "item_id": "i2", "event_type": "play", "value": 3, "timestamp": "2024-05-01"}
{"user_id": "u1", "item_id":
[1, 2]
{"user_id": "u2", "item_id": "i2", "event_type": "rating", "value": 3.5}
{"user_id": "u2", "item_id": "i2", "event_type": "rating", "value": 4.5}
"""


@pytest.fixture(scope="module")
def session(spark):
    return spark


def both(session, path: Path, **options):
    """(local events, local report), (Spark events, Spark report) of one file."""
    return (read_locally(path, now=NOW, **options),
            read_events(session, path, now=NOW, **options))


def assert_same_pairs(local: pd.DataFrame, spark: pd.DataFrame) -> None:
    """Same pairs in the same order; values equal within 1e-6."""
    assert list(spark.columns) == list(local.columns)
    for column in ("user_id", "item_id", "n_events"):
        assert spark[column].tolist() == local[column].tolist(), column
    np.testing.assert_allclose(spark["rating"], local["rating"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(spark["feedback"], local["feedback"], rtol=1e-9, atol=1e-6)
    assert spark["timestamp"].equals(local["timestamp"])


@pytest.mark.parametrize(("name", "content"), [("bad.csv", BAD_CSV), ("bad.jsonl", BAD_JSONL)])
def test_bad_rows_are_reported_as_locally(session, tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content)
    (events, report), (spark_events, spark_report) = both(session, path)
    assert spark_report.to_dict(max_issues=100) == report.to_dict(max_issues=100)
    assert report.rows_skipped > 1
    assert_same_pairs(aggregate_locally(events), pairs_to_pandas(aggregate(spark_events)))


def test_strict_stops_at_the_first_bad_row_with_the_local_error(session, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(BAD_CSV)
    with pytest.raises(DataError) as local:
        read_locally(path, strict=True, now=NOW)
    with pytest.raises(DataError) as on_spark:
        read_events(session, path, strict=True, now=NOW)
    assert str(on_spark.value) == str(local.value)
    assert "row 3, column 'value': rating value 9 is outside 1..5" in str(on_spark.value)


def test_a_missing_column_is_the_local_error(session, tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("user,item_id\nu1,i1\n")
    with pytest.raises(DataError) as local:
        read_locally(path)
    with pytest.raises(DataError) as on_spark:
        read_events(session, path)
    assert str(on_spark.value) == str(local.value)
    assert "no column 'user_id' for user_id" in str(on_spark.value)


def test_a_file_spark_cannot_read_is_one_line_naming_it(session, tmp_path):
    path = tmp_path / "events.parquet"
    path.write_bytes(b"this is no parquet file at all")
    with pytest.raises(DataError, match=r"events\.parquet: cannot read the file: ") as caught:
        read_events(session, path)
    assert "\n" not in str(caught.value) and "\tat " not in str(caught.value)
    with pytest.raises(DataError, match="file not found"):
        read_events(session, tmp_path / "missing.csv")


def test_movielens_pairs_equal_the_local_preparation(session, tmp_path, require_dataset):
    """MovieLens 100K's ratings as a CSV: the same pairs, ratings, feedback within 1e-6,
    times and counts, and the same training vocabularies."""
    raw = pd.read_csv(require_dataset("ml-100k") / "u.data", sep="\t", header=None,
                      names=["user_id", "item_id", "value", "timestamp"])
    path = tmp_path / "ml100k.csv"
    raw.to_csv(path, index=False)
    (events, report), (spark_events, spark_report) = both(session, path)
    assert report.rows_accepted == spark_report.rows_accepted == 100_000
    local = aggregate_locally(events)
    on_spark = pairs_to_pandas(aggregate(spark_events))
    assert len(on_spark) == 100_000
    assert_same_pairs(local, on_spark)
    spark_data, _ = file_training_data(path, engine="spark")
    local_data, _ = file_training_data(path)
    assert spark_data is not None and local_data is not None
    assert spark_data.users == local_data.users and spark_data.items == local_data.items
    assert (spark_data.feedback != local_data.feedback).nnz == 0


def test_every_event_type_with_time_decay_weighs_as_locally(session, tmp_path):
    """The synthetic rentals' log (views, dwell times by their median, fractions watched,
    carts, bookings, ratings) as Parquet, with a half-life."""
    dataset = generate(n_users=150, n_items=60, seed=4)
    path = tmp_path / "events.parquet"
    dataset.events.to_parquet(path)
    weighting = Weighting(half_life_days=30.0)
    (events, _), (spark_events, spark_report) = both(session, path, schema=dataset.schema)
    assert spark_report.rows_accepted == len(dataset.events)
    assert_same_pairs(aggregate_locally(events, dataset.schema, weighting),
                      pairs_to_pandas(aggregate(spark_events, dataset.schema, weighting)))
    assert set(dataset.events["event_type"]) >= {"dwell", "watch", "booking", "rating"}


@pytest.mark.parametrize(("content", "message"), [
    (b"this is no parquet file", "cannot read the file: java.lang.RuntimeException: "),
    (b"PAR1" + bytes(64) + b"PAR1", "cannot read the file: "),
])
def test_train_on_spark_reports_a_bad_file_in_one_line(spark, capfd, tmp_path, content,
                                                       message):
    """The command line's report of a file Spark cannot read: one line, exit code 2, and no
    Java stack trace on the terminal (Spark's own log of the failure is silenced)."""
    from recengine.cli import main

    path = tmp_path / "events.parquet"
    path.write_bytes(content)
    capfd.readouterr()
    assert main(["train", "--events", str(path), "--engine", "spark", "--output",
                 str(tmp_path / "model")]) == 2
    err = capfd.readouterr().err
    assert err.strip().splitlines()[-1].startswith(f"error: {path}: {message}")
    assert "\tat " not in err and "Exception in task" not in err


@pytest.mark.parametrize(("content", "extra", "message"), [
    ("user,item_id\nu1,i1\n", [], "no column 'user_id' for user_id"),
    ("user_id,item_id,event_type\nu1,i1,view\nu2,i2,view,extra\n", ["--strict"],
     "row 3: expected 3 fields, found 4"),
    ('{"user_id": "u1", "item_id": "i1", "event_type": "view"}\n{"user_id": "u2", "item\n',
     ["--strict"], "row 2: not valid JSON"),
])
def test_train_reports_bad_input_on_spark_as_locally(spark, capfd, tmp_path, content, extra,
                                                    message):
    """A missing column, a line of too many fields, broken JSON: `recengine train --engine
    spark` ends with the local engine's very line (file, row, column), exit code 2, and no
    Java stack trace."""
    from recengine.cli import main

    path = tmp_path / ("events.jsonl" if content.startswith("{") else "events.csv")
    path.write_text(content)
    lines = {}
    for engine in ("local", "spark"):
        capfd.readouterr()
        assert main(["train", "--events", str(path), "--engine", engine, "--model", "wals",
                     *extra, "--output", str(tmp_path / engine)]) == 2
        err = capfd.readouterr().err
        assert "\tat " not in err and "Exception in task" not in err
        lines[engine] = err.strip().splitlines()[-1]
    assert lines["spark"] == lines["local"]
    assert lines["local"].startswith(f"error: {path}") and message in lines["local"]
