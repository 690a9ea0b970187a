"""Each route's one dependency: who may call it, and everything a handler needs.

A route takes one :class:`Context` through ``Open``, ``Reader`` or ``Writer``; the latter two
check the ``X-API-Key`` header first. One dependency, not one per need: FastAPI resolves every
dependency on every request, and a tree of them cost more than the recommendation it served
(docs/benchmarks.md). They are ``async`` because they never block: a plain ``def`` dependency
would be sent to the thread pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader

from recengine.serving.metrics import Metrics
from recengine.serving.settings import Settings
from recengine.serving.state import ServingState
from recengine.store.events import EventStore

__all__ = ["Context", "Open", "Reader", "Writer"]

_api_key = APIKeyHeader(name="X-API-Key", auto_error=False)


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


async def open_access(request: Request) -> Context:
    return _context(request)


async def read_access(request: Request,
                      key: Annotated[str | None, Security(_api_key)] = None) -> Context:
    context = _context(request)
    allowed = context.settings.read_key_set
    if not allowed:
        return context
    if key is None:
        raise _unauthorised("missing X-API-Key header: reads need a read or write key")
    if key not in allowed | context.settings.write_key_set:
        raise HTTPException(403, "this API key may not read")
    return context


async def write_access(request: Request,
                       key: Annotated[str | None, Security(_api_key)] = None) -> Context:
    context = _context(request)
    if context.settings.allow_anonymous_writes:
        return context
    if key is None:
        raise _unauthorised("missing X-API-Key header: writes need a write key")
    if key not in context.settings.write_key_set:
        raise HTTPException(403, "this API key may not write")
    return context


Open = Annotated[Context, Depends(open_access)]
Reader = Annotated[Context, Depends(read_access)]
Writer = Annotated[Context, Depends(write_access)]
