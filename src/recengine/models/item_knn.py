"""Item-kNN: each item's nearest neighbours by co-occurrence, as implicit's item-item models.

Each item is a vector over the training users who chose it (a column of the user × item matrix),
optionally reweighted first, and two items are as similar as their vectors:

- ``weighting``: ``none`` (the feedback, or 1 with ``binary``); ``tfidf``, ``√x · idf_u``;
  ``bm25``, ``x (K1 + 1) / (K1 · len_i + x) · idf_u``, with ``idf_u = log N − log(1 + n_u)``
  (``N`` items, ``n_u`` the items user ``u`` chose) and ``len_i = 1 − B + B · |x_i| / mean|x|``
  (item ``i``'s summed weight over the mean): a prolific user says less about two items they
  both chose, and BM25's saturation keeps one heavy pair from dominating;
- ``similarity``: ``cosine``, ``x_i · x_j / (‖x_i‖ ‖x_j‖ + shrinkage)``, or ``dot``, ``x_i · x_j``.
  Shrinkage pulls the similarity of items seen by few users towards 0 (a pair co-chosen by two
  users out of two is no evidence yet).

implicit's ``CosineRecommender`` is ``none`` + ``cosine``, its ``TFIDFRecommender`` ``tfidf`` +
``cosine``, its ``BM25Recommender`` ``bm25`` + ``dot`` (same K1 = 1.2 and B = 0.75 by default).
Unlike implicit, an item is not its own neighbour.

Only each item's ``neighbours`` most similar items are kept (ties: the lower index), and only
positive similarities: ``S`` is sparse, ``n_items × neighbours`` at most, so catalogues of
millions of items fit, and scoring a request is one sparse product, ``x_u S``, that reads only
the history's rows (then one pass over the catalogue's scores for the top-k: about half a
millisecond of CPU for a 50-event history over 100,000 items, docs/benchmarks.md). Training
computes ``S`` a block of items at a time, so its memory is bounded by the block, not by
``n_items²``. Items none of a history's items reaches score 0.

Saved as arrays: ``S`` in CSR parts and each item's number of training users.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field, model_validator

from recengine.data.training_data import TrainingData, check_csr, csr_from_pairs
from recengine.models.base import Shape, TrainingOptions
from recengine.models.item_item import ItemItemConfig, ItemToItem, interactions
from recengine.progress import ProgressCallback

__all__ = ["ItemKNN", "neighbours", "weigh"]

#: Entries of one block's product (block × n_items) computed at once while training: bounds
#: the memory of a fit whatever the catalogue (some 80 bytes an entry while it is pruned: about
#: 330 MB when co-occurrence fills a block).
_BLOCK_ENTRIES = 1 << 22


class ItemKNN(ItemToItem):
    """Item-item nearest neighbours (cosine, TF-IDF or BM25); scores are ``history @ S``.

    Examples
    --------
    >>> import pandas as pd
    >>> pairs = pd.DataFrame({"user_id": ["u", "u", "v", "v", "v", "w", "w"],
    ...                       "item_id": ["a", "b", "a", "b", "c", "c", "d"],
    ...                       "rating": float("nan"), "feedback": 1.0})
    >>> model = ItemKNN(neighbours=2).fit(TrainingData.from_interactions(pairs))
    >>> ids, scores = model.similar_items("a", n=2)  # a and b: the same two users
    >>> ids.tolist(), [round(float(s), 3) for s in scores]  # 1 / (√2 · √2), 1 / (√2 · √2)
    (['b', 'c'], [1.0, 0.5])
    >>> model.recommend_history(["d"], n=1)[0].tolist()
    ['c']
    >>> model.explain_history(["a", "d"], ["c"])
    ['because you chose d']
    """

    name = "item-knn"

    class Config(ItemItemConfig):
        neighbours: int = Field(
            100, ge=1, description="Similar items kept per item: more ranks more of the "
            "catalogue for short histories, and costs memory and scoring time.")
        weighting: Literal["none", "tfidf", "bm25"] = Field(
            "none", description="How each user's pair is weighed before comparing items: as "
            "it is, TF-IDF, or BM25 (prolific users count less).")
        similarity: Literal["cosine", "dot"] = Field(
            "cosine", description="Cosine of the weighted item vectors, or their dot product "
            "(implicit's BM25Recommender).")
        shrinkage: float = Field(
            0.0, ge=0, description="Added to the cosine's denominator: pulls the similarity of "
            "rarely chosen items towards 0.")
        bm25_k1: float = Field(1.2, ge=0, description="BM25's saturation: larger lets a "
                               "pair's feedback count for longer.")
        bm25_b: float = Field(0.75, ge=0, le=1, description="BM25's length normalisation: "
                              "1 divides by the item's weight relative to the mean, 0 not.")

        @model_validator(mode="after")
        def _shrink_cosines_only(self) -> ItemKNN.Config:
            if self.shrinkage > 0 and self.similarity != "cosine":
                raise ValueError("shrinkage applies to the cosine's denominator; with "
                                 "similarity='dot' set it to 0")
            return self

    config: Config

    state = ("similarity_data_", "similarity_indices_", "similarity_indptr_", "item_counts_")
    #: ``S`` as CSR arrays: row ``i`` holds item ``i``'s neighbours and their similarities.
    similarity_data_: np.ndarray
    similarity_indices_: np.ndarray
    similarity_indptr_: np.ndarray
    #: Distinct training users of each item (sizes the catalogue when a state is restored).
    item_counts_: np.ndarray
    #: Derived, not saved: ``S`` as a matrix.
    similarity_: sp.csr_array

    @classmethod
    def search_space(cls, fixed: Mapping[str, Any]) -> dict[str, tuple[str, float, float, bool]]:
        space: dict[str, tuple[str, float, float, bool]] = {
            "neighbours": ("int", 10, 1000, True)}
        if fixed.get("similarity", "cosine") == "cosine":
            space["shrinkage"] = ("float", 0.0, 100.0, False)
        if fixed.get("weighting") == "bm25":
            space |= {"bm25_k1": ("float", 0.1, 5.0, True), "bm25_b": ("float", 0.0, 1.0, False)}
        return space

    def state_shapes(self) -> dict[str, Shape]:
        return {"item_counts_": ("items",)}  # S: checked whole by _restore_state

    def _train(self, data: TrainingData, options: TrainingOptions,
               progress: ProgressCallback | None) -> dict[str, Any]:
        cfg = self.config
        vectors = weigh(interactions(data.feedback, cfg.binary).T.tocsr(), cfg.weighting,
                        k1=cfg.bm25_k1, b=cfg.bm25_b)
        similar = neighbours(vectors, cfg.neighbours, cosine=cfg.similarity == "cosine",
                             shrinkage=cfg.shrinkage, progress=progress)
        return _learned(similar.data, similar.indices, similar.indptr, data.item_counts())

    def _restore_state(self, arrays: Mapping[str, np.ndarray],
                       meta: Mapping[str, Any]) -> dict[str, Any]:
        n_items = len(arrays["item_counts_"])
        similar = check_csr("similarity", [arrays[f"similarity_{part}_"] for part in (
            "data", "indices", "indptr")], (n_items, n_items))
        return _learned(similar.data, similar.indices, similar.indptr, arrays["item_counts_"])

    def _item_weights(self) -> sp.csr_array:
        return self.similarity_


def weigh(items: sp.csr_array, weighting: str, *, k1: float = 1.2,
          b: float = 0.75) -> sp.csr_array:
    """Item vectors (items × users, CSR) reweighted: ``none``, ``tfidf`` or ``bm25`` (see the
    module docstring; implicit's ``tfidf_weight`` and ``bm25_weight`` on ``user_items.T``).

    >>> items = sp.csr_array(np.array([[4.0, 1.0], [0.0, 1.0], [0.0, 0.0], [0.0, 0.0]]))
    >>> weigh(items, "tfidf").toarray().astype(float).round(3).tolist()  # idf log 4 − log 2, 3
    [[1.386, 0.288], [0.0, 0.288], [0.0, 0.0], [0.0, 0.0]]
    """
    if weighting == "none":
        return items
    n_items = items.shape[0]
    users = items.indices
    idf = np.log(n_items) - np.log1p(np.bincount(users, minlength=items.shape[1]))
    x = items.data.astype(np.float64)
    if weighting == "tfidf":
        data = np.sqrt(x) * idf[users]
    else:
        lengths = np.asarray(items.sum(axis=1), dtype=np.float64).ravel()
        mean = lengths.mean() if n_items else 1.0
        norm = (1.0 - b) + b * lengths / (mean if mean > 0 else 1.0)
        rows = np.repeat(np.arange(n_items), np.diff(items.indptr))
        data = x * (k1 + 1.0) / (k1 * norm[rows] + x) * idf[users]
    return sp.csr_array((data.astype(np.float32), items.indices, items.indptr),
                        shape=items.shape)


def neighbours(items: sp.csr_array, k: int, *, cosine: bool = True, shrinkage: float = 0.0,
               support_shrinkage: float = 0.0,
               progress: ProgressCallback | None = None) -> sp.csr_array:
    """``S`` (items × items, CSR): each item's ``k`` most similar other items with a positive
    similarity, ``x_i · x_j`` divided by ``‖x_i‖ ‖x_j‖ + shrinkage`` when ``cosine``, and
    times ``n_ij / (n_ij + support_shrinkage)`` when that is positive (``n_ij``: the users
    with an entry for both items).

    Computed a block of item rows at a time (:data:`_BLOCK_ENTRIES`); ties keep the lower index.

    >>> items = sp.csr_array(np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 1.0, 1.0]]))
    >>> neighbours(items, 1).toarray().round(3).tolist()
    [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.5, 0.0, 0.0]]
    """
    n_items = items.shape[0]
    norms = np.sqrt(np.asarray(items.multiply(items).sum(axis=1), dtype=np.float64)).ravel()
    users_items = items.T.tocsr()
    present = sp.csr_array((np.ones(items.nnz, np.float32), items.indices, items.indptr),
                           shape=items.shape)
    present_t = present.T.tocsr()
    block = max(1, _BLOCK_ENTRIES // max(n_items, 1))
    parts = []
    for start in range(0, n_items, block):
        stop = min(start + block, n_items)
        product = items[start:stop] @ users_items
        if support_shrinkage > 0:
            support = present[start:stop] @ present_t
            support.data = support.data / (support.data + support_shrinkage)
            product = product.multiply(support)
        product = sp.coo_array(product)
        rows, cols = product.row.astype(np.int64) + start, product.col.astype(np.int64)
        values = product.data.astype(np.float64)
        if cosine:
            values = values / (norms[rows] * norms[cols] + shrinkage)
        keep = (rows != cols) & (values > 0)
        parts.append(_top_per_row(rows[keep], cols[keep], values[keep], k))
        if progress is not None:
            progress("item-knn neighbours", stop, n_items)
    rows, cols, values = (np.concatenate(column) for column in zip(*parts, strict=True))
    return csr_from_pairs(rows.astype(np.int64), cols.astype(np.int64), values,
                          (n_items, n_items))


def _top_per_row(rows: np.ndarray, cols: np.ndarray, values: np.ndarray,
                 k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``k`` largest entries of each row (ties: the lower column), vectorised."""
    order = np.lexsort((cols, -values, rows))
    rows, cols, values = rows[order], cols[order], values[order]
    first = np.ones(len(rows), dtype=bool)
    first[1:] = rows[1:] != rows[:-1]
    starts = np.maximum.accumulate(np.where(first, np.arange(len(rows)), 0))
    keep = np.arange(len(rows)) - starts < k
    return rows[keep], cols[keep], values[keep]


def _learned(data: np.ndarray, indices: np.ndarray, indptr: np.ndarray,
             item_counts: np.ndarray) -> dict[str, Any]:
    """The saved arrays plus what is derived from them."""
    n_items = len(item_counts)
    similar = sp.csr_array((np.asarray(data, np.float32), np.asarray(indices, np.int32),
                            np.asarray(indptr, np.int64)), shape=(n_items, n_items))
    return {"similarity_data_": similar.data, "similarity_indices_": similar.indices,
            "similarity_indptr_": similar.indptr,
            "item_counts_": np.asarray(item_counts, dtype=np.int64), "similarity_": similar}
