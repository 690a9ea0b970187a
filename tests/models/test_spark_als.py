"""spark-als: the interface, on a real local Spark session, and the mapping onto WALS's
objective checked through WALS's own fold-in."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recengine.data.training_data import TrainingData
from recengine.errors import DataError, EngineError
from recengine.models.registry import model_class
from recengine.models.spark_als import SparkALS
from tests.models.conformance import RecommenderConformance, small_data


@pytest.fixture(scope="module", autouse=True)
def _spark(spark):
    """Every test here trains on the test session's ``local[2]`` Spark."""
    return spark


class TestSparkALSImplicit(RecommenderConformance):
    model_class = SparkALS
    params: ClassVar[dict[str, object]] = {"factors": 8, "iterations": 8,
                                           "regularization": 0.1, "blocks": 2}


class TestSparkALSExplicit(RecommenderConformance):
    model_class = SparkALS
    params: ClassVar[dict[str, object]] = {"factors": 4, "iterations": 8,
                                           "feedback": "explicit", "blocks": 2}


def with_zero_feedback(data: TrainingData) -> TrainingData:
    """``data`` with some pairs' feedback 0: observed, yet nothing to weigh (a video opened and
    closed at once)."""
    feedback = data.feedback.copy()
    feedback.data[::7] = 0.0
    return TrainingData(users=data.users, items=data.items, feedback=feedback,
                        ratings=data.ratings)


@pytest.mark.parametrize("params", [
    # WALS's defaults mapped: λ over the mean pairs per row, feedback in units of its mean.
    {"factors": 6, "iterations": 6},
    # Every weight in play: rare items, tempered users, raw feedback, ALS-WR λ.
    {"factors": 6, "iterations": 6, "item_weight_exponent": 0.3, "user_weight_exponent": 0.5,
     "confidence": "raw", "alpha": 3.0, "scale_regularization": True, "regularization": 0.5},
    {"factors": 4, "iterations": 6, "feedback": "explicit", "regularization": 0.2},
])
def test_spark_solves_wals_problem(params):
    """MLlib's last half-iteration solves every user exactly against the final items; WALS's
    fold-in solves the problem WALS's objective defines. They agree only if the confidences,
    the preferences of zero feedback and the regularisation map exactly."""
    data = with_zero_feedback(small_data(seed=3))
    model = SparkALS(blocks=2, **params).fit(data)
    history = data.ratings if model.config.feedback == "explicit" else data.feedback
    folded, _ = model._fold_in(sp.csr_array(history))
    np.testing.assert_allclose(folded, model.user_factors_, rtol=2e-3, atol=2e-4)


def test_regularisation_is_wals_lambda_at_a_row_of_average_activity():
    data = small_data()
    model = SparkALS(factors=4, iterations=2, regularization=60.0, blocks=2).fit(data)
    rows = np.count_nonzero(data.user_counts()) + np.count_nonzero(data.item_counts())
    assert float(model.reg_param_) == pytest.approx(60.0 * rows / (2 * data.feedback.nnz))
    scaled = SparkALS(factors=4, iterations=2, regularization=0.7, scale_regularization=True,
                      blocks=2).fit(data)
    assert float(scaled.reg_param_) == pytest.approx(0.7)


def test_saved_spark_model_loads_and_folds_in_without_spark(tmp_path, monkeypatch):
    """A saved spark-als model is WALS's files plus its regParam: it loads, scores and folds in
    with no Spark at all."""
    import sys

    data = small_data()
    model = SparkALS(factors=4, iterations=3, blocks=2).fit(data)
    model.save(tmp_path / "m")
    monkeypatch.setitem(sys.modules, "pyspark", None)
    again = model_class("spark-als").load(tmp_path / "m", histories=data)
    assert isinstance(again, SparkALS) and float(again.reg_param_) == float(model.reg_param_)
    np.testing.assert_array_equal(again.recommend_history(["i1", "i4"], 5)[0],
                                  model.recommend_history(["i1", "i4"], 5)[0])


