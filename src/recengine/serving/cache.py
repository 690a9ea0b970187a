"""The last answers per user, so a returning user's next page costs a dictionary lookup.

Users come back: a page reload, the next screen of an app. Gorse serves every user from a cache
of precomputed lists for the same reason. Here the cache is filled on demand and bounded (least
recently used users leave first); it is correct only as long as its callers drop a user's
answers when that user's history changes, and everything when the model changes.

An answer computed while such a change happened must not be kept: callers take a
:meth:`~AnswerCache.ticket` before computing and :meth:`~AnswerCache.put` refuses an answer whose
ticket predates the last change. (One counter for all users: under heavy ingestion fewer answers
are kept, but none is stale.)
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["AnswerCache"]

T = TypeVar("T")


class AnswerCache(Generic[T]):
    """Answers by user and request key, for at most ``max_users`` users (0 keeps nothing).

    >>> cache = AnswerCache[str](max_users=1)
    >>> cache.put("u1", 10, "ten items", cache.ticket()); cache.get("u1", 10)
    'ten items'
    >>> cache.put("u2", 10, "other", cache.ticket()); cache.get("u1", 10) is None
    True
    """

    def __init__(self, max_users: int) -> None:
        self.max_users = max_users
        self._users: OrderedDict[str, dict[Hashable, T]] = OrderedDict()
        self._lock = threading.Lock()
        self._changes = 0

    def __len__(self) -> int:
        return len(self._users)

    def get(self, user: str, key: Hashable) -> T | None:
        with self._lock:
            answers = self._users.get(user)
            if answers is None or key not in answers:
                return None
            self._users.move_to_end(user)
            return answers[key]

    def ticket(self) -> int:
        """Take before computing an answer; :meth:`put` it with this ticket."""
        return self._changes

    def put(self, user: str, key: Hashable, answer: T, ticket: int) -> None:
        """Keep ``answer`` unless a history or the model changed since ``ticket`` was taken."""
        if self.max_users == 0:
            return
        with self._lock:
            if ticket != self._changes:
                return
            self._users.setdefault(user, {})[key] = answer
            self._users.move_to_end(user)
            while len(self._users) > self.max_users:
                self._users.popitem(last=False)

    def forget(self, user: str) -> None:
        """Drop ``user``'s answers (their history changed)."""
        with self._lock:
            self._users.pop(user, None)
            self._changes += 1

    def clear(self) -> None:
        """Drop every answer (the model changed)."""
        with self._lock:
            self._users.clear()
            self._changes += 1
