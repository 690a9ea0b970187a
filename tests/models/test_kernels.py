"""The top-k kernel: the same answer as its NumPy twin, in parallel or not, whatever order a
row is in."""

from __future__ import annotations

import numpy as np
import pytest

from recengine.models import kernels


def _all_three(scores: np.ndarray, k: int) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    out = []
    for select in (kernels.select_top_k, kernels.select_top_k_serial,
                   kernels.select_top_k_numpy):
        idx, val = np.empty((len(scores), k), np.int32), np.empty((len(scores), k), np.float32)
        select(scores, k, idx, val)
        out.append((idx, val))
    return tuple(out)


def test_short_rows_with_ties_and_gaps_agree_with_the_twin():
    rng = np.random.default_rng(5)
    scores = rng.integers(0, 6, size=(40, 30)).astype(np.float32)  # many ties
    scores[rng.random(scores.shape) < 0.2] = -np.inf
    scores[3, :28] = np.nan  # a row with only two candidates
    scores[3, 28:] = [2.0, 5.0]
    (fast, serial, twin) = _all_three(scores, 7)
    np.testing.assert_array_equal(serial[0], fast[0])
    np.testing.assert_array_equal(fast[0], twin[0])
    np.testing.assert_array_equal(fast[1], twin[1])
    assert fast[0][3].tolist() == [29, 28, -1, -1, -1, -1, -1]


@pytest.mark.parametrize("k", [1, 7, 50])
def test_long_rows_in_any_order_agree_with_the_twin(k):
    """Rows long enough that a sample of each sets a floor first: ascending, descending, few
    distinct values (ties across the floor), unscored stretches, fewer finite scores than k."""
    rng = np.random.default_rng(11)
    n = 20_000
    rows = [np.arange(n, dtype=np.float32), np.arange(n, 0, -1).astype(np.float32),
            rng.integers(0, 4, n).astype(np.float32), rng.random(n).astype(np.float32),
            np.full(n, -np.inf, np.float32)]
    rows[3][rng.random(n) < 0.5] = np.nan
    rows[4][[5, 9_999, 19_998]] = [1.0, 3.0, 1.0]
    scores = np.vstack(rows)
    (fast, serial, twin) = _all_three(scores, k)
    np.testing.assert_array_equal(fast[0], twin[0])
    np.testing.assert_array_equal(serial[0], twin[0])
    np.testing.assert_array_equal(fast[1], twin[1])
    assert fast[0][0, 0] == n - 1 and fast[0][1, 0] == 0
    assert fast[0][2].tolist() == np.flatnonzero(rows[2] == 3)[:k].tolist()


def test_no_slots_asked_none_filled():
    scores = np.arange(12, dtype=np.float32).reshape(2, 6)
    for (idx, val) in _all_three(scores, 0):
        assert idx.shape == val.shape == (2, 0)
