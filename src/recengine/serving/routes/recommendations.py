"""Recommendations for users, one at a time or in a batch."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from recengine.serving.deps import ReadKey, SettingsDep, StateDep
from recengine.serving.routes._common import check_limit, recommendation_list
from recengine.serving.schemas import (
    BatchRecommendations,
    RecommendationBatch,
    RecommendationList,
)

router = APIRouter(dependencies=[ReadKey])


@router.get("/users/{user_id}/recommendations", response_model=RecommendationList)
def recommend(
    user_id: str,
    state: StateDep,
    settings: SettingsDep,
    k: Annotated[int, Query(ge=1)] = 10,
    model: Annotated[str | None, Query()] = None,
    constraint: Annotated[str | None, Query()] = None,
    explain: bool = False,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> RecommendationList:
    """Top-k for a user; unknown users get the popularity fallback, never an error."""
    check_limit(k, settings.max_k, "k")
    check_limit(offset, settings.max_k, "offset")
    active, items = state.recommend(user_id, k, offset=offset, name=model or None,
                                    constraint=constraint or None, explain=explain)
    return recommendation_list(user_id, active.version, items, explain)


@router.post("/recommendations", response_model=BatchRecommendations)
def recommend_batch(body: RecommendationBatch, state: StateDep,
                    settings: SettingsDep) -> BatchRecommendations:
    """Top-k for each user in ``users``, all from one model version."""
    check_limit(body.k, settings.max_k, "k")
    check_limit(len(body.users), settings.max_batch, "users")
    active = state.active
    data = [recommendation_list(user, active.version,
                                state.recommend(user, body.k, active=active)[1], False)
            for user in body.users]
    return BatchRecommendations.of(data)
