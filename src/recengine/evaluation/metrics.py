"""Evaluation metrics, vectorised over a whole batch of users.

Ranking metrics take ``recommended`` (item indices ``[n_users, K]``, best first, padded with -1)
and return one value per user, so callers can average overall or within user groups. Relevance
is binary: an item is relevant to a user if it is among their held-out (test) pairs. Users with
no relevant items get NaN and are left out of averages.

Definitions (``rel_i`` = 1 if the item at rank ``i`` is relevant, ``R`` = number relevant):

- precision@k = Σ_{i≤k} rel_i / k (padding counts in the denominator)
- recall@k = Σ_{i≤k} rel_i / R
- nDCG@k = Σ_{i≤k} rel_i / log2(i + 1), divided by the same for an ideal list of min(R, k) hits
- AP@k = Σ_{i≤k} precision@i · rel_i / min(R, k) (so a perfect list scores 1 even when R > k;
  dividing by R instead would cap it at k / R)
- RR@k = 1 / rank of the first hit within k, else 0; hit rate@k = 1 if any hit within k.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = [
    "activity_groups",
    "average_precision_at_k",
    "catalogue_coverage",
    "hit_rate_at_k",
    "hits",
    "intra_list_diversity_at_k",
    "mae",
    "mean_popularity_at_k",
    "ndcg_at_k",
    "novelty_at_k",
    "precision_at_k",
    "recall_at_k",
    "reciprocal_rank_at_k",
    "rmse",
]


def hits(recommended: np.ndarray, relevant: sp.csr_array | sp.csr_matrix) -> np.ndarray:
    """Boolean ``[n_users, K]``: whether each recommended item is in the user's relevant set.

    Looks every (user, item) up in the sorted CSR rows with one ``searchsorted`` over a global
    key, so it costs O(n_users · K · log nnz) with no Python loop.
    """
    rel = sp.csr_array(relevant)
    rel.sort_indices()
    n_items = rel.shape[1]
    rows = np.repeat(np.arange(rel.shape[0], dtype=np.int64), np.diff(rel.indptr))
    keys = rows * n_items + rel.indices.astype(np.int64)  # sorted, as rows and indices are
    user = np.arange(recommended.shape[0], dtype=np.int64)[:, None]
    query = user * n_items + np.maximum(recommended, 0).astype(np.int64)
    pos = np.searchsorted(keys, query)
    found = np.zeros(query.shape, dtype=bool)
    inside = pos < len(keys)
    found[inside] = keys[pos[inside]] == query[inside]
    return found & (recommended >= 0)


def _no_relevant_to_nan(values: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    return np.where(np.asarray(n_relevant) > 0, values, np.nan)


def precision_at_k(hit: np.ndarray, k: int) -> np.ndarray:
    """Share of the top ``k`` slots that hold a relevant item.

    >>> precision_at_k(np.array([[True, False, True, False]]), 4).tolist()
    [0.5]
    """
    return hit[:, :k].sum(axis=1) / k


def recall_at_k(hit: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Share of the user's relevant items found in the top ``k``."""
    n = np.asarray(n_relevant, dtype=np.float64)
    return _no_relevant_to_nan(hit[:, :k].sum(axis=1) / np.maximum(n, 1), n)


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2))


