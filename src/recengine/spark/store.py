"""The PostgreSQL event store read by Spark over JDBC: events in, the same frame as a file's.

Why JDBC: a store too large for one process is read by the executors, each over its own
connection, in ranges of the store's ``id`` (``partitionColumn``), never through the driver.
The frame is :func:`recengine.spark.prepare.read_events`'s (``user_id, item_id, event_type,
value, timestamp`` and the row number, here the store's id, so ties in time break by arrival
as locally), so :func:`recengine.spark.prepare.aggregate` weighs and aggregates it by the
local rules. As :meth:`~recengine.store.events.EventStore.dataset` does, the events of deleted
items are left out and ``until_id`` bounds the read to a snapshot. The store validated its
events when it took them (:meth:`~recengine.store.events.EventStore.ingest`), so they are not
validated again: the report counts every event read as accepted.

The driver is Debian's (``libpostgresql-jdbc-java``, :data:`~recengine.spark.session.
POSTGRES_JAR`), loaded by every new session; without it, one line says what to install.

Credentials: the URL's user and password become the JDBC properties ``user`` and
``password``, never part of the JDBC URL: Spark redacts options named like ``password``
(``spark.redaction.regex``) from its plans and logs, and every message here names the store by
its masked URL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa

from recengine.data.validation import ValidationReport
from recengine.errors import DataError, EngineError, StoreError
from recengine.spark.prepare import ROW
from recengine.spark.session import POSTGRES_JAR, failure, spark_errors
from recengine.store.events import mask_url

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["NO_DRIVER", "jdbc_source", "read_store"]

#: PostgreSQL's JDBC driver class.
DRIVER = "org.postgresql.Driver"

#: What to do when the driver is missing.
NO_DRIVER = ("reading the event store on Spark needs PostgreSQL's JDBC driver: install it "
             f"(apt-get install libpostgresql-jdbc-java, which provides {POSTGRES_JAR}); "
             "Spark sessions started after that load it")


def jdbc_source(url: str) -> tuple[str, dict[str, str]]:
    """The JDBC URL of a PostgreSQL store's SQLAlchemy URL, and the connection properties:
    the driver, user, password, and the URL's query (``options``, ``sslmode``, ...).

    >>> jdbc_source("postgresql+psycopg://me:pw@db:5433/events?options=-csearch_path%3Ds1")
    ('jdbc:postgresql://db:5433/events', {'driver': 'org.postgresql.Driver', 'user': 'me', \
'password': 'pw', 'options': '-csearch_path=s1'})
    """
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise StoreError(f"not a database URL: {mask_url(url)!r}") from None
    if parsed.get_backend_name() != "postgresql":
        raise DataError(f"Spark reads PostgreSQL event stores (over JDBC), not "
                        f"{parsed.get_backend_name()}: prepare {mask_url(url)} with "
                        "--engine local", column="--events")
    properties = {"driver": DRIVER}
    if parsed.username:
        properties["user"] = parsed.username
    if parsed.password is not None:
        properties["password"] = str(parsed.password)
    for key, value in parsed.query.items():
        properties[key] = value if isinstance(value, str) else ",".join(value)
    host = f"[{parsed.host}]" if parsed.host and ":" in parsed.host else parsed.host
    return (f"jdbc:postgresql://{host or 'localhost'}:{parsed.port or 5432}/"
            f"{parsed.database or ''}", properties)


def read_store(session: SparkSession, url: str, *, until_id: int | None = None,
               partitions: int | None = None) -> tuple[DataFrame, ValidationReport]:
    """The store's events up to ``until_id`` (all by default) as a DataFrame, read over JDBC
    in ``partitions`` id ranges (default: the session's parallelism), and the report.

    A store that cannot be reached or read is :class:`StoreError`, the driver missing
    :class:`EngineError`, both in one line that never shows the password.
    """
    from pyspark.sql import functions as F

    jdbc, properties = jdbc_source(url)
    name = mask_url(url)
    if not POSTGRES_JAR.exists() and "postgresql" not in (session.conf.get("spark.jars", "") or ""):
        raise EngineError(NO_DRIVER)
    bound = "" if until_id is None else f" WHERE id <= {int(until_id)}"
    try:
        first, last = session.read.jdbc(
            jdbc, f"(SELECT min(id) AS first, max(id) AS last FROM events{bound}) AS bounds",
            properties=properties).first() or (None, None)
        events = session.read.jdbc(
            jdbc, "events", column="id", lowerBound=int(first or 0), upperBound=int(last or 0),
            numPartitions=partitions or session.sparkContext.defaultParallelism,
            properties=properties)
        if until_id is not None:
            events = events.where(F.col("id") <= int(until_id))
        deleted = session.read.jdbc(jdbc, "deleted_items", properties=properties)
        events = events.join(F.broadcast(deleted.select(F.col("id").alias("item_id"))),
                             "item_id", "left_anti")
        frame = events.select("user_id", "item_id", "event_type", "value", "timestamp",
                              F.col("id").alias(ROW)).persist()
        count = frame.count()
    except spark_errors() as exc:
        raise _store_failure(exc, name, properties.get("password")) from None
    return frame, ValidationReport(name, count, count)


def _store_failure(exc: Exception, name: str, password: str | None) -> Exception:
    """Spark's failure as one line: the missing driver named, the password never shown."""
    reason = failure(exc)
    if "ClassNotFoundException" in reason or "No suitable driver" in reason:
        return EngineError(NO_DRIVER)
    if password:
        reason = reason.replace(password, "***")
    return StoreError(f"cannot read events from {name} over JDBC: {reason}")
