"""Random items: the floor any model must clear, and a check that metrics are not flattered."""

from __future__ import annotations

from typing import Any

import numpy as np

from recengine.data.query import Queries
from recengine.data.training_data import TrainingData
from recengine.models.base import Capability, ModelConfig, Recommender, TrainingOptions
from recengine.progress import ProgressCallback

__all__ = ["RandomItems"]


class RandomItems(Recommender):
    """Uniformly random scores, drawn per user from ``(random_state, user)``.

    Seeding per user makes every answer repeatable, whatever the batch it is computed in.
    """

    name = "random"
    capabilities = frozenset({Capability.SIMILAR_ITEMS})

    class Config(ModelConfig):
        random_state: int = 0

    config: Config

    def _train(self, data: TrainingData, options: TrainingOptions,
               progress: ProgressCallback | None) -> dict[str, Any]:
        return {}  # nothing to learn

    def _draw(self, keys: np.ndarray) -> np.ndarray:
        n_items = len(self.items_)
        seed = self.config.random_state
        return np.stack([np.random.default_rng((seed, int(k) + 1)).random(n_items,
                                                                            dtype=np.float32)
                         for k in keys]) if len(keys) else np.zeros((0, n_items), np.float32)

    def _score(self, queries: Queries) -> np.ndarray:
        return self._draw(queries.users)

    def _similar(self, items: np.ndarray) -> np.ndarray:
        return self._draw(items + len(self.users_))

    def _explain(self, queries: Queries, items: np.ndarray) -> list[str]:
        return ["picked at random (exploration)"] * len(items)
