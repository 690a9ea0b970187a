"""Candidate generation: every source proposes its best items, the union is what gets ranked.

Each source scores the whole catalogue for a block of queries (:meth:`Recommender.scores`); its top
``depth`` unseen items are its proposals. The union keeps, per query, up to ``limit`` items, the
best-ranked by any source first, and every candidate carries every source's view of it: its
score standardised over that query's row (so sources of different scales, and a source refitted
since the ranker learned, read alike) and its rank in the source's list (``depth`` when the
source did not propose it). So the ranker sees, for each item, who proposed it, how strongly,
and what the other sources think of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recengine.data.query import Queries
from recengine.models.base import Recommender, top_k

__all__ = ["Candidates", "Source", "propose", "union_recall"]


@dataclass(frozen=True)
class Source:
    """A fitted recommender proposing ``depth`` candidates, tagged ``tag``."""

    tag: str
    model: Recommender
    depth: int


@dataclass(frozen=True)
class Candidates:
    """The union per query, ragged like CSR: query ``r``'s candidates are
    ``[indptr[r], indptr[r + 1])``, best-ranked by any source first."""

    indptr: np.ndarray
    items: np.ndarray
    #: ``[n_candidates, n_sources]``: each source's score, standardised over the query's row.
    scores: np.ndarray
    #: ``[n_candidates, n_sources]``: the candidate's rank in each source's list, 0 the best;
    #: the source's ``depth`` when it did not propose it.
    ranks: np.ndarray
    #: Each source's depth, in the order of the columns.
    depths: np.ndarray
    #: ``[n_queries, n_items]``: one source's standardised scores over the whole catalogue
    #: (``propose``'s ``background``), what orders the items the union left out; else None.
    background: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.indptr) - 1

    @property
    def rows(self) -> np.ndarray:
        """The query of each candidate."""
        return np.repeat(np.arange(len(self)), np.diff(self.indptr))

    @property
    def proposed(self) -> np.ndarray:
        """``[n_candidates, n_sources]``: whether each source proposed each candidate."""
        return self.ranks < self.depths[None, :]


def _standardised(scores: np.ndarray) -> np.ndarray:
    """Each row's finite scores as z-scores over that row; the rest (items a source cannot
    score, seen items) at the row's minimum minus one."""
    finite = np.isfinite(scores)
    count = np.maximum(finite.sum(axis=1, keepdims=True), 1)
    safe = np.where(finite, scores, 0.0).astype(np.float64)
    mean = safe.sum(axis=1, keepdims=True) / count
    spread = np.sqrt((np.where(finite, safe - mean, 0.0) ** 2).sum(axis=1, keepdims=True)
                     / count)
    z = (safe - mean) / np.where(spread > 0, spread, 1.0)
    low = np.where(finite, z, np.inf).min(axis=1, keepdims=True)
    low = np.where(np.isfinite(low), low, 0.0)
    return np.where(finite, z, low - 1.0).astype(np.float32)


def propose(sources: Sequence[Source], queries: Queries, limit: int,
            background: int | None = None) -> Candidates:
    """The union of the sources' proposals for each query, at most ``limit`` per query.

    Seen items (the query's history) are never proposed: the hybrid recommends new items; nor
    do sources that need a history (:attr:`Recommender.needs_history`) propose anything to a
    query without one. ``background`` (a source's position) keeps that source's standardised
    scores of every item.
    """
    n_rows = len(queries)
    indptr, seen = queries.seen()
    seen_rows = np.repeat(np.arange(n_rows), np.diff(indptr))
    # Users with nothing to go on: the sources that need a history propose nothing for them.
    silent = np.diff(indptr) == 0
    if queries.session is not None:
        silent &= np.diff(queries.session.indptr) == 0
    depths = np.array([s.depth for s in sources], dtype=np.int32)
    standard, tops = [], []
    for source in sources:
        scores = np.array(source.model.scores(queries), dtype=np.float32)
        scores[seen_rows, seen] = -np.inf
        if source.model.needs_history:
            scores[silent] = -np.inf
        standard.append(_standardised(scores))
        tops.append(top_k(scores, min(source.depth, scores.shape[1]))[0])
    n_items = standard[0].shape[1]
    # Each item's best rank over the sources, per row; ties go to the earlier source's item.
    best = np.full((n_rows, n_items), np.iinfo(np.int32).max, dtype=np.int64)
    ranks = []
    for top, depth in zip(tops, depths.tolist(), strict=True):
        rank = np.full((n_rows, n_items), depth, dtype=np.int32)
        r, c = np.nonzero(top >= 0)
        rank[r, top[r, c]] = c
        ranks.append(rank)
        np.minimum(best, np.where(rank < depth, rank, np.iinfo(np.int32).max), out=best)
    proposed = best < np.iinfo(np.int32).max
    order = np.argsort(np.where(proposed, best, np.iinfo(np.int64).max), axis=1,
                       kind="stable")[:, :limit]
    keep = np.take_along_axis(proposed, order, axis=1)
    rows = np.repeat(np.arange(n_rows), keep.sum(axis=1))
    items = order[keep].astype(np.int32)
    out_indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(keep.sum(axis=1), out=out_indptr[1:])
    return Candidates(
        out_indptr, items,
        np.stack([z[rows, items] for z in standard], axis=1),
        np.stack([rank[rows, items] for rank in ranks], axis=1), depths,
        None if background is None else standard[background])


def union_recall(candidates: Candidates, relevant: Sequence[np.ndarray],
                 tags: Sequence[str]) -> dict[str, float]:
    """How many of the relevant items (one array per query) each source proposed, and the
    union did, as shares of all relevant items: what each source adds."""
    total = sum(len(r) for r in relevant)
    found = {tag: 0 for tag in tags} | {"union": 0}
    proposed = candidates.proposed
    for row, wanted in enumerate(relevant):
        span = slice(candidates.indptr[row], candidates.indptr[row + 1])
        hit = np.isin(candidates.items[span], wanted)
        found["union"] += int(hit.sum())
        for column, tag in enumerate(tags):
            found[tag] += int((hit & proposed[span, column]).sum())
    return {tag: count / total if total else 0.0 for tag, count in found.items()}
