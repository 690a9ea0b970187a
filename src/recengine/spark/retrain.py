"""A retrain on Spark: the events weighed, aggregated, split and scored where they are.

:func:`recengine.pipeline.retrain.retrain` with ``engine="spark"`` comes here. The events are a
Spark frame (:func:`recengine.spark.store.read_store` over JDBC,
:func:`recengine.spark.prepare.read_events` from files, or :func:`spark_events` for events
this process already holds); :func:`recengine.spark.prepare.aggregate` makes the per-pair
table by the local rules, :mod:`recengine.spark.splits` carves the retrain's holdout from it,
and every candidate is scored on that holdout with :func:`recengine.spark.evaluation.
ranking_metrics`, the local definitions. The gate and the registry are the local retrain's
(:func:`~recengine.pipeline.retrain.judge_and_publish`), so a version published here is
judged, written and served like any other.

What comes to the driver, and why: never the events. The training part's *pairs* come (and,
for the version published, all pairs), because a model keeps the training histories it
excludes when it recommends and the registry saves them with the version for the server; the
test users' ids come, to index their rows. WALS configurations train as ``spark-als``
(MLlib's ALS solves them on the cluster); the other models train here on those pairs, as the
pairs of ``recengine train --engine spark`` do, so without item or user metadata and with one
event per pair in their log: a model that needs features or the order of events retrains with
the local engine. A factor model's top-k lists are computed on Spark
(:func:`recengine.spark.batch.top_k_lists`), the others' here, and measured on Spark.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from recengine.data.schema import EventSchema
from recengine.data.training_data import TrainingData
from recengine.errors import DataError
from recengine.models.base import Capability, Recommender
from recengine.pipeline.retrain import (
    Plan,
    RetrainResult,
    Trial,
    holdout_note,
    judge_and_publish,
    no_times_note,
    on_engine,
    on_spark_als,
)
from recengine.spark.als import ensure_checkpoints
from recengine.spark.batch import top_k_lists
from recengine.spark.evaluation import ranking_metrics
from recengine.spark.prepare import ROW, aggregate, pairs_to_pandas
from recengine.spark.session import spark_session
from recengine.spark.splits import SparkSplit, make_split
from recengine.store.registry import ModelRegistry

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from recengine.data.dataset import Dataset

__all__ = ["retrain_on_spark", "snapshot", "spark_events"]

#: The frame every event source gives: the local event columns and the row that breaks ties.
EVENTS_SCHEMA = ("user_id string, item_id string, event_type string, value double, "
                 f"timestamp timestamp, {ROW} long")


def spark_events(dataset: Dataset, master: str) -> DataFrame:
    """A dataset's events (already in this process: a named dataset, a SQLite store) as a
    Spark frame on ``master``, rows numbered in table order as the local aggregation counts
    them."""
    session = spark_session(master, feature="retrain --engine spark")
    events = dataset.events
    table = pd.DataFrame({"user_id": events["user_id"].astype(str),
                          "item_id": events["item_id"].astype(str),
                          "event_type": events["event_type"].astype(str),
                          "value": events["value"].astype(np.float64),
                          "timestamp": events["timestamp"],
                          ROW: np.arange(len(events), dtype=np.int64)})
    return session.createDataFrame(table, EVENTS_SCHEMA)


def snapshot(events: DataFrame, name: str) -> dict[str, Any]:
    """What a version trained on a Spark frame of events was trained on, computed there:
    :func:`~recengine.pipeline.retrain.event_snapshot`'s count and time range, and, instead
    of its SHA-256 of the table in order (which needs every event in one process), the sum
    of the events' 64-bit hashes (``xxhash64``), which any change of an event changes."""
    from pyspark.sql import functions as F

    digest = F.xxhash64("user_id", "item_id", "event_type", "value", "timestamp")
    seconds = F.unix_seconds(F.col("timestamp"))
    row = events.agg(F.count(F.lit(1)).alias("count"),
                     F.sum(digest.cast("decimal(38,0)")).alias("sum"),
                     F.min(seconds).alias("first"), F.max(seconds).alias("last")).first()
    assert row is not None  # an aggregate without grouping has one row
    total = 0 if row["sum"] is None else int(row["sum"])
    return {"dataset": name, "count": int(row["count"]),
            "xxhash64_sum": f"{total % 2 ** 64:016x}",
            "min_timestamp": _iso(row["first"]), "max_timestamp": _iso(row["last"])}