@pytest.mark.parametrize(("params", "message"), [
    ({"unobserved_weight": 0.5}, "unobserved_weight must be 1.0 with implicit feedback"),
    ({"biases": True}, "biases must be False"),
    ({"feedback": "explicit", "alpha": 2.0}, "alpha must be 1.0 with explicit feedback"),
    ({"feedback": "explicit", "scale_regularization": False},
     "scale_regularization must be True"),
    ({"master": ""}, "master"),
])
def test_settings_mllib_cannot_fit_are_refused(params, message):
    with pytest.raises(DataError, match=message):
        SparkALS(**params)


def test_another_master_than_the_running_session_is_refused():
    with pytest.raises(EngineError, match=r"already running .* stop it before asking for "
                                          r"local\[1\]"):
        SparkALS(factors=2, iterations=1, master="local[1]").fit(small_data())


def pairs_on_spark(spark, *, zero_every: int = 0, unrated_every: int = 0):
    """small_data's pairs as :func:`recengine.spark.prepare.aggregate` gives them: some with
    feedback 0 (observed, nothing to weigh), some without a rating."""
    data = small_data(seed=3)
    users, items = data.feedback.nonzero()
    frame = pd.DataFrame({"user_id": data.users.ids[users], "item_id": data.items.ids[items],
                          "rating": data.ratings[users, items].astype(float),
                          "feedback": data.feedback[users, items].astype(float),
                          "timestamp": pd.Timestamp("2026-01-01"), "n_events": 1})
    frame = frame.sample(frac=1.0, random_state=0)  # no help from the rows' order
    if zero_every:
        frame.loc[frame.index[::zero_every], "feedback"] = 0.0
    if unrated_every:
        frame.loc[frame.index[::unrated_every], "rating"] = np.nan
    return spark.createDataFrame(frame)


@pytest.mark.parametrize(("params", "pairs"), [
    ({"factors": 6, "iterations": 6}, {"zero_every": 7}),
    ({"factors": 6, "iterations": 6, "item_weight_exponent": 0.3, "user_weight_exponent": 0.5,
      "confidence": "raw", "alpha": 3.0}, {}),
    ({"factors": 4, "iterations": 6, "feedback": "explicit", "regularization": 0.2},
     {"unrated_every": 5}),
])
def test_a_fit_from_a_spark_frame_learns_what_a_fit_of_the_pairs_collected_learns(
        spark, params, pairs):
    """The frame's fit builds the vocabularies, weights and MLlib's values on Spark; they and
    the factors must be the ones the collected pairs give (MLlib sums in another order)."""
    from recengine.spark.prepare import pairs_to_pandas

    frame = pairs_on_spark(spark, **pairs)
    collected = TrainingData.from_interactions(pairs_to_pandas(frame))
    local = SparkALS(blocks=2, **params).fit(collected)
    on_spark = SparkALS(blocks=2, **params).fit_frame(frame)
    assert on_spark.users_.ids.tolist() == local.users_.ids.tolist()
    assert on_spark.items_.ids.tolist() == local.items_.ids.tolist()
    for name in ("item_weights_", "user_weights_", "weight_norms_", "reg_param_"):
        np.testing.assert_allclose(getattr(on_spark, name), getattr(local, name), rtol=1e-6)
    np.testing.assert_allclose(on_spark.user_factors_, local.user_factors_, atol=1e-4)
    np.testing.assert_allclose(on_spark.item_factors_, local.item_factors_, atol=1e-4)
    assert on_spark.histories_ is None


def test_a_frame_fit_that_fails_leaves_the_model_as_it_was(spark):
    frame = pairs_on_spark(spark, unrated_every=1)  # not one rating
    model = SparkALS(factors=4, iterations=2, blocks=2, feedback="explicit").fit(small_data())
    before = model.user_factors_
    with pytest.raises(DataError, match="explicit WALS needs ratings"):
        model.fit_frame(frame)
    with pytest.raises(DataError, match="no training interactions"):
        SparkALS(factors=4, iterations=2, blocks=2).fit_frame(frame.limit(0))
    assert model.user_factors_ is before
