"""Fresh items: the interface, arrival by first event or by a date feature, recent ties."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recengine.data.schema import FeatureKind
from recengine.data.training_data import TrainingData
from recengine.errors import DataError
from recengine.models import FreshItems
from recengine.models.hybrid import Hybrid
from tests.models.conformance import RecommenderConformance, small_data

DAY = 86_400


class TestFreshItems(RecommenderConformance):
    model_class = FreshItems


def _timed(rows: list[tuple[str, str, int]], items: pd.DataFrame | None = None) -> TrainingData:
    """Pairs at the given day numbers (their times), with optional item metadata."""
    pairs = pd.DataFrame(rows, columns=["user_id", "item_id", "day"])
    pairs = pairs.assign(rating=np.nan, feedback=1.0,
                         timestamp=pd.to_datetime(pairs["day"] * DAY, unit="s"))
    kinds = {"listed": FeatureKind.DATE} if items is not None else None
    return TrainingData.from_interactions(pairs.drop(columns="day"), items=items,
                                          item_feature_kinds=kinds)


def test_the_newest_arrival_comes_first_and_same_day_ties_go_to_the_recently_chosen():
    data = _timed([("u", "old", 1), ("v", "old", 50), ("w", "old", 50),
                   ("u", "mid", 20), ("v", "new-quiet", 40), ("u", "new-busy", 40),
                   ("w", "new-busy", 45)])
    ids, _ = FreshItems().fit(data).recommend_history([], n=4)
    assert ids.tolist() == ["new-busy", "new-quiet", "mid", "old"]


def test_a_date_feature_tells_the_arrival_of_items_without_events():
    items = pd.DataFrame({"listed": pd.to_datetime(["2025-01-01", None, "2025-03-01"])},
                         index=pd.Index(["a", "b", "listed-only"], name="id"))
    data = _timed([("u", "a", 20_100), ("u", "b", 20_150)], items)
    model = FreshItems(date_field="listed").fit(data)
    ids, _ = model.recommend_history([], n=3)
    # days since 1970: b arrived at its first event (20,150: no listing date), listed-only at
    # its listing (20,148: no events), a at its listing (20,089), not at its event (20,100)
    assert ids.tolist() == ["b", "listed-only", "a"]
    with pytest.raises(DataError, match="not a date feature") as error:
        FreshItems(date_field="nope").fit(data)
    assert error.value.column == "date_field"


def test_as_a_hybrid_source_it_proposes_new_items():
    data = small_data()
    model = Hybrid(sources=[{"model": "popularity", "depth": 3},
                            {"model": "fresh-items", "depth": 3}],
                   similarity_source=None, ranker={"hidden": (8,), "epochs": 1}).fit(data)
    fresh = next(s.model for s in model.sources_ if s.tag == "fresh-items")
    newest = fresh.recommend_indices(np.array([0]), 3)[0][0]
    reasons = model.explain(str(data.users.ids[0]), data.items.id_of(newest).tolist())
    assert any("fresh-items" in reason for reason in reasons)
