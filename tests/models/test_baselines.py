"""The baselines: conformance, plus what each one promises."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from recengine.data.training_data import TrainingData
from recengine.errors import DataError
from recengine.models import Bias, CategoryPopularity, Popularity, RandomItems
from tests.models.conformance import RecommenderConformance, small_data


class TestPopularity(RecommenderConformance):
    model_class = Popularity

    def test_ranks_by_number_of_users(self, model, data):
        idx, scores = model.recommend_indices(np.array([0]), data.n_items, exclude_seen=False)
        counts = data.item_counts()
        np.testing.assert_array_equal(scores[0], np.sort(counts)[::-1])
        assert counts[idx[0][0]] == counts.max()


class TestCategoryPopularity(RecommenderConformance):
    model_class = CategoryPopularity

    def test_recommends_the_users_favourite_genre(self, model, data):
        genre = data.item_features["genres"].str[0].to_numpy()
        for u in (0, 1, 2):  # user u likes genre u % 3; their history says so
            seen = data.feedback[[u]].indices
            favourite = pd.Series(genre[seen]).value_counts().index[0]
            idx, _ = model.recommend_indices(np.array([u]), 1)
            assert genre[idx[0][0]] == favourite

    def test_explanation_names_the_category(self, model, data):
        ids, _ = model.recommend("u0", 1)
        assert model.explain("u0", ids.tolist())[0].startswith("popular in ")

    def test_needs_a_category_feature(self):
        pairs = pd.DataFrame({"user_id": ["u"], "item_id": ["a"], "rating": [1.0],
                              "feedback": [1.0]})
        with pytest.raises(DataError, match="needs a categorical or multi-valued item feature"):
            CategoryPopularity().fit(TrainingData.from_interactions(pairs))


class TestRandomItems(RecommenderConformance):
    model_class = RandomItems
    params: ClassVar[dict[str, object]] = {"random_state": 3}

    def test_same_seed_same_answers_different_seed_different(self, data):
        a = RandomItems(random_state=1).fit(data).recommend_indices(np.arange(5), 5)[0]
        b = RandomItems(random_state=1).fit(data).recommend_indices(np.arange(5), 5)[0]
        c = RandomItems(random_state=2).fit(data).recommend_indices(np.arange(5), 5)[0]
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)


class TestBias(RecommenderConformance):
    model_class = Bias

    def test_biases_by_hand(self):
        pairs = pd.DataFrame({"user_id": ["u", "u", "v"], "item_id": ["a", "b", "a"],
                              "rating": [5.0, 3.0, 4.0], "feedback": 1.0})
        model = Bias(damping=0).fit(TrainingData.from_interactions(pairs))
        # mu = 4; b_a = ((5-4)+(4-4))/2 = 0.5, b_b = -1; b_u = ((5-4.5)+(3-3))/2 = 0.25,
        # b_v = (4 - 4.5)/1 = -0.5
        np.testing.assert_allclose(model.score(["u", "v"], ["a", "b"]), [4.75, 2.5])

    def test_needs_ratings(self):
        data = small_data()
        implicit = TrainingData(data.users, data.items, data.feedback, data.feedback[:, :0])
        with pytest.raises(DataError, match="needs explicit ratings"):
            Bias().fit(implicit)


def test_bias_refit_on_data_without_ratings_keeps_the_first_fit():
    """It used to install B's vocabularies, then fail, then answer with A's biases."""
    first = small_data()
    model = Bias().fit(first)
    before = model.recommend(["u1", "u2"], 5)
    no_ratings = TrainingData.from_interactions(pd.DataFrame({
        "user_id": ["x", "y"], "item_id": ["p", "q"], "rating": np.nan, "feedback": 1.0}))
    with pytest.raises(DataError, match="needs explicit ratings"):
        model.fit(no_ratings)
    assert model.users_ == first.users and model.items_ == first.items
    after = model.recommend(["u1", "u2"], 5)
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])


def test_a_model_saved_in_format_1_still_loads_with_its_matrix(tmp_path):
    """Registries written before core v2 kept the training matrix in each model folder."""
    import json

    from recengine.models.base import Recommender

    data = small_data()
    model = Popularity().fit(data)
    folder = model.save(tmp_path / "old")
    meta = json.loads((folder / "model.json").read_text())
    (folder / "model.json").write_text(json.dumps(
        {"model": "popularity", "format": 1, "config": meta["config"]}))
    with np.load(folder / "state.npz", allow_pickle=False) as z:
        arrays = dict(z)
    m = data.feedback
    np.savez(folder / "state.npz", **arrays, user_items_data=m.data,
             user_items_indices=m.indices, user_items_indptr=m.indptr)
    old = Recommender.load(folder)
    users = np.arange(data.n_users)
    np.testing.assert_array_equal(old.recommend_indices(users, 5)[0],
                                  model.recommend_indices(users, 5)[0])
