"""Candidate generation: every source proposes its best items, the union is what gets ranked.

Each source proposes its top ``depth`` unseen items for each query (from every item's score, or
from its HNSW graph: :mod:`~recengine.models.hybrid.reading`). The union keeps, per query, up
to ``limit`` items, the best-ranked by any source first, and every candidate carries every
source's view of it: its score standardised over that query's row (so sources of different
scales, and a source refitted since the ranker learned, read alike) and its rank in the
source's list (``depth`` when the source did not propose it). So the ranker sees, for each
item, who proposed it, how strongly, and what the other sources think of it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recengine.data.query import Queries
from recengine.models.base import Recommender
from recengine.models.hybrid.reading import DenseReading, Masks, Reading, read

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


def propose(sources: Sequence[Source], queries: Queries, limit: int,
            background: int | None = None, blocked: np.ndarray | None = None) -> Candidates:
    """The union of the sources' proposals for each query, at most ``limit`` per query.

    Seen items (the query's history) are never proposed: the hybrid recommends new items; nor
    do sources that need a history (:attr:`Recommender.needs_history`) propose anything to a
    query without one. Each source is read as :func:`~.reading.read` decides (from its HNSW
    graph when it has one). ``background`` (a source's position) keeps that source's
    standardised scores of every item. Items ``blocked`` (a mask over items: what the request
    rules out) are never proposed either: each source proposes its best of the rest.
    """
    masks = Masks.of(queries, blocked)
    readings = [read(s.model, queries, masks, s.depth) for s in sources]
    n_items = len(sources[0].model.items_)
    depths = np.array([s.depth for s in sources], dtype=np.int32)
    # Every proposal as a key (query, item) and its rank; each key's best rank over the sources.
    keyed = [_keys(r.tops, r.ranks, n_items) for r in readings]
    keys = np.concatenate([k for k, _ in keyed])
    ranks = np.concatenate([r for _, r in keyed])
    order = np.lexsort((ranks, keys))
    keys, first = np.unique(keys[order], return_index=True)
    best = ranks[order][first]
    rows, items = np.divmod(keys, n_items)
    # Per query, best-ranked first (ties to the lower item), the first ``limit``.
    order = np.lexsort((items, best, rows))
    rows, items, keys = rows[order], items[order], keys[order]
    starts = np.searchsorted(rows, np.arange(len(queries) + 1))
    keep = np.arange(len(rows)) - starts[rows] < limit
    rows, items, keys = rows[keep], items[keep].astype(np.int32), keys[keep]
    indptr = np.searchsorted(rows, np.arange(len(queries) + 1)).astype(np.int64)
    return Candidates(
        indptr, items,
        np.stack([r.standardised(rows, items) for r in readings], axis=1),
        np.stack([_ranks_of(keys, k, rank, int(depth)) for (k, rank), depth
                  in zip(keyed, depths, strict=True)], axis=1), depths,
        None if background is None else _every_item(sources[background].model, queries,
                                                     masks, readings[background]))


def _keys(tops: np.ndarray, ranks: np.ndarray, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """A source's proposals as sorted keys ``query * n_items + item``, and their ranks."""
    rows, places = np.nonzero(tops >= 0)
    keys = rows.astype(np.int64) * n_items + tops[rows, places]
    order = np.argsort(keys, kind="stable")
    return keys[order], ranks[rows, places][order].astype(np.int32)


def _ranks_of(wanted: np.ndarray, keys: np.ndarray, ranks: np.ndarray, depth: int
              ) -> np.ndarray:
    """The rank of each ``wanted`` key among a source's sorted ``keys``; ``depth`` if absent."""
    if not len(keys):
        return np.full(len(wanted), depth, dtype=np.int32)
    at = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
    return np.where(keys[at] == wanted, ranks[at], depth).astype(np.int32)


def _every_item(model: Recommender, queries: Queries, masks: Masks,
                reading: Reading) -> np.ndarray:
    """Every item's standardised score under ``model`` (read densely when it was not)."""
    if not isinstance(reading, DenseReading):
        reading = DenseReading(masks.masked(np.array(model.scores(queries), np.float32),
                                            model), 1)
    return reading.every_item()


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
