"""First-order Markov chain: what users chose right after the item they chose last.

recengine's first model of order. Training counts, in each training user's time-ordered log
(:attr:`TrainingData.log`), every move from one event's item to the next event's item. Repeated
consecutive events of the *same* item are one visit, not a move: a view followed by a booking of
the same listing, or a song played twice, adds no ``i → i`` step, and the move out of it is
counted once. Users' logs are never joined: the last item of one user leads nowhere.

A move's probability is smoothed towards the catalogue's popularity::

    P(j | i) = (C[i, j] + β · pop(j)) / (C[i, ·] + β)

with ``C[i, j]`` the number of moves from ``i`` to ``j``, ``C[i, ·]`` all moves out of ``i``,
and ``pop(j)`` item ``j``'s share of distinct training users (the :class:`Popularity` order).
Items rarely left have a small ``C[i, ·]``, so their rows lean on popularity; an item never left
(``C[i, ·] = 0``: a catalogue-only item, or one only ever chosen last) gives ``pop`` itself, as
does a query with no events. ``β → ∞`` ranks every user's list by popularity; ``β = 0`` is the
raw next-item frequency. ``β`` counts pseudo-moves spread over the whole catalogue, so while
``β · max(pop) < 1`` it only orders items with equal move counts (the default, 1, does that);
larger values let popularity outrank rare moves.

A query is scored at request time from its most recent item (:meth:`Queries.recent_items`: the
session's last, else the history's last), so a new user's or a live session's next click is
served exactly like a training user's. With ``window > 1`` the last ``window`` visits (history
then session, repeats merged as in training) are mixed, the ``t``-th most recent with weight
``decay ** t``, weights summing to 1: still a probability over the catalogue.

Saved as arrays only: ``C`` as CSR arrays and the popularity shares.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from recengine.data.query import Queries, Sequences
from recengine.data.training_data import TrainingData, check_csr
from recengine.models.base import (
    Capability,
    ModelConfig,
    Recommender,
    Shape,
    TrainingOptions,
)
from recengine.progress import ProgressCallback

__all__ = ["Markov"]


class Markov(Recommender):
    """Next-item probabilities from item-to-next-item moves, smoothed towards popularity.

    Examples
    --------
    >>> import pandas as pd
    >>> events = pd.DataFrame({"user_id": ["u", "u", "u", "v", "v", "w"],
    ...                        "item_id": ["a", "b", "c", "a", "b", "c"],
    ...                        "timestamp": pd.to_datetime([1, 2, 3, 1, 2, 1], unit="D")})
    >>> pairs = events.assign(rating=float("nan"), feedback=1.0)
    >>> data = TrainingData.from_interactions(pairs, events=events)
    >>> model = Markov(smoothing=1.0).fit(data)
    >>> model.recommend_history(["a"], n=2)[0].tolist()  # b followed a twice
    ['b', 'c']
    >>> model.explain_history(["a"], ["b", "c"])
    ['often chosen after a: next 2 of 2 times', 'popular: 2 of 3 users chose it']
    >>> ids, scores = model.similar_items("b", n=1)  # what follows b
    >>> ids.tolist(), [round(float(s), 3) for s in scores]  # (1 + β · 2/6) / (1 + β)
    (['c'], [0.667])
    """

    name = "markov"
    capabilities = frozenset({Capability.ORDER, Capability.SIMILAR_ITEMS})
    needs_history = True  # with no events it can only offer popularity

    class Config(ModelConfig):
        smoothing: float = Field(
            1.0, ge=0, description="β: pseudo-moves out of every item, spread by popularity. "
            "Larger trusts observed moves less (β → ∞ is popularity); 0 is raw frequency.")
        window: int = Field(
            1, ge=1, le=50, description="How many of the most recent visits are mixed "
            "(1: the last item only, a first-order chain).")
        decay: float = Field(
            0.5, gt=0, le=1, description="Weight of each older visit in the window relative "
            "to the next newer one (unused when window is 1).")

    config: Config

    state = ("moves_data_", "moves_indices_", "moves_indptr_", "item_counts_")
    #: ``C`` as CSR arrays: moves from row item to column item.
    moves_data_: np.ndarray
    moves_indices_: np.ndarray
    moves_indptr_: np.ndarray
    #: Distinct training users of each item.
    item_counts_: np.ndarray
    #: Derived, not saved: ``C`` as a matrix, its row sums ``C[i, ·]``, and ``pop``.
    moves_: sp.csr_array
    out_moves_: np.ndarray
    popularity_: np.ndarray

    @classmethod
    def search_space(cls, fixed: Mapping[str, Any]) -> dict[str, tuple[str, float, float, bool]]:
        return {"smoothing": ("float", 1e-2, 1e3, True)}

    # -- training -----------------------------------------------------------------------------
    def _train(self, data: TrainingData, options: TrainingOptions,
               progress: ProgressCallback | None) -> dict[str, Any]:
        moves = transition_counts(data.log, data.n_items)
        return _learned(moves.data, moves.indices, moves.indptr, data.item_counts())

    def state_shapes(self) -> dict[str, Shape]:
        return {"item_counts_": ("items",)}  # the moves: checked whole by _restore_state

    def _restore_state(self, arrays: Mapping[str, np.ndarray],
                       meta: Mapping[str, Any]) -> dict[str, Any]:
        n_items = len(arrays["item_counts_"])
        moves = check_csr("moves", [arrays[f"moves_{part}_"] for part in ("data", "indices",
                                                                          "indptr")],
                          (n_items, n_items))
        return _learned(moves.data, moves.indices, moves.indptr, arrays["item_counts_"])

    # -- scoring ------------------------------------------------------------------------------
    def _coefficients(self) -> tuple[np.ndarray, np.ndarray]:
        """``a, b`` with ``P(· | i) = a[i] · C[i] + b[i] · pop``; ``a = 0, b = 1`` for an
        item with no moves out and no smoothing (it backs off to popularity)."""
        beta = self.config.smoothing
        total = self.out_moves_.astype(np.float64) + beta
        empty = total == 0
        safe = np.where(empty, 1.0, total)
        return np.where(empty, 0.0, 1.0 / safe), np.where(empty, 1.0, beta / safe)

    def _recent(self, queries: Queries) -> sp.csr_array:
        """``[len(queries), n_items]``: each query's weight on each of its recent items (rows
        sum to 1, or to 0 for a query with no events)."""
        n_items = len(self.popularity_)
        if self.config.window == 1:
            last = queries.recent_items()
            rows = np.flatnonzero(last >= 0)
            return sp.csr_array((np.ones(len(rows)), (rows, last[rows])),
                                shape=(len(queries), n_items))
        rows, items = _visits(queries.events())
        indptr = np.zeros(len(queries) + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=len(queries)), out=indptr[1:])
        age = indptr[rows + 1] - 1 - np.arange(len(rows))  # 0 for each row's newest visit
        keep = age < self.config.window
        weights = self.config.decay ** age[keep].astype(np.float64)
        recent = sp.coo_array((weights, (rows[keep], items[keep])),
                              shape=(len(queries), n_items)).tocsr()
        recent.sum_duplicates()
        total = np.asarray(recent.sum(axis=1)).ravel()
        scale = np.divide(1.0, total, out=np.zeros_like(total), where=total > 0)
        return sp.csr_array(sp.diags_array(scale) @ recent)

    def _probabilities(self, weights: sp.csr_array) -> np.ndarray:
        """``weights @ P`` for rows of weights over "from" items; rows weighing less than 1
        make up the rest with popularity (an empty row is popularity)."""
        a, b = self._coefficients()
        moves = (weights @ sp.diags_array(a) @ self.moves_).toarray()
        rest = weights @ b + (1.0 - np.asarray(weights.sum(axis=1)).ravel())
        return (moves + rest[:, None] * self.popularity_[None, :]).astype(np.float32)

    def _score(self, queries: Queries) -> np.ndarray:
        return self._probabilities(self._recent(queries))

    def _similar(self, items: np.ndarray) -> np.ndarray:
        """What follows each item: ``P(· | item)``."""
        items = np.asarray(items, dtype=np.int64)
        one = sp.csr_array((np.ones(len(items)), (np.arange(len(items)), items)),
                           shape=(len(items), len(self.popularity_)))
        return self._probabilities(one)

    def _explain(self, queries: Queries, items: np.ndarray) -> list[str]:
        """Names the recent item whose moves give each item most of its score, else
        popularity (the back-off)."""
        recent = self._recent(queries[:1])
        sources = recent.indices
        a, _ = self._coefficients()
        moves = self.moves_[sources][:, items].toarray() if len(sources) else np.zeros(
            (0, len(items)))
        share = recent.data[:, None] * a[sources, None] * moves
        n_users = len(self.users_)
        reasons = []
        for k, j in enumerate(np.asarray(items).tolist()):
            if len(sources) and share[:, k].max() > 0:
                s = int(np.argmax(share[:, k]))
                i = int(sources[s])
                reasons.append(f"often chosen after {self.items_.id_of(np.array([i]))[0]}: "
                               f"next {int(moves[s, k])} of {int(self.out_moves_[i])} times")
            else:
                reasons.append(f"popular: {int(self.item_counts_[j])} of {n_users} users "
                               "chose it")
        return reasons


def transition_counts(log: Sequences, n_items: int) -> sp.csr_array:
    """``C[i, j]``: how often, within one row of ``log``, item ``j``'s visit came right after
    item ``i``'s (repeated consecutive events of one item are one visit)."""
    rows, items = _visits(log)
    step = rows[1:] == rows[:-1]
    moves = sp.coo_array((np.ones(int(step.sum()), np.float32),
                          (items[:-1][step], items[1:][step])), shape=(n_items, n_items)).tocsr()
    moves.sum_duplicates()
    return sp.csr_array(moves)


