"""Random items: the floor any model must clear, and a check that metrics are not flattered."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recengine.data.training_data import TrainingData
from recengine.models.base import ModelConfig, Recommender
from recengine.progress import ProgressCallback

__all__ = ["RandomItems"]


class RandomItems(Recommender):
    """Uniformly random scores, drawn per user from ``(random_state, user)``.

    Seeding per user makes every answer repeatable, whatever the batch it is computed in.
    """

    name = "random"

    class Config(ModelConfig):
        random_state: int = 0

    def _fit(self, data: TrainingData, progress: ProgressCallback | None) -> None:
        pass  # nothing to learn

    def _draw(self, keys: np.ndarray) -> np.ndarray:
        n_items = len(self.items_)
        seed = self.config.random_state
        return np.stack([np.random.default_rng((seed, int(k) + 1)).random(n_items,
                                                                            dtype=np.float32)
                         for k in keys]) if len(keys) else np.zeros((0, n_items), np.float32)

    def _score(self, users: np.ndarray, history: sp.csr_array) -> np.ndarray:
        return self._draw(users)

    def _similar(self, items: np.ndarray) -> np.ndarray:
        return self._draw(items + len(self.users_))

    def _explain(self, user: int, history: sp.csr_array, items: np.ndarray) -> list[str]:
        return ["picked at random (exploration)"] * len(items)
