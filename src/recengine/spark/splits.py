"""The retrain's holdout splits of the per-pair table, on Spark, by the local definitions.

:mod:`recengine.data.splits` splits a pandas table; a retrain on Spark splits the aggregated
pairs (:func:`recengine.spark.prepare.aggregate`'s frame) where they are, so that only what a
model needs comes to the driver. The splits a retrain uses:

- :func:`time_cutoff`: the pairs last seen before the time that leaves ``test_fraction`` of
  them after it train, the rest test (users with no training pair dropped). The cut is the
  local one exactly: pandas' linear quantile of the pair times, truncated to whole seconds as
  pandas does for ``datetime64[s]``, from the two order statistics Spark finds.
- :func:`leave_last_n`: each user's ``n`` most recent pairs (ties broken by item id) test,
  when more remain. Equal to the local split.
- :func:`stratified` (the fallback for events without times): each user's
  ``round(n × test_fraction)`` pairs, at least one left to train, chosen by the local split's
  own random keys: NumPy's generator for the seed, drawn in (user, item) order; each
  partition of the sorted pairs advances its own generator to its first position
  (``PCG64.advance``), so no draw is shared between executors. Equal to the local split.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import pandas as pd

from recengine.data.splits import _check_fraction
from recengine.errors import DataError

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, Row

__all__ = ["SparkSplit", "leave_last_n", "make_split", "stratified", "time_cutoff"]


@dataclass(frozen=True)
class SparkSplit:
    """The training and test pairs as Spark frames (not cached: the caller that uses them
    more than once persists them), and the local split's description."""

    train: DataFrame
    test: DataFrame
    description: dict[str, object] = field(default_factory=dict)


def _seconds() -> Column:
    from pyspark.sql import functions as F

    return F.unix_seconds(F.col("timestamp"))


def _require_time(pairs: DataFrame, split: str) -> None:
    from pyspark.sql import functions as F

    if pairs.where(F.col("timestamp").isNull()).limit(1).count():
        raise DataError(f"the {split} split needs a timestamp on every event; this dataset has "
                        "events without one", column="timestamp")


def time_cutoff(pairs: DataFrame, test_fraction: float = 0.2) -> SparkSplit:
    """Pairs last seen before the cut train, the rest test, as
    :func:`recengine.data.splits.time_cutoff` without a given cutoff."""
    from pyspark.sql import functions as F

    _check_fraction("test_fraction", test_fraction)
    _require_time(pairs, "time")
    cut = _linear_quantile(pairs.select(_seconds().alias("s")), 1 - test_fraction)
    before = _seconds() < F.lit(cut)
    train = pairs.where(before)
    known = train.select("user_id").distinct()
    after = pairs.where(~before)
    test = after.join(known, "user_id", "left_semi")
    dropped = after.join(known, "user_id", "left_anti").count()
    if train.limit(1).count() == 0 or test.limit(1).count() == 0:
        raise DataError(f"cutoff {_timestamp(cut)} leaves an empty train or test set",
                        column="cutoff")
    return SparkSplit(train, test, {"split": "time", "cutoff": str(_timestamp(cut)),
                                    "test_pairs_of_new_users_dropped": int(dropped)})


def _timestamp(seconds: int) -> pd.Timestamp:
    return pd.Timestamp(seconds, unit="s")


def _linear_quantile(seconds: DataFrame, q: float) -> int:
    """pandas' ``quantile(q)`` of a ``datetime64[s]`` column: linear interpolation between
    the two order statistics around ``(n − 1)·q``, truncated to whole seconds; computed
    exactly (rationals), the order statistics found by a distributed sort."""
    n = seconds.count()
    if n == 0:
        raise DataError("no interactions to split")
    position = (n - 1) * Fraction(q)
    low = math.floor(position)
    wanted = {low, min(low + 1, n - 1)}
    found = dict(seconds.orderBy(seconds.columns[0]).rdd.zipWithIndex()
                 .filter(lambda pair: pair[1] in wanted)
                 .map(lambda pair: (pair[1], int(pair[0][0]))).collect())
    a, b = found[low], found[min(low + 1, n - 1)]
    return math.floor(a + (b - a) * (position - low))


