"""Global popularity: the items most users interacted with.

The baseline every personalised model must beat, and the last step of every fallback chain: it
needs no history, so it answers for anyone.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recengine.data.training_data import TrainingData
from recengine.models.base import ModelConfig, Recommender
from recengine.progress import ProgressCallback

__all__ = ["Popularity"]


class Popularity(Recommender):
    """Scores each item by the number of distinct training users who interacted with it."""

    name = "popularity"

    class Config(ModelConfig):
        pass

    state = ("item_counts_",)
    item_counts_: np.ndarray

    def _fit(self, data: TrainingData, progress: ProgressCallback | None) -> None:
        self.item_counts_ = data.item_counts().astype(np.float32)

    def _score(self, users: np.ndarray, history: sp.csr_array) -> np.ndarray:
        return np.broadcast_to(self.item_counts_, (len(users), len(self.item_counts_)))

    def _similar(self, items: np.ndarray) -> np.ndarray:
        return self._score(items, self.user_items_[:0])

    def _explain(self, user: int, history: sp.csr_array, items: np.ndarray) -> list[str]:
        n_users = len(self.users_)
        return [f"popular: {int(self.item_counts_[i])} of {n_users} users chose it"
                for i in items]
