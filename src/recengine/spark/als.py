"""MLlib's ALS on index pairs: factors in, dense NumPy factor arrays out.

The caller owns the vocabularies: users and items arrive as int32 indices, and the factors
come back as ``[n_users, rank]`` and ``[n_items, rank]`` arrays in index order, zero rows for
indices without a pair (MLlib learns nothing for them, and neither does WALS: with no pairs its
normal equations solve to zero).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from recengine.errors import EngineError
from recengine.spark.session import failure, spark_errors

if TYPE_CHECKING:
    from pyspark import SparkContext
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["AlsSettings", "IndexedPairs", "ensure_checkpoints", "factor_array", "fit_als",
           "index_pairs", "pairs_frame", "row_counts", "with_row_weights"]


@dataclass(frozen=True)
class AlsSettings:
    """MLlib ALS's parameters, by MLlib's names' meaning (``reg_param`` is multiplied by each
    row's number of pairs; ``blocks`` 0 is MLlib's default of 10 user and 10 item blocks)."""

    rank: int
    iterations: int
    reg_param: float
    implicit: bool
    alpha: float
    seed: int
    blocks: int = 0


def pairs_frame(session: SparkSession, users: np.ndarray, items: np.ndarray,
                values: np.ndarray) -> DataFrame:
    """A DataFrame ``(user int, item int, rating float)`` from index arrays, through Arrow."""
    table = pa.table({"user": pa.array(users, pa.int32()), "item": pa.array(items, pa.int32()),
                      "rating": pa.array(values, pa.float32())})
    return session.createDataFrame(table)


@dataclass(frozen=True)
class IndexedPairs:
    """Aggregated pairs on Spark under vocabularies held here.

    ``frame`` has ``user int, item int, feedback float, rating float`` (``rating`` null for
    a pair without one); ``users`` and ``items`` are the ids in index order, the order
    :meth:`~recengine.data.training_data.TrainingData.from_interactions` gives the same
    pairs collected in :func:`~recengine.spark.prepare.pairs_to_pandas`'s order (users by
    id; items by first appearance, i.e. by their first user, then id), so a model fitted here
    and the histories collected there index alike.
    """

    frame: DataFrame
    users: np.ndarray
    items: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.users), len(self.items)


def index_pairs(pairs: DataFrame) -> IndexedPairs:
    """:func:`recengine.spark.prepare.aggregate`'s pairs indexed by vocabularies built on
    Spark; only the ids come here (a model holds them anyway), never the pairs."""
    from pyspark.sql import functions as F

    session = pairs.sparkSession
    pairs = pairs.withColumns({"user_id": F.col("user_id").cast("string"),
                               "item_id": F.col("item_id").cast("string")})
    users = pairs.select("user_id").distinct().orderBy("user_id")
    items = (pairs.groupBy("item_id").agg(F.min("user_id").alias("first_user"))
             .orderBy("first_user", "item_id").select("item_id"))
    try:
        user_ids = _ids(users, "user_id")
        item_ids = _ids(items, "item_id")
        indices = [session.createDataFrame(pa.table({
            f"{side}_id": pa.array(ids, pa.string()),
            side: pa.array(np.arange(len(ids), dtype=np.int32))}))
            for side, ids in (("user", user_ids), ("item", item_ids))]
    except spark_errors() as exc:
        raise EngineError(f"indexing the pairs failed on Spark: {failure(exc)}") from None
    frame = (pairs.join(indices[0], "user_id").join(indices[1], "item_id")
             .select("user", "item", F.col("feedback").cast("float").alias("feedback"),
                     F.col("rating").cast("float").alias("rating")))
    return IndexedPairs(frame, user_ids, item_ids)


def with_row_weights(frame: DataFrame, user_weights: np.ndarray,
                     item_weights: np.ndarray) -> DataFrame:
    """``frame`` (``user, item, ...``) with columns ``user_weight`` and ``item_weight``: the
    weight of each pair's row by index (a join only for a side whose weights are not all 1)."""
    from pyspark.sql import functions as F

    for side, weights in (("user", user_weights), ("item", item_weights)):
        if np.all(weights == 1):
            frame = frame.withColumn(f"{side}_weight", F.lit(1.0).cast("float"))
        else:
            table = pa.table({side: pa.array(np.arange(len(weights), dtype=np.int32)),
                              f"{side}_weight": pa.array(weights, pa.float32())})
            frame = frame.join(frame.sparkSession.createDataFrame(table), side)
    return frame


