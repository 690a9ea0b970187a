"""Ranking metrics on Spark against the local evaluator, on the same lists."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recengine.data.loaders import load_dataset
from recengine.evaluation.evaluator import evaluate
from recengine.models import WALS
from recengine.pipeline.prepare import prepare
from recengine.spark.evaluation import METRICS, ranking_metrics


def lists_frame(ids: np.ndarray, lists: list[list[str]]) -> pd.DataFrame:
    return pd.DataFrame([(str(u), rank, str(item)) for u, row in zip(ids, lists, strict=True)
                         for rank, item in enumerate(row, 1)],
                        columns=["user_id", "rank", "item_id"])


def test_movielens_metrics_equal_the_local_evaluator(spark, require_dataset):
    """WALS's lists on MovieLens 100K (stratified 75/25, seed 42), measured both ways."""
    dataset, _ = load_dataset("movielens-100k", require_dataset("ml-100k"), seed=42)
    prepared = prepare(dataset, "stratified", test_fraction=0.25, seed=42)
    model = WALS(factors=16, iterations=5)
    result = evaluate({"wals": model}, prepared.data, prepared.split, ks=[5, 10])
    users = np.asarray(prepared.split.test_users, dtype=object)
    recommended = result.models["wals"].recommended
    assert len(users) == len(recommended)  # every test user has training pairs here
    lists = [[str(i) for i in prepared.data.items.id_of(row[row >= 0])]
             for row in recommended[:, :10]]
    on_spark = ranking_metrics(spark.createDataFrame(lists_frame(users, lists)),
                               spark.createDataFrame(prepared.split.test[["user_id", "item_id"]]
                                                     .astype(str)), ks=[5, 10])
    local = result.models["wals"].metrics
    for k in (5, 10):
        for metric in METRICS:
            assert on_spark[f"{metric}@{k}"] == pytest.approx(local[f"{metric}@{k}"],
                                                              rel=1e-9), f"{metric}@{k}"
    assert 0.2 < on_spark["ndcg@10"] < 0.6


def test_repeats_padding_and_users_without_lists(spark):
    """One user finds b at rank 1 (listed twice) and nothing else; one has a short list and a
    hit at rank 2; one has no list at all."""
    recommended = lists_frame(np.array(["u", "v"]), [["b", "b", "x"], ["y", "c"]])
    relevant = pd.DataFrame({"user_id": ["u", "u", "v", "w"], "item_id": ["b", "d", "c", "e"]})
    got = ranking_metrics(spark.createDataFrame(recommended), spark.createDataFrame(relevant),
                          ks=[3])
    assert got["precision@3"] == pytest.approx((1 / 3 + 1 / 3 + 0) / 3)
    assert got["recall@3"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert got["ndcg@3"] == pytest.approx((1 / (1 + 1 / np.log2(3)) + (1 / np.log2(3)) + 0) / 3)
    assert got["map@3"] == pytest.approx((1 / 2 + (1 / 2) / 1 + 0) / 3)
    assert got["mrr@3"] == pytest.approx((1 + 1 / 2 + 0) / 3)
    assert got["hit_rate@3"] == pytest.approx(2 / 3)
