"""Fresh items: the newest arrivals first, for a catalogue where what is new is what sells.

A news site, a rental platform or a shop adds items every day, and the collaborative models
rank a new item low until enough users have chosen it. This model proposes them on arrival: an
item arrived at its first training event or, when ``date_field`` names a date feature of the
items (a listing or publication date), at that date where it is known, so an item with metadata
but no events yet is proposed too. Among items that arrived the same day, those chosen by more
users in the last ``window_days`` come first. Items with no known arrival score lowest.

As a source of the hybrid it fills the slot the issue calls "fresh items": the ranker learns
how far freshness should count for whom.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field

from recengine.data.query import NO_TIME, Queries
from recengine.data.schema import FeatureKind
from recengine.data.training_data import TrainingData
from recengine.errors import DataError
from recengine.models.base import ModelConfig, Recommender, Shape, TrainingOptions
from recengine.progress import ProgressCallback

__all__ = ["FreshItems"]

_DAY = 86_400


class FreshItems(Recommender):
    """Items by arrival, newest first; ties by recent popularity.

    Examples
    --------
    >>> pairs = pd.DataFrame({"user_id": ["u", "v", "v"], "item_id": ["old", "old", "new"],
    ...                       "rating": float("nan"), "feedback": 1.0})
    >>> data = TrainingData.from_interactions(pairs)
    >>> FreshItems().fit(data).recommend_history([], n=2)[0].tolist()  # no times: item order
    ['new', 'old']
    """

    name = "fresh-items"

    class Config(ModelConfig):
        date_field: str | None = Field(None, description="An item date feature (listing or "
                                       "publication date) that tells an item's arrival; "
                                       "default: its first training event.")
        window_days: float = Field(30.0, gt=0, description="The recent window whose choices "
                                   "order items that arrived the same day.")

    config: Config
    state = ("scores_",)
    #: Each item's arrival day plus its recent popularity share (below 1), so items are ordered
    #: by day first; ``-1`` for items with no known arrival.
    scores_: np.ndarray

    def state_shapes(self) -> dict[str, Shape]:
        return {"scores_": ("items",)}

    def _train(self, data: TrainingData, options: TrainingOptions,
               progress: ProgressCallback | None) -> dict[str, Any]:
        log = data.log
        arrival = np.full(data.n_items, np.iinfo(np.int64).max, dtype=np.int64)
        known = log.timestamps != NO_TIME
        np.minimum.at(arrival, log.items[known], log.timestamps[known])
        if not known.any():  # no times at all: the catalogue's own order, later ids newer
            arrival = np.where(data.item_counts() > 0, np.arange(data.n_items) * _DAY,
                               arrival)
        dated = self._dates(data)
        if dated is not None:
            arrival = np.where(dated != NO_TIME, dated, arrival)
        unknown = arrival == np.iinfo(np.int64).max
        latest = int(log.timestamps[known].max()) if known.any() else 0
        recent = log.items[known & (log.timestamps >= latest - self.config.window_days * _DAY)]
        counts = np.bincount(recent, minlength=data.n_items).astype(np.float64)
        share = counts / (counts.max() + 1.0)
        days = np.where(unknown, 0, arrival // _DAY).astype(np.float64)
        days -= days[~unknown].min(initial=0.0)
        return {"scores_": np.where(unknown, -1.0, days + share).astype(np.float64)}

    def _dates(self, data: TrainingData) -> np.ndarray | None:
        """``date_field`` of each item in seconds (``NO_TIME`` where missing)."""
        field = self.config.date_field
        if field is None:
            return None
        if data.item_feature_kinds.get(field) != FeatureKind.DATE:
            raise DataError(f"fresh-items: {field!r} is not a date feature of the items",
                            column="date_field")
        values = pd.to_datetime(data.item_features[field], errors="coerce", utc=True)
        seconds = values.to_numpy(dtype="datetime64[s]", na_value=np.datetime64("NaT"))
        out = seconds.astype(np.int64)
        return np.where(np.isnat(seconds), NO_TIME, out)

    def _score(self, queries: Queries) -> np.ndarray:
        return np.broadcast_to(self.scores_.astype(np.float32),
                               (len(queries), len(self.scores_)))

    def _explain(self, queries: Queries, items: np.ndarray) -> list[str]:
        return ["arrival unknown" if self.scores_[i] < 0 else
                f"new: arrived on day {int(self.scores_[i])} of the catalogue"
                for i in items]
