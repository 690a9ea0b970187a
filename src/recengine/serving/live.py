"""Live histories: each user's events since the served version's training, bounded in memory.

The events themselves are in the store; this is what a server process keeps of them so that a
request folds a user's new events in without a query. Two bounds keep it flat however long the
server runs between retrainings:

- ``per_user`` events per user, the most recent (a fold-in reads recent behaviour; a user who
  posts thousands of events between trainings is asked by the last ``per_user``);
- ``max_events`` in all: past it, the users least recently written are *evicted*. Their events
  stay in the store, and a request for an evicted user reads them back from there
  (:meth:`ServingState.recommend <recengine.serving.state.ServingState.recommend>`), so a bound
  costs a query for the rare user, never a wrong answer.

An evicted user costs only their id (:attr:`LiveHistories.evicted`), about a tenth of an event,
and only until the next version is served.

>>> from recengine.data.query import Event
>>> live = LiveHistories(per_user=2, max_events=3)
>>> live.add("u1", [Event("a"), Event("b"), Event("c")])
>>> [e.item_id for e in live.get("u1")]
['b', 'c']
>>> live.add("u2", [Event("x"), Event("y")])  # 4 events > 3: u1, written least recently, goes
>>> live.get("u1") is None, sorted(live.evicted), live.events
(True, ['u1'], 2)
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable

from recengine.data.query import Event

__all__ = ["LiveHistories"]


class LiveHistories:
    """Per-user recent events, at most ``per_user`` each and ``max_events`` in all (see module)."""

    def __init__(self, per_user: int, max_events: int) -> None:
        if per_user < 1 or max_events < 1:
            raise ValueError("live histories need room for at least one event")
        self.per_user = per_user
        self.max_events = max_events
        self._users: OrderedDict[str, deque[Event]] = OrderedDict()
        #: Users whose events were dropped to stay within ``max_events``: read them back from
        #: the store when asked for.
        self.evicted: set[str] = set()
        self.events = 0

    def __len__(self) -> int:
        return len(self._users)

    def get(self, user: str) -> list[Event] | None:
        """``user``'s kept events, oldest first, or None when there are none."""
        events = self._users.get(user)
        return list(events) if events else None

    def add(self, user: str, events: Iterable[Event]) -> None:
        """Append ``events`` (in order) to ``user``'s history: now the most recently written.

        Nothing is added for an evicted user: their history is read back whole when asked for.
        """
        if user in self.evicted:
            return
        kept = self._users.get(user)
        if kept is None:
            kept = self._users[user] = deque(maxlen=self.per_user)
        else:
            self._users.move_to_end(user)
        before = len(kept)
        kept.extend(events)
        self.events += len(kept) - before
        self._evict()

    def replace(self, user: str, events: Iterable[Event]) -> None:
        """``user``'s history is ``events`` (read back from the store): no longer evicted."""
        self.forget(user)
        self.add(user, events)

    def forget(self, user: str) -> None:
        kept = self._users.pop(user, None)
        if kept is not None:
            self.events -= len(kept)
        self.evicted.discard(user)

    def _evict(self) -> None:
        while self.events > self.max_events and len(self._users) > 1:
            user, kept = self._users.popitem(last=False)
            self.events -= len(kept)
            self.evicted.add(user)
