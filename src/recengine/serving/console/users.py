"""Users: search and page through them; one user's history beside every model's list.

A user's lists are the recommendation route's own answers (:func:`recommendations.recommend`,
called with the console's options), so the served list is exactly what
``GET /v1/users/{id}/recommendations`` answers, and each model's list is that route's answer
with ``model=`` and reasons. A constraint or rules typed on the page go to the same route, and a
posted event goes through ``POST /v1/events``'s own function: the lists then show it folded in.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from recengine.errors import RecengineError
from recengine.serving.console.paging import Paging, catalogue, number
from recengine.serving.console.render import context_of, failure, page
from recengine.serving.console.session import Editor, Viewer
from recengine.serving.deps import Context
from recengine.serving.routes import events, recommendations
from recengine.serving.routes.browse import event_out
from recengine.serving.schemas import EventIn, RecommendationQuery

__all__ = ["lists_of", "router"]

router = APIRouter()

#: Events of a user's history per page.
HISTORY_PAGE = 20


@router.get("/console/users")
def user_list(request: Request, session: Viewer, q: str = "", offset: str = "") -> Response:
    return catalogue(request, session, "user", q, offset)


def _answer(result: Any) -> dict[str, Any]:
    """A route's answer as plain JSON values (a model, or a heavy request's bytes)."""
    if isinstance(result, Response):
        return dict(json.loads(bytes(result.body)))
    return dict(result.model_dump(mode="json"))


async def lists_of(ctx: Context, user: str, k: int, constraint: str, rules: str
                   ) -> dict[str, Any]:
    """The served list and each of the active version's models' lists (with reasons), or the
    error the API would answer, with the field it names."""
    try:
        base = RecommendationQuery(k=k, constraint=constraint or None, rules=rules or None)
        served = _answer(await recommendations.recommend(user, ctx, base))
        names = ctx.state.serving().names
        models = []
        for name in names:
            query = base.model_copy(update={"model": name, "explain": True})
            models.append((name, _answer(await recommendations.recommend(user, ctx, query))))
    except ValidationError as exc:
        first = exc.errors()[0]
        return {"error": str(first["msg"]), "field": ".".join(map(str, first["loc"])),
                "status": 422}
    except RecengineError as exc:
        status, message, field = failure(exc)
        return {"error": message, "field": field, "status": status}
    except HTTPException as exc:  # the heavy requests' queue is full
        return {"error": str(exc.detail), "field": None, "status": exc.status_code}
    return {"served": served, "models": models, "error": None, "status": 200}


def _options(k: str, constraint: str, rules: str) -> dict[str, Any]:
    return {"k": min(number(k, 10), 100), "constraint": constraint.strip(),
            "rules": rules.strip()}


async def _user_values(ctx: Context, user: str, options: dict[str, Any], events_offset: int
                       ) -> dict[str, Any]:
    lists = await lists_of(ctx, user, options["k"], options["constraint"], options["rules"])
    rows, total = await run_in_threadpool(ctx.store.user_events, user, limit=HISTORY_PAGE,
                                          offset=events_offset, newest_first=True)
    return {"user": user, "lists": lists, "options": options,
            "history": [event_out(r) for r in rows], "history_total": total,
            "history_paging": Paging(offset=events_offset, limit=HISTORY_PAGE)}


@router.get("/console/users/{user_id}")
async def user_page(request: Request, session: Viewer, user_id: str, k: str = "10",
                    constraint: str = "", rules: str = "", events_offset: str = "0"
                    ) -> Response:
    ctx = context_of(request)
    values = await _user_values(ctx, user_id, _options(k, constraint, rules),
                                number(events_offset, 0))
    features = await run_in_threadpool(ctx.store.user, user_id)
    status = values["lists"]["status"]
    return page(request, session, "user.html", status=status if status != 200 else 200,
                features=features, **values)


@router.get("/console/users/{user_id}/live")
async def user_live(request: Request, session: Viewer, user_id: str, k: str = "10",
                    constraint: str = "", rules: str = "") -> Response:
    """The lists and the history, for htmx to swap in after a change of options."""
    values = await _user_values(context_of(request), user_id, _options(k, constraint, rules), 0)
    return page(request, session, "_live.html", status=values["lists"]["status"], **values)


@router.post("/console/users/{user_id}/events")
async def post_event(request: Request, session: Editor, user_id: str,
                     item_id: Annotated[str, Form()] = "",
                     event_type: Annotated[str, Form()] = "",
                     value: Annotated[str, Form()] = "",
                     k: Annotated[str, Form()] = "10", constraint: Annotated[str, Form()] = "",
                     rules: Annotated[str, Form()] = "") -> Response:
    """Post one event for the user as ``POST /v1/events`` does, then show the lists again:
    the event is folded in at once."""
    ctx = context_of(request)
    notice: dict[str, Any]
    try:
        event = EventIn(user_id=user_id, item_id=item_id, event_type=event_type or None,
                        value=value.strip() or None, timestamp=int(time.time()))  # it is now
        result = await run_in_threadpool(events.post_events, event, ctx)
        body = _answer(result)
        status = result.status_code if isinstance(result, Response) else 200
        issues = body.get("issues") or []
        notice = {"ok": status == 200, "text": "event stored: the lists below include it"
                  if status == 200 else "; ".join(i["message"] for i in issues)}
    except ValidationError as exc:
        status, notice = 422, {"ok": False, "text": f"{exc.errors()[0]['loc'][0]}: "
                                                    f"{exc.errors()[0]['msg']}"}
    except RecengineError as exc:
        status, message, _ = failure(exc)
        notice = {"ok": False, "text": message}
    values = await _user_values(ctx, user_id, _options(k, constraint, rules), 0)
    return page(request, session, "_live.html", status=status, notice=notice, **values)