def leave_last_n(pairs: DataFrame, n: int = 1) -> SparkSplit:
    """Each user's ``n`` most recent pairs (ties broken by item id) test, if more remain, as
    :func:`recengine.data.splits.leave_last_n`."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if n < 1:
        raise DataError(f"n must be at least 1, got {n}", column="n")
    _require_time(pairs, "leave-last-n")
    user = Window.partitionBy("user_id")
    newest = user.orderBy(F.col("timestamp").desc(), F.col("item_id").desc())
    marked = pairs.withColumn("_from_end", F.row_number().over(newest)).withColumn(
        "_size", F.count(F.lit(1)).over(user))
    test = (F.col("_from_end") <= n) & (F.col("_size") > n)
    return _parts(marked, test, ("_from_end", "_size"), {"split": "last", "n": n})


def stratified(pairs: DataFrame, test_fraction: float = 0.25, *, seed: int = 0) -> SparkSplit:
    """Each user's ``rint(n × test_fraction)`` pairs (at most ``n − 1``) test, as
    :func:`recengine.data.splits.stratified` chooses them: a pair's key is the draw of NumPy's
    generator for ``seed`` at the pair's position in (user, item) order, each partition of
    the sorted pairs jumping its own generator to its first position."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    _check_fraction("test_fraction", test_fraction)
    fields = [*pairs.schema.fields, T.StructField("_key", T.DoubleType()),
              T.StructField("_position", T.LongType())]
    keyed = (pairs.orderBy("user_id", "item_id").rdd.zipWithIndex()
             .mapPartitions(functools.partial(_draws, seed=seed))
             .toDF(T.StructType(fields)))
    user = Window.partitionBy("user_id")
    marked = keyed.withColumn("_rank", F.row_number().over(
        user.orderBy("_key", "_position"))).withColumn("_size", F.count(F.lit(1)).over(user))
    take = F.least(F.rint(F.col("_size") * test_fraction), F.col("_size") - 1)
    return _parts(marked, F.col("_rank") <= take, ("_key", "_position", "_rank", "_size"),
                  {"split": "stratified", "test_fraction": test_fraction, "seed": seed})


def _draws(rows: Iterable[tuple[Row, int]], *, seed: int) -> Iterator[tuple[Any, ...]]:
    """A partition's pairs with their keys (runs in a Spark worker): the NumPy generator of
    ``seed`` advanced to the partition's first position draws one double per pair, as the
    local split's ``default_rng(seed).random(n)`` does at those positions."""
    import numpy as np

    block = list(rows)
    if not block:
        return
    bits = np.random.PCG64(seed)
    bits.advance(block[0][1])
    keys = np.random.Generator(bits).random(len(block))
    for (row, position), key in zip(block, keys, strict=True):
        yield (*row, float(key), position)


def _parts(marked: DataFrame, test: Column, helpers: tuple[str, ...],
           description: dict[str, object]) -> SparkSplit:
    marked = marked.withColumn("_test", test).drop(*helpers)
    return SparkSplit(marked.where(~marked["_test"]).drop("_test"),
                      marked.where(marked["_test"]).drop("_test"), description)


def make_split(pairs: DataFrame, name: str, *, test_fraction: float, seed: int,
               last_n: int) -> SparkSplit:
    """The split a retrain names (``time``, ``last``, or the ``stratified`` fallback)."""
    if name == "time":
        return time_cutoff(pairs, test_fraction)
    if name == "last":
        return leave_last_n(pairs, last_n)
    if name == "stratified":
        return stratified(pairs, test_fraction, seed=seed)
    raise DataError(f"a retrain on Spark splits by time, last or stratified, not {name!r}",
                    column="holdout")
