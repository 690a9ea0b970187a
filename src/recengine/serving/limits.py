"""What one client may cost the server: rate limits, failed-key throttling, the heavy budget.

Each answers "how long until this may go on" (seconds, 0 when it may go on now); the access
checks in :mod:`recengine.serving.deps` turn a wait into a 429 with ``Retry-After``. All three
live in one process (as the answer cache does): with several processes each holds its own.

- :class:`RateLimiter`: a token bucket per identity (an API key, or the client's address for
  requests without a valid one), so that one caller cannot take the whole server.
- :class:`FailureThrottle`: failed key checks per client address in a fixed window, so keys
  cannot be guessed at the server's speed.
- :class:`HeavyBudget`: at most ``slots`` heavy requests (batches, reasons, constraints, rules)
  compute at once, with at most ``queue`` more waiting: in heavy worker processes
  (:mod:`recengine.serving.heavy`, one request each), or in worker threads. Unbounded, a flood
  of them left the event loop, and every light request on it, waiting (p99 from 4 ms to
  753 ms); in threads, bounded, they still held Python's GIL for milliseconds at a time.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.to_thread
from anyio.lowlevel import RunVar
from fastapi import HTTPException

if TYPE_CHECKING:
    from recengine.serving.heavy import HeavyWorkers, Job
    from recengine.serving.state import ServingState

__all__ = ["FailureThrottle", "HeavyBudget", "RateLimiter", "off_the_loop", "too_many"]

T = TypeVar("T")

#: Plain answers computed off the event loop at once, per loop: one per core.
_OFF_THE_LOOP: RunVar[anyio.CapacityLimiter] = RunVar("recengine-off-the-loop")


async def off_the_loop(call: Callable[[], T]) -> T:
    """``call()`` in a worker thread, at most one per core at once. A plain answer runs off
    the event loop when it computes for milliseconds (the hybrid, sequence models) or reads the
    store first; as many of them as connections (anyio's 40 threads) only contend for the
    interpreter lock: on two cores, eight hybrid answers at once were served at 78 a second
    against 196 for one answer at a time in-process."""
    limiter = _loop_limiter(_OFF_THE_LOOP, os.cpu_count() or 1)
    return await anyio.to_thread.run_sync(call, limiter=limiter)


def _loop_limiter(var: RunVar[anyio.CapacityLimiter], slots: int) -> anyio.CapacityLimiter:
    """The event loop's limiter of ``slots`` held in ``var``, made on first use: one per
    loop, as anyio's own thread limiter is (a server runs one loop; tests may run one per
    request)."""
    try:
        return var.get()
    except LookupError:
        limiter = anyio.CapacityLimiter(slots)
        var.set(limiter)
        return limiter


#: Identities a limiter remembers before it forgets the idle ones (bounded memory under a
#: flood of addresses).
MAX_TRACKED = 100_000


def too_many(detail: str, seconds: float) -> HTTPException:
    """A 429 whose ``Retry-After`` is ``seconds`` rounded up to a whole second (at least 1)."""
    return HTTPException(429, detail, headers={"Retry-After": str(max(1, math.ceil(seconds)))})


class RateLimiter:
    """``per_second`` requests per identity, sustained, with bursts of up to ``burst``.

    >>> limiter = RateLimiter(per_second=1, burst=2)
    >>> [limiter.wait("k", now=0.0) for _ in range(3)]
    [0.0, 0.0, 1.0]
    >>> limiter.wait("k", now=1.0)
    0.0
    """

    def __init__(self, per_second: float, burst: int) -> None:
        self.per_second, self.burst = per_second, burst
        self._buckets: dict[str, tuple[float, float]] = {}  # identity → (tokens, when)
        self._lock = threading.Lock()

    def wait(self, identity: str, now: float | None = None) -> float:
        """Take one request from ``identity``'s bucket: 0, or the seconds until one is there."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, then = self._buckets.get(identity, (self.burst, now))
            tokens = min(self.burst, tokens + (now - then) * self.per_second)
            if tokens < 1:
                self._buckets[identity] = (tokens, now)
                return (1 - tokens) / self.per_second
            if len(self._buckets) >= MAX_TRACKED and identity not in self._buckets:
                self._forget_idle(now)
            self._buckets[identity] = (tokens - 1, now)
            return 0.0

    def _forget_idle(self, now: float) -> None:
        """Drop the buckets that have refilled: forgetting them changes no answer."""
        full = self.burst / self.per_second
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < full}


