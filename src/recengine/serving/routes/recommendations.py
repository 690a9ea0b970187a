"""Recommendations for users, one at a time or in a batch."""

from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Query
from starlette.responses import Response

from recengine.models.rules import Rule, parse_rules, rules_from_json
from recengine.serving.deps import Reader
from recengine.serving.limits import off_the_loop
from recengine.serving.routes._common import (
    RECOMMENDATION_ERRORS,
    check_cost,
    check_limit,
    heavy,
    json_body,
    recommendation_list,
)
from recengine.serving.routes._direct import DirectRoute
from recengine.serving.schemas import (
    BatchRecommendations,
    RecommendationBatch,
    RecommendationList,
    RecommendationQuery,
    Text,
)
from recengine.serving.state import ServingState

router = APIRouter()


async def recommend(user_id: Text, ctx: Reader, query: Annotated[RecommendationQuery, Query()]
                    ) -> RecommendationList | Response:
    """Top-k for a user; unknown users get the popularity fallback, never an error.

    A plain request (no rules, no constraint, no reasons) costs a fraction of a millisecond: it
    runs on the event loop, since handing it to a worker thread would cost more than the answer.
    The rest read the item catalogue or explain each item: heavy requests, computed within the
    heavy budget (:class:`~recengine.serving.limits.HeavyBudget`). A plain request that must
    read the store first (news heard from the bell, an evicted history, no version active yet:
    popularity is then read from the store) waits on a query in the thread pool.
    """
    check_limit(query.k, ctx.settings.max_k, "k")
    check_limit(query.offset, ctx.settings.max_k, "offset")
    check_cost(ctx.settings, 1, query.k, explain=query.explain)
    if query.constraint is not None or query.rules is not None or query.explain:
        return await heavy(ctx, _recommend_heavy, user_id, query)
    answer = partial(ctx.state.recommend, user_id, query.k, offset=query.offset,
                     name=query.model or None, device=query.device or None)
    if ctx.state.ready(user_id, query.model or None):
        active, items = answer()
    else:
        active, items = await off_the_loop(answer)
    return recommendation_list(user_id, active, items, query.explain)


def _recommend_heavy(state: ServingState, user_id: str, query: RecommendationQuery) -> bytes:
    """A user's top-k with rules, a constraint or reasons: a heavy job."""
    active, items = state.recommend(
        user_id, query.k, offset=query.offset, name=query.model or None,
        constraint=query.constraint or None, rules=_rules_query(query.rules),
        explain=query.explain, device=query.device or None)
    return json_body(recommendation_list(user_id, active, items, query.explain))


router.add_api_route("/users/{user_id}/recommendations", recommend, methods=["GET"],
                     response_model=RecommendationList, route_class_override=DirectRoute,
                     responses=RECOMMENDATION_ERRORS)


@router.post("/recommendations", response_model=BatchRecommendations,
             responses=RECOMMENDATION_ERRORS)
async def recommend_batch(body: RecommendationBatch, ctx: Reader) -> Response:
    """Top-k for each user in ``users``, all from one model version, with the same options
    (an empty ``model`` or ``constraint`` is none, as in the single request).

    A heavy request: computed and written within the heavy budget, in a heavy worker process
    (or a worker thread).
    """
    check_limit(body.k, ctx.settings.max_k, "k")
    check_limit(body.offset, ctx.settings.max_k, "offset")
    check_limit(len(body.users), ctx.settings.max_batch, "users")
    check_cost(ctx.settings, len(body.users), body.k, batch="users", explain=body.explain)
    return await heavy(ctx, _batch, body)


def _batch(state: ServingState, body: RecommendationBatch) -> bytes:
    """A batch's answers, all from one model version: a heavy job."""
    active = state.serving()
    rules = parse_rules(body.rules)
    data = [recommendation_list(user, active, state.recommend(
        user, body.k, offset=body.offset, name=body.model or None,
        constraint=body.constraint or None,
        rules=rules, active=active, explain=body.explain, device=body.device or None)[1],
        body.explain)
        for user in body.users]
    return json_body(BatchRecommendations.of(data))


def _rules_query(text: str | None) -> list[Rule]:
    return rules_from_json(text) if text else []
