"""Popularity within the categories a user likes: the course's first personalised recommender.

A mixture model: ``score(u, i) = Σ_c P(c | u) · P(i | c)``, where ``P(c | u)`` is the share of
the user's items in category ``c`` and ``P(i | c)`` is item ``i``'s share of the interactions in
``c``. So a user who watches comedies gets the most popular comedies, and a user with no history
gets the category mix of everyone, which is close to global popularity.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from recengine.data.query import Queries
from recengine.data.schema import FeatureKind
from recengine.data.training_data import TrainingData
from recengine.errors import DataError
from recengine.models.base import Capability, ModelConfig, Recommender, Shape, TrainingOptions
from recengine.progress import ProgressCallback

__all__ = ["CategoryPopularity"]

#: Weight of global popularity inside a tie between equally liked items.
_TIE_BREAK = 1e-6


class CategoryPopularity(Recommender):
    """The most popular items of the categories in each user's history."""

    name = "category-popularity"
    capabilities = frozenset({Capability.SIMILAR_ITEMS})

    class Config(ModelConfig):
        feature: str | None = Field(
            None, description="Item feature holding the categories; default: the first "
            "categorical or multi-valued feature the dataset declares (genres, region, tags).")
        max_categories: int = Field(100, ge=1, description="Keep the most common labels only.")

    config: Config

    state = ("categories_", "item_categories_", "item_given_category_", "category_prior_",
             "item_popularity_")
    categories_: np.ndarray
    item_categories_: np.ndarray
    item_given_category_: np.ndarray
    category_prior_: np.ndarray
    item_popularity_: np.ndarray

    def state_shapes(self) -> dict[str, Shape]:
        return {"categories_": ("categories",), "item_categories_": ("items", "categories"),
                "item_given_category_": ("items", "categories"),
                "category_prior_": ("categories",), "item_popularity_": ("items",)}

    def _train(self, data: TrainingData, options: TrainingOptions,
               progress: ProgressCallback | None) -> dict[str, Any]:
        labels = _item_labels(data, self.config.feature)
        counts: dict[str, int] = {}
        for item_labels in labels:
            for label in item_labels:
                counts[label] = counts.get(label, 0) + 1
        kept = sorted(counts, key=lambda c: (-counts[c], c))[: self.config.max_categories]
        column = {c: j for j, c in enumerate(kept)}
        member = np.zeros((data.n_items, len(kept)), dtype=np.float32)
        for i, item_labels in enumerate(labels):
            for label in item_labels:
                if label in column:
                    member[i, column[label]] = 1.0
        popularity = data.item_counts().astype(np.float32)
        mass = member.T @ popularity
        return {"categories_": np.asarray(kept, dtype=str), "item_categories_": member,
                "item_given_category_": member * popularity[:, None] / np.maximum(mass, 1e-12),
                "category_prior_": mass / max(float(mass.sum()), 1e-12),
                "item_popularity_": popularity / max(float(popularity.max()), 1.0)}

    def _profiles(self, history: sp.csr_array) -> np.ndarray:
        """``P(c | u)`` per row; the population's mix for users with no categorised items."""
        seen = history.copy()
        seen.data = np.ones_like(seen.data)
        prof = np.asarray(seen @ self.item_categories_, dtype=np.float32)
        total = prof.sum(axis=1, keepdims=True)
        return np.where(total > 0, prof / np.maximum(total, 1e-12), self.category_prior_)

    def _score(self, queries: Queries) -> np.ndarray:
        scores = self._profiles(queries.bag) @ self.item_given_category_.T
        return scores + _TIE_BREAK * self.item_popularity_

    def _similar(self, items: np.ndarray) -> np.ndarray:
        member = self.item_categories_[items]
        shares = member / np.maximum(member.sum(axis=1, keepdims=True), 1e-12)
        return shares @ self.item_given_category_.T + _TIE_BREAK * self.item_popularity_

    def _explain(self, queries: Queries, items: np.ndarray) -> list[str]:
        profile = self._profiles(queries.bag)[0]
        reasons = []
        for i in items:
            contrib = profile * self.item_given_category_[i]
            if contrib.max() <= 0:
                reasons.append("popular overall")
                continue
            c = int(np.argmax(contrib))
            reasons.append(f"popular in {self.categories_[c]}, "
                           f"{profile[c]:.0%} of what you chose")
        return reasons


def _item_labels(data: TrainingData, feature: str | None) -> list[list[str]]:
    kinds = data.item_feature_kinds
    if feature is None:
        feature = next((f for f, k in kinds.items()
                        if k in (FeatureKind.MULTI, FeatureKind.CATEGORICAL)), None)
    if feature is None or feature not in data.item_features.columns:
        raise DataError("category-popularity needs a categorical or multi-valued item feature "
                        f"(found: {', '.join(kinds) or 'none'})", column=feature)
    values = data.item_features[feature].tolist()
    return [_as_labels(v) for v in values]


def _as_labels(value: object) -> list[str]:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    if isinstance(value, list | tuple | np.ndarray):
        return [str(v) for v in value]
    return [str(value)]
