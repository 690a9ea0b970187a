"""The OpenAPI description and its pages, behind a read key when read keys are set.

FastAPI serves ``/openapi.json``, ``/docs`` and ``/redoc`` to anyone; they describe every route,
so a server whose reads need a key serves them to readers only (issue 11). The description
also states every limit the server enforces, from its settings: ``maximum`` on each ``k``,
``n`` and ``offset``, ``maxItems`` on each batch, the compound limits in the batch schemas'
descriptions, and all of them under ``info.x-limits``. And it states every status a route
answers with, as its body is written: each error is an :class:`~recengine.serving.schemas.Error`
(FastAPI's default 422 schema describes a body this server never sends), each route behind a key
answers 401 and 403 as well as 429, and each route that takes a body answers 413
(tests/serving/test_schema_fuzz.py holds the server to it).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse, JSONResponse

from recengine.serving.deps import Reader
from recengine.serving.schemas import Error
from recengine.serving.settings import Settings

__all__ = ["describe_limits", "router"]

router = APIRouter(include_in_schema=False)

#: The request schemas with a batch, and the name of the list each one bounds.
_BATCHES = {"RecommendationBatch": "users", "SimilarBatch": "items", "AudienceBatch": "items",
            "EventBatch": "events", "SessionQuery": "items"}
#: Those whose entries are not each answered with a list: no compound limit on results.
_ONE_LIST = frozenset({"EventBatch", "SessionQuery"})


@router.get("/openapi.json")
async def openapi(request: Request, _ctx: Reader) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@router.get("/docs")
async def swagger(request: Request, _ctx: Reader) -> HTMLResponse:
    """Swagger UI with the description inlined: the page's own fetch would carry no key."""
    return get_swagger_ui_html(openapi_url="/openapi.json", title="recengine - Swagger UI",
                               swagger_ui_parameters={"spec": request.app.openapi()})


@router.get("/docs/oauth2-redirect")
async def swagger_redirect(_ctx: Reader) -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc")
async def redoc(_ctx: Reader) -> HTMLResponse:
    return get_redoc_html(openapi_url="/openapi.json", title="recengine - ReDoc")


def describe_limits(app: FastAPI, settings: Settings) -> None:
    """Make ``app.openapi()`` state the limits of ``settings`` (built once, then cached)."""

    def described() -> dict[str, Any]:
        if app.openapi_schema is None:
            _limits(FastAPI.openapi(app), settings)
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = described  # type: ignore[method-assign]


#: Where the error schema lives in the description.
_ERROR_REF = "#/components/schemas/Error"

#: The statuses of every route behind a key, but 429, whose text names the limits.
_KEYED = {
    "401": "no API key (the X-API-Key header is missing or empty) where this route needs one",
    "403": "the API key may not call this route (a wrong key is counted against the address)"}


def _error(description: str, **extra: Any) -> dict[str, Any]:
    return {"description": description, **extra,
            "content": {"application/json": {"schema": {"$ref": _ERROR_REF}}}}


def _limits(schema: dict[str, Any], settings: Settings) -> None:
    rate = settings.rate_limit_per_second
    schema["info"]["x-limits"] = {
        "max_request_bytes": settings.max_request_bytes, "max_k": settings.max_k,
        "max_batch": settings.max_batch, "max_batch_results": settings.max_batch_results,
        "max_explained": settings.max_explained, "rate_limit_per_second": rate,
        "rate_limit_burst": settings.rate_limit_burst if rate else None,
        "auth_failure_limit": settings.auth_failure_limit,
        "auth_failure_window_seconds": settings.auth_failure_window_seconds,
        "heavy_processes": settings.heavy_processes,
        "heavy_concurrency": settings.heavy_processes or settings.heavy_concurrency,
        "heavy_queue": settings.heavy_queue}
    for name, batch in _BATCHES.items():
        component = schema["components"]["schemas"][name]
        for prop, spec in component["properties"].items():
            if prop in ("k", "n", "offset"):
                spec["maximum"] = settings.max_k
            elif prop == batch:
                spec["maxItems"] = settings.max_batch
        if name not in _ONE_LIST:
            component["description"] = (
                f"{component.get('description', '')}\n\nAt most {settings.max_batch_results} "
                f"results per request ({batch} × {'n' if 'n' in component['properties'] else 'k'})"
                f", and at most {settings.max_explained} explained (explain=true).").strip()
    for operations in schema["paths"].values():
        for operation in operations.values():
            for parameter in operation.get("parameters", ()):
                if parameter["in"] == "query" and parameter["name"] in ("k", "n", "offset"):
                    # a list's page (routes.browse) states its own bound
                    parameter["schema"].setdefault("maximum", settings.max_k)
            responses = operation.setdefault("responses", {})
            if "requestBody" in operation:
                responses["413"] = _error(f"the body is larger than "
                                          f"{settings.max_request_bytes} bytes")
            if operation.get("security"):
                responses.update({code: _error(text) for code, text in _KEYED.items()})
                responses["429"] = _error(
                    "over a limit (the rate limit, failed keys, the heavy requests' queue): "
                    "retry after the Retry-After header's seconds",
                    headers={"Retry-After": {"schema": {"type": "integer"}}})
            for code, response in responses.items():
                if code.startswith(("4", "5")) and _default_error(response):
                    response["content"] = _error("")["content"]
    components = schema["components"]["schemas"]
    components["Error"] = Error.model_json_schema(ref_template="#/components/schemas/{model}")
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)


def _default_error(response: dict[str, Any]) -> bool:
    """Whether ``response`` has no body in the description, or FastAPI's default 422 body."""
    content = response.get("content", {}).get("application/json")
    return content is None or content.get("schema", {}).get("$ref", "").endswith(
        "/HTTPValidationError")
