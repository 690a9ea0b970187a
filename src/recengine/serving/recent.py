"""The last hour of this process's requests, minute by minute, and its last errors.

``/metrics`` gives counters and a coarse histogram since start, for Prometheus to turn into rates;
a person looking at the console (issue 15) wants the request rate and the latency p50 and p99 of
the last minutes without running one. So each process also keeps, per minute, a count and a
latency histogram with log-spaced bounds (each 10 % above the last, from 50 µs to a minute:
a quantile is within 10 % of the true one), for the last :data:`KEEP_MINUTES` minutes, and the
last :data:`KEEP_ERRORS` server errors and warnings logged by recengine. Per process: with
``--workers N`` each process reports its own share.

>>> recent = RecentRequests(clock=lambda: 120.0)
>>> for ms in (1, 2, 3, 4, 100):
...     recent.observe("GET", "/v1/items", 200, ms / 1000)
>>> [(m.count, round(m.p50_ms, 1), round(m.p99_ms)) for m in recent.minutes(1)]
[(5, 3.0, 102)]
"""

from __future__ import annotations

import bisect
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = ["KEEP_ERRORS", "KEEP_MINUTES", "ErrorLog", "RecentError", "RecentRequests",
           "RequestMinute"]

#: Minutes of request history kept.
KEEP_MINUTES = 60
#: Errors kept.
KEEP_ERRORS = 20
#: Latency bucket upper bounds, seconds: 50 µs × 1.1^i up to a minute.
_BOUNDS = [5e-5 * 1.1 ** i for i in range(int(math.log(60 / 5e-5, 1.1)) + 2)]


@dataclass(frozen=True)
class RequestMinute:
    """One minute's requests: how many, and their latency quantiles (None without any)."""

    minute: datetime
    count: int
    p50_ms: float | None
    p99_ms: float | None


@dataclass(frozen=True)
class RecentError:
    """A server error (status 500 and above) or a warning recengine logged."""

    at: datetime
    source: str
    message: str


class RecentRequests:
    """Per-minute counts and latency histograms, and the last errors (thread-safe)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._minutes: dict[int, list[int]] = {}
        self.errors: deque[RecentError] = deque(maxlen=KEEP_ERRORS)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count a request; a status of 500 or more is also kept as an error."""
        minute = int(self.clock() // 60)
        bucket = bisect.bisect_left(_BOUNDS, seconds)
        with self._lock:
            counts = self._minutes.get(minute)
            if counts is None:
                counts = self._minutes[minute] = [0] * (len(_BOUNDS) + 1)
                for old in [m for m in self._minutes if m <= minute - KEEP_MINUTES]:
                    del self._minutes[old]
            counts[bucket] += 1
        if status >= 500:
            self.error("http", f"{method} {route} answered {status}")

    def error(self, source: str, message: str) -> None:
        self.errors.append(RecentError(datetime.fromtimestamp(self.clock(), UTC), source,
                                       message))

    def minutes(self, n: int = KEEP_MINUTES) -> list[RequestMinute]:
        """The last ``n`` minutes, oldest first, the current one included (zeros where idle)."""
        now = int(self.clock() // 60)
        with self._lock:
            rows = {m: list(c) for m, c in self._minutes.items() if m > now - n}
        return [_summary(m, rows.get(m)) for m in range(now - n + 1, now + 1)]


    def window(self, n: int) -> RequestMinute:
        """The last ``n`` minutes taken together (``minute``: the first of them)."""
        now = int(self.clock() // 60)
        merged = [0] * (len(_BOUNDS) + 1)
        with self._lock:
            for minute, counts in self._minutes.items():
                if minute > now - n:
                    merged = [a + b for a, b in zip(merged, counts, strict=True)]
        return _summary(now - n + 1, merged)


def _summary(minute: int, counts: list[int] | None) -> RequestMinute:
    at = datetime.fromtimestamp(minute * 60, UTC).replace(tzinfo=None)
    total = sum(counts) if counts else 0
    if not counts or not total:
        return RequestMinute(at, 0, None, None)
    return RequestMinute(at, total, _quantile(counts, total, 0.5), _quantile(counts, total, 0.99))


def _quantile(counts: list[int], total: int, q: float) -> float:
    """The upper bound (ms) of the bucket holding the ``q`` quantile."""
    rank, seen = q * total, 0
    for index, count in enumerate(counts):
        seen += count
        if seen >= rank:
            return 1000 * _BOUNDS[min(index, len(_BOUNDS) - 1)]
    return 1000 * _BOUNDS[-1]


class ErrorLog(logging.Handler):
    """Keeps recengine's logged warnings and errors in a :class:`RecentRequests`."""

    def __init__(self, recent: RecentRequests) -> None:
        super().__init__(logging.WARNING)
        self.recent = recent

    def emit(self, record: logging.LogRecord) -> None:
        self.recent.error(record.name, record.getMessage().splitlines()[0][:300])
