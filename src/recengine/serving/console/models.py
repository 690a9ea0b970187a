"""Models: every version with its metrics, their history, plots, comparison, activation.

Activation and rollback are the API's own functions (``POST /v1/models/{version}/activate``,
``/v1/models/rollback``): a hot swap, refused whole (409) for a version that cannot load.
"""

from __future__ import annotations

import math
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from recengine.errors import RecengineError
from recengine.serving.console.charts import chart
from recengine.serving.console.render import context_of, failure, page, secure
from recengine.serving.console.session import Editor, Session, Viewer
from recengine.serving.routes import models as model_routes

__all__ = ["HEADLINE", "router"]

router = APIRouter()

#: The metrics shown in tables and charts, in this order, where a version has them.
HEADLINE = ("ndcg@10", "precision@10", "recall@10", "map@10", "mrr@10", "hit_rate@10",
            "coverage@10")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _primary(manifest: dict[str, Any]) -> str:
    return next(iter(manifest["models"]))


def _history_chart(manifests: list[dict[str, Any]]) -> Any:
    """Each headline metric of each version's primary model, oldest version first."""
    ordered = manifests[::-1]
    series = {metric: [_number(m.get("metrics", {}).get(_primary(m), {}).get(metric))
                       for m in ordered] for metric in HEADLINE[:4]}
    return chart("Metrics of each version's primary model", [m["version"] for m in ordered],
                 series)


def _plot(manifest: dict[str, Any]) -> Any:
    """A version's evaluation: every model's headline metrics, side by side."""
    metrics = manifest.get("metrics", {})
    shown = [m for m in HEADLINE if any(m in values for values in metrics.values())]
    series = {name: [_number(values.get(metric)) for metric in shown]
              for name, values in metrics.items()}
    return chart(f"{manifest['version']}: each model's metrics", shown, series, kind="grouped")


def _page(request: Request, session: Session, *, status: int = 200, notice: str | None = None,
          error: str | None = None) -> Response:
    manifests = context_of(request).state.registry.list()
    shown = next((m for m in manifests if m["active"]), manifests[0] if manifests else None)
    return page(request, session, "models.html", status=status, manifests=manifests,
                headline=HEADLINE, primary=_primary, number=_number,
                history=_history_chart(manifests) if len(manifests) > 1 else None,
                plot=_plot(shown) if shown and shown.get("metrics") else None, shown=shown,
                notice=notice, error=error)


@router.get("/console/models")
def model_list(request: Request, session: Viewer, done: str = "") -> Response:
    return _page(request, session, notice=done[:200] or None)


@router.get("/console/models/compare")
def compare(request: Request, session: Viewer, a: str = "", b: str = "") -> Response:
    """Two versions side by side: data, models, notes and each model's metrics with deltas."""
    registry = context_of(request).state.registry
    try:
        left, right = registry.show(a), registry.show(b)
    except RecengineError as exc:
        status, message, _ = failure(exc)
        return _page(request, session, status=status, error=message)
    names = list(dict.fromkeys([*left.get("metrics", {}), *right.get("metrics", {})]))
    rows = []
    for name in names:
        for metric in HEADLINE:
            x = _number(left.get("metrics", {}).get(name, {}).get(metric))
            y = _number(right.get("metrics", {}).get(name, {}).get(metric))
            if x is not None or y is not None:
                rows.append({"model": name, "metric": metric, "a": x, "b": y,
                             "delta": None if x is None or y is None else y - x})
    return page(request, session, "compare.html", left=left, right=right, rows=rows)


async def _act(request: Request, session: Session, call: Any, *args: Any) -> Response:
    ctx = context_of(request)
    try:
        answer = await run_in_threadpool(lambda: call(*args, ctx))
    except RecengineError as exc:
        status, message, _ = failure(exc)
        return _page(request, session, status=status, error=message)
    done = f"{answer.model_version} is active and serving"
    return secure(RedirectResponse(f"/console/models?done={quote(done)}", status_code=303))


@router.post("/console/models/{version}/activate")
async def activate(request: Request, session: Editor, version: str,
                   csrf: Annotated[str, Form()] = "") -> Response:
    return await _act(request, session, model_routes.activate, version)


@router.post("/console/models/rollback")
async def rollback(request: Request, session: Editor, csrf: Annotated[str, Form()] = ""
                   ) -> Response:
    return await _act(request, session, model_routes.rollback)
