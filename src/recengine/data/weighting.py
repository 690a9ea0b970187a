"""From events to one row of feedback per (user, item).

Explicit ratings stay ratings: the pair keeps its most recent rating. Every event, explicit or
implicit, also adds ``alpha_t * f_t(value)`` to the pair's *feedback* ``r``, with ``alpha_t`` and
``f_t`` set per event type in the :class:`~recengine.data.schema.EventSchema`; a model that wants
a confidence uses ``c = 1 + alpha * r`` (Hu, Koren & Volinsky 2008), and the preference is 1 on
every observed pair. With a half-life, each event's contribution is multiplied by
``0.5 ** (age / half_life)``, its age counted back from the newest event, so old tastes fade.

Defaults (see ``EventSchema``): views and clicks count 1, add-to-cart 2, purchases and bookings 4,
plays ``log1p(count)``, dwell ``min(seconds / median, 1)``, fraction watched as is, a rating its
stars. No time decay.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from recengine.data.schema import EventSchema, Feedback, Transform
from recengine.errors import DataError

__all__ = ["INTERACTION_COLUMNS", "Weighting", "aggregate", "event_contributions",
           "weighted_events"]

#: Columns of the per-pair interaction table that :func:`aggregate` returns.
INTERACTION_COLUMNS = ("user_id", "item_id", "rating", "feedback", "timestamp", "n_events")


class Weighting(BaseModel):
    """How events combine into per-pair feedback, beyond the per-type settings of the schema."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    half_life_days: float | None = Field(
        None, gt=0, description="Time decay: an event's weight halves every this many days.")


def event_contributions(events: pd.DataFrame, schema: EventSchema) -> np.ndarray:
    """``alpha_t * f_t(value)`` for every event, before time decay."""
    out = np.zeros(len(events), dtype=np.float64)
    types = events["event_type"].to_numpy()
    values = events["value"].to_numpy(dtype=np.float64)
    for name, spec in schema.event_types.items():
        mask = types == name
        if not mask.any():
            continue
        v = values[mask]
        if spec.transform == Transform.ONE:
            f = np.ones_like(v)
        elif spec.transform == Transform.IDENTITY:
            f = v
        elif spec.transform == Transform.LOG1P:
            f = np.log1p(v)
        else:  # MEDIAN: time on page, saturating at a typical visit
            median = float(np.median(v)) if len(v) else 1.0
            f = np.minimum(v / (median if median > 0 else 1.0), 1.0)
        out[mask] = spec.alpha * f
    return out


def _decay(timestamps: pd.Series, half_life_days: float) -> np.ndarray:
    if timestamps.isna().any():
        raise DataError("time decay needs a timestamp on every event; this log has events "
                        "without one: drop half_life_days", column="timestamp")
    seconds = timestamps.astype("int64").to_numpy()
    age_days = (seconds.max() - seconds) / 86400.0
    return np.power(0.5, age_days / half_life_days)


def _event_weights(events: pd.DataFrame, schema: EventSchema,
                   weighting: Weighting | None) -> np.ndarray:
    """Each event's contribution to its pair's feedback, time decay included."""
    weighting = weighting or Weighting()
    contribution = event_contributions(events, schema)
    if weighting.half_life_days is not None and len(events):
        contribution = contribution * _decay(events["timestamp"], weighting.half_life_days)
    return contribution


def weighted_events(events: pd.DataFrame, schema: EventSchema | None = None,
                    weighting: Weighting | None = None) -> pd.DataFrame:
    """The events with their ``weight``: each one's contribution to its pair's feedback.

    Summed per (user, item), the weights are :func:`aggregate`'s ``feedback``; the training log
    (:attr:`~recengine.data.training_data.TrainingData.log`) keeps them per event, in order.
    """
    return events.assign(weight=_event_weights(events, schema or EventSchema(), weighting))


def aggregate(
    events: pd.DataFrame,
    schema: EventSchema | None = None,
    weighting: Weighting | None = None,
) -> pd.DataFrame:
    """One row per (user, item): latest rating, summed feedback, last time, number of events.

    Examples
    --------
    >>> ev = pd.DataFrame({"user_id": ["u", "u", "u"], "item_id": ["a", "a", "b"],
    ...                    "event_type": ["view", "purchase", "rating"],
    ...                    "value": [1.0, 30.0, 4.0],
    ...                    "timestamp": pd.to_datetime([1, 2, 3], unit="D")})
    >>> print(aggregate(ev)[["item_id", "rating", "feedback", "n_events"]].to_string(index=False))
    item_id  rating  feedback  n_events
          a     NaN       5.0         2
          b     4.0       4.0         1
    """
    schema = schema or EventSchema()
    contribution = _event_weights(events, schema, weighting)
    explicit = [n for n, t in schema.event_types.items() if t.feedback == Feedback.EXPLICIT]
    is_rating = events["event_type"].isin(explicit).to_numpy()
    frame = pd.DataFrame({
        "user_id": events["user_id"].to_numpy(dtype=object),
        "item_id": events["item_id"].to_numpy(dtype=object),
        "rating": np.where(is_rating, events["value"].to_numpy(dtype=np.float64), np.nan),
        "feedback": contribution,
        "timestamp": events["timestamp"].to_numpy(),
        "n_events": 1,
    })
    # Sort by time (stable) so that "last" is the most recent rating.
    frame = frame.sort_values("timestamp", kind="stable", na_position="first")
    grouped = frame.groupby(["user_id", "item_id"], sort=True, observed=True)
    out = grouped.agg(rating=("rating", "last"), feedback=("feedback", "sum"),
                      timestamp=("timestamp", "max"), n_events=("n_events", "sum"))
    return out.reset_index()[list(INTERACTION_COLUMNS)]
