"""Splits: deterministic by seed, no pair on both sides, each protocol's promise kept."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recengine.data.splits import (
    held_out_users,
    leave_last_n,
    make_split,
    stratified,
    time_cutoff,
)
from recengine.errors import DataError


@pytest.fixture(scope="module")
def pairs() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for u in range(60):
        n = int(rng.integers(1, 30))
        for i in rng.choice(200, size=n, replace=False):
            when = pd.Timestamp("2024-01-01") + pd.Timedelta(hours=int(rng.integers(0, 5000)))
            rows.append((f"u{u}", f"i{i}", float(rng.integers(1, 6)), 1.0, when))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "feedback", "timestamp"])


def keys(frame: pd.DataFrame) -> set[tuple[str, str]]:
    return set(zip(frame["user_id"], frame["item_id"], strict=True))


def test_stratified_is_per_user_and_disjoint(pairs):
    split = stratified(pairs, 0.25, seed=1)
    assert keys(split.train).isdisjoint(keys(split.test))
    assert keys(split.train) | keys(split.test) == keys(pairs)
    sizes = pairs.groupby("user_id").size()
    test_sizes = split.test.groupby("user_id").size().reindex(sizes.index, fill_value=0)
    expected = np.minimum(np.rint(sizes * 0.25), sizes - 1)
    assert (test_sizes == expected).all()
    assert set(split.train["user_id"]) == set(pairs["user_id"])  # every user keeps training data


def test_stratified_is_deterministic_and_order_free(pairs):
    a = stratified(pairs, 0.25, seed=7)
    b = stratified(pairs.sample(frac=1, random_state=3), 0.25, seed=7)
    c = stratified(pairs, 0.25, seed=8)
    assert keys(a.test) == keys(b.test)
    assert keys(a.test) != keys(c.test)


def test_time_cutoff_puts_the_future_in_test(pairs):
    split = time_cutoff(pairs, 0.2)
    assert split.train["timestamp"].max() < split.test["timestamp"].min()
    assert set(split.test["user_id"]) <= set(split.train["user_id"])
    assert 0.1 < len(split.test) / len(pairs) <= 0.2


def test_leave_last_n_takes_each_users_latest(pairs):
    split = leave_last_n(pairs, 2)
    for user, group in pairs.groupby("user_id"):
        test = split.test[split.test["user_id"] == user]
        if len(group) > 2:
            latest = group.sort_values(["timestamp", "item_id"]).tail(2)
            assert keys(test) == keys(latest)
        else:
            assert test.empty


def test_held_out_users_are_absent_from_training(pairs):
    split = held_out_users(pairs, 0.2, 0.5, seed=0)
    held = set(split.test["user_id"])
    assert held and held.isdisjoint(split.train["user_id"])
    assert split.given is not None and set(split.given["user_id"]) == held
    assert keys(split.given).isdisjoint(keys(split.test))
    assert keys(split.given) | keys(split.test) | keys(split.train) == keys(pairs)


def test_time_splits_need_timestamps(pairs):
    no_time = pairs.assign(timestamp=pd.NaT)
    with pytest.raises(DataError, match="needs a timestamp"):
        make_split(no_time, "time")


@pytest.mark.parametrize("fraction", [0, 1, 1.5])
def test_bad_fractions_are_rejected(pairs, fraction):
    with pytest.raises(DataError, match="test_fraction must be between 0 and 1"):
        stratified(pairs, fraction)


def test_unknown_split_name(pairs):
    with pytest.raises(DataError, match="unknown split 'weird'"):
        make_split(pairs, "weird")


def test_cold_items_hold_whole_items_out(pairs):
    split = make_split(pairs, "cold-items", test_fraction=0.2, seed=3)
    held = set(split.candidates)
    assert held and held.isdisjoint(split.train["item_id"])
    assert set(split.test["item_id"]) <= held
    assert set(split.test["user_id"]) <= set(split.train["user_id"])


def test_cold_users_have_no_history(pairs):
    split = make_split(pairs, "cold-users", test_fraction=0.2, seed=3)
    cold = set(split.test["user_id"])
    assert cold and cold.isdisjoint(split.train["user_id"])
    assert keys(split.train) | keys(split.test) == keys(pairs)
