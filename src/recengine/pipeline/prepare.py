"""Dataset → per-pair interactions → split → :class:`TrainingData`, the same for every command."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from recengine.data.dataset import Dataset
from recengine.data.readers import Format, read_events
from recengine.data.schema import EventSchema
from recengine.data.splits import Split, make_split
from recengine.data.training_data import TrainingData
from recengine.data.validation import ColumnMapping, ValidationReport
from recengine.data.weighting import Weighting, aggregate, weighted_events
from recengine.store.events import EventStore, is_store_url, mask_url

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["Prepared", "carve_validation", "events_of", "file_training_data", "prepare",
           "spark_pairs", "training_data"]

#: Where events are prepared: in this process (pandas) or on Spark.
Engine = Literal["local", "spark"]


@dataclass(frozen=True)
class Prepared:
    """A split and the training data built from its training part."""

    data: TrainingData
    split: Split


def events_of(dataset: Dataset, weighting: Weighting | None = None) -> pd.DataFrame:
    """The dataset's events with their feedback weights: the source of every training log."""
    return weighted_events(dataset.events, dataset.schema, weighting)


def training_data(dataset: Dataset, interactions: pd.DataFrame, *,
                  extra_items: np.ndarray | None = None,
                  extra_users: np.ndarray | None = None,
                  events: pd.DataFrame | None = None) -> TrainingData:
    """Training matrices over the dataset's whole catalogue, with its feature tables.

    ``events`` (weighted, :func:`events_of`) become the time-ordered log, restricted to the
    pairs of ``interactions``.
    """
    return TrainingData.from_interactions(
        interactions,
        items=dataset.items if len(dataset.items.columns) else None,
        users=dataset.users if len(dataset.users.columns) else None,
        item_feature_kinds=dataset.item_features or None,
        user_feature_kinds=dataset.user_features or None,
        extra_items=extra_items,
        extra_users=extra_users,
        events=events,
    )


def _prepared(dataset: Dataset, interactions: pd.DataFrame, split: str, *,
              test_fraction: float, seed: int, last_n: int,
              events: pd.DataFrame) -> Prepared:
    parts = make_split(interactions, split, test_fraction=test_fraction, seed=seed,
                       last_n=last_n)
    test_items = np.asarray(parts.test["item_id"].unique(), dtype=object)
    # New users are known by their metadata only; every other split's test users have history.
    cold = (np.asarray(parts.test["user_id"].unique(), dtype=object)
            if split == "cold-users" else None)
    return Prepared(training_data(dataset, parts.train, extra_items=test_items,
                                  extra_users=cold, events=events), parts)


def prepare(dataset: Dataset, split: str = "stratified", *, test_fraction: float = 0.25,
            seed: int = 0, last_n: int = 1, weighting: Weighting | None = None) -> Prepared:
    """Aggregate the events, split the pairs, and build training data from the train part."""
    interactions = aggregate(dataset.events, dataset.schema, weighting)
    return _prepared(dataset, interactions, split, test_fraction=test_fraction, seed=seed,
                     last_n=last_n, events=events_of(dataset, weighting))


def carve_validation(dataset: Dataset, prepared: Prepared, split: str = "stratified", *,
                     test_fraction: float = 0.25, seed: int = 0, last_n: int = 1) -> Prepared:
    """Split ``prepared``'s training pairs again (seed + 1): tuning never sees its test set."""
    return _prepared(dataset, prepared.split.train, split, test_fraction=test_fraction,
                     seed=seed + 1, last_n=last_n, events=events_of(dataset))


def file_training_data(path: str | Path, *, engine: Engine = "local",
                       master: str = "local[2]", spark_conf: dict[str, str] | None = None,
                       format: Format | None = None,
                       columns: ColumnMapping | None = None,
                       schema: EventSchema | None = None, strict: bool = False,
                       weighting: Weighting | None = None,
                       ) -> tuple[TrainingData | None, ValidationReport]:
    """Training data from an event file (CSV, TSV, Parquet, JSON Lines) or an event store
    (its database URL), and the report.

    ``engine="spark"`` reads, validates, weighs and aggregates on Spark (``master``; a new
    session gets the settings ``spark_conf``) by the same rules (:mod:`recengine.spark.prepare`;
    a PostgreSQL store over JDBC, :mod:`recengine.spark.store`), and only the per-pair table
    comes to this process; its log then has one event per pair (order-aware models want the
    local engine). A store's events were validated when stored: ``format``, ``columns`` and
    ``strict`` are for files.
    No valid event gives no training data (None): the caller says why, from the report.
    """
    schema = schema or EventSchema()
    if engine == "spark":
        from recengine.spark.prepare import pairs_to_pandas

        pairs, report = spark_pairs(path, master=master, spark_conf=spark_conf, format=format,
                                    columns=columns, schema=schema, strict=strict,
                                    weighting=weighting)
        return (None if pairs is None
                else TrainingData.from_interactions(pairs_to_pandas(pairs))), report
    if is_store_url(str(path)):
        local_events, report = _store_events(str(path))
    else:
        local_events, report = read_events(path, format=format, columns=columns,
                                           schema=schema, strict=strict)
    if not report.rows_accepted:
        return None, report
    return TrainingData.from_interactions(
        aggregate(local_events, schema, weighting),
        events=weighted_events(local_events, schema, weighting)), report


def spark_pairs(path: str | Path, *, master: str = "local[2]",
                spark_conf: dict[str, str] | None = None, format: Format | None = None,
                columns: ColumnMapping | None = None, schema: EventSchema | None = None,
                strict: bool = False, weighting: Weighting | None = None,
                ) -> tuple[DataFrame | None, ValidationReport]:
    """An event file's or store's pairs read, validated, weighed and aggregated on Spark
    (:func:`file_training_data`'s rules), left there: the frame of
    :func:`recengine.spark.prepare.aggregate`, computed when used, or None when no event
    is valid; and the report."""
    from recengine.spark import prepare as on_spark
    from recengine.spark.session import spark_session
    from recengine.spark.store import read_store

    schema = schema or EventSchema()
    session = spark_session(master, feature="preparing events on Spark", conf=spark_conf)
    if is_store_url(str(path)):
        events, report = read_store(session, str(path))
    else:
        events, report = on_spark.read_events(session, path, format=format, columns=columns,
                                              schema=schema, strict=strict)
    if not report.rows_accepted:
        return None, report
    return on_spark.aggregate(events, schema, weighting), report


def _store_events(url: str) -> tuple[pd.DataFrame, ValidationReport]:
    """An event store's servable events (:meth:`EventStore.dataset`'s), all accepted."""
    with EventStore(url) as store:
        events = store.dataset().events
    return events, ValidationReport(mask_url(url), len(events), len(events))
