"""The read API a console needs (issue 15): users and items page by page, a user's history,
and the activity of the last hour.

Each list is read from the store, the one truth every server process shares, a page at a time
(``q`` matches ids, ``limit`` and ``offset`` page), so it costs the same on a log of any size.
Request rates and latencies are the answering process's own (:mod:`recengine.serving.recent`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query

from recengine.serving.deps import Context, Reader
from recengine.serving.routes._common import STORE_DOWN, errors
from recengine.serving.schemas import (
    EventMinute,
    EventOut,
    EventsQuery,
    HistoryQuery,
    ItemSummary,
    Listing,
    LoggedError,
    MetricsHistory,
    PageQuery,
    RequestMinuteOut,
    Text,
    UserEvents,
    UserSummary,
)
from recengine.store.events import StoredEvent

__all__ = ["event_out", "history", "router"]

router = APIRouter()

_STORE = errors({503: STORE_DOWN})


def _iso(stamp: datetime | None) -> str | None:
    return None if stamp is None else stamp.isoformat()


@router.get("/users", response_model=Listing[UserSummary], responses=_STORE, tags=["users"])
def list_users(ctx: Reader, query: Annotated[PageQuery, Query()]) -> Listing[UserSummary]:
    """Users with events or features, in id order, those whose id contains ``q``."""
    rows, total = ctx.store.listed("user", q=query.q, limit=query.limit, offset=query.offset)
    data = [UserSummary(user_id=r.id, events=r.events, last_event_at=_iso(r.last_event_at))
            for r in rows]
    return Listing[UserSummary].of(data, total, query.offset)


@router.get("/items", response_model=Listing[ItemSummary], responses=_STORE, tags=["items"])
def list_items(ctx: Reader, query: Annotated[PageQuery, Query()]) -> Listing[ItemSummary]:
    """Items with events or features, in id order, those whose id contains ``q``; ``deleted``
    items (never recommended) are listed too, since their events stay."""
    rows, total = ctx.store.listed("item", q=query.q, limit=query.limit, offset=query.offset)
    deleted = ctx.store.deleted_items() if rows else set()
    data = [ItemSummary(item_id=r.id, events=r.events, last_event_at=_iso(r.last_event_at),
                        deleted=r.id in deleted) for r in rows]
    return Listing[ItemSummary].of(data, total, query.offset)


def event_out(row: StoredEvent) -> EventOut:
    return EventOut(id=row.id, item_id=row.item_id, event_type=row.event_type, value=row.value,
                    timestamp=_iso(row.timestamp), device=row.device)


@router.get("/users/{user_id}/events", response_model=UserEvents, responses=_STORE,
            tags=["users"])
def user_events(user_id: Text, ctx: Reader, query: Annotated[EventsQuery, Query()]
                ) -> UserEvents:
    """A user's stored history in time order (``order=desc``: newest first), a page at a time;
    an unknown user has none."""
    rows, total = ctx.store.user_events(user_id, limit=query.limit, offset=query.offset,
                                        newest_first=query.order == "desc")
    return UserEvents(user_id=user_id, data=[event_out(r) for r in rows], count=len(rows),
                      total=total, offset=query.offset)


def history(ctx: Context, minutes: int) -> MetricsHistory:
    """The last ``minutes`` of activity (see :class:`MetricsHistory`)."""
    since = datetime.now(UTC) - timedelta(minutes=minutes - 1)
    since = since.replace(second=0, microsecond=0)
    events = [EventMinute(minute=m.isoformat(), event_type=kind, count=n)
              for m, kind, n in ctx.store.events_per_minute(since)]
    recent = ctx.metrics.recent
    requests = [RequestMinuteOut(minute=m.minute.isoformat(), count=m.count, p50_ms=m.p50_ms,
                                 p99_ms=m.p99_ms) for m in recent.minutes(minutes)]
    logged = [LoggedError(at=e.at.isoformat(), source=e.source, message=e.message)
              for e in reversed(recent.errors)]
    return MetricsHistory(minutes=minutes, events=events, requests=requests, errors=logged)


@router.get("/metrics/history", response_model=MetricsHistory, responses=_STORE,
            tags=["metrics"])
def metrics_history(ctx: Reader, query: Annotated[HistoryQuery, Query()]) -> MetricsHistory:
    """Events stored per minute and type over the last ``minutes`` (every process's); the
    answering process's requests per minute with latency p50 and p99, and its latest errors
    (server errors and warnings logged), newest first."""
    return history(ctx, query.minutes)
