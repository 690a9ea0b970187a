"""spark-als: the interface, on a real local Spark session, and the mapping onto WALS's
objective checked through WALS's own fold-in."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
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
