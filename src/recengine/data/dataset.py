"""The validated input of every recommender: events, item and user metadata, and their schema."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from recengine.data.schema import EVENT_COLUMNS, EventSchema, FeatureKind

__all__ = ["Dataset", "empty_events"]


def empty_events() -> pd.DataFrame:
    """An event table with no rows and the canonical columns and dtypes."""
    return pd.DataFrame({
        "user_id": pd.Series([], dtype=object),
        "item_id": pd.Series([], dtype=object),
        "event_type": pd.Series([], dtype=object),
        "value": pd.Series([], dtype="float64"),
        "timestamp": pd.Series([], dtype="datetime64[s]"),
    })[list(EVENT_COLUMNS)]


def _no_rows(index_name: str) -> pd.DataFrame:
    return pd.DataFrame(index=pd.Index([], name=index_name))


@dataclass(frozen=True)
class Dataset:
    """Events plus item and user metadata, as loaded and validated.

    ``events`` has the columns of :data:`~recengine.data.schema.EVENT_COLUMNS`: string ids, the
    event type, a float value (NaN where absent) and a ``datetime64[s]`` UTC timestamp (NaT where
    the source has none, as in Last.fm's play counts), and a ``device`` column (None where unknown)
    when the source says which device events came from. ``items`` and ``users`` are indexed by id;
    ``item_features`` and ``user_features`` name the kind of each of their columns.
    """

    name: str
    events: pd.DataFrame
    items: pd.DataFrame = field(default_factory=lambda: _no_rows("item_id"))
    users: pd.DataFrame = field(default_factory=lambda: _no_rows("user_id"))
    item_features: dict[str, FeatureKind] = field(default_factory=dict)
    user_features: dict[str, FeatureKind] = field(default_factory=dict)
    schema: EventSchema = field(default_factory=EventSchema)

    @property
    def has_timestamps(self) -> bool:
        """Whether every event has a time, as time-based splits and decay need."""
        return len(self.events) > 0 and bool(self.events["timestamp"].notna().all())

    def summary(self) -> dict[str, object]:
        """Counts a person reads first: sizes, density and the event-type mix."""
        ev = self.events
        n_users, n_items = ev["user_id"].nunique(), ev["item_id"].nunique()
        pairs = len(ev[["user_id", "item_id"]].drop_duplicates())
        return {
            "events": len(ev),
            "users": n_users,
            "items_with_events": n_items,
            "items_in_catalogue": max(len(self.items), n_items),
            "density": pairs / (n_users * n_items) if n_users and n_items else 0.0,
            "event_types": ev["event_type"].value_counts().to_dict(),
        }
