"""Recommendations for an anonymous session: a visitor known only by the items just chosen."""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter
from starlette.responses import Response

from recengine.data.query import NO_TIME, Event
from recengine.models.rules import parse_rules
from recengine.serving.deps import Reader
from recengine.serving.limits import off_the_loop
from recengine.serving.routes._common import (
    RECOMMENDATION_ERRORS,
    check_cost,
    check_limit,
    heavy,
    json_body,
    ranked,
)
from recengine.serving.schemas import SessionQuery, SessionRecommendations
from recengine.serving.state import ServingState

router = APIRouter()


@router.post("/sessions/recommendations", response_model=SessionRecommendations,
             responses=RECOMMENDATION_ERRORS)
async def recommend_session(body: SessionQuery, ctx: Reader) -> Response:
    """Top-k for an anonymous session: ``items`` oldest first, with optional ``event_types``
    and ``timestamps`` (one per item). No user, and nothing is stored.

    The session is asked as a user's live history is: order models (markov) read the order,
    the others the items; the session's items are not recommended back; items the model does
    not know are left out and listed in ``unknown_items``; with none known, the answer is the
    fallback (popularity). At most ``max_batch`` items. Rules, a constraint or reasons make it
    a heavy request (computed within the heavy budget); otherwise it runs in a worker thread.
    """
    settings = ctx.settings
    check_limit(body.k, settings.max_k, "k")
    check_limit(body.offset, settings.max_k, "offset")
    check_limit(len(body.items), settings.max_batch, "items")
    check_cost(settings, 1, body.k, explain=body.explain)
    if body.constraint or body.rules or body.explain:
        return await heavy(ctx, _session, body)
    return Response(await off_the_loop(partial(_session, ctx.state, body)),
                    media_type="application/json")


def _session(state: ServingState, body: SessionQuery) -> bytes:
    """A session's answer (a heavy job when it has rules, a constraint or reasons)."""
    rules = parse_rules(body.rules)
    times = body.seconds() or [NO_TIME] * len(body.items)
    kinds = body.event_types or [""] * len(body.items)
    session = [Event(item, kind, timestamp=t)
               for item, kind, t in zip(body.items, kinds, times, strict=True)]
    active, items, unknown = state.recommend_session(
        session, body.k, offset=body.offset, name=body.model or None,
        constraint=body.constraint or None, rules=rules, explain=body.explain,
        device=body.device or None)
    return json_body(SessionRecommendations.model_validate(
        {"unknown_items": unknown} | ranked(active, items, body.explain)))
