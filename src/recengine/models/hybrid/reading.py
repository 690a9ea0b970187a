"""How candidate generation reads one source for a block of queries: the source's proposals
(its top unseen items) and any item's score standardised over the query's row.

A z-score needs the mean and spread of the query's scores over the whole catalogue (seen items
and items the source cannot score left out), so that sources of different scales, and a source
refitted since the ranker learned, read alike. Two readings give the same numbers:

- :class:`DenseReading`: the source scores every item (:meth:`Recommender.scores`). What a
  block of many queries (training the ranker) or a small catalogue costs least.
- :class:`IndexedReading`: a source with a vector form whose HNSW graph is built
  (:meth:`Recommender.build_index`, as a server does from ``INDEX_MIN_ITEMS`` items) proposes
  from the graph and scores only the items asked about, one inner product each; the row's mean
  and spread come from the catalogue's moments (the item vectors' sum and Gram matrix, less the
  seen items). At 100,000 items that is a few hundred products instead of 100,000. Its
  proposals are the graph's (approximate, as every HNSW answer); its scores are exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from recengine.data.query import Queries, take, take_ranges
from recengine.models.base import Capability, Recommender, top_k

__all__ = ["DenseReading", "IndexedReading", "Masks", "Reading", "read"]


@dataclass(frozen=True)
class Masks:
    """What no source may propose, per query of a block: the seen items (CSR ``indptr`` and
    ``items``, sorted per row), and the queries with nothing to go on (``silent``: no history,
    no session), to which sources that need a history propose nothing; and for every query,
    the items the request rules out (``blocked``, a mask over items, or None: a constraint,
    a rule's exclusions), which still count in each row's statistics, so that a source's
    z-scores read as in training."""

    indptr: np.ndarray
    items: np.ndarray
    silent: np.ndarray
    blocked: np.ndarray | None = None

    @classmethod
    def of(cls, queries: Queries, blocked: np.ndarray | None = None) -> Masks:
        indptr, seen = queries.seen()
        silent = np.diff(indptr) == 0
        if queries.session is not None:
            silent &= np.diff(queries.session.indptr) == 0
        return cls(indptr, seen, silent, blocked)

    @property
    def rows(self) -> np.ndarray:
        """The query of each seen item."""
        return np.repeat(np.arange(len(self.silent)), np.diff(self.indptr))

    def take(self, rows: np.ndarray) -> Masks:
        """The masks of the queries ``rows``."""
        indptr, pick = take_ranges(self.indptr, rows)
        return Masks(indptr, take(self.items, pick), self.silent[rows], self.blocked)

    def masked(self, scores: np.ndarray, model: Recommender) -> np.ndarray:
        """``scores`` with what ``model`` may not propose at -inf."""
        scores[self.rows, self.items] = -np.inf
        if model.needs_history:
            scores[self.silent] = -np.inf
        return scores


class Reading(Protocol):
    """One source's view of a block of queries."""

    #: ``[n_queries, depth]``: each query's proposals, best first, padded with -1.
    tops: np.ndarray
    #: ``[n_queries, depth]``: each proposal's rank in the source's whole list (at most
    #: ``depth``): its place in ``tops`` unless the request ruled items out.
    ranks: np.ndarray

    def standardised(self, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        """float32 z-scores of the pairs (query ``rows[j]``, item ``items[j]``) over their
        query's row; what the source cannot score sits below the row's lowest z-score."""
        ...


class DenseReading:
    """A source that scored every item of every query."""

    def __init__(self, scores: np.ndarray, depth: int, blocked: np.ndarray | None = None
                 ) -> None:
        self.scores = scores
        finite = np.isfinite(scores)
        count = np.maximum(finite.sum(axis=1), 1)
        # In place where possible: at 100,000 items each pass over a row is a cost.
        unscored = ~finite
        deviation = scores.astype(np.float64)
        deviation[unscored] = 0.0
        self.mean = deviation.sum(axis=1) / count
        deviation -= self.mean[:, None]
        deviation[unscored] = 0.0
        deviation *= deviation
        spread = np.sqrt(deviation.sum(axis=1) / count)
        self.spread = np.where(spread > 0, spread, 1.0)
        lowest = np.min(scores, axis=1, where=finite, initial=np.inf).astype(np.float64)
        self.floor = np.where(np.isfinite(lowest), (lowest - self.mean) / self.spread, 0.0) - 1.0
        depth = min(depth, scores.shape[1])
        if blocked is None:
            self.tops = top_k(scores, depth)[0]
            self.ranks = np.broadcast_to(np.arange(depth, dtype=np.int32), self.tops.shape)
        else:
            self.tops = top_k(np.where(blocked, -np.inf, scores), depth)[0]
            self.ranks = _full_ranks(scores, self.tops, depth)

    def standardised(self, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        values = self.scores[rows, items].astype(np.float64)
        z = (values - self.mean[rows]) / self.spread[rows]
        return np.where(np.isfinite(values), z, self.floor[rows]).astype(np.float32)

    def every_item(self) -> np.ndarray:
        """``[n_queries, n_items]``: every item's standardised score."""
        z = (self.scores.astype(np.float64) - self.mean[:, None]) / self.spread[:, None]
        return np.where(np.isfinite(self.scores), z, self.floor[:, None]).astype(np.float32)


def _full_ranks(scores: np.ndarray, tops: np.ndarray, cap: int) -> np.ndarray:
    """Each of ``tops``' items' rank in its row of ``scores`` (0 the best), at most ``cap``."""
    ascending = np.sort(scores, axis=1)
    n = scores.shape[1]
    ranks = np.full(tops.shape, cap, dtype=np.int32)
    for row in range(len(tops)):
        valid = tops[row] >= 0
        values = scores[row, tops[row, valid]]
        ranks[row, valid] = n - np.searchsorted(ascending[row], values, side="right")
    return np.minimum(ranks, cap)


class IndexedReading:
    """A source answering from its HNSW graph: proposals from the graph, inner products for
    the items asked about, the row's moments from the catalogue's."""

    def __init__(self, model: Recommender, queries: Queries, masks: Masks, depth: int) -> None:
        index = model.retrieval_
        assert index is not None
        vectors, offsets = model.query_vectors(queries)
        self.items = index.vectors
        self.vectors = vectors.astype(np.float64)
        self.offsets = offsets.astype(np.float64)
        n_rows = len(queries)
        self.silent = masks.silent if model.needs_history else np.zeros(n_rows, bool)
        depth = min(depth, index.n_items)
        self.tops = np.full((n_rows, depth), -1, dtype=np.int32)
        self.ranks = np.broadcast_to(np.arange(depth, dtype=np.int32), self.tops.shape)
        asked = np.flatnonzero(~self.silent)
        if len(asked):
            seen = [masks.items[masks.indptr[r]:masks.indptr[r + 1]] for r in asked.tolist()]
            found, _, short = index.search(vectors[asked], depth, seen)
            self.tops[asked] = found
            if short.any():  # rows the graph left short: from every item's score
                rows = asked[short]
                scores = masks.take(rows).masked(
                    np.array(model.scores(queries[rows]), np.float32), model)
                self.tops[rows] = top_k(scores, depth)[0]
        # The catalogue's sum and sum of squares of each row's scores, less the seen items'.
        total, gram = index.moments()
        v, o, n = self.vectors, self.offsets, index.n_items
        along = v @ total
        sums = along + n * o
        squares = np.einsum("ij,jk,ik->i", v, gram, v) + 2 * o * along + n * o * o
        seen_rows = masks.rows
        seen_scores = self._scores(seen_rows, masks.items)
        sums -= np.bincount(seen_rows, seen_scores, minlength=n_rows)
        squares -= np.bincount(seen_rows, seen_scores ** 2, minlength=n_rows)
        count = np.maximum(n - np.diff(masks.indptr), 1)
        self.mean = sums / count
        spread = np.sqrt(np.maximum(squares / count - self.mean ** 2, 0.0))
        self.spread = np.where(spread > 0, spread, 1.0)

    def _scores(self, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        return (np.einsum("ij,ij->i", self.vectors[rows], self.items[items].astype(np.float64))
                + self.offsets[rows])

    def standardised(self, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        z = (self._scores(rows, items) - self.mean[rows]) / self.spread[rows]
        # A silent query's every score is -inf (the dense reading's floor: -1).
        return np.where(self.silent[rows], -1.0, z).astype(np.float32)


def read(model: Recommender, queries: Queries, masks: Masks, depth: int) -> Reading:
    """``model``'s reading of ``queries``: from its HNSW graph when it has one and the request
    rules nothing out (a graph searched past blocked items would miss most of a narrow
    constraint's: those requests score every item)."""
    if (model.retrieval_ is not None and model.supports(Capability.RETRIEVAL)
            and masks.blocked is None):
        return IndexedReading(model, queries, masks, depth)
    return DenseReading(masks.masked(np.array(model.scores(queries), np.float32), model), depth,
                        masks.blocked)
