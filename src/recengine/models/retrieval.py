"""Approximate top-k retrieval for factor models: a graph index (HNSW, faiss) over item vectors.

Brute-force scoring reads every item vector for every request: at 100,000 items × 64 factors
that is 25 MB of memory traffic and most of a recommendation's cost in the server. A
hierarchical navigable small-world graph answers the same maximum-inner-product query by
visiting a few thousand vectors instead (implicit's ``ApproximateALS`` and Gorse do the same).
The answer is approximate: ``recall`` below measures how much of the exact top-k it keeps, and
``ef_search`` trades speed for it (docs/benchmarks.md has the figures).

A model that can be searched this way writes its scores as inner products plus a per-user
offset (:meth:`~recengine.models.base.Recommender._embed`); seen items are excluded by asking
the graph for ``n`` plus the number of seen items and dropping them, and a row the graph leaves
short falls back to the exact path. Similar items get a second graph over vectors whose inner
products are the model's similarity (:meth:`~recengine.models.base.Recommender._similar_vectors`:
unit vectors for cosine); each item is left out of its own list the same way.

A graph over 100,000 items takes seconds to build, so it is saved with its model (a model's
``index.faiss`` and ``similar.faiss``): a training run builds them once, in its own process, for
catalogues of :data:`INDEX_MIN_ITEMS` items or more, and a server loads them instead of
building them again.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recengine.errors import DataError

__all__ = ["INDEX_MIN_ITEMS", "ItemIndex", "recall"]

#: From this many items, training runs build the graph and servers answer from it: below it,
#: exact scoring is fast enough (docs/benchmarks.md).
INDEX_MIN_ITEMS = 50_000


class ItemIndex:
    """An HNSW inner-product index over item vectors (one row per item index).

    :meth:`build` makes one, :meth:`read` loads one. ``neighbours`` (M) and ``ef_construction``
    shape the graph; ``ef_search`` is the size of the candidate list a query keeps (at least the
    depth asked for).
    """

    def __init__(self, index: Any, ef_search: int = 64) -> None:
        import faiss

        self._index = index
        self.n_items = int(index.ntotal)
        self.ef_search = ef_search
        self._search_parameters = faiss.SearchParametersHNSW  # type: ignore[attr-defined]  # missing from faiss's stubs
        #: Each thread's own search parameters: concurrent searches must not share one, and
        #: making one per call cost a tenth of a served request.
        self._local = threading.local()
        self._moments: tuple[np.ndarray, np.ndarray] | None = None

    @classmethod
    def build(cls, vectors: np.ndarray, *, neighbours: int = 16, ef_construction: int = 80,
              ef_search: int = 64) -> ItemIndex:
        """The graph over ``vectors``, one row per item index."""
        import faiss

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        index = faiss.IndexHNSWFlat(vectors.shape[1], neighbours, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        index.add(vectors)
        return cls(index, ef_search)

    @classmethod
    def read(cls, path: str | Path, ef_search: int = 64, *, vectors: np.ndarray) -> ItemIndex:
        """A graph written by :meth:`write`, checked against ``vectors``: those it must index.

        A file cut short or damaged, a graph of another kind or over other vectors, or one
        whose links lead outside it is refused (:class:`DataError` naming the file): searching
        it would answer wrong, or read past its arrays.
        """
        import faiss

        path = Path(path)
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as exc:  # faiss's only error: "read error", "not recognized", ...
            reason = str(exc).rpartition("Error: ")[2].strip()
            raise DataError(f"{path.name} is damaged or cut short ({reason})") from None
        problem = _graph_problem(index, np.asarray(vectors, dtype=np.float32))
        if problem is not None:
            raise DataError(f"{path.name} does not index this model's items: {problem}")
        return cls(index, ef_search)

    def write(self, path: str | Path) -> None:
        import faiss

        faiss.write_index(self._index, str(path))

    @property
    def vectors(self) -> np.ndarray:
        """``[n_items, dim]``: the item vectors the graph holds (a read-only view of its own
        copy, so scoring a few items needs no second one)."""
        import faiss

        storage = faiss.downcast_index(self._index.storage)
        stored = storage.get_xb()  # type: ignore[attr-defined]  # missing from faiss's stubs
        view = faiss.rev_swig_ptr(stored, self.n_items * self._index.d).reshape(
            self.n_items, self._index.d)
        view.flags.writeable = False
        return view

    def moments(self) -> tuple[np.ndarray, np.ndarray]:
        """The item vectors' sum ``[dim]`` and Gram matrix ``[dim, dim]`` (float64): with them
        the mean and spread of a query's inner products over the whole catalogue cost one
        product of ``dim²``, not one per item. Computed once, on first use."""
        if self._moments is None:
            vectors = self.vectors.astype(np.float64)
            self._moments = (vectors.sum(axis=0), vectors.T @ vectors)
        return self._moments

    def search(self, queries: np.ndarray, n: int, seen: Sequence[np.ndarray] | None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Top-``n`` indices and inner products per query row, ``seen[row]`` items left out.

        Returns ``(idx, val, short)``: ``short`` flags rows the graph could not fill, padded
        with -1 and NaN, for the caller to answer exactly.
        """
        n_rows = len(queries)
        counts = np.array([len(s) for s in seen] if seen is not None else [0] * n_rows)
        depth = min(self.n_items, n + int(counts.max(initial=0)))
        params = getattr(self._local, "params", None)
        if params is None:
            params = self._local.params = self._search_parameters()
        params.efSearch = max(self.ef_search, depth)
        found_val, found_idx = self._index.search(
            np.ascontiguousarray(queries, dtype=np.float32), depth, params=params)
        idx = np.full((n_rows, n), -1, dtype=np.int32)
        val = np.full((n_rows, n), np.nan, dtype=np.float32)
        short = np.zeros(n_rows, dtype=bool)
        # Plain Python per row: a request has one row and a few dozen hits, where each NumPy
        # call would cost more than the whole loop.
        for row, (found, scores) in enumerate(zip(found_idx.tolist(), found_val.tolist(),
                                                  strict=True)):
            drop = set(seen[row].tolist()) if seen is not None and counts[row] else ()
            hits = [(i, v) for i, v in zip(found, scores, strict=True)
                    if i >= 0 and i not in drop][:n]
            if hits:
                idx[row, :len(hits)], val[row, :len(hits)] = zip(*hits, strict=True)
            short[row] = len(hits) < min(n, self.n_items - counts[row])
        return idx, val, short


