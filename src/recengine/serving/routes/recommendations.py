"""Recommendations for users, one at a time or in a batch."""

from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from recengine.serving.deps import Reader
from recengine.serving.routes._common import check_limit, recommendation_list
from recengine.serving.schemas import (
    BatchRecommendations,
    RecommendationBatch,
    RecommendationList,
)

router = APIRouter()


@router.get("/users/{user_id}/recommendations", response_model=RecommendationList)
async def recommend(
    user_id: str,
    ctx: Reader,
    k: Annotated[int, Query(ge=1)] = 10,
    model: Annotated[str | None, Query()] = None,
    constraint: Annotated[str | None, Query()] = None,
    explain: bool = False,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> RecommendationList:
    """Top-k for a user; unknown users get the popularity fallback, never an error.

    A plain request (no constraint, no reasons) costs a fraction of a millisecond: it runs on
    the event loop, since handing it to a worker thread would cost more than the answer. The
    rest read the item catalogue or explain each item and run in the thread pool.
    """
    check_limit(k, ctx.settings.max_k, "k")
    check_limit(offset, ctx.settings.max_k, "offset")
    answer = partial(ctx.state.recommend, user_id, k, offset=offset, name=model or None,
                     constraint=constraint or None, explain=explain)
    active, items = answer() if constraint is None and not explain else (
        await run_in_threadpool(answer))
    return recommendation_list(user_id, active.version, items, explain)


@router.post("/recommendations", response_model=BatchRecommendations)
def recommend_batch(body: RecommendationBatch, ctx: Reader) -> BatchRecommendations:
    """Top-k for each user in ``users``, all from one model version."""
    check_limit(body.k, ctx.settings.max_k, "k")
    check_limit(len(body.users), ctx.settings.max_batch, "users")
    active = ctx.state.active
    data = [recommendation_list(user, active.version,
                                ctx.state.recommend(user, body.k, active=active)[1], False)
            for user in body.users]
    return BatchRecommendations.of(data)