def _visits(seqs: Sequences) -> tuple[np.ndarray, np.ndarray]:
    """Each row's events with consecutive repeats of one item merged: (row, item) per visit,
    in row order then time order."""
    rows = np.repeat(np.arange(len(seqs)), np.diff(seqs.indptr))
    items = seqs.items.astype(np.int64)
    new = np.ones(len(items), dtype=bool)
    new[1:] = (items[1:] != items[:-1]) | (rows[1:] != rows[:-1])
    return rows[new], items[new]


def _learned(data: np.ndarray, indices: np.ndarray, indptr: np.ndarray,
             item_counts: np.ndarray) -> dict[str, Any]:
    """The saved arrays plus what is derived from them."""
    n_items = len(item_counts)
    moves = sp.csr_array((data.astype(np.float32), indices.astype(np.int32),
                          indptr.astype(np.int64)), shape=(n_items, n_items))
    counts = np.asarray(item_counts, dtype=np.int64)
    total = max(int(counts.sum()), 1)
    return {"moves_data_": moves.data, "moves_indices_": moves.indices,
            "moves_indptr_": moves.indptr, "item_counts_": counts, "moves_": moves,
            "out_moves_": np.asarray(moves.sum(axis=1)).ravel(),
            "popularity_": (counts / total).astype(np.float32)}
