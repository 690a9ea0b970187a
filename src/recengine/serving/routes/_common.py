"""Checks and the error response shared by the routes."""

from __future__ import annotations

import json
import math
from typing import Any

from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from recengine.errors import (
    DataError,
    ModelLoadError,
    ModelNotFoundError,
    NotFittedError,
    NotSupportedError,
    RecengineError,
    RegistryError,
    StoreError,
    UnknownIdError,
)
from recengine.models.fallback import RankedItem
from recengine.serving.deps import Context
from recengine.serving.heavy import Job, WorkerLostError
from recengine.serving.schemas import Error, RecommendationList
from recengine.serving.settings import Settings
from recengine.serving.state import Active, NoActiveModelError

#: Most specific first: the first matching class decides the status.
_STATUS: list[tuple[type[RecengineError], int]] = [
    (ModelLoadError, 409),  # a version that exists but cannot be served: the old one stays
    (DataError, 422),
    (UnknownIdError, 404),
    (NoActiveModelError, 503),
    (ModelNotFoundError, 404),
    (NotFittedError, 503),
    (NotSupportedError, 400),
    (StoreError, 503),
    (WorkerLostError, 503),  # a heavy worker died; a new one is starting
    (RegistryError, 409),
]


def status_of(exc: RecengineError) -> int:
    """The HTTP status of ``exc`` (400 for a kind not listed)."""
    return next((code for cls, code in _STATUS if isinstance(exc, cls)), 400)


class ErrorResponse(JSONResponse):
    """An error's JSON, every non-ASCII character escaped.

    An error may quote the input, and the input may hold a lone UTF-16 surrogate (JSON's
    ``"\\ud800"``) that UTF-8 cannot encode: written as Starlette writes JSON, the report of a
    422 became a 500.
    """

    def render(self, content: Any) -> bytes:
        return json.dumps(content, allow_nan=False, separators=(",", ":")).encode("ascii")


#: The statuses a route answers besides 200 (and the 401, 403, 413, 422 and 429 that
#: :mod:`recengine.serving.routes.docs` adds to every route they apply to), for ``responses=``.
Responses = dict[int | str, dict[str, Any]]

#: A :class:`~recengine.errors.StoreError`: the route read or wrote the event store.
STORE_DOWN = "the event store is unavailable: retry later"
#: A :class:`~recengine.errors.NotSupportedError` from the model asked.
NOT_SUPPORTED = "the model cannot answer this (popularity has no similar items, for one)"
#: A heavy worker process died computing the request (:mod:`recengine.serving.heavy`).
WORKER_LOST = ("the process computing heavy requests (batches, explain, constraint, rules) "
               "stopped before answering; a new one is starting: retry")
#: A :class:`~recengine.serving.state.NoActiveModelError`.
NO_MODEL = "no model version is active yet: this needs a trained model"


def errors(statuses: dict[int, str]) -> Responses:
    """``responses=`` for a route: each status with its description and the error's body."""
    return {code: {"model": Error, "description": text} for code, text in statuses.items()}


#: What a request for a model's recommendations may answer besides its list.
RECOMMENDATION_ERRORS = errors({
    404: "the active version has no model of that name (``model``)",
    503: f"{STORE_DOWN}; or {WORKER_LOST}"})


def check_limit(value: int, limit: int, name: str) -> None:
    if value > limit:
        raise DataError(f"{name} must be at most {limit}, got {value}", column=name)


def check_cost(settings: Settings, lists: int, k: int, *, batch: str | None = None,
               explain: bool = False) -> None:
    """A 422 for ``lists`` answers of ``k`` over ``max_batch_results`` (a ``batch``, named) or
    over ``max_explained`` reasons; the single limits (``max_k``, ``max_batch``) are checked
    first, so each of ``lists`` and ``k`` is bounded already."""
    if batch is not None and lists * k > settings.max_batch_results:
        raise DataError(f"{batch} × k must be at most {settings.max_batch_results} results, "
                        f"got {lists} × {k}", column=batch)
    if explain and lists * k > settings.max_explained:
        raise DataError(f"explain=true explains at most {settings.max_explained} items per "
                        f"request, got {lists} × {k}", column="explain")


def json_body(model: BaseModel) -> bytes:
    """``model``'s JSON, as the routes write their answers."""
    return model.model_dump_json().encode()


async def heavy(ctx: Context, job: Job, *args: Any) -> Response:
    """The answer of the heavy request ``job(state, *args)`` (its JSON, made by
    :func:`json_body`), computed and written within the heavy budget: in a heavy worker
    process, or a worker thread; never on the event loop, where megabytes of JSON would hold
    every other request."""
    body = await ctx.guard.heavy.run(ctx.state, job, *args)
    return Response(body, media_type="application/json")


def score(value: float) -> float:
    return float(value) if math.isfinite(value) else 0.0


def recommendation_list(user: str, active: Active, items: list[RankedItem],
                        explain: bool) -> RecommendationList:
    """The response body; validated from plain dicts in one call, which costs half as much as
    building each item's model."""
    return RecommendationList.model_validate({"user_id": user} | ranked(active, items, explain))


def ranked(active: Active, items: list[RankedItem], explain: bool) -> dict[str, Any]:
    """The fields of every list of recommendations, as plain values."""
    out = [{"item_id": r.item, "score": score(r.score), "source": r.source,
            "reason": r.reason if explain else None} for r in items]
    return {"model_version": active.version, "items": out, "count": len(out),
            "reason": active.reason}
