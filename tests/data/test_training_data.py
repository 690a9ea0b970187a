"""Vocabularies and training matrices: stable maps, explicit zeros kept, save/load round-trip."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recengine.data.schema import FeatureKind
from recengine.data.training_data import TrainingData
from recengine.data.vocabulary import Vocabulary
from recengine.errors import UnknownIdError


def test_vocabulary_maps_both_ways_and_keeps_first_seen_order():
    v = Vocabulary(["b", "a", "b", 3])
    assert v.ids.tolist() == ["b", "a", "3"]
    assert v.index(["3", "b"]).tolist() == [2, 0]
    assert v.id_of([1, -1]).tolist() == ["a", None]
    assert Vocabulary.from_array(v.to_array()) == v


def test_vocabulary_unknown_ids_follow_the_missing_policy():
    v = Vocabulary(["a"], name="user")
    assert v.index(["a", "x"], missing="negative").tolist() == [0, -1]
    with pytest.raises(UnknownIdError, match="unknown user id\\(s\\): 'x'"):
        v.index(["a", "x"])


@pytest.fixture
def data() -> TrainingData:
    pairs = pd.DataFrame({"user_id": ["u1", "u1", "u2"], "item_id": ["a", "b", "a"],
                          "rating": [4.0, np.nan, 2.0], "feedback": [1.5, 0.0, 2.0]})
    items = pd.DataFrame({"genres": [["x"], ["y"], ["x", "z"]], "price": [1.0, 2.0, 3.0]},
                         index=pd.Index(["a", "b", "c"], name="id"))
    return TrainingData.from_interactions(
        pairs, items=items, item_feature_kinds={"genres": FeatureKind.MULTI,
                                                "price": FeatureKind.NUMERIC})


def test_matrices_cover_the_catalogue_and_keep_zero_feedback(data):
    assert data.items.ids.tolist() == ["a", "b", "c"]  # "c" has no events but is in the catalogue
    assert data.feedback.shape == (2, 3) and data.feedback.nnz == 3  # the 0.0 pair is observed
    assert data.feedback.toarray().tolist() == [[1.5, 0.0, 0.0], [2.0, 0.0, 0.0]]
    assert data.ratings.nnz == 2
    assert data.user_counts().tolist() == [2, 1] and data.item_counts().tolist() == [2, 1, 0]
    assert data.item_features.loc["c", "genres"] == ["x", "z"]


def test_history_rows_for_users_outside_training(data):
    given = pd.DataFrame({"user_id": ["n1", "n2", "n2"], "item_id": ["b", "c", "zz"],
                          "feedback": [1.0, 2.0, 5.0]})
    rows = data.history(given, ["n2", "n1"])
    assert rows.toarray().tolist() == [[0.0, 0.0, 2.0], [0.0, 1.0, 0.0]]


def test_save_and_load_round_trip(data, tmp_path):
    loaded = TrainingData.load(data.save(tmp_path / "td"))
    assert loaded.users == data.users and loaded.items == data.items
    assert (loaded.feedback != data.feedback).nnz == 0 and loaded.feedback.nnz == 3
    assert (loaded.ratings != data.ratings).nnz == 0
    assert loaded.item_feature_kinds == data.item_feature_kinds
    assert list(loaded.item_features.loc["c", "genres"]) == ["x", "z"]


def test_dropping_pairs_removes_their_feedback_ratings_and_events(data):
    """A carve: u1's pair with "a" goes from every matrix and from the log; the vocabularies
    and features stay, so models fitted on both agree on indices."""
    drop = np.array([True, False, False])  # CSR order: (u1, a), (u1, b), (u2, a)
    carved = data.drop_pairs(drop)
    assert carved.users == data.users and carved.items == data.items
    assert carved.feedback.toarray().tolist() == [[0.0, 0.0, 0.0], [2.0, 0.0, 0.0]]
    assert carved.feedback.nnz == 2  # u1's zero-feedback pair with "b" is still observed
    assert carved.ratings.toarray().tolist() == [[0.0, 0.0, 0.0], [2.0, 0.0, 0.0]]
    assert carved.log.row_items(0).tolist() == [1] and carved.log.row_items(1).tolist() == [0]
    assert carved.item_features.equals(data.item_features)
    with pytest.raises(ValueError, match="flags"):
        data.drop_pairs(np.array([True]))
