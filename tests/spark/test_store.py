"""The PostgreSQL event store read on Spark over JDBC, against the local preparation of the same
store: the same pairs, values within 1e-6; the password never shown; the driver named when
missing."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from recengine.data.synthetic import generate
from recengine.data.weighting import Weighting
from recengine.data.weighting import aggregate as aggregate_locally
from recengine.errors import DataError, EngineError, StoreError
from recengine.pipeline.prepare import file_training_data
from recengine.spark import store as spark_store
from recengine.spark.prepare import aggregate, pairs_to_pandas
from recengine.spark.store import read_store
from recengine.store.events import EventStore
from tests.spark.test_prepare import assert_same_pairs


@pytest.fixture(scope="module")
def dataset():
    """The synthetic rentals' log: every event type, ratings among them, timestamps."""
    return generate(n_users=120, n_items=50, seed=4)


@pytest.fixture
def stored(postgres_url, dataset):
    """A PostgreSQL store holding the log, with one item deleted: its URL and the store's own
    (local) dataset."""
    with EventStore(postgres_url) as store:
        store.append(dataset.events)
        store.delete_item(str(dataset.events["item_id"].iloc[0]))
        local = store.dataset(schema=dataset.schema)
    return postgres_url, local


def test_store_events_over_jdbc_aggregate_as_locally(spark, stored, dataset):
    url, local = stored
    weighting = Weighting(half_life_days=30.0)
    events, report = read_store(spark, url)
    assert report.rows_accepted == report.rows_read == len(local.events)
    assert len(local.events) < len(dataset.events)  # the deleted item's events left out
    assert_same_pairs(aggregate_locally(local.events, dataset.schema, weighting),
                      pairs_to_pandas(aggregate(events, dataset.schema, weighting)))


def test_train_data_from_a_store_is_the_same_on_both_engines(spark, stored, dataset):
    url, _ = stored
    on_spark, report = file_training_data(url, engine="spark", schema=dataset.schema)
    here, local_report = file_training_data(url, schema=dataset.schema)
    assert on_spark is not None and here is not None
    assert report.to_dict() == local_report.to_dict()
    assert "s3cret" not in report.file and "***" in report.file
    assert on_spark.users == here.users and on_spark.items == here.items
    assert abs(on_spark.feedback - here.feedback).max() < 1e-6
    assert (on_spark.ratings != here.ratings).nnz == 0


def test_until_id_reads_a_snapshot(spark, postgres_url, dataset):
    with EventStore(postgres_url) as store:
        store.append(dataset.events)
        until = store.last_id() // 2
        local = store.dataset(until_id=until)
    events, report = read_store(spark, postgres_url, until_id=until, partitions=3)
    assert report.rows_accepted == len(local.events)
    assert int(events.agg({"_row": "max"}).first()[0]) == until


def test_the_password_is_never_shown(spark, stored):
    """Not in the plan Spark logs and explains (its options are redacted; the password is a
    property, not part of the JDBC URL), nor in the error of a refused login."""
    url, _ = stored
    password = sa.make_url(url).password
    assert password
    events, _ = read_store(spark, url)
    plan = events._jdf.queryExecution().toString()
    assert "JDBCRelation(events)" in plan and password not in plan
    wrong = sa.make_url(url).set(password="not-the-password-42")
    with pytest.raises(StoreError) as caught:
        read_store(spark, wrong.render_as_string(hide_password=False))
    message = str(caught.value)
    assert "password authentication failed" in message
    assert "not-the-password-42" not in message and "\n" not in message and "***" in message


def test_a_missing_driver_names_the_package(spark, stored, monkeypatch):
    url, _ = stored
    monkeypatch.setattr(spark_store, "DRIVER", "org.postgresql.NoSuchDriver")
    with pytest.raises(EngineError) as caught:
        read_store(spark, url)
    assert str(caught.value) == spark_store.NO_DRIVER
    assert "apt-get install libpostgresql-jdbc-java" in str(caught.value)


def test_a_sqlite_store_is_sent_to_the_local_engine(spark, tmp_path):
    with pytest.raises(DataError, match=r"prepare sqlite:///.* with --engine local"):
        read_store(spark, f"sqlite:///{tmp_path / 'events.db'}")


def test_train_on_spark_from_the_store(spark, stored, capsys, tmp_path):
    """`recengine train --events URL --engine spark`: the store read over JDBC, spark-als
    trained; the URL printed masked."""
    from recengine.cli import main

    url, local = stored
    out = tmp_path / "model"
    assert main(["train", "--events", url, "--engine", "spark", "--model", "wals",
                 "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    pairs = len(aggregate_locally(local.events, local.schema))
    assert f"wals trained on {pairs} pairs" in printed
    assert sa.make_url(url).password not in printed
