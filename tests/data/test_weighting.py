"""Feedback weighting: per-type transforms and weights, aggregation per pair, time decay."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from recengine.data.schema import EventSchema, EventType, Transform
from recengine.data.weighting import Weighting, aggregate, event_contributions
from recengine.errors import DataError


def events(rows: list[tuple[str, str, str, float, str | None]]) -> pd.DataFrame:
    return pd.DataFrame({
        "user_id": [r[0] for r in rows], "item_id": [r[1] for r in rows],
        "event_type": [r[2] for r in rows], "value": [r[3] for r in rows],
        "timestamp": pd.to_datetime([r[4] for r in rows]).astype("datetime64[s]"),
    })


def test_each_transform():
    ev = events([("u", "a", "view", 1, "2024-01-01"), ("u", "a", "play", math.e - 1, "2024-01-01"),
                 ("u", "b", "dwell", 30, "2024-01-01"), ("u", "c", "dwell", 90, "2024-01-01"),
                 ("u", "d", "dwell", 60, "2024-01-01"), ("u", "e", "watch", 0.25, "2024-01-01"),
                 ("u", "f", "purchase", 99.0, "2024-01-01")])
    got = event_contributions(ev, EventSchema())
    # view: one; play: log1p(e-1) = 1; dwell: value/median(30,90,60)=60 capped at 1; watch: as is;
    # purchase: presence times alpha 4 (its value is a price, not a strength)
    np.testing.assert_allclose(got, [1.0, 1.0, 0.5, 1.0, 1.0, 0.25, 4.0])


def test_aggregate_sums_feedback_and_keeps_latest_rating():
    ev = events([("u", "a", "rating", 2, "2024-01-02"), ("u", "a", "rating", 5, "2024-01-03"),
                 ("u", "a", "view", 1, "2024-01-01"), ("v", "a", "click", 1, "2024-01-05")])
    out = aggregate(ev).set_index(["user_id", "item_id"])
    assert out.loc[("u", "a"), "rating"] == 5.0  # the most recent, not the last row read
    assert out.loc[("u", "a"), "feedback"] == pytest.approx(2 + 5 + 1)
    assert out.loc[("u", "a"), "n_events"] == 3
    assert out.loc[("u", "a"), "timestamp"] == pd.Timestamp("2024-01-03")
    assert math.isnan(out.loc[("v", "a"), "rating"])


def test_custom_alpha_and_transform():
    schema = EventSchema(event_types={"like": EventType(alpha=3.0),
                                      "listen": EventType(transform=Transform.LOG1P, alpha=2.0)})
    ev = events([("u", "a", "like", 1, None), ("u", "a", "listen", 3, None)])
    assert aggregate(ev, schema)["feedback"].iloc[0] == pytest.approx(3.0 + 2 * math.log1p(3))


def test_time_decay_halves_weight_per_half_life():
    ev = events([("u", "a", "view", 1, "2024-01-01"), ("u", "b", "view", 1, "2024-01-11"),
                 ("u", "c", "view", 1, "2024-01-21")])
    out = aggregate(ev, weighting=Weighting(half_life_days=10)).set_index("item_id")
    np.testing.assert_allclose(out.loc[["a", "b", "c"], "feedback"], [0.25, 0.5, 1.0])


def test_time_decay_needs_timestamps():
    ev = events([("u", "a", "view", 1, None)])
    with pytest.raises(DataError, match="time decay needs a timestamp"):
        aggregate(ev, weighting=Weighting(half_life_days=10))
