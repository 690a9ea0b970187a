"""Beyond accuracy, from popularity: catalogue coverage, novelty and mean popularity.

:func:`catalogue_coverage`, :func:`novelty_at_k` and :func:`mean_popularity_at_k` judge the
recommended items themselves (which items, how many training users know them), not whether
they were relevant, so they need no held-out data. The fourth beyond-accuracy metric,
intra-list diversity, reads item vectors instead and has a module of its own
(:mod:`~recengine.evaluation.metrics.diversity`).
"""

from __future__ import annotations

import operator

import numpy as np

from recengine.evaluation.metrics._checks import check_k, check_lists, ratio

__all__ = ["catalogue_coverage", "mean_popularity_at_k", "novelty_at_k"]


def catalogue_coverage(recommended: np.ndarray, k: int, n_items: int) -> float:
    """Share of the catalogue in at least one user's top k: distinct valid items / n_items.

    Padding (-1) is not an item. One number for the whole batch, not per user.

    Examples
    --------
    >>> catalogue_coverage(np.array([[0, 1, 2], [1, 3, -1]]), 2, 10)
    0.3
    """
    n_items = operator.index(n_items)
    if n_items < 1:
        raise ValueError(f"n_items must be >= 1, got {n_items}")
    rec = check_lists(recommended, n_items)
    top = rec[:, : check_k(k, rec.shape[1])]
    listed = np.zeros(n_items, dtype=bool)
    listed[top[top >= 0]] = True
    return int(listed.sum()) / n_items


def _check_popularity(item_popularity: np.ndarray, n_users_train: int) -> tuple[np.ndarray, int]:
    counts = np.asarray(item_popularity, dtype=np.float64)
    n = operator.index(n_users_train)
    if counts.ndim != 1:
        raise ValueError(f"item_popularity must be 1-D (one count per item), got {counts.shape}")
    if n < 1:
        raise ValueError(f"n_users_train must be >= 1, got {n}")
    if counts.size and (counts.min() < 0 or counts.max() > n):
        raise ValueError("item_popularity counts training users per item, so it must be between "
                         f"0 and n_users_train ({n})")
    return counts, n


def _list_mean(per_item: np.ndarray, recommended: np.ndarray, k: int) -> np.ndarray:
    """Mean of a per-item value over each user's valid top-k items; NaN for an empty list."""
    rec = check_lists(recommended, len(per_item))
    top = rec[:, : check_k(k, rec.shape[1])]
    valid = top >= 0
    values = np.zeros(top.shape)
    values[valid] = per_item[top[valid]]
    return ratio(values.sum(axis=1), valid.sum(axis=1))


def novelty_at_k(recommended: np.ndarray, k: int, item_popularity: np.ndarray,
                 n_users_train: int) -> np.ndarray:
    """Mean self-information of each user's top-k items: mean of −log2 p_i, per user.

    p_i = (count_i + 1) / (n_users_train + 1), with count_i the number of training users who
    interacted with item i (``item_popularity``): the share of users who know the item, add-one
    smoothed because an item no training user has seen would otherwise have p = 0 and infinite
    self-information. Such an item gets log2(n_users_train + 1) bits, the most of any item; one
    every user knows gets 0. Padding is left out of the mean; an empty list gives NaN.

    Examples
    --------
    3 training users; item 0 known to all of them (p = 4/4, 0 bits), item 1 to one (p = 2/4,
    1 bit), item 2 to none (p = 1/4, 2 bits):

    >>> novelty_at_k(np.array([[0, 1, 2], [2, -1, -1]]), 3, np.array([3, 1, 0]), 3)
    array([1., 2.])
    """
    counts, n = _check_popularity(item_popularity, n_users_train)
    information = -np.log2((counts + 1.0) / (n + 1.0))
    return _list_mean(information, recommended, k)


def mean_popularity_at_k(recommended: np.ndarray, k: int, item_popularity: np.ndarray,
                         n_users_train: int) -> np.ndarray:
    """Mean popularity of each user's top-k items, count_i / n_users_train, per user.

    ``item_popularity`` counts the training users who interacted with each item, so the value
    is the average share of training users who know a recommended item: a measure of popularity
    bias. Padding is left out of the mean; an empty list gives NaN.

    Examples
    --------
    >>> mean_popularity_at_k(np.array([[0, 1, 2], [2, -1, -1]]), 3, np.array([3, 1, 0]), 3)
    array([0.44444444, 0.        ])
    """
    counts, n = _check_popularity(item_popularity, n_users_train)
    return _list_mean(counts / n, recommended, k)
