"""Ranking metrics on Spark, by the local definitions (:mod:`recengine.evaluation.metrics`).

For test sets too large to collect: the recommended lists (``user_id, rank, item_id``, ranks
from 1: :func:`recengine.spark.batch.write_top_k`'s table) and the relevant pairs
(``user_id, item_id``) stay on Spark, and only the means come back. The definitions are the
local ones: precision@k over k (padding charged), recall@k over the user's relevant items,
nDCG@k with binary gains, a log2 discount and the ideal of min(R, k) hits, AP@k over
min(R, k), reciprocal rank (0 without a hit), hit rate; an item a list repeats counts at its
best rank only. Users are those with something relevant; one without a list scores 0 (the
local evaluator drops users it cannot score before measuring).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from recengine.errors import EngineError
from recengine.spark.session import failure, spark_errors

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["ranking_metrics"]

#: The metrics computed, by the local evaluator's names.
METRICS = ("precision", "recall", "ndcg", "map", "mrr", "hit_rate")


def ranking_metrics(recommended: DataFrame, relevant: DataFrame,
                    ks: Sequence[int] = (10,)) -> dict[str, float]:
    """``{"precision@10": ..., "ndcg@10": ...}``: each metric's mean over the users with
    something relevant, at each cut-off of ``ks``."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    rel = relevant.select("user_id", "item_id").distinct()
    n_relevant = rel.groupBy("user_id").agg(F.count(F.lit(1)).alias("n"))
    best = recommended.groupBy("user_id", "item_id").agg(F.min("rank").alias("rank"))
    hits = best.join(rel, ["user_id", "item_id"]).withColumn(
        "found", F.row_number().over(Window.partitionBy("user_id").orderBy("rank")))
    rank, found = F.col("rank"), F.col("found")
    aggregates = []
    for k in ks:
        within = rank <= k
        aggregates += [
            F.sum(F.when(within, 1).otherwise(0)).alias(f"h{k}"),
            F.sum(F.when(within, 1.0 / F.log2(rank + 1)).otherwise(0.0)).alias(f"dcg{k}"),
            F.sum(F.when(within, found / rank).otherwise(0.0)).alias(f"ap{k}"),
            F.min(F.when(within, rank)).alias(f"first{k}"),
        ]
    per_user = n_relevant.join(hits.groupBy("user_id").agg(*aggregates), "user_id", "left")
    n = F.col("n")
    means = []
    for k in ks:
        h = F.coalesce(F.col(f"h{k}"), F.lit(0))
        top = F.least(n, F.lit(k))
        ideal = F.aggregate(F.sequence(F.lit(1), top), F.lit(0.0),
                            lambda total, i: total + 1.0 / F.log2(i + 1))
        first = F.col(f"first{k}")
        means += [
            F.avg(h / k).alias(f"precision@{k}"),
            F.avg(h / n).alias(f"recall@{k}"),
            F.avg(F.coalesce(F.col(f"dcg{k}"), F.lit(0.0)) / ideal).alias(f"ndcg@{k}"),
            F.avg(F.coalesce(F.col(f"ap{k}"), F.lit(0.0)) / top).alias(f"map@{k}"),
            F.avg(F.when(first.isNull(), 0.0).otherwise(1.0 / first)).alias(f"mrr@{k}"),
            F.avg(F.when(h > 0, 1.0).otherwise(0.0)).alias(f"hit_rate@{k}"),
        ]
    try:
        row = per_user.agg(*means).first()
    except spark_errors() as exc:
        raise EngineError(f"the metrics job failed on Spark: {failure(exc)}") from None
    assert row is not None  # an aggregate without grouping has one row
    return {name: float("nan") if value is None else float(value)
            for name, value in row.asDict().items()}
