"""The overview: traffic, the catalogue, the active version, retraining and recent errors."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from recengine.errors import RecengineError
from recengine.serving.console.charts import chart
from recengine.serving.console.render import context_of, page
from recengine.serving.console.session import Viewer
from recengine.serving.routes.browse import history
from recengine.serving.schemas import MetricsHistory

__all__ = ["activity_charts", "router"]

router = APIRouter()


def _minute(stamp: str) -> str:
    return stamp[11:16]


def activity_charts(activity: MetricsHistory) -> dict[str, Any]:
    """Events per minute by type (stacked bars) and requests and their latency (lines)."""
    labels = [_minute(m.minute) for m in activity.requests]
    kinds = sorted({e.event_type for e in activity.events})
    per_kind = {kind: [0.0] * len(labels) for kind in kinds}
    where = {m.minute: i for i, m in enumerate(activity.requests)}
    for event in activity.events:
        index = where.get(event.minute)
        if index is not None:
            per_kind[event.event_type][index] += event.count
    return {
        "events": chart("Events stored per minute, by type", labels, per_kind, kind="bars"),
        "requests": chart("API requests per minute", labels,
                          {"requests": [float(m.count) for m in activity.requests]}),
        "latency": chart("API latency per minute (ms)", labels,
                         {"p50": [m.p50_ms for m in activity.requests],
                          "p99": [m.p99_ms for m in activity.requests]}),
    }


def _gate(status: dict[str, Any] | None, manifests: list[dict[str, Any]]) -> dict[str, Any]:
    """The last gate decision: this server's last retraining run, else the notes of the newest
    version (a retrain writes its verdict there)."""
    if status and status.get("last_reason"):
        return {"reason": status["last_reason"], "at": status.get("last_run_at"),
                "version": status.get("last_version"), "source": "this server's last run"}
    if manifests:
        newest = manifests[0]
        return {"reason": newest.get("notes") or "no reason recorded",
                "at": newest.get("created_at"), "version": newest["version"],
                "source": f"the notes of {newest['version']}, the newest version"}
    return {"reason": "no version published yet", "at": None, "version": None, "source": ""}


@router.get("/console")
def overview(request: Request, session: Viewer) -> Response:
    ctx = context_of(request)
    store, settings = ctx.store, ctx.settings
    problems: list[str] = []
    users: int | None
    items: int | None
    events: int | None
    try:
        users = store.listed("user", limit=1)[1]
        items = store.listed("item", limit=1)[1]
        events = store.count()
        activity = history(ctx, 60)
    except RecengineError:
        problems.append("the event store is unavailable: counts and events are missing")
        users = items = events = None
        activity = MetricsHistory(minutes=60, events=[], requests=[], errors=[])
    manifests = ctx.state.registry.list()
    active = next((m for m in manifests if m["active"]), None)
    scheduler = request.app.state.retraining
    status = scheduler.status() if scheduler is not None else None
    errors = [*([{"at": status.get("last_run_at"), "source": "retraining",
                  "message": status["last_error"]}] if status and status.get("last_error")
                else []),
              *[e.model_dump() for e in activity.errors]]
    recent = ctx.metrics.recent.window(5)
    return page(request, session, "overview.html", users=users, items=items, events=events,
                active=active, charts=activity_charts(activity), recent=recent,
                retraining=status, settings=settings, gate=_gate(status, manifests),
                errors=errors, problems=problems,
                event_total=sum(e.count for e in activity.events))