def ndcg_at_k(hit: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """DCG of the top ``k`` over the DCG of an ideal list (binary gains, log2 discount).

    Hits at ranks 1 and 3 of 2 relevant items: (1 + 1/2) / (1 + 1/log2(3)).

    >>> round(float(ndcg_at_k(np.array([[True, False, True]]), np.array([2]), 3)[0]), 4)
    0.9197
    """
    k = min(k, hit.shape[1])
    disc = _discounts(k)
    dcg = (hit[:, :k] * disc).sum(axis=1)
    ideal_cum = np.concatenate([[0.0], np.cumsum(disc)])
    n = np.asarray(n_relevant)
    idcg = ideal_cum[np.minimum(n, k)]
    return _no_relevant_to_nan(dcg / np.where(idcg > 0, idcg, 1.0), n)


def average_precision_at_k(hit: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Σ precision@i at each hit within ``k``, over min(R, k)."""
    h = hit[:, :k].astype(np.float64)
    precision_at_i = np.cumsum(h, axis=1) / np.arange(1, h.shape[1] + 1)
    n = np.asarray(n_relevant)
    denom = np.maximum(np.minimum(n, k), 1)
    return _no_relevant_to_nan((precision_at_i * h).sum(axis=1) / denom, n)


def reciprocal_rank_at_k(hit: np.ndarray, k: int) -> np.ndarray:
    """1 / rank of the first relevant item within ``k``; 0 if there is none."""
    h = hit[:, :k]
    first = np.argmax(h, axis=1)
    return np.where(h.any(axis=1), 1.0 / (first + 1), 0.0)


def hit_rate_at_k(hit: np.ndarray, k: int) -> np.ndarray:
    """1 if any of the top ``k`` is relevant, else 0."""
    return hit[:, :k].any(axis=1).astype(np.float64)


def _check_pairs(predicted: np.ndarray, actual: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, a = np.asarray(predicted, dtype=np.float64), np.asarray(actual, dtype=np.float64)
    if p.shape != a.shape:
        raise ValueError(f"{len(p)} predictions for {len(a)} ratings")
    return p, a


def rmse(predicted: np.ndarray, actual: np.ndarray) -> float:
    """Root mean squared error of rating predictions."""
    p, a = _check_pairs(predicted, actual)
    return float(np.sqrt(np.mean((p - a) ** 2))) if len(p) else float("nan")


def mae(predicted: np.ndarray, actual: np.ndarray) -> float:
    """Mean absolute error of rating predictions."""
    p, a = _check_pairs(predicted, actual)
    return float(np.mean(np.abs(p - a))) if len(p) else float("nan")


def catalogue_coverage(recommended: np.ndarray, k: int, n_items: int) -> float:
    """Share of the catalogue that appears in at least one user's top ``k``."""
    top = recommended[:, :k]
    return len(np.unique(top[top >= 0])) / n_items if n_items else float("nan")


def _mean_over_list(values: np.ndarray, recommended: np.ndarray, k: int) -> np.ndarray:
    """Mean of a per-item value over each user's valid top-``k`` items (NaN for empty lists)."""
    top = recommended[:, :k]
    valid = top >= 0
    per_slot = np.where(valid, values[np.maximum(top, 0)], 0.0)
    count = valid.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, per_slot.sum(axis=1) / np.maximum(count, 1), np.nan)


def novelty_at_k(recommended: np.ndarray, k: int, item_popularity: np.ndarray,
                 n_users_train: int) -> np.ndarray:
    """Mean self-information −log2 p(i) of the top ``k``, p(i) = (count_i + 1) / (n_users + 1).

    Add-one smoothing keeps never-seen items finite (and the most novel).
    """
    p = (np.asarray(item_popularity, dtype=np.float64) + 1) / (n_users_train + 1)
    return _mean_over_list(-np.log2(p), recommended, k)


def mean_popularity_at_k(recommended: np.ndarray, k: int, item_popularity: np.ndarray,
                         n_users_train: int) -> np.ndarray:
    """Mean share of training users who interacted with each top-``k`` item (popularity bias)."""
    share = np.asarray(item_popularity, dtype=np.float64) / max(n_users_train, 1)
    return _mean_over_list(share, recommended, k)


def intra_list_diversity_at_k(recommended: np.ndarray, k: int,
                              item_vectors: sp.csr_array | np.ndarray,
                              batch: int = 4096) -> np.ndarray:
    """1 − mean pairwise cosine similarity of each user's top ``k`` items.

    Uses Σ_{i≠j} cos(i, j) = ‖Σ_i x̂_i‖² − m for the m valid items with unit vectors x̂ (zero
    vectors count as similarity 0 to everything). Lists with fewer than two items give NaN.
    """
    vectors = sp.csr_array(item_vectors, dtype=np.float64)
    norms = np.sqrt(np.asarray(vectors.multiply(vectors).sum(axis=1)).ravel())
    unit = sp.csr_array(sp.diags_array(np.where(norms > 0, 1 / np.maximum(norms, 1e-300), 0.0))
                        @ vectors)
    nonzero = norms > 0
    top = recommended[:, :k]
    out = np.full(len(top), np.nan)
    for start in range(0, len(top), batch):
        block = top[start:start + batch]
        valid = block >= 0
        m = valid.sum(axis=1)
        rows = np.repeat(np.arange(len(block)), m)
        pick = sp.csr_array((np.ones(len(rows)), (rows, block[valid])),
                            shape=(len(block), vectors.shape[0]))
        summed = pick @ unit
        sq = np.asarray(summed.multiply(summed).sum(axis=1)).ravel()
        n_unit = np.where(valid, nonzero[np.maximum(block, 0)], False).sum(axis=1)
        pairs = m * (m - 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_sim = (sq - n_unit) / pairs
        out[start:start + len(block)] = np.where(m >= 2, 1.0 - mean_sim, np.nan)
    return out


def activity_groups(train_counts: np.ndarray) -> np.ndarray:
    """``"light"``, ``"medium"`` or ``"heavy"`` per user by training-profile size tertiles.

    Light: at most the 1/3 quantile; heavy: above the 2/3 quantile; medium: between. With many
    ties (MovieLens users have at least 20 ratings) a group can be smaller than a third.

    >>> activity_groups(np.array([1, 2, 3, 4, 5, 6])).tolist()
    ['light', 'light', 'medium', 'medium', 'heavy', 'heavy']
    """
    counts = np.asarray(train_counts, dtype=np.float64)
    if not len(counts):
        return np.array([], dtype=object)
    low, high = np.quantile(counts, [1 / 3, 2 / 3])
    return np.where(counts <= low, "light", np.where(counts > high, "heavy", "medium")).astype(
        object)