def _iso(seconds: int | None) -> str | None:
    return None if seconds is None else pd.Timestamp(seconds, unit="s").isoformat()


def retrain_on_spark(events: DataFrame, registry: ModelRegistry, plan: Plan, *, master: str,
                     schema: EventSchema, data_snapshot: Mapping[str, Any]) -> RetrainResult:
    """:func:`~recengine.pipeline.retrain.retrain` of ``plan`` on ``events`` (a Spark frame
    of ``schema``'s event types), gated against the active version, published."""
    models = on_engine(plan.models, "spark", master)
    notes = [f"prepared, split and scored on Spark ({master})"]
    moved = on_spark_als(models)
    if moved:
        notes.append(f"trained on Spark ({master}) as spark-als: {', '.join(moved)}")
        ensure_checkpoints(events.sparkSession.sparkContext)  # told before any work there
    with contextlib.ExitStack() as cached:
        pairs = _kept(cached, aggregate(events, schema, plan.weighting))
        split = _split(events, pairs, plan, notes, cached)
        full = functools.partial(_training_data, pairs)
        return judge_and_publish(Trial(_Holdout(split, plan), full, data_snapshot), registry,
                                 models, plan, notes)


def _kept(cached: contextlib.ExitStack, frame: DataFrame) -> DataFrame:
    """``frame`` cached until ``cached`` closes: background runs share the server's session,
    so a run leaves nothing cached behind."""
    cached.callback(frame.unpersist)
    return frame.persist()


def _split(events: DataFrame, pairs: DataFrame, plan: Plan, notes: list[str],
           cached: contextlib.ExitStack) -> SparkSplit:
    """The plan's holdout, cached; a stratified one, with a note, when an event has no
    time."""
    from pyspark.sql import functions as F

    if events.limit(1).count() == 0:
        raise DataError("no interactions to split")
    timed = events.where(F.col("timestamp").isNull()).limit(1).count() == 0
    if not timed:
        notes.append(no_times_note(plan.holdout, plan.test_fraction))
    split = make_split(pairs, plan.holdout if timed else "stratified",
                       test_fraction=plan.test_fraction, seed=plan.seed, last_n=plan.last_n)
    split = SparkSplit(_kept(cached, split.train), _kept(cached, split.test), split.description)
    notes.append(holdout_note(split.description, split.test.count(), split.train.count()))
    return split


def _training_data(pairs: DataFrame, extra_items: np.ndarray | None = None) -> TrainingData:
    """Training data of Spark's pairs, collected (the models fit, and the registry saves, it)."""
    return TrainingData.from_interactions(pairs_to_pandas(pairs), extra_items=extra_items)


def _ids(frame: DataFrame, column: str) -> np.ndarray:
    """The distinct values of ``column``, sorted, on the driver."""
    table = frame.select(column).distinct().toArrow()
    return np.sort(np.asarray(table.column(column).to_pylist(), dtype=object))


class _Holdout:
    """A :data:`~recengine.pipeline.retrain.Scorer` on a split carved on Spark: each model
    fits the training part (its pairs, and the test items as known items, as locally) and is
    measured against the holdout, which stays on Spark."""

    def __init__(self, split: SparkSplit, plan: Plan) -> None:
        self.split = split
        self.plan = plan
        self.data = _training_data(split.train, extra_items=_ids(split.test, "item_id"))
        self.users = _ids(split.test, "user_id")
        self.depth = max(plan.cutoffs)

    def __call__(self, models: Mapping[str, Recommender]) -> dict[str, dict[str, float]]:
        scores = {}
        for name, model in models.items():
            model.fit(self.data, progress=self.plan.progress)
            scores[name] = self._measure(model)
        return scores

    def _measure(self, model: Recommender) -> dict[str, float]:
        session = self.split.test.sparkSession
        if model.supports(Capability.RETRIEVAL):
            rows = self.data.users.index(self.users)
            with top_k_lists(session, model, self.depth, rows) as lists:
                return ranking_metrics(lists, self.split.test, self.plan.cutoffs)
        ids, _ = model.recommend(list(self.users), self.depth)
        listed = [(str(user), rank, str(item)) for user, row in zip(self.users, ids, strict=True)
                  for rank, item in enumerate(row, 1) if item is not None]
        lists = session.createDataFrame(listed, "user_id string, rank int, item_id string")
        return ranking_metrics(lists, self.split.test, self.plan.cutoffs)
