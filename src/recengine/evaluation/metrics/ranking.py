"""Ranking accuracy: :func:`hits`, and the metrics that read the boolean matrix it returns.

:func:`hits` looks the recommended items up in the relevance matrix once; precision, recall,
nDCG, average precision, reciprocal rank, hit rate and AUC then read only that ``[n_users, K]``
matrix, so one lookup serves every metric and cut-off. The input conventions and the
definitions are in the package docstring.
"""

from __future__ import annotations

from typing import cast

import numpy as np
import scipy.sparse as sp

from recengine.evaluation.metrics._checks import (
    check_hit,
    check_lists,
    check_n_relevant,
    ratio,
)

__all__ = [
    "auc",
    "average_precision_at_k",
    "hit_rate_at_k",
    "hits",
    "ndcg_at_k",
    "precision_at_k",
    "recall_at_k",
    "reciprocal_rank_at_k",
]


# --------------------------------------------------------------------------- hits


def _repeats(rec: np.ndarray) -> np.ndarray:
    """True where a list repeats an item already listed at a better rank."""
    order = np.argsort(rec, axis=1, kind="stable")  # equal items keep their rank order
    ranked = np.take_along_axis(rec, order, axis=1)
    repeat = np.zeros(rec.shape, dtype=bool)
    repeat[:, 1:] = (ranked[:, 1:] == ranked[:, :-1]) & (ranked[:, 1:] >= 0)
    out = np.empty_like(repeat)
    np.put_along_axis(out, order, repeat, axis=1)
    return out


def hits(recommended: np.ndarray, relevant: sp.csr_array | sp.csr_matrix) -> np.ndarray:
    """Boolean ``[n_users, K]``: whether each recommended item is relevant to its user.

    An item is relevant if it is a stored entry of the user's row of ``relevant`` (values are
    ignored; call ``eliminate_zeros()`` first if explicit zeros should not count). Padding (-1)
    is never a hit, and an item a list repeats counts only at its first (best) rank, so no
    metric can exceed its maximum. The lookup is one ``np.searchsorted`` of ``user · n_items +
    item`` keys into the same keys of the sorted CSR entries: O(n_users · K · log nnz), no loop
    over users.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> relevant = sp.csr_array(np.array([[0, 1, 0, 1], [1, 0, 0, 0]]))
    >>> hits(np.array([[1, 2, 3], [2, 0, -1]]), relevant)
    array([[ True, False,  True],
           [False,  True, False]])
    """
    if not sp.issparse(relevant):
        raise TypeError("relevant must be a scipy.sparse CSR matrix, "
                        f"got {type(relevant).__name__}")
    rel = sp.csr_array(relevant)
    n_users, n_items = rel.shape
    rec = check_lists(recommended, n_items)
    if rec.shape[0] != n_users:
        raise ValueError(f"recommended has {rec.shape[0]} users (rows) but relevant has {n_users}")
    if not rel.has_sorted_indices:
        rel = rel.sorted_indices()  # a copy: the caller's matrix is left alone
    counts = np.diff(rel.indptr)
    # Rows in order and columns sorted within each row, so the keys are sorted.
    keys = np.repeat(np.arange(n_users, dtype=np.int64) * n_items, counts)
    keys += rel.indices
    valid = rec >= 0
    query = np.arange(n_users, dtype=np.int64)[:, None] * n_items + np.where(valid, rec, 0)
    if not len(keys):
        return np.zeros(rec.shape, dtype=bool)
    pos = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
    return (keys[pos] == query) & valid & ~_repeats(rec)


# --------------------------------------------------------------------------- accuracy


def precision_at_k(hit: np.ndarray, k: int, *, n_relevant: np.ndarray | None = None
                   ) -> np.ndarray:
    """Precision@k = (relevant items in the top k) / k, per user.

    The denominator is always ``k``: a list padded with -1 is charged for its empty slots.
    Without ``n_relevant`` a user with nothing relevant scores 0; pass it to get NaN for them,
    as the metrics that need ``n_relevant`` do.

    Examples
    --------
    Hits at ranks 1 and 3; the second user's list is padded (-1) after one miss:

    >>> hit = np.array([[True, False, True, False], [False, False, False, False]])
    >>> precision_at_k(hit, 4)
    array([0.5, 0. ])
    >>> precision_at_k(hit, 2)
    array([0.5, 0. ])
    >>> precision_at_k(hit, 2, n_relevant=np.array([2, 0]))
    array([0.5, nan])
    """
    h = check_hit(hit, k)
    out = h.sum(axis=1) / h.shape[1]
    if n_relevant is not None:
        out[check_n_relevant(n_relevant, hit) == 0] = np.nan
    return out


