"""Annotated dependencies: what a handler needs, swappable in tests."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader

from recengine.serving.metrics import Metrics
from recengine.serving.settings import Settings
from recengine.serving.state import ServingState
from recengine.store.events import EventStore

__all__ = ["MetricsDep", "ReadKey", "SettingsDep", "StateDep", "StoreDep", "WriteKey"]

_api_key = APIKeyHeader(name="X-API-Key", auto_error=False)


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_state(request: Request) -> ServingState:
    return request.app.state.serving


def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


SettingsDep = Annotated[Settings, Depends(get_settings)]
StateDep = Annotated[ServingState, Depends(get_state)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]


def get_store(state: StateDep) -> EventStore:
    return state.store


StoreDep = Annotated[EventStore, Depends(get_store)]


def _unauthorised(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "APIKey"})


def require_read_key(settings: SettingsDep,
                     key: Annotated[str | None, Security(_api_key)] = None) -> None:
    allowed = settings.read_key_set
    if not allowed:
        return
    if key is None:
        raise _unauthorised("missing X-API-Key header: reads need a read or write key")
    if key not in allowed | settings.write_key_set:
        raise HTTPException(403, "this API key may not read")


def require_write_key(settings: SettingsDep,
                      key: Annotated[str | None, Security(_api_key)] = None) -> None:
    if settings.allow_anonymous_writes:
        return
    if key is None:
        raise _unauthorised("missing X-API-Key header: writes need a write key")
    if key not in settings.write_key_set:
        raise HTTPException(403, "this API key may not write")


ReadKey = Depends(require_read_key)
WriteKey = Depends(require_write_key)
