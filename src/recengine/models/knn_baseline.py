"""kNN with baselines: a rating is its baseline plus what similar items the user rated say.

``r̂(u, i) = b_ui + Σ_j s_ij (r_uj − b_uj) / Σ_j s_ij`` over the items ``j`` of the user's
history among item ``i``'s ``neighbours`` most similar items, where ``b_ui = μ + b_u + b_i`` is
the damped bias baseline (:mod:`recengine.models.bias`). Items are compared by their
*residuals* ``r − b`` (the Pearson-baseline correlation of Koren 2008, Surprise's
``KNNBaseline`` with ``pearson_baseline``), shrunk by support: ``s_ij = cos(r'_i, r'_j) ·
n_ij / (n_ij + shrinkage)`` with ``n_ij`` the users who rated both, so a pair two users agree on
is no evidence yet. Only positive similarities are kept.

Why it is here beside matrix factorisation: it explains a rating by a handful of items the user
rated, which is a different error from a low-rank model's; the two blend well (the hybrid's
rating head reads both). The user's baseline ``b_u`` and residuals come from the query's
history, so events posted a moment ago, and new users, are scored without refitting; the
history's feedback is read as ratings (explicit data: the star value).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from recengine.data.query import Queries
from recengine.data.training_data import TrainingData, check_csr
from recengine.errors import DataError
from recengine.models.base import (
    Capability,
    ModelConfig,
    Recommender,
    Shape,
    TrainingOptions,
)
from recengine.models.bias import damped_means
from recengine.models.item_knn import neighbours
from recengine.progress import ProgressCallback

__all__ = ["KNNBaseline"]


class KNNBaseline(Recommender):
    """Item-based kNN on bias residuals; predicts ratings (RMSE and MAE apply).

    Examples
    --------
    >>> import pandas as pd
    >>> pairs = pd.DataFrame({"user_id": ["u", "u", "v", "v", "w", "w"],
    ...                       "item_id": ["a", "b", "a", "b", "a", "c"],
    ...                       "rating": [5.0, 4.0, 1.0, 2.0, 5.0, 3.0]})
    >>> model = KNNBaseline(shrinkage=0.0, damping=0.0).fit(
    ...     TrainingData.from_interactions(pairs.assign(feedback=pairs["rating"])))
    >>> # u and v agree on a and b (each above its baseline when the other is), and w rated a
    >>> # above its baseline: b is predicted above b's baseline for w
    >>> baseline = model.global_mean_ + model.item_bias_[model.items_.index(["b"])]
    >>> bool(model.score(["w"], ["b"])[0] > baseline[0])
    True
    """

    name = "knn-baseline"
    capabilities = frozenset({Capability.RATINGS, Capability.SIMILAR_ITEMS})

    class Config(ModelConfig):
        neighbours: int = Field(200, ge=1, description="Similar items kept per item; a "
                                "rating reads those of them the user rated.")
        shrinkage: float = Field(100.0, ge=0, description="Support shrinkage: a similarity "
                                 "is scaled by n / (n + shrinkage), n the users who rated "
                                 "both items.")
        damping: float = Field(5.0, ge=0, description="Pseudo-count shrinking the user and "
                               "item biases of the baseline.")

    config: Config

    state = ("global_mean_", "item_bias_", "similarity_data_", "similarity_indices_",
             "similarity_indptr_")
    global_mean_: np.ndarray
    item_bias_: np.ndarray
    #: ``S`` as CSR arrays: row ``i`` holds item ``i``'s neighbours and their similarities.
    similarity_data_: np.ndarray
    similarity_indices_: np.ndarray
    similarity_indptr_: np.ndarray
    #: Derived, not saved: ``Sᵀ`` (column ``i`` of the product is item ``i``'s neighbours).
    similarity_t_: sp.csr_array

    @classmethod
    def search_space(cls, fixed: Mapping[str, Any]) -> dict[str, tuple[str, float, float, bool]]:
        return {"neighbours": ("int", 5, 400, True), "shrinkage": ("float", 0.0, 500.0, False),
                "damping": ("float", 0.0, 50.0, False)}

    def state_shapes(self) -> dict[str, Shape]:
        return {"global_mean_": (), "item_bias_": ("items",)}

    def _train(self, data: TrainingData, options: TrainingOptions,
               progress: ProgressCallback | None) -> dict[str, Any]:
        if not data.has_ratings:
            raise DataError("knn-baseline needs explicit ratings; this data has none")
        ratings = data.ratings.tocsr()
        mu = float(ratings.data.mean())
        rows = np.repeat(np.arange(data.n_users), np.diff(ratings.indptr))
        item_bias = damped_means(ratings.indices, ratings.data - mu, data.n_items,
                            self.config.damping)
        user_bias = damped_means(rows, ratings.data - mu - item_bias[ratings.indices],
                            data.n_users, self.config.damping)
        residuals = ratings.data - mu - item_bias[ratings.indices] - user_bias[rows]
        items = sp.csr_array((residuals, ratings.indices, ratings.indptr),
                             shape=ratings.shape).T.tocsr()
        similar = neighbours(items, self.config.neighbours,
                             support_shrinkage=self.config.shrinkage, progress=progress)
        return _learned(mu, item_bias, similar)

    def _restore_state(self, arrays: Mapping[str, np.ndarray],
                       meta: Mapping[str, Any]) -> dict[str, Any]:
        n_items = len(arrays["item_bias_"])
        similar = check_csr("similarity", [arrays[f"similarity_{part}_"] for part in (
            "data", "indices", "indptr")], (n_items, n_items))
        return _learned(float(arrays["global_mean_"]), arrays["item_bias_"], similar)

    def _baselines(self, bag: sp.csr_array) -> tuple[np.ndarray, sp.csr_array]:
        """Each query's user bias, from its history as training computes it, and the
        history's residuals against the baseline."""
        rows = np.repeat(np.arange(bag.shape[0]), np.diff(bag.indptr))
        item_bias = self.item_bias_[bag.indices]
        user_bias = damped_means(rows, bag.data - self.global_mean_ - item_bias, bag.shape[0],
                            self.config.damping)
        residuals = bag.data - self.global_mean_ - item_bias - user_bias[rows]
        return user_bias, sp.csr_array((residuals.astype(np.float32), bag.indices, bag.indptr),
                                       shape=bag.shape)

    def _score(self, queries: Queries) -> np.ndarray:
        bag = queries.bag
        user_bias, residuals = self._baselines(bag)
        rated = sp.csr_array((np.ones(bag.nnz, np.float32), bag.indices, bag.indptr),
                             shape=bag.shape)
        weight = np.asarray((rated @ self.similarity_t_).toarray(), np.float32)
        pulled = np.asarray((residuals @ self.similarity_t_).toarray(), np.float32)
        offset = np.divide(pulled, weight, out=np.zeros_like(pulled), where=weight > 0)
        base = self.global_mean_ + user_bias[:, None] + self.item_bias_[None, :]
        return (base + offset).astype(np.float32)

    def _similar(self, items: np.ndarray) -> np.ndarray:
        return np.asarray(self.similarity_t_.T[np.asarray(items, np.int64)].toarray(),
                          np.float32)

    def _explain(self, queries: Queries, items: np.ndarray) -> list[str]:
        """The rated item that pulls each prediction furthest from its baseline."""
        user_bias, residuals = self._baselines(queries.bag[:1])
        row = residuals.sorted_indices()
        terms = (row.data[:, None] * self.similarity_t_[row.indices][
            :, np.asarray(items, np.int64)].toarray()) if row.nnz else np.zeros((0, len(items)))
        reasons = []
        for k, item in enumerate(np.asarray(items, np.int64).tolist()):
            base = float(self.global_mean_ + user_bias[0] + self.item_bias_[item])
            if not len(terms) or not terms[:, k].any():
                reasons.append(f"baseline {base:.2f}: no similar item you rated")
                continue
            strongest = int(np.argmax(np.abs(terms[:, k])))
            name = self.items_.id_of(row.indices[strongest:strongest + 1])[0]
            side = "above" if terms[strongest, k] > 0 else "below"
            reasons.append(f"baseline {base:.2f}; you rated the similar {name} {side} "
                           "its baseline")
        return reasons


def _learned(mu: float, item_bias: np.ndarray, similar: sp.csr_array) -> dict[str, Any]:
    """The saved arrays plus ``Sᵀ``, what scoring reads."""
    return {"global_mean_": np.asarray(mu, np.float32),
            "item_bias_": np.asarray(item_bias, np.float32),
            "similarity_data_": similar.data, "similarity_indices_": similar.indices,
            "similarity_indptr_": similar.indptr,
            "similarity_t_": sp.csr_array(similar.T.tocsr(), dtype=np.float32)}
