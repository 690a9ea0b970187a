"""Batch jobs on Spark: top-k for every user and the audience of every item, as Parquet.

For a factor model (one with :attr:`~recengine.models.base.Capability.RETRIEVAL`: WALS,
spark-als, two-tower...), a score is ``q_u · v_i + c_u`` (its ``_embed`` and
``_item_vectors``). The rows to rank (users, or items) go to Spark in blocks, with their
vectors and what each has seen; the other side's vectors are broadcast once; each block is
scored with one matrix product and ranked by :func:`recengine.models.base.top_k`, the local
top-k (ties to the lower index), so the answers are the local model's. Seen items (or, for an
audience, users who already chose the item) are excluded, as ``recommend`` and ``audience`` do.

Output: one row per (user or item, rank): ``user_id, rank, item_id, score`` (top-k) or
``item_id, rank, user_id, score`` (audiences), ranks from 1, fewer rows where fewer candidates
are left.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from recengine.errors import EngineError
from recengine.models.base import Capability, Recommender, check_fitted, top_k
from recengine.spark.session import failure, spark_errors

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["top_k_lists", "write_audiences", "write_top_k"]

#: Rows per Arrow batch sent to Spark (and scored at once by a worker).
BLOCK_ROWS = 1024


def write_top_k(session: SparkSession, model: Recommender, k: int, path: str | Path, *,
                exclude_seen: bool = True) -> int:
    """Top-``k`` items for every training user of ``model``, written to Parquet at ``path``;
    returns the number of rows written."""
    with top_k_lists(session, model, k, exclude_seen=exclude_seen) as lists:
        return _write(lists, path)


@contextlib.contextmanager
def top_k_lists(session: SparkSession, model: Recommender, k: int,
                users: np.ndarray | None = None, *,
                exclude_seen: bool = True) -> Iterator[DataFrame]:
    """Top-``k`` items of the training users at indices ``users`` (default: all), as a
    frame ``user_id, rank, item_id, score`` computed when used, inside the block only (the
    vectors broadcast for it are freed after)."""
    rows = np.arange(len(model.users_)) if users is None else np.asarray(users)
    queries, items, offsets = _vectors(model, rows)
    seen = _seen(model, rows, users=True) if exclude_seen else None
    with _ranked(session, queries, offsets, items, seen, k,
                 ids=(model.users_.ids[rows], model.items_.ids),
                 names=("user_id", "item_id")) as lists:
        yield lists


def write_audiences(session: SparkSession, model: Recommender, n: int, path: str | Path, *,
                    exclude_seen: bool = True) -> int:
    """The ``n`` users most likely to choose each item, for every item of ``model``, written
    to Parquet at ``path``; returns the number of rows written."""
    queries, items, offsets = _vectors(model, np.arange(len(model.users_)))
    seen = _seen(model, np.arange(len(model.items_)), users=False) if exclude_seen else None
    # Rows are items: a user's offset is added to every score of theirs, a column here.
    with _ranked(session, items, None, queries, seen, n,
                 ids=(model.items_.ids, model.users_.ids), names=("item_id", "user_id"),
                 column_offsets=offsets) as audiences:
        return _write(audiences, path)


def _vectors(model: Recommender, users: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The query vectors of the training users ``users``, the item vectors and the users'
    offsets."""
    check_fitted(model)
    if not model.supports(Capability.RETRIEVAL):
        raise EngineError(f"{model.name} has no vector form: batch jobs on Spark score "
                          "factor models (wals, spark-als, two-tower)")
    queries, offsets = model._embed(model.training_queries(users))
    return (np.ascontiguousarray(queries, np.float32), np.ascontiguousarray(
        model._item_vectors(), np.float32), np.asarray(offsets, np.float32))


def _seen(model: Recommender, rows: np.ndarray, *, users: bool) -> sp.csr_array:
    """Per row, the columns to leave out: each user's items, or each item's users."""
    if users:
        indptr, indices = model.training_queries(rows).seen()
        return sp.csr_array((np.ones(len(indices), np.float32), indices, indptr),
                            shape=(len(rows), len(model.items_)))
    return sp.csr_array(model._histories().item_users(rows))


