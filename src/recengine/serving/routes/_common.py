"""Checks and the error response shared by the routes."""

from __future__ import annotations

import json
import math
from typing import Any

from fastapi.responses import JSONResponse

from recengine.errors import DataError
from recengine.models.fallback import RankedItem
from recengine.serving.schemas import RecommendationList, RecommendedItem


class ErrorResponse(JSONResponse):
    """An error's JSON, every non-ASCII character escaped.

    An error may quote the input, and the input may hold a lone UTF-16 surrogate (JSON's
    ``"\\ud800"``) that UTF-8 cannot encode: written as Starlette writes JSON, the report of a
    422 became a 500.
    """

    def render(self, content: Any) -> bytes:
        return json.dumps(content, allow_nan=False, separators=(",", ":")).encode("ascii")


def check_limit(value: int, limit: int, name: str) -> None:
    if value > limit:
        raise DataError(f"{name} must be at most {limit}, got {value}", column=name)


def score(value: float) -> float:
    return float(value) if math.isfinite(value) else 0.0


def recommendation_list(user: str, version: str, items: list[RankedItem],
                        explain: bool) -> RecommendationList:
    out = [RecommendedItem(item_id=r.item, score=score(r.score), source=r.source,
                           reason=r.reason if explain else None) for r in items]
    return RecommendationList(user_id=user, model_version=version, items=out, count=len(out))
