"""Event ingestion: validated and stored by the event store; every server process then folds the
new events into its live histories from the store (a retried event, stored once, counts once)."""

from __future__ import annotations

from fastapi import APIRouter

from recengine.serving.bell import Ring
from recengine.serving.deps import Writer
from recengine.serving.routes._common import STORE_DOWN, ErrorResponse, check_limit, errors
from recengine.serving.schemas import EventBatch, EventsAccepted, EventsIn, IssueOut

router = APIRouter()


@router.post("/events", response_model=EventsAccepted,
             responses=errors({422: "every record was rejected (the body holds the counts and "
                                    "issues of a 200 too), or the body is not one event or a "
                                    "batch of them", 503: STORE_DOWN}))
def post_events(body: EventsIn, ctx: Writer) -> EventsAccepted | ErrorResponse:
    """One event or ``{events: [...]}``; bad records are reported and left out."""
    events = body.events if isinstance(body, EventBatch) else [body]
    check_limit(len(events), ctx.settings.max_batch, "events")
    records = [e.model_dump(exclude_none=True) for e in events]
    result, report = ctx.store.ingest(records)
    issues = [IssueOut(row=i.row, field=i.column, problem=i.problem, message=i.message)
              for i in report.issues]
    rejected_rows = {i.row for i in report.issues}
    out = EventsAccepted(accepted=result.accepted, duplicates=result.duplicates,
                         rejected=len(rejected_rows), issues=issues)
    if len(rejected_rows) == len(records):
        return ErrorResponse(status_code=422, content={
            "detail": "every event was rejected", "field": issues[0].field if issues else None,
            **out.model_dump()})
    ctx.metrics.add_events(result.accepted)
    if result.accepted:
        ctx.state.changed(Ring.EVENTS)  # every process folds them in from the store
    return out
