"""Rating baseline: global mean plus damped user and item biases.

``r̂(u, i) = μ + b_i + b_u``, with ``b_i = Σ(r − μ) / (n_i + damping)`` and
``b_u = Σ(r − μ − b_i) / (n_u + damping)``. Damping pulls the biases of items and users with few
ratings towards zero. The yardstick for rating prediction (RMSE, MAE); as a ranker it recommends
well-rated items.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from recengine.data.query import Queries
from recengine.data.training_data import TrainingData
from recengine.errors import DataError
from recengine.models.base import Capability, ModelConfig, Recommender, Shape, TrainingOptions
from recengine.progress import ProgressCallback

__all__ = ["Bias", "damped_means"]


class Bias(Recommender):
    """Global mean + item bias + user bias, learned from explicit ratings."""

    name = "bias"
    capabilities = frozenset({Capability.RATINGS})

    class Config(ModelConfig):
        damping: float = Field(5.0, ge=0, description="Pseudo-count shrinking small biases.")

    config: Config

    state = ("global_mean_", "item_bias_", "user_bias_")
    global_mean_: np.ndarray
    item_bias_: np.ndarray
    user_bias_: np.ndarray

    def state_shapes(self) -> dict[str, Shape]:
        return {"global_mean_": (), "item_bias_": ("items",), "user_bias_": ("users",)}

    def _train(self, data: TrainingData, options: TrainingOptions,
               progress: ProgressCallback | None) -> dict[str, Any]:
        if not data.has_ratings:
            raise DataError("the bias model needs explicit ratings; this data has none")
        r = data.ratings.tocoo()
        damping = self.config.damping
        mu = float(r.data.mean())
        item_bias = damped_means(r.col, r.data - mu, data.n_items, damping)
        user_bias = damped_means(r.row, r.data - mu - item_bias[r.col], data.n_users, damping)
        return {"global_mean_": np.asarray(mu, dtype=np.float32),
                "item_bias_": item_bias.astype(np.float32),
                "user_bias_": user_bias.astype(np.float32)}

    def _score(self, queries: Queries) -> np.ndarray:
        users = queries.users
        user_bias = np.where(users >= 0, self.user_bias_[np.maximum(users, 0)], 0.0)
        return (self.global_mean_ + user_bias[:, None] + self.item_bias_[None, :]).astype(
            np.float32)

    def _explain(self, queries: Queries, items: np.ndarray) -> list[str]:
        return [f"rated {self.item_bias_[i]:+.2f} stars against the average of "
                f"{float(self.global_mean_):.2f}" for i in items]


def damped_means(owners: np.ndarray, residuals: np.ndarray, n: int,
                 damping: float) -> np.ndarray:
    """Each of ``n`` owners' damped mean residual, ``Σ r / (count + damping)`` (float64): a
    bias that owners with few ratings keep close to zero."""
    total = np.bincount(owners, weights=residuals, minlength=n)
    count = np.bincount(owners, minlength=n)
    return total / (count + damping + 1e-12)
