"""What item-to-item models share: a user's scores are their history times an item × item matrix.

``score(u, j) = Σ_i x_ui · W[i, j]``: each item ``i`` of the history lends its row of ``W`` to
the items it points to. EASE learns ``W`` in closed form (:mod:`recengine.models.ease`), item-kNN
keeps each item's nearest neighbours (:mod:`recengine.models.item_knn`); both score, find similar
items, explain and target audiences the same way, written once here (as implicit's
``ItemItemRecommender`` does for its neighbourhood models).

Nothing is learned per user: the history comes with the query (:attr:`Queries.bag`), so a new
user, an anonymous session or events posted a moment ago are scored exactly as a training user
is, without refitting. ``x_ui`` is 1 for every item of the history with ``binary=True`` (an
observed pair counts, however strong), else the pair's feedback; training reads the same
(:func:`interactions`), so the two always agree.
"""

from __future__ import annotations

from abc import abstractmethod

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from recengine.data.query import Queries
from recengine.models.base import Capability, ModelConfig, Recommender

__all__ = ["ItemItemConfig", "ItemToItem", "interactions"]


class ItemItemConfig(ModelConfig):
    """The options every item-to-item model has."""

    binary: bool = Field(
        True, description="Count each observed pair as 1 (True), or weigh it by its feedback "
        "(stars, summed event weights) in training and in the query's history.")


def interactions(matrix: sp.csr_array, binary: bool) -> sp.csr_array:
    """``matrix`` (users × items, or one row per query) as float32, its stored entries set to 1
    when ``binary`` (explicit zeros too: an observed pair with zero feedback is still observed).

    >>> rows = sp.csr_array(np.array([[0.0, 4.0], [2.0, 0.0]]))
    >>> interactions(rows, binary=True).toarray().tolist()
    [[0.0, 1.0], [1.0, 0.0]]
    """
    data = np.ones(matrix.nnz, np.float32) if binary else matrix.data.astype(np.float32)
    return sp.csr_array((data, matrix.indices, matrix.indptr), shape=matrix.shape)


def _dense(product: np.ndarray | sp.sparray) -> np.ndarray:
    if isinstance(product, sp.sparray):
        product = product.toarray()
    return np.asarray(product, dtype=np.float32)


class ItemToItem(Recommender):
    """Base of the item-to-item models: subclasses learn ``W`` (:meth:`_item_weights`)."""

    needs_history = True  # an empty history scores every item 0
    capabilities = frozenset({Capability.SIMILAR_ITEMS})
    config: ItemItemConfig

    @abstractmethod
    def _item_weights(self) -> np.ndarray | sp.csr_array:
        """``W`` ``[n_items, n_items]``: what each history item adds to each item's score."""

    def _rows(self, queries: Queries) -> sp.csr_array:
        return interactions(queries.bag, self.config.binary)

    def _score(self, queries: Queries) -> np.ndarray:
        return _dense(self._rows(queries) @ self._item_weights())

    def _similar(self, items: np.ndarray) -> np.ndarray:
        """Row ``W[i]``: what having chosen ``i`` adds to each item (0 on the diagonal)."""
        return _dense(self._item_weights()[np.asarray(items, dtype=np.int64)])

    def _item_scores(self, items: np.ndarray) -> np.ndarray:
        """Every training user's score for each item: one product, not a pass over all users."""
        rows = self._rows(self.training_queries(np.arange(len(self.users_))))
        columns = self._item_weights()[:, np.asarray(items, dtype=np.int64)]
        return _dense(rows @ columns).T

    def _explain(self, queries: Queries, items: np.ndarray) -> list[str]:
        """Names the history item whose term ``x_ui · W[i, j]`` adds most to each item."""
        row = self._rows(queries[:1]).sorted_indices()  # a copy: the bag may be a view
        if row.nnz == 0:
            return ["no history to compare with"] * len(items)
        terms = row.data[:, None] * _dense(
            self._item_weights()[row.indices][:, np.asarray(items, dtype=np.int64)])
        best = np.argmax(terms, axis=0)  # ties: the first of the history in item order
        names = self.items_.id_of(row.indices[best])
        return [f"because you chose {name}" if terms[b, k] > 0 else
                "nothing you chose points to it" for k, (b, name) in
                enumerate(zip(best.tolist(), names.tolist(), strict=True))]
