"""The fallback chain steps over hidden items without searching deeper than it must."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recengine.data.query import Queries
from recengine.data.training_data import TrainingData
from recengine.models import Popularity
from recengine.models.fallback import FallbackChain


@pytest.fixture(scope="module")
def popularity() -> Popularity:
    """Ten items; item i was chosen by 10 - i users, so popularity ranks i0 > i1 > ... > i9."""
    rows = [(f"u{u}", f"i{i}") for i in range(10) for u in range(10 - i)]
    pairs = pd.DataFrame(rows, columns=["user_id", "item_id"]).assign(rating=np.nan,
                                                                        feedback=1.0)
    return Popularity().fit(TrainingData.from_interactions(pairs))


def _depths(model: Popularity, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The depth of every top-k the chain asks ``model`` for, from now on."""
    asked: list[int] = []
    recommend = model.recommend_queries

    def spy(queries: Queries, n: int = 10, **kwargs: object) -> tuple[np.ndarray, np.ndarray]:
        asked.append(n)
        return recommend(queries, n, **kwargs)

    monkeypatch.setattr(model, "recommend_queries", spy)
    return asked


def _hidden(model: Popularity, *items: str) -> frozenset[int]:
    return frozenset(model.items_.index(list(items)).tolist())


def test_hidden_items_are_never_returned(popularity: Popularity,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    asked = _depths(popularity, monkeypatch)
    chain = FallbackChain([popularity])
    hidden = _hidden(popularity, "i0", "i1", "i2", "i3", "i4", "i5")
    found = chain.recommend("stranger", 3, hidden=hidden, explain=False)
    assert [r.item for r in found] == ["i6", "i7", "i8"]
    assert asked == [6, 9]  # 3 + 3 fell short, so as deep as six hidden items can need


def test_a_few_hidden_items_cost_a_few_more_candidates(popularity: Popularity,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    asked = _depths(popularity, monkeypatch)
    chain = FallbackChain([popularity])
    hidden = _hidden(popularity, "i1", "i4", "i5", "i6", "i7", "i8", "i9")
    assert [r.item for r in chain.recommend("stranger", 3, hidden=hidden)] == ["i0", "i2", "i3"]
    assert [r.item for r in chain.recommend("stranger", 3)] == ["i0", "i1", "i2"]
    assert asked == [6, 3]  # not 3 + 7: the hidden items below the answer were never needed
