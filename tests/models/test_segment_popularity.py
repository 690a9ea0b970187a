"""Segment popularity: conformance, and popularity among users alike by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recengine.data.schema import FeatureKind
from recengine.data.training_data import TrainingData
from recengine.errors import DataError
from recengine.models import SegmentPopularity
from tests.models.conformance import RecommenderConformance, small_data


def with_users(data: TrainingData) -> TrainingData:
    ids = data.users.ids
    users = pd.DataFrame({"group": [f"g{int(u[1:]) % 3}" for u in ids],
                          "age": np.arange(len(ids), dtype=float)},
                         index=pd.Index(ids, name="id"))
    kinds = {"group": FeatureKind.CATEGORICAL, "age": FeatureKind.NUMERIC}
    return TrainingData(data.users, data.items, data.feedback, data.ratings,
                        data.item_features, users, data.item_feature_kinds, kinds)


class TestSegmentPopularity(RecommenderConformance):
    model_class = SegmentPopularity

    @pytest.fixture(scope="class")
    @classmethod
    def data(cls) -> TrainingData:
        return with_users(small_data())

    def other_data(self) -> TrainingData:
        return with_users(small_data(seed=1, n_users=10))


def test_segment_counts_by_hand():
    # Segment A (u1, u2) chose x, x and y; segment B (u3) chose z. Global: x 2, y 1, z 1 of 3.
    pairs = pd.DataFrame({"user_id": ["u1", "u1", "u2", "u3"], "item_id": ["x", "y", "x", "z"],
                          "rating": np.nan, "feedback": 1.0})
    users = pd.DataFrame({"seg": ["A", "A", "B", "B"]},
                         index=pd.Index(["u1", "u2", "u3", "new"], name="id"))
    data = TrainingData.from_interactions(pairs, users=users, extra_users=np.array(["new"]),
                                          user_feature_kinds={"seg": FeatureKind.CATEGORICAL})
    model = SegmentPopularity(shrinkage=1.0).fit(data)
    # "new" is in segment B (1 active user: u3 chose z): (count + 1 * share) / (1 + 1)
    scores = model.score(["new"] * 3, ["x", "y", "z"])
    np.testing.assert_allclose(scores, [(0 + 2 / 3) / 2, (0 + 1 / 3) / 2, (1 + 1 / 3) / 2],
                               rtol=1e-6)
    assert model.recommend("new", 1)[0].tolist() == ["z"]
    assert model.explain("new", ["z"]) == ["popular with users like you: 1 of 1"]


def test_high_cardinality_features_are_left_out_by_default():
    data = with_users(small_data())
    ids = data.users.ids
    zips = pd.DataFrame({"zip": [f"z{i}" for i in range(len(ids))]}, index=data.users.ids)
    data = TrainingData(data.users, data.items, data.feedback, data.ratings,
                        data.item_features, zips, data.item_feature_kinds,
                        {"zip": FeatureKind.CATEGORICAL})
    with pytest.raises(DataError, match="needs categorical or numeric user features"):
        SegmentPopularity(max_levels=10).fit(data)
