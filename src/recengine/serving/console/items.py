"""Items: search; one item's features, similar items and audience, the audience as CSV.

Similar items and the audience are the API's routes' own answers (``GET
/v1/items/{id}/similar`` and ``/audience``), called with the page's options.
"""

from __future__ import annotations

import csv
import io
import re
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from recengine.errors import RecengineError
from recengine.serving.console.paging import catalogue, number
from recengine.serving.console.render import context_of, error_page, failure, page, secure
from recengine.serving.console.session import Viewer
from recengine.serving.deps import Context
from recengine.serving.routes import items as item_routes
from recengine.serving.schemas import AudienceQuery, SimilarQuery

__all__ = ["router"]

router = APIRouter()


@router.get("/console/items")
def item_list(request: Request, session: Viewer, q: str = "", offset: str = "") -> Response:
    return catalogue(request, session, "item", q, offset)


def _attempt(call: Any, *args: Any) -> tuple[Any, tuple[int, str] | None]:
    """``call(*args)``, or None and the status and sentence the API would answer instead."""
    try:
        return call(*args), None
    except RecengineError as exc:
        status, message, _ = failure(exc)
        return None, (status, message)
    except HTTPException as exc:
        return None, (exc.status_code, str(exc.detail))


def _item_values(ctx: Context, item: str, n: int) -> dict[str, Any]:
    features = ctx.store.item(item)
    similar, similar_error = _attempt(item_routes.similar, item, ctx, SimilarQuery(k=10))
    audience, audience_error = _attempt(item_routes.audience, item, ctx, AudienceQuery(n=n))
    events = ctx.store.listed("item", q=item, limit=50)[0]
    count = next((row.events for row in events if row.id == item), 0)
    return {"item": item, "features": features, "similar": similar,
            "similar_error": similar_error and similar_error[1], "audience": audience,
            "audience_error": audience_error and audience_error[1], "events": count, "n": n,
            "deleted": item in ctx.store.deleted_items()}


@router.get("/console/items/{item_id}")
async def item_page(request: Request, session: Viewer, item_id: str, n: str = "20"
                    ) -> Response:
    ctx = context_of(request)
    try:
        values = await run_in_threadpool(_item_values, ctx, item_id, min(number(n, 20), 1000))
    except RecengineError as exc:
        status, message, field = failure(exc)
        return error_page(request, status, message, field)
    return page(request, session, "item.html", **values)


def _filename(item: str) -> str:
    return "audience-" + (re.sub(r"[^A-Za-z0-9._-]", "_", item)[:80] or "item") + ".csv"


@router.get("/console/items/{item_id}/audience.csv")
def audience_csv(request: Request, session: Viewer, item_id: str, n: str = "100") -> Response:
    """The item's audience (targeting) as CSV: ``user_id,score``, best first."""
    ctx = context_of(request)
    audience, error = _attempt(item_routes.audience, item_id, ctx,
                               AudienceQuery(n=min(number(n, 100), ctx.settings.max_k)))
    if error is not None:
        return error_page(request, *error)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["user_id", "score"])
    for user in audience.users:
        writer.writerow([user.user_id, f"{user.score:.6g}"])
    return secure(Response(out.getvalue(), media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="{_filename(item_id)}"'}), session)
