"""Popularity within the user's segment: the first answer for a new user known by metadata only.

A user who has just signed up has no events, but often has attributes (age, gender, occupation,
home country). Users who share them tend to share tastes, so the most popular items *among
similar users* beat global popularity. The segment is the tuple of the user's categorical
features (numeric ones, like age, are cut into bands); small segments are shrunk towards global
popularity: ``score = (count_seg(i) + m · share(i)) / (n_seg + m)``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import Field

from recengine.data.schema import FeatureKind
from recengine.data.training_data import TrainingData
from recengine.errors import DataError
from recengine.models.base import ModelConfig, Recommender
from recengine.progress import ProgressCallback

__all__ = ["SegmentPopularity"]


class SegmentPopularity(Recommender):
    """The most popular items among training users of the same segment."""

    name = "segment-popularity"

    class Config(ModelConfig):
        features: list[str] | None = Field(
            None, description="User features that define a segment; default: every numeric "
            "feature and every categorical one with at most max_levels values.")
        max_levels: int = Field(30, ge=2, description="Default segments skip categorical "
                                "features with more values (zip codes, ids).")
        numeric_bands: int = Field(4, ge=2, description="Quantile bands for numeric features.")
        shrinkage: float = Field(20.0, ge=0, description="m: pseudo-users of global taste.")

    state = ("segment_of_user_", "segment_counts_", "segment_sizes_", "global_share_")
    segment_of_user_: np.ndarray
    segment_counts_: np.ndarray
    segment_sizes_: np.ndarray
    global_share_: np.ndarray

    def _fit(self, data: TrainingData, progress: ProgressCallback | None) -> None:
        segments = _segments(data, self.config.features, self.config.numeric_bands,
                             self.config.max_levels)
        codes, uniques = pd.factorize(pd.Series(segments), sort=True)
        n_segments = len(uniques)
        seen = data.feedback.copy()
        seen.data = np.ones_like(seen.data)
        membership = sp.csr_array((np.ones(data.n_users), (codes, np.arange(data.n_users))),
                                  shape=(n_segments, data.n_users))
        self.segment_of_user_ = codes.astype(np.int32)
        self.segment_counts_ = np.asarray((membership @ seen).toarray(), dtype=np.float32)
        active = np.diff(data.feedback.indptr) > 0
        self.segment_sizes_ = np.bincount(codes[active], minlength=n_segments).astype(
            np.float32)
        counts = data.item_counts().astype(np.float64)
        self.global_share_ = (counts / max(active.sum(), 1)).astype(np.float32)

    def _score(self, users: np.ndarray, history: sp.csr_array) -> np.ndarray:
        m = self.config.shrinkage
        out = np.broadcast_to(self.global_share_, (len(users), len(self.global_share_))).copy()
        known = users >= 0
        if known.any():
            seg = self.segment_of_user_[users[known]]
            out[known] = (self.segment_counts_[seg] + m * self.global_share_) / (
                self.segment_sizes_[seg, None] + m)
        return out

    def _explain(self, user: int, history: sp.csr_array, items: np.ndarray) -> list[str]:
        if user < 0:
            return ["popular overall"] * len(items)
        seg = self.segment_of_user_[user]
        size = int(self.segment_sizes_[seg])
        return [f"popular with users like you: {int(self.segment_counts_[seg, i])} of {size}"
                for i in items]


def _segments(data: TrainingData, features: list[str] | None, bands: int,
              max_levels: int) -> list[str]:
    """One segment label per user: its feature values joined, numeric ones as quantile bands."""
    kinds = data.user_feature_kinds
    table = data.user_features
    chosen = features if features is not None else [
        f for f, k in kinds.items() if k == FeatureKind.NUMERIC or (
            k == FeatureKind.CATEGORICAL and table[f].nunique() <= max_levels)]
    missing = [f for f in chosen if f not in table.columns]
    if not chosen or missing:
        raise DataError("segment-popularity needs categorical or numeric user features "
                        f"(missing: {', '.join(missing) or 'none declared'})",
                        column="features")
    parts = []
    for f in chosen:
        column = table[f]
        if kinds.get(f) == FeatureKind.NUMERIC:
            column = pd.qcut(column.astype(float), bands, duplicates="drop").astype(str)
        parts.append(column.astype(str).fillna("?").to_numpy())
    return ["|".join(values) for values in zip(*parts, strict=True)]
