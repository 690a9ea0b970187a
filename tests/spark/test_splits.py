"""The retrain's holdout splits on Spark against the local ones: the same pairs for the time
and last holdouts and for the stratified fallback."""

from __future__ import annotations

import pandas as pd
import pytest

from recengine.data import splits as local
from recengine.data.loaders import load_dataset
from recengine.data.synthetic import generate
from recengine.data.weighting import aggregate
from recengine.errors import DataError
from recengine.spark import splits as on_spark
from recengine.spark.prepare import pairs_to_pandas


@pytest.fixture(scope="module")
def movielens(require_dataset) -> pd.DataFrame:
    dataset, _ = load_dataset("movielens-100k", require_dataset("ml-100k"), seed=42)
    return aggregate(dataset.events, dataset.schema)


def keys(frame: pd.DataFrame) -> set[tuple[str, str]]:
    return set(zip(frame["user_id"], frame["item_id"], strict=True))


def assert_same_split(expected: local.Split, got: on_spark.SparkSplit) -> None:
    assert keys(expected.test) == keys(pairs_to_pandas(got.test))
    assert keys(expected.train) == keys(pairs_to_pandas(got.train))
    assert got.description == expected.description


@pytest.mark.parametrize("fraction", [0.37])
def test_movielens_time_holdout_equals_the_local_one(spark, movielens, fraction):
    assert_same_split(local.time_cutoff(movielens, fraction),
                      on_spark.time_cutoff(spark.createDataFrame(movielens), fraction))


@pytest.mark.parametrize("n", [2])
def test_movielens_last_n_holdout_equals_the_local_one(spark, movielens, n):
    assert_same_split(local.leave_last_n(movielens, n),
                      on_spark.leave_last_n(spark.createDataFrame(movielens), n))


def test_time_holdout_of_a_log_with_many_equal_times(spark):
    """The synthetic log's times collide: the cut and its ties fall as locally."""
    dataset = generate(n_users=120, n_items=50, seed=3)
    pairs = aggregate(dataset.events, dataset.schema)
    pairs["timestamp"] = pairs["timestamp"].dt.floor("D")
    for fraction in (0.1, 0.25, 0.5):
        assert_same_split(local.time_cutoff(pairs, fraction),
                          on_spark.time_cutoff(spark.createDataFrame(pairs), fraction))


def test_movielens_stratified_fallback_equals_the_local_one(spark, movielens):
    """The same NumPy draws at the same positions, though each partition draws its own."""
    frame = spark.createDataFrame(movielens).repartition(3)
    assert_same_split(local.stratified(movielens, 0.1, seed=42),
                      on_spark.stratified(frame, 0.1, seed=42))


def test_stratified_fallback_semantics(spark, synthetic_pairs):
    """Each user's rint(n × fraction) pairs, at most n − 1, to test; every pair on exactly
    one side; as the local split for a seed, other pairs for another seed."""
    frame = spark.createDataFrame(synthetic_pairs)
    split = on_spark.stratified(frame, 0.25, seed=7)
    train, test = pairs_to_pandas(split.train), pairs_to_pandas(split.test)
    assert keys(train) | keys(test) == keys(synthetic_pairs)
    assert not keys(train) & keys(test)
    sizes = synthetic_pairs.groupby("user_id").size()
    held = test.groupby("user_id").size().reindex(sizes.index, fill_value=0)
    expected = pd.Series([min(round(n * 0.25), n - 1) for n in sizes], index=sizes.index)
    assert (held == expected).all()
    assert set(train["user_id"]) == set(sizes.index)  # every user keeps training pairs
    assert_same_split(local.stratified(synthetic_pairs, 0.25, seed=7), split)
    assert keys(pairs_to_pandas(on_spark.stratified(frame, 0.25, seed=8).test)) != keys(test)


def test_time_splits_need_times(spark, synthetic_pairs):
    pairs = synthetic_pairs.assign(timestamp=pd.NaT)
    frame = spark.createDataFrame(pairs.astype({"timestamp": "datetime64[s]"}))
    with pytest.raises(DataError, match="needs a timestamp on every event"):
        on_spark.time_cutoff(frame, 0.1)
    with pytest.raises(DataError, match="a retrain on Spark splits by"):
        on_spark.make_split(frame, "users", test_fraction=0.1, seed=0, last_n=1)
