"""Input checks and the NaN-safe ratio, shared by the metric modules.

Every public metric validates its inputs once, at its entry point, through these helpers, so
one bad input (lists that are not 2-D, ``k`` out of range, an ``n_relevant`` that does not fit
the hit matrix) gets the same message from every metric. :func:`ratio` gives NaN, with no
warning, for users who cannot be scored.
"""

from __future__ import annotations

import operator

import numpy as np


def check_k(k: int, depth: int) -> int:
    k = operator.index(k)
    if not 1 <= k <= depth:
        raise ValueError(f"k must be between 1 and the list length {depth}, got {k}")
    return k


def check_lists(recommended: np.ndarray, n_items: int | None = None) -> np.ndarray:
    """``recommended`` as a 2-D int64 array whose entries are -1 or item indices < n_items."""
    rec = np.asarray(recommended)
    if rec.ndim != 2:
        raise ValueError(f"recommended must be 2-D [n_users, K], got shape {rec.shape}")
    if rec.size and not np.issubdtype(rec.dtype, np.integer):
        raise TypeError(f"recommended must hold integer item indices, got dtype {rec.dtype}")
    rec = rec.astype(np.int64, copy=False)
    if rec.size:
        low, high = int(rec.min()), int(rec.max())
        if low < -1:
            raise ValueError(f"recommended holds {low}: item indices are >= 0, padding is -1")
        if n_items is not None and high >= n_items:
            raise ValueError(f"recommended holds item {high}, but there are only {n_items} items")
    return rec


def check_hit(hit: np.ndarray, k: int) -> np.ndarray:
    """The first ``k`` columns of a validated ``[n_users, K]`` hit matrix, as bool."""
    h = np.asarray(hit)
    if h.ndim != 2:
        raise ValueError(f"hit must be 2-D [n_users, K] (see hits()), got shape {h.shape}")
    return h[:, : check_k(k, h.shape[1])].astype(bool, copy=False)


def check_n_relevant(n_relevant: np.ndarray, hit: np.ndarray) -> np.ndarray:
    n = np.asarray(n_relevant)
    if n.shape != (hit.shape[0],):
        raise ValueError(f"n_relevant must have one entry per user ({hit.shape[0]}), "
                         f"got shape {n.shape}")
    if n.size and not np.issubdtype(n.dtype, np.integer) and not np.array_equal(n, np.round(n)):
        raise ValueError("n_relevant must hold whole numbers of relevant items")
    n = n.astype(np.int64)
    if n.size and n.min() < 0:
        raise ValueError("n_relevant must be >= 0")
    if n.size and (np.asarray(hit, dtype=bool).sum(axis=1) > n).any():
        raise ValueError("n_relevant is smaller than the number of hits for some users: pass "
                         "np.diff(relevant.indptr) for the matrix given to hits()")
    return n


def ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator`` as float64, NaN where the denominator is 0 (no warning)."""
    out = np.full(np.shape(numerator), np.nan)
    np.divide(numerator, denominator, out=out, where=np.asarray(denominator) > 0)
    return out
