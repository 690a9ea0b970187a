"""Each route's one dependency: who may call it, and everything a handler needs.

A route takes one :class:`Context` through ``Open``, ``Reader`` or ``Writer``; the latter two
check the ``X-API-Key`` header first. One dependency, not one per need: FastAPI resolves every
dependency on every request, and a tree of them cost more than the recommendation it served
(docs/benchmarks.md). They are ``async`` because they never block: a plain ``def`` dependency
would be sent to the thread pool. The hot reads skip FastAPI's solver altogether and call the
same checks through :data:`ACCESS` (:mod:`recengine.serving.routes._direct`).

A key is compared with every configured key in constant time (``hmac.compare_digest``, no
early exit), so the time taken says nothing about how much of a key was right. An empty header
is no key (401), on every route. A wrong key is a 403 counted against the client's address
(:class:`~recengine.serving.limits.FailureThrottle`); then come the rate limits, per key.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader

from recengine.serving.heavy import HeavyWorkers
from recengine.serving.limits import FailureThrottle, HeavyBudget, RateLimiter, too_many
from recengine.serving.metrics import Metrics
from recengine.serving.settings import Settings
from recengine.serving.state import ServingState
from recengine.store.events import EventStore

__all__ = ["ACCESS", "API_KEY_HEADER", "Context", "Guard", "Open", "Reader", "Writer"]

#: The header that carries the API key.
API_KEY_HEADER = "X-API-Key"

_api_key = APIKeyHeader(name=API_KEY_HEADER, auto_error=False)


def _encoded(keys: frozenset[str]) -> tuple[bytes, ...]:
    return tuple(sorted(key.encode() for key in keys))


@dataclass(frozen=True)
class Guard:
    """The keys and limits of one application, built once from its settings.

    Keys are kept encoded: ``compare_digest`` takes bytes or ASCII text, and a header may hold
    any Latin-1 character. ``readers`` (``writers``) is None where anyone may read (write).
    """

    readers: tuple[bytes, ...] | None
    writers: tuple[bytes, ...] | None
    keys: tuple[bytes, ...]
    failures: FailureThrottle
    heavy: HeavyBudget
    rate: RateLimiter | None

    @classmethod
    def of(cls, settings: Settings, workers: HeavyWorkers | None = None) -> Guard:
        """The guard of ``settings``; heavy requests go to ``workers`` when given."""
        every = settings.read_key_set | settings.write_key_set
        rate = settings.rate_limit_per_second
        return cls(_encoded(every) if settings.read_key_set else None,
                   None if settings.allow_anonymous_writes else _encoded(settings.write_key_set),
                   _encoded(every),
                   FailureThrottle(settings.auth_failure_limit,
                                   settings.auth_failure_window_seconds),
                   HeavyBudget(settings.heavy_concurrency, settings.heavy_queue, workers),
                   None if rate is None else RateLimiter(rate, settings.rate_limit_burst))


@dataclass(frozen=True)
class Context:
    """The serving state, the settings, the counters and the guard of one application."""

    state: ServingState
    settings: Settings
    metrics: Metrics
    guard: Guard

    @property
    def store(self) -> EventStore:
        return self.state.store


def _context(request: Request) -> Context:
    return request.app.state.context


def _unauthorised(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "APIKey"})


def _matches(key: str, keys: tuple[bytes, ...]) -> bool:
    """Whether ``key`` is one of ``keys``, every key compared in full, whatever matches."""
    given, found = key.encode(), False
    for candidate in keys:
        found |= hmac.compare_digest(given, candidate)
    return found


def _address(request: Request) -> str:
    client = request.scope.get("client")
    return str(client[0]) if client else "unknown"


_MISSING = {"read": "reads need a read or write key", "write": "writes need a write key"}


def _checked(request: Request, key: str | None, keys: tuple[bytes, ...] | None,
             role: str) -> Context:
    """The context once ``key`` is one of ``keys`` (None: anyone may) and within its limits.

    Raises 429 while the address is throttled for failed keys or the caller is over its rate,
    401 without a key (an empty header is none), and 403, counted as a failure, for a key that
    is not one of ``keys``.
    """
    context = _context(request)
    guard = context.guard
    address = _address(request)
    if wait := guard.failures.wait(address):
        raise too_many("too many wrong API keys from this address", wait)
    if keys is not None:
        if not key:
            raise _unauthorised(f"missing X-API-Key header: {_MISSING[role]}")
        if not _matches(key, keys):
            guard.failures.failed(address)
            raise HTTPException(403, f"this API key may not {role}")
    if guard.rate is not None:
        known = keys is not None or bool(key and _matches(key, guard.keys))
        if wait := guard.rate.wait(f"key:{key}" if known else f"address:{address}"):
            raise too_many("rate limit reached: slow down", wait)
    return context


def _open(request: Request, _key: str | None) -> Context:
    return _context(request)


def _read(request: Request, key: str | None) -> Context:
    return _checked(request, key, _context(request).guard.readers, "read")


def _write(request: Request, key: str | None) -> Context:
    return _checked(request, key, _context(request).guard.writers, "write")


async def open_access(request: Request) -> Context:
    return _open(request, None)


async def read_access(request: Request,
                      key: Annotated[str | None, Security(_api_key)] = None) -> Context:
    return _read(request, key)


async def write_access(request: Request,
                       key: Annotated[str | None, Security(_api_key)] = None) -> Context:
    return _write(request, key)


#: Each access dependency's check, for routes that read the header themselves
#: (:class:`~recengine.serving.routes._direct.DirectRoute`).
ACCESS: dict[Callable[..., Awaitable[Context]], Callable[[Request, str | None], Context]] = {
    open_access: _open, read_access: _read, write_access: _write}

Open = Annotated[Context, Depends(open_access)]
Reader = Annotated[Context, Depends(read_access)]
Writer = Annotated[Context, Depends(write_access)]