def _write(ranked: DataFrame, path: str | Path) -> int:
    """``ranked`` written to Parquet at ``path``; the number of rows written."""
    try:
        ranked.write.mode("overwrite").parquet(str(path))
        return int(ranked.sparkSession.read.parquet(str(path)).count())
    except spark_errors() as exc:
        raise EngineError(f"the batch job failed on Spark: {failure(exc)}") from None


@contextlib.contextmanager
def _ranked(session: SparkSession, rows: np.ndarray, row_offsets: np.ndarray | None,
            columns: np.ndarray, seen: sp.csr_array | None, k: int, *,
            ids: tuple[np.ndarray, np.ndarray], names: tuple[str, str],
            column_offsets: np.ndarray | None = None) -> Iterator[DataFrame]:
    """The top-k of ``rows @ columns.T`` (+ offsets), scored on Spark block by block, as a
    frame usable inside the block (``columns`` are broadcast until it ends)."""
    from pyspark.sql import types as T

    context = session.sparkContext
    shared = context.broadcast({"columns": columns, "column_offsets": column_offsets,
                                "row_ids": ids[0], "column_ids": ids[1]})
    if seen is None:
        seen = sp.csr_array((len(rows), len(columns)), dtype=np.float32)
    width = rows.shape[1]
    table = pa.table({
        "row": pa.array(np.arange(len(rows), dtype=np.int32)),
        "vector": pa.ListArray.from_arrays(
            pa.array(np.arange(len(rows) + 1, dtype=np.int32) * width), pa.array(rows.ravel())),
        "offset": pa.array(np.zeros(len(rows), np.float32) if row_offsets is None
                           else row_offsets),
        "seen": pa.ListArray.from_arrays(pa.array(seen.indptr.astype(np.int32)),
                                         pa.array(seen.indices.astype(np.int32))),
    })
    out = T.StructType([T.StructField(names[0], T.StringType()),
                        T.StructField("rank", T.IntegerType()),
                        T.StructField(names[1], T.StringType()),
                        T.StructField("score", T.FloatType())])

    def rank(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        value: dict[str, Any] = shared.value
        for batch in batches:
            yield _rank_block(batch, value, k, names)

    frame = session.createDataFrame(table).repartition(max(1, -(-len(rows) // BLOCK_ROWS)))
    try:
        yield frame.mapInArrow(rank, out)
    finally:
        shared.unpersist()


def _rank_block(batch: pa.RecordBatch, shared: dict[str, Any], k: int,
                names: tuple[str, str]) -> pa.RecordBatch:
    """One block's top-k, as output rows (runs in a Spark worker)."""
    columns: np.ndarray = shared["columns"]
    rows = batch.column("row").to_numpy()
    vectors = np.asarray(batch.column("vector").flatten().to_numpy(), np.float32).reshape(
        len(rows), columns.shape[1])
    scores = vectors @ columns.T + batch.column("offset").to_numpy()[:, None]
    if shared["column_offsets"] is not None:
        scores += shared["column_offsets"][None, :]
    seen = batch.column("seen")
    lengths = np.asarray(seen.value_lengths().fill_null(0).to_numpy(), np.int64)
    flat = np.asarray(seen.flatten().to_numpy(), np.int64)
    scores[np.repeat(np.arange(len(rows)), lengths), flat] = -np.inf
    idx, val = top_k(scores, min(k, columns.shape[0]))
    keep = idx >= 0
    which = np.repeat(np.arange(len(rows)), keep.sum(axis=1))
    return pa.RecordBatch.from_arrays(
        [pa.array(shared["row_ids"][rows[which]].astype(str)),
         pa.array(np.nonzero(keep)[1].astype(np.int32) + 1),
         pa.array(shared["column_ids"][idx[keep]].astype(str)),
         pa.array(val[keep].astype(np.float32))],
        names=[names[0], "rank", names[1], "score"])
