"""Recommendations for an anonymous session: a visitor known only by the items just chosen."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from recengine.data.query import NO_TIME, Event
from recengine.models.rules import parse_rules
from recengine.serving.deps import Reader
from recengine.serving.routes._common import STORE_DOWN, check_cost, check_limit, errors, ranked
from recengine.serving.schemas import SessionQuery, SessionRecommendations

router = APIRouter()

_RESPONSES = errors({404: "the active version has no model of that name (``model``)",
                     503: STORE_DOWN})


@router.post("/sessions/recommendations", response_model=SessionRecommendations,
             responses=_RESPONSES)
async def recommend_session(body: SessionQuery, ctx: Reader) -> SessionRecommendations:
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
    rules = parse_rules(body.rules)
    times = body.seconds() or [NO_TIME] * len(body.items)
    kinds = body.event_types or [""] * len(body.items)
    session = [Event(item, kind, timestamp=t)
               for item, kind, t in zip(body.items, kinds, times, strict=True)]

    def answer() -> SessionRecommendations:
        active, items, unknown = ctx.state.recommend_session(
            session, body.k, offset=body.offset, name=body.model or None,
            constraint=body.constraint or None, rules=rules, explain=body.explain)
        return SessionRecommendations.model_validate(
            {"unknown_items": unknown} | ranked(active, items, body.explain))

    if body.constraint or body.rules or body.explain:
        return await ctx.guard.heavy.run(answer)
    return await run_in_threadpool(answer)