def _ids(frame: DataFrame, column: str) -> np.ndarray:
    """``frame``'s ``column`` here, in the frame's order, as an object array of str."""
    return np.asarray(frame.toArrow().column(column).to_pylist(), dtype=object)


def row_counts(frame: DataFrame, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Pairs per user and per item of ``frame`` (``user, item, ...`` indices), as arrays of
    ``shape``'s sizes in index order."""
    return _by_index(frame, "user", shape[0]), _by_index(frame, "item", shape[1])


def _by_index(frame: DataFrame, column: str, size: int) -> np.ndarray:
    """Rows of ``frame`` per value of the index ``column``, as an array of ``size``."""
    table = frame.groupBy(column).count().toArrow()
    out = np.zeros(size, np.int64)
    out[table.column(column).to_numpy()] = table.column("count").to_numpy()
    return out


def fit_als(frame: DataFrame, settings: AlsSettings, shape: tuple[int, int],
            ) -> tuple[np.ndarray, np.ndarray]:
    """Train ALS on ``frame`` (:func:`pairs_frame`'s columns); user and item factors as
    float32 arrays of ``shape``'s sizes. A failed Spark job is :class:`EngineError`."""
    from pyspark.ml.recommendation import ALS

    blocks: dict[str, Any] = ({"numUserBlocks": settings.blocks,
                               "numItemBlocks": settings.blocks} if settings.blocks else {})
    als = ALS(rank=settings.rank, maxIter=settings.iterations, regParam=settings.reg_param,
              implicitPrefs=settings.implicit, alpha=settings.alpha, seed=settings.seed,
              nonnegative=False, userCol="user", itemCol="item", ratingCol="rating",
              checkpointInterval=CHECKPOINT_EVERY, **blocks)
    ensure_checkpoints(frame.sparkSession.sparkContext)
    try:
        fitted = als.fit(frame)
        users = factor_array(fitted.userFactors, shape[0], settings.rank)
        items = factor_array(fitted.itemFactors, shape[1], settings.rank)
    except spark_errors() as exc:
        raise EngineError(f"ALS failed on Spark: {failure(exc)}") from None
    return users, items


#: Iterations between checkpoints of the factors: without them, each iteration lengthens the
#: RDD lineage, and 15 iterations overflowed the JVM's stack on MovieLens 100K.
CHECKPOINT_EVERY = 5


def ensure_checkpoints(context: SparkContext) -> None:
    """Give the session a checkpoint folder when it has none: on a local master a temporary
    folder, removed when the process exits (MLlib deletes each checkpoint once the next is
    written); a cluster needs shared storage, which only its owner can name. Commands call it
    as soon as their session starts, and a retrain on Spark (from Python or the scheduler too)
    before its first job, so that a cluster without one is told before any work."""
    if context.getCheckpointDir() is not None:
        return
    if not str(context.master).startswith("local"):
        raise EngineError("ALS on a cluster needs a checkpoint folder on storage every "
                          "executor reaches: set spark.checkpoint.dir (recengine train "
                          "--spark-conf spark.checkpoint.dir=URL) or call "
                          "sparkContext.setCheckpointDir(URL)")
    folder = tempfile.mkdtemp(prefix="recengine-als-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    context.setCheckpointDir(folder)


def factor_array(factors: DataFrame, n_rows: int, rank: int) -> np.ndarray:
    """MLlib's ``(id, features)`` factor table as a dense ``[n_rows, rank]`` array by id."""
    table = factors.select("id", "features").toArrow()
    out = np.zeros((n_rows, rank), np.float32)
    if table.num_rows:
        ids = table.column("id").to_numpy()
        values = table.column("features").combine_chunks().flatten().to_numpy()
        out[ids] = np.asarray(values, np.float32).reshape(len(ids), rank)
    return out
