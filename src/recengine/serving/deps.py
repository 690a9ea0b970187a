"""Each route's one dependency: who may call it, and everything a handler needs.

A route takes one :class:`Context` through ``Open``, ``Reader`` or ``Writer``; the latter two
check the ``X-API-Key`` header first. One dependency, not one per need: FastAPI resolves every
dependency on every request, and a tree of them cost more than the recommendation it served
(docs/benchmarks.md). They are ``async`` because they never block: a plain ``def`` dependency
would be sent to the thread pool. The hot reads skip FastAPI's solver altogether and call the
same checks through :data:`ACCESS` (:mod:`recengine.serving.routes._direct`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader

from recengine.serving.metrics import Metrics
from recengine.serving.settings import Settings
from recengine.serving.state import ServingState
from recengine.store.events import EventStore

__all__ = ["ACCESS", "API_KEY_HEADER", "Context", "Open", "Reader", "Writer"]

#: The header that carries the API key.
API_KEY_HEADER = "X-API-Key"

_api_key = APIKeyHeader(name=API_KEY_HEADER, auto_error=False)


@dataclass(frozen=True)
class Context:
    """The serving state, the settings and the counters of one application."""

    state: ServingState
    settings: Settings
    metrics: Metrics

    @property
    def store(self) -> EventStore:
        return self.state.store


def _context(request: Request) -> Context:
    return request.app.state.context


def _unauthorised(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "APIKey"})


def _open(request: Request, _key: str | None) -> Context:
    return _context(request)


def _read(request: Request, key: str | None) -> Context:
    context = _context(request)
    allowed = context.settings.read_key_set
    if not allowed:
        return context
    if key is None:
        raise _unauthorised("missing X-API-Key header: reads need a read or write key")
    if key not in allowed | context.settings.write_key_set:
        raise HTTPException(403, "this API key may not read")
    return context


def _write(request: Request, key: str | None) -> Context:
    context = _context(request)
    if context.settings.allow_anonymous_writes:
        return context
    if key is None:
        raise _unauthorised("missing X-API-Key header: writes need a write key")
    if key not in context.settings.write_key_set:
        raise HTTPException(403, "this API key may not write")
    return context


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
