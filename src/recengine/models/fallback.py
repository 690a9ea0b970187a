"""A fallback chain: personalised first, then simpler models, so that every request gets k items.

A personalised model cannot answer for a user it has never seen who has no history, and rules
or filters may leave it short of k items. The chain asks each model in turn (for example
``wals → category-popularity → popularity``) and fills the remaining slots with items not chosen
yet. Each item keeps the name of the model that chose it and that model's reason.
"""

from __future__ import annotations

from collections.abc import Sequence, Set
from typing import NamedTuple

import numpy as np

from recengine.data.query import Queries, Query
from recengine.errors import DataError
from recengine.models.base import Recommender, check_fitted
from recengine.models.rules import RuleEngine

__all__ = ["FallbackChain", "RankedItem"]


class RankedItem(NamedTuple):
    """One recommended item: its id, the score it got, which model chose it, and why.

    A named tuple: a served answer builds k of them, and a frozen dataclass cost twice as much.
    """

    item: str
    score: float
    source: str
    reason: str


class FallbackChain:
    """Fitted models asked in order; all must share one item catalogue."""

    def __init__(self, models: Sequence[Recommender], rules: RuleEngine | None = None) -> None:
        if not models:
            raise DataError("a fallback chain needs at least one model")
        for model in models:
            check_fitted(model)
        items = models[0].items_
        if any(m.items_ != items for m in models[1:]):
            raise DataError("the models of a fallback chain must share their item catalogue")
        self.models = list(models)
        self.rules = rules

    def recommend(self, query: Query | str, n: int = 10, *, explain: bool = True,
                  hidden: Set[int] = frozenset()) -> list[RankedItem]:
        """Up to ``n`` items for ``query`` (a :class:`Query`, or a user id).

        Each model reads the query its own way (:meth:`Recommender.queries_from`) and is
        skipped when it has no answer of its own (:meth:`Recommender.answers`: a model that
        needs a history, for a new user without one; segments, for a user it cannot place).
        ``explain=False`` skips the reasons (``""``): they cost more than the ranking. ``hidden``
        item indices (deleted items, say) are never returned: they are stepped over like items
        an earlier model chose, so the models keep their fast top-k.
        """
        query = Query(user=query) if isinstance(query, str) else query
        chosen: list[RankedItem] = []
        taken: set[int] = set()
        for model in self.models:
            if len(chosen) == n:
                break
            queries = model.queries_from(query)
            if queries.users[0] < 0 and not model.answers(queries)[0]:  # trained: answered
                continue
            fresh = self._best(model, queries, n, n - len(chosen), taken, hidden)
            if not fresh:
                continue
            reasons = (model.explain_indices(queries, np.array([i for i, _ in fresh]),
                                             exclude=None if self.rules is None
                                             else self.rules.excluded_items)
                       if explain else [""] * len(fresh))
            picked = [i for i, _ in fresh]
            ids = model.items_.ids[picked].tolist()
            chosen += [RankedItem(item, score, model.name, reason) for item, (_, score), reason
                       in zip(ids, fresh, reasons, strict=True)]
            taken.update(picked)
        return chosen

    def _best(self, model: Recommender, queries: Queries, n: int, want: int, taken: Set[int],
              hidden: Set[int]) -> list[tuple[int, float]]:
        """``model``'s best ``want`` items that are neither ``taken`` nor ``hidden``.

        Asks for ``want`` plus at most ``n`` more first, which is enough unless more than ``n``
        taken or hidden items rank above the answer: so thousands of hidden items cost a deeper
        search only for the users whose top items they are. If that fell short of a model that
        had more to give (its list was not padded), asks again as deep as can be needed.
        """
        full = want + len(taken) + len(hidden)
        depth = min(full, want + n)
        while True:
            if self.rules is not None:
                idx, val = self.rules.recommend(model, queries, depth)
            else:
                idx, val = model.recommend_queries(queries, depth)
            fresh = [(i, s) for i, s in zip(idx[0].tolist(), val[0].tolist(), strict=True)
                     if i >= 0 and i not in taken and i not in hidden][:want]
            if len(fresh) == want or depth == full or idx[0, -1] < 0:
                return fresh
            depth = full