class FailureThrottle:
    """At most ``limit`` failed key checks per client address in each ``window`` seconds.

    >>> throttle = FailureThrottle(limit=2, window=60)
    >>> throttle.failed("1.2.3.4", now=0.0); throttle.failed("1.2.3.4", now=1.0)
    >>> throttle.wait("1.2.3.4", now=2.0), throttle.wait("5.6.7.8", now=2.0)
    (58.0, 0.0)
    >>> throttle.wait("1.2.3.4", now=60.0)
    0.0
    """

    def __init__(self, limit: int, window: float) -> None:
        self.limit, self.window = limit, window
        self._failures: dict[str, tuple[float, int]] = {}  # address → (window start, count)
        self._lock = threading.Lock()

    def wait(self, address: str, now: float | None = None) -> float:
        """0, or the seconds until ``address`` may try a key again."""
        if not self._failures:  # the usual case: one truth test per request
            return 0.0
        now = time.monotonic() if now is None else now
        with self._lock:
            start, count = self._failures.get(address, (now, 0))
            if now - start >= self.window:
                self._failures.pop(address, None)
                return 0.0
            return start + self.window - now if count >= self.limit else 0.0

    def failed(self, address: str, now: float | None = None) -> None:
        """Count one failed key check from ``address``."""
        now = time.monotonic() if now is None else now
        with self._lock:
            start, count = self._failures.get(address, (now, 0))
            if now - start >= self.window:
                start, count = now, 0
            elif len(self._failures) >= MAX_TRACKED and address not in self._failures:
                self._failures = {a: v for a, v in self._failures.items()
                                  if now - v[0] < self.window}
            self._failures[address] = (start, count + 1)


class HeavyBudget:
    """At most ``slots`` heavy computations at once, ``queue`` more waiting: in ``workers``
    (one request per process, so as many slots as processes), or without them in worker
    threads of this process.

    The limiter is per event loop (as anyio's own thread limiter is): a server runs one loop;
    tests may run one per request.
    """

    def __init__(self, slots: int, queue: int, workers: HeavyWorkers | None = None) -> None:
        self.slots = workers.processes if workers is not None else slots
        self.queue, self.workers = queue, workers
        self._limiter: RunVar[anyio.CapacityLimiter] = RunVar(f"recengine-heavy-{id(self)}")

    async def run(self, state: ServingState, job: Job, *args: Any) -> bytes:
        """``job(state, *args)``, the answer's JSON, once a slot is free; a 429 when the queue
        is full. In a worker process, its state follows what ``state`` serves."""
        limiter = _loop_limiter(self._limiter, self.slots)
        if limiter.available_tokens < 1 and limiter.statistics().tasks_waiting >= self.queue:
            raise too_many(f"{self.slots} heavy requests (batches, explain, constraints, rules) "
                           f"are running and {self.queue} waiting: retry later", 1)
        if self.workers is None:
            return await anyio.to_thread.run_sync(partial(job, state, *args), limiter=limiter)
        # The thread only waits on the pipe, holding no lock while the worker computes.
        return await anyio.to_thread.run_sync(
            partial(self.workers.call, job, args, state.serves()), limiter=limiter)

    def start(self) -> None:
        """Start the worker processes, if any (a server's start-up)."""
        if self.workers is not None:
            self.workers.start()

    def close(self) -> None:
        """Stop the worker processes, if any (a server's shutdown)."""
        if self.workers is not None:
            self.workers.close()
