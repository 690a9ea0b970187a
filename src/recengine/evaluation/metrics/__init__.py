"""Evaluation metrics as pure functions, vectorised over a whole batch of users.

Ranking metrics start from two inputs:

- ``recommended``: int array ``[n_users, K]`` of item indices, best first, padded with -1 when a
  model returned fewer than K items. Padding is never a hit, but it still takes a slot, so it
  counts in the denominator of precision@k.
- ``relevant``: a CSR matrix ``[n_users, n_items]`` whose stored entries mark each user's
  held-out (test) items. Relevance is binary; the values are ignored.

:func:`hits` turns them into one boolean ``[n_users, K]`` matrix, and every accuracy metric reads
that matrix, so the lookup is done once for all metrics and cut-offs. Each metric returns one
float64 value per user, so callers can average overall or within user groups.

Definitions, with ``rel_i`` = 1 if the item at rank ``i`` is relevant and ``R`` the number of
relevant items of the user:

- precision@k = Σ_{i≤k} rel_i / k
- recall@k = Σ_{i≤k} rel_i / R
- nDCG@k = DCG@k / IDCG@k, DCG@k = Σ_{i≤k} rel_i / log2(i + 1), IDCG@k the DCG of a list whose
  first min(R, k) items are all relevant
- AP@k = Σ_{i≤k} precision@i · rel_i / min(R, k)
- RR@k = 1 / rank of the first relevant item within k, 0 if there is none
- hit rate@k = 1 if any of the top k is relevant, else 0

Users with no relevant item (R = 0) get NaN from every metric that takes ``n_relevant``: they
cannot be scored, and ``np.nanmean`` leaves them out. The evaluator drops them beforehand.

Layout (the modules share nothing but :mod:`._checks`):

- :mod:`.ranking`: :func:`hits` and the accuracy metrics above, and :func:`auc`.
- :mod:`.ratings`: rating accuracy, :func:`rmse` and :func:`mae`.
- :mod:`.beyond`: beyond accuracy from popularity: :func:`catalogue_coverage`,
  :func:`novelty_at_k` and :func:`mean_popularity_at_k`.
- :mod:`.diversity`: :func:`intra_list_diversity_at_k`, beyond accuracy from item vectors.
- :mod:`.groups`: :func:`activity_groups` splits users into light / medium / heavy.
- :mod:`.paired`: :func:`paired_bootstrap`, whether one model's lead over another holds for
  other draws of the test users (per-user values of one metric, paired).
- :mod:`._checks`: the input checks every public metric runs first, and the NaN-safe ratio.
"""

from __future__ import annotations

from recengine.evaluation.metrics.beyond import (
    catalogue_coverage,
    mean_popularity_at_k,
    novelty_at_k,
)
from recengine.evaluation.metrics.diversity import intra_list_diversity_at_k
from recengine.evaluation.metrics.groups import activity_groups
from recengine.evaluation.metrics.paired import PairedDifference, paired_bootstrap
from recengine.evaluation.metrics.ranking import (
    auc,
    average_precision_at_k,
    hit_rate_at_k,
    hits,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
    reciprocal_rank_at_k,
)
from recengine.evaluation.metrics.ratings import mae, rmse

__all__ = [
    "PairedDifference",
    "activity_groups",
    "auc",
    "average_precision_at_k",
    "catalogue_coverage",
    "hit_rate_at_k",
    "hits",
    "intra_list_diversity_at_k",
    "mae",
    "mean_popularity_at_k",
    "ndcg_at_k",
    "novelty_at_k",
    "paired_bootstrap",
    "precision_at_k",
    "recall_at_k",
    "reciprocal_rank_at_k",
    "rmse",
]
