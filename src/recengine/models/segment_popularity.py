"""Popularity within the user's segment: the first answer for a new user known by metadata only.

A user who has just signed up has no events, but often has attributes (age, gender, occupation,
home country). Users who share them tend to share tastes, so the most popular items *among
similar users* beat global popularity. The segment is the tuple of the user's categorical
features (numeric ones, like age, are cut into bands); small segments are shrunk towards global
popularity: ``score = (count_seg(i) + m · share(i)) / (n_seg + m)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import Field

from recengine.data.query import Queries
from recengine.data.schema import FeatureKind
from recengine.data.training_data import TrainingData
from recengine.errors import DataError
from recengine.models.base import Capability, ModelConfig, Recommender, Shape, TrainingOptions
from recengine.progress import ProgressCallback

__all__ = ["SegmentPopularity"]


class SegmentPopularity(Recommender):
    """The most popular items among training users of the same segment.

    A user the model has not trained on is placed in a segment by the query's request-time
    features (``Queries.user_features``): metadata PUT a moment before the request counts.
    """

    name = "segment-popularity"
    capabilities = frozenset({Capability.USER_FEATURES})

    class Config(ModelConfig):
        features: list[str] | None = Field(
            None, description="User features that define a segment; default: every numeric "
            "feature and every categorical one with at most max_levels values.")
        max_levels: int = Field(30, ge=2, description="Default segments skip categorical "
                                "features with more values (zip codes, ids).")
        numeric_bands: int = Field(4, ge=2, description="Quantile bands for numeric features.")
        shrinkage: float = Field(20.0, ge=0, description="m: pseudo-users of global taste.")

    config: Config
    state = ("segment_of_user_", "segment_counts_", "segment_sizes_", "global_share_",
             "segment_labels_")
    segment_of_user_: np.ndarray
    segment_counts_: np.ndarray
    segment_sizes_: np.ndarray
    global_share_: np.ndarray
    #: Each segment's label (its feature values joined), to place new users.
    segment_labels_: np.ndarray
    #: The features a segment is made of, and the band edges of the numeric ones.
    bands_: dict[str, list[float] | None]

    def _train(self, data: TrainingData, options: TrainingOptions,
               progress: ProgressCallback | None) -> dict[str, Any]:
        bands = _bands(data, self.config.features, self.config.numeric_bands,
                       self.config.max_levels)
        segments = _labels(data.user_features, bands)
        codes, uniques = pd.factorize(pd.Series(segments), sort=True)
        n_segments = len(uniques)
        seen = data.feedback.copy()
        seen.data = np.ones_like(seen.data)
        membership = sp.csr_array((np.ones(data.n_users), (codes, np.arange(data.n_users))),
                                  shape=(n_segments, data.n_users))
        active = np.diff(data.feedback.indptr) > 0
        counts = data.item_counts().astype(np.float64)
        return {
            "segment_of_user_": codes.astype(np.int32),
            "segment_counts_": np.asarray((membership @ seen).toarray(), dtype=np.float32),
            "segment_sizes_": np.bincount(codes[active], minlength=n_segments).astype(
                np.float32),
            "global_share_": (counts / max(active.sum(), 1)).astype(np.float32),
            "segment_labels_": np.asarray(uniques, dtype=str),
            "bands_": bands,
        }

    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays, _ = super().get_state()
        return arrays, {"bands": self.bands_}

    def state_shapes(self) -> dict[str, Shape]:
        return {"segment_of_user_": ("users",), "segment_counts_": ("segments", "items"),
                "segment_sizes_": ("segments",), "global_share_": ("items",),
                "segment_labels_": ("segments",)}

    def _restore_state(self, arrays: Mapping[str, np.ndarray],
                       meta: Mapping[str, Any]) -> dict[str, Any]:
        segments, n_segments = arrays["segment_of_user_"], len(arrays["segment_labels_"])
        if len(segments) and not (segments.min() >= 0 and segments.max() < n_segments):
            raise DataError(f"segment_of_user_ names segments outside 0..{n_segments - 1}")
        return super()._restore_state(arrays, meta) | {"bands_": dict(meta["bands"])}

    def _segments_of(self, queries: Queries) -> np.ndarray:
        """Each query's segment: learned for training users, from request-time features for
        the others (-1 where they have none, or fall in no training segment)."""
        users = queries.users
        out = np.full(len(users), -1, dtype=np.int64)
        known = users >= 0
        out[known] = self.segment_of_user_[users[known]]
        table = queries.user_features
        if (~known).any() and table is not None and set(self.bands_) <= set(table.columns):
            lookup = {label: k for k, label in enumerate(self.segment_labels_.tolist())}
            labels = _labels(table.reset_index(drop=True), self.bands_)
            out[~known] = [lookup.get(labels[r], -1) for r in np.flatnonzero(~known)]
        return out

    def answers(self, queries: Queries) -> np.ndarray:
        """Users it trained on, and new users whose features place them in a segment."""
        return self._segments_of(queries) >= 0

    def _score(self, queries: Queries) -> np.ndarray:
        m = self.config.shrinkage
        out = np.broadcast_to(self.global_share_, (len(queries), len(self.global_share_))).copy()
        seg = self._segments_of(queries)
        placed = seg >= 0
        if placed.any():
            s = seg[placed]
            out[placed] = (self.segment_counts_[s] + m * self.global_share_) / (
                self.segment_sizes_[s, None] + m)
        return out

    def _explain(self, queries: Queries, items: np.ndarray) -> list[str]:
        seg = int(self._segments_of(queries)[0])
        if seg < 0:
            return ["popular overall"] * len(items)
        size = int(self.segment_sizes_[seg])
        return [f"popular with users like you: {int(self.segment_counts_[seg, i])} of {size}"
                for i in items]


def _bands(data: TrainingData, features: list[str] | None, bands: int,
           max_levels: int) -> dict[str, list[float] | None]:
    """The segment's features: numeric ones with their quantile band edges, others None."""
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
    out: dict[str, list[float] | None] = {}
    for f in chosen:
        if kinds.get(f) == FeatureKind.NUMERIC:
            _, edges = pd.qcut(table[f].astype(float), bands, duplicates="drop", retbins=True)
            out[f] = [float(e) for e in edges]
        else:
            out[f] = None
    return out


def _labels(table: pd.DataFrame, bands: Mapping[str, list[float] | None]) -> list[str]:
    """One segment label per row: its feature values joined, numeric ones as their band."""
    parts = []
    for f, edges in bands.items():
        column = table[f]
        if edges is not None:
            column = pd.cut(pd.to_numeric(column, errors="coerce"), edges,
                            include_lowest=True).astype(str)
        parts.append(column.astype(str).fillna("?").to_numpy())
    return ["|".join(values) for values in zip(*parts, strict=True)]