def _graph_problem(index: Any, vectors: np.ndarray) -> str | None:
    """Why ``index`` is not an inner-product HNSW graph over exactly ``vectors``, or None.

    Checks what a search reads: the stored vectors, and the layout of the links (each item's
    slice of the neighbour table, every neighbour an item of the graph).
    """
    import faiss

    if not (isinstance(index, faiss.IndexHNSWFlat)
            and index.metric_type == faiss.METRIC_INNER_PRODUCT):
        return f"it is a {type(index).__name__}, not an inner-product HNSW graph"
    n, dim = vectors.shape
    if (index.ntotal, index.d) != (n, dim):
        return f"it holds {index.ntotal} vectors of {index.d}, not {n} of {dim}"
    if n and not np.allclose(index.reconstruct_n(0, n), vectors, rtol=1e-5, atol=1e-6):
        return "its vectors are not the model's"
    hnsw = index.hnsw
    levels = faiss.vector_to_array(hnsw.levels)
    offsets = faiss.vector_to_array(hnsw.offsets)  # type: ignore[attr-defined]  # missing from faiss's stubs
    neighbours = faiss.vector_to_array(hnsw.neighbors)  # type: ignore[attr-defined]  # as above
    per_level = faiss.vector_to_array(hnsw.cum_nneighbor_per_level)
    if len(levels) != n or len(offsets) != n + 1 or (n and (
            levels.min() < 1 or levels.max() >= len(per_level))):
        return "its levels do not match its items"
    if offsets[0] != 0 or not np.array_equal(np.diff(offsets), per_level[levels]) or (
            offsets[-1] != len(neighbours)):
        return "its neighbour table does not match its levels"
    if len(neighbours) and (neighbours.min() < -1 or neighbours.max() >= n):
        return "some links lead outside it"
    if n and not (0 <= hnsw.entry_point < n and hnsw.max_level == levels.max() - 1):
        return "its entry point is not one of its items"
    return None


def recall(approximate: np.ndarray, exact: np.ndarray) -> float:
    """Share of the exact top-k (index -1 ignored) that the approximate top-k also holds.

    >>> recall(np.array([[1, 2, 3]]), np.array([[3, 2, 9]]))
    0.6666666666666666
    """
    hits = total = 0
    for got, want in zip(approximate, exact, strict=True):
        want = want[want >= 0]
        hits += len(np.intersect1d(got[got >= 0], want))
        total += len(want)
    return hits / total if total else 1.0
