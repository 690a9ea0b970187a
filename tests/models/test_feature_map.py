"""The feature → factor map: cold items scored by the collaborative model."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from recengine.data.splits import cold_items
from recengine.data.training_data import TrainingData
from recengine.evaluation.evaluator import evaluate
from recengine.models import WALS, RandomItems
from recengine.models.feature_map import FeatureMappedWALS
from tests.models.conformance import RecommenderConformance, small_data


class TestFeatureMappedWALS(RecommenderConformance):
    model_class = FeatureMappedWALS
    params: ClassVar[dict[str, object]] = {"factors": 6, "iterations": 6, "regularization": 0.1,
                                           "encoder": {"min_count": 1}}


def test_cold_items_get_the_factors_their_features_predict():
    data = small_data(seed=5)
    model = FeatureMappedWALS(factors=6, iterations=8, regularization=0.1,
                              encoder={"min_count": 1}).fit(data)
    counts = data.item_counts()
    assert (counts == 0).sum() == 3  # small_data leaves its last three items without pairs
    genre = data.item_features["genres"].str[0].to_numpy()
    for cold in np.flatnonzero(counts == 0):
        same = (genre == genre[cold]) & (counts > 0)
        # genre is the only feature: the cold item lands near its genre's warm items
        centroid = model.item_factors_[same].mean(axis=0)
        others = model.item_factors_[(genre != genre[cold]) & (counts > 0)].mean(axis=0)
        assert (np.linalg.norm(model.item_factors_[cold] - centroid)
                < np.linalg.norm(model.item_factors_[cold] - others))


def test_cold_item_protocol_beats_random(synthetic_pairs):
    from recengine.data.synthetic import generate

    dataset = generate(n_users=300, n_items=150, seed=11)
    split = cold_items(synthetic_pairs, 0.2, seed=1)
    data = TrainingData.from_interactions(
        split.train, items=dataset.items, item_feature_kinds=dataset.item_features,
        extra_items=split.candidates)
    result = evaluate({"mapped": FeatureMappedWALS(factors=8, iterations=8, regularization=1.0),
                       "random": RandomItems()}, data, split, ks=[10])
    mapped, rand = result.models["mapped"].metrics, result.models["random"].metrics
    assert mapped["auc"] > rand["auc"] + 0.1, (mapped["auc"], rand["auc"])


def test_a_loaded_model_maps_new_items_as_the_fitted_one(tmp_path):
    data = small_data(seed=5)
    model = FeatureMappedWALS(factors=4, iterations=3, encoder={"min_count": 1}).fit(data)
    cold = np.flatnonzero(data.item_counts() == 0)
    fresh = model.map_items(data.item_features.iloc[cold])
    np.testing.assert_allclose(fresh, model.item_factors_[cold], rtol=1e-4, atol=1e-6)
    loaded = FeatureMappedWALS.load(model.save(tmp_path / "m"))
    np.testing.assert_array_equal(loaded.map_items(data.item_features.iloc[cold]), fresh)


def test_the_tuner_searches_the_map_s_shrinkage_beside_wals_s_own():
    space = FeatureMappedWALS.search_space({})
    assert space["feature_ridge"] == ("float", 1e-2, 1e3, True)
    assert space.keys() - {"feature_ridge"} == WALS.search_space({}).keys()