def recall_at_k(hit: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Recall@k = (relevant items in the top k) / (relevant items), per user; NaN if none.

    The denominator is the user's whole relevant set, so recall@k stays below 1 when a user has
    more than ``k`` relevant items.

    Examples
    --------
    >>> recall_at_k(np.array([[True, False, True], [False, True, False]]), [4, 1], 3)
    array([0.5, 1. ])
    """
    h = check_hit(hit, k)
    return ratio(h.sum(axis=1), check_n_relevant(n_relevant, hit))


def _discounts(k: int) -> np.ndarray:
    """1 / log2(rank + 1) for ranks 1..k."""
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def ndcg_at_k(hit: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """nDCG@k with binary gains and a log2 discount, per user; NaN for users with nothing relevant.

    DCG@k = Σ_{i≤k} rel_i / log2(i + 1). The ideal DCG puts min(R, k) relevant items at the top:
    IDCG@k = Σ_{i≤min(R, k)} 1 / log2(i + 1), so a list can reach 1 even when R > k.

    Examples
    --------
    Hits at ranks 1 and 3, two relevant items: (1 + 1/log2(4)) / (1 + 1/log2(3)) = 1.5 / 1.631;
    a single relevant item found at rank 2: (1/log2(3)) / 1:

    >>> ndcg_at_k(np.array([[True, False, True], [False, True, False]]), [2, 1], 3).round(4)
    array([0.9197, 0.6309])

    A user with nothing relevant cannot be scored:

    >>> ndcg_at_k(np.array([[False, False, False]]), [0], 3)
    array([nan])
    """
    h = check_hit(hit, k)
    n = check_n_relevant(n_relevant, hit)
    discounts = _discounts(h.shape[1])
    ideal = np.concatenate([[0.0], np.cumsum(discounts)])  # ideal[j] = IDCG of j hits
    return ratio(h @ discounts, ideal[np.minimum(n, h.shape[1])])


def average_precision_at_k(hit: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """AP@k = Σ_{i≤k} precision@i · rel_i / min(R, k), per user; NaN for users with R = 0.

    Normalising by min(R, k) rather than R (as some libraries do) means a list whose top k are
    all relevant scores 1 even when the user has more than k relevant items; dividing by R would
    cap it at k / R. Averaged over users this is MAP@k.

    Examples
    --------
    Hits at ranks 1 and 3 of 3 relevant, k = 3: (1/1 + 2/3) / min(3, 3) = 0.5556:

    >>> average_precision_at_k(np.array([[True, False, True]]), [3], 3).round(4)
    array([0.5556])
    """
    h = check_hit(hit, k)
    n = check_n_relevant(n_relevant, hit)
    precision_at_i = np.cumsum(h, axis=1) / np.arange(1, h.shape[1] + 1)
    return ratio((precision_at_i * h).sum(axis=1), np.minimum(n, h.shape[1]))


def reciprocal_rank_at_k(hit: np.ndarray, k: int) -> np.ndarray:
    """RR@k = 1 / rank of the first relevant item within the top k, 0 if none; per user.

    Averaged over users this is MRR@k. Like :func:`precision_at_k` it cannot tell a user with
    nothing relevant (0) apart; leave such users out before averaging.

    Examples
    --------
    >>> reciprocal_rank_at_k(np.array([[False, False, True], [True, True, False]]), 3)
    array([0.33333333, 1.        ])
    >>> reciprocal_rank_at_k(np.array([[False, False, True]]), 2)
    array([0.])
    """
    h = check_hit(hit, k)
    first = np.argmax(h, axis=1)  # 0 when there is no hit; masked below
    return np.where(h.any(axis=1), 1.0 / (first + 1), 0.0)


def hit_rate_at_k(hit: np.ndarray, k: int) -> np.ndarray:
    """Hit rate@k = 1 if any of the top k is relevant, else 0; per user.

    Examples
    --------
    >>> hit_rate_at_k(np.array([[False, False, True], [False, False, False]]), 3)
    array([1., 0.])
    """
    # A 2-D matrix reduced over axis 1 is an array, never the scalar numpy's stubs allow for.
    return cast(np.ndarray, check_hit(hit, k).any(axis=1)).astype(np.float64)


def auc(hit: np.ndarray) -> np.ndarray:
    """Area under the ROC curve of each user's full ranking of a candidate set.

    ``hit`` ranks every candidate (``[n_users, n_candidates]``, best first); AUC is the share of
    (relevant, irrelevant) pairs ranked in the right order. NaN for users with no relevant or no
    irrelevant candidate.

    Examples
    --------
    >>> auc(np.array([[True, False, True, False]]))  # 3 of the 4 pairs in order
    array([0.75])
    """
    h = np.asarray(hit, dtype=bool)
    n_pos = h.sum(axis=1)
    n_neg = h.shape[1] - n_pos
    negatives_above = np.cumsum(~h, axis=1)
    misordered = np.where(h, negatives_above, 0).sum(axis=1)
    return ratio(n_pos * n_neg - misordered, n_pos * n_neg)
