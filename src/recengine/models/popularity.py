"""Global popularity: the items most users interacted with.

The baseline every personalised model must beat, and the last step of every fallback chain: it
needs no history, so it answers for anyone.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recengine.data.query import Queries
from recengine.data.training_data import TrainingData
from recengine.models.base import Capability, ModelConfig, Recommender, Shape, TrainingOptions
from recengine.progress import ProgressCallback

__all__ = ["Popularity"]


class Popularity(Recommender):
    """Scores each item by the number of distinct training users who interacted with it."""

    name = "popularity"

    class Config(ModelConfig):
        pass

    config: Config
    state = ("item_counts_",)
    capabilities = frozenset({Capability.SIMILAR_ITEMS})
    item_counts_: np.ndarray

    def state_shapes(self) -> dict[str, Shape]:
        return {"item_counts_": ("items",)}

    def _train(self, data: TrainingData, options: TrainingOptions,
               progress: ProgressCallback | None) -> dict[str, Any]:
        return {"item_counts_": data.item_counts().astype(np.float32)}

    def _score(self, queries: Queries) -> np.ndarray:
        return np.broadcast_to(self.item_counts_, (len(queries), len(self.item_counts_)))

    def _similar(self, items: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.item_counts_, (len(items), len(self.item_counts_)))

    def _explain(self, queries: Queries, items: np.ndarray) -> list[str]:
        n_users = len(self.users_)
        return [f"popular: {int(self.item_counts_[i])} of {n_users} users chose it"
                for i in items]
