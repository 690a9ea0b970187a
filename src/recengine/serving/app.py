"""``create_app()``: the FastAPI application, one router per resource.

Run it with ``uvicorn --factory recengine.serving.app:create_app`` (settings from
``RECENGINE_*`` environment variables).
"""

from __future__ import annotations

import gc
import json
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from threadpoolctl import threadpool_limits

from recengine.errors import (
    DataError,
    RecengineError,
    StoreError,
)
from recengine.models.rules import read_rules
from recengine.pipeline.schedule import RetrainScheduler, shared
from recengine.serving.bell import Ring
from recengine.serving.console import install_console
from recengine.serving.deps import Context, Guard, Reader
from recengine.serving.heavy import HeavyWorkers
from recengine.serving.metrics import Metrics
from recengine.serving.recent import ErrorLog
from recengine.serving.routes import (
    browse,
    docs,
    events,
    health,
    items,
    models,
    recommendations,
    sessions,
    users,
)
from recengine.serving.routes._common import ErrorResponse, status_of
from recengine.serving.routes.docs import describe_limits
from recengine.serving.schemas import UNION_TAGS
from recengine.serving.settings import Settings
from recengine.serving.state import Poller, ServingState
from recengine.store.events import EventStore
from recengine.store.registry import ModelRegistry

__all__ = ["create_app", "served_app"]

log = logging.getLogger(__name__)

_log = logging.getLogger(__name__)

def _recengine_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RecengineError)
    status = status_of(exc)
    if isinstance(exc, DataError):
        return ErrorResponse({"detail": exc.message, "field": exc.column}, status_code=status)
    if isinstance(exc, StoreError):  # it names the database's host, port and user: log only
        _log.error("%s", exc)
        return ErrorResponse({"detail": "the event store is unavailable: retry later"},
                             status_code=status)
    return ErrorResponse({"detail": str(exc)}, status_code=status)


def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    loc = [str(p) for p in first.get("loc", ())
           if p not in ("body", "query", "path", "header") and p not in UNION_TAGS]
    # JSON that does not parse is located at its character offset: the field is the body.
    field = "body" if first.get("type") == "json_invalid" else ".".join(loc) or None
    return ErrorResponse({"detail": str(first.get("msg")), "field": field,
                          "errors": _jsonable(errors)}, status_code=422)


def _jsonable(errors: Sequence[Any]) -> list[Any]:
    """Pydantic's errors as JSON values; each ``input`` left out where JSON cannot hold it.

    The input is the client's own value, which JSON parsing gave us, but NaN (Python's parser
    reads ``NaN``) has no JSON form, and a value nested hundreds deep can exhaust the stack.
    """
    try:
        return list(json.loads(json.dumps(errors, default=str, allow_nan=False)))
    except (ValueError, RecursionError):
        plain = [{key: value for key, value in error.items() if key != "input"}
                 for error in errors]
        return list(json.loads(json.dumps(plain, default=str)))


async def _http_error(request: Request, exc: Exception) -> Response:
    """FastAPI's answer to an ``HTTPException``, but a 422 naming the body for a body that
    cannot be parsed: FastAPI reports JSON nested too deeply for the parser (its
    ``RecursionError``) or bytes that are not UTF-8 as a 400 naming nothing."""
    assert isinstance(exc, HTTPException)
    if isinstance(exc.__cause__, RecursionError):
        return ErrorResponse({"detail": "the JSON body nests too deeply to parse",
                              "field": "body"}, status_code=422)
    if isinstance(exc.__cause__, UnicodeDecodeError):
        return ErrorResponse({"detail": f"the body is not JSON: {exc.__cause__}",
                              "field": "body"}, status_code=422)
    return await http_exception_handler(request, exc)


def _route_template(scope: Scope) -> str:
    """The matched route's template, ``{name}`` for each path parameter; "unmatched" if no
    route matched.

    The router gives the matched route's own template; an included router's prefix (which
    holds no parameter here) is the leading part of the path that the template does not cover.
    Rebuilding the template from the path's values instead mislabelled a path whose id equals
    one of its segments (``/v1/users/users/recommendations``).
    """
    route = scope.get("route")
    template = getattr(route, "path_format", None)
    if template is None:
        return "unmatched"
    segments = scope["path"].split("/")
    return "/".join(segments[:len(segments) - template.count("/")]) + template


class LimitAndMeasure:
    """ASGI middleware: 413 for bodies over ``max_bytes``; request counts and latency.

    A body is read whole here, before the application sees it, so the limit holds for streamed
    (chunked) bodies too: raised from inside the application's own read, the error would reach
    the client as FastAPI's 400 "error parsing the body".
    """

    def __init__(self, app: ASGIApp, max_bytes: int, metrics: Metrics) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            if scope["method"] in ("GET", "HEAD", "DELETE", "OPTIONS"):
                await self.app(scope, receive, sending)
                return
            body = await self._body(scope, receive)
            if body is None:
                response = JSONResponse(
                    {"detail": f"request body larger than {self.max_bytes} bytes",
                     "field": "body"}, status_code=413)
                await response(scope, receive, sending)
                return
            await self.app(scope, _replay(body, receive), sending)
        finally:
            self.metrics.observe(scope["method"], _route_template(scope), int(status["code"]),
                                 time.perf_counter() - start)

    async def _body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole body, or None as soon as it is known to exceed the limit."""
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and int(length) > self.max_bytes:
            return None
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away; the application will see it
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return None
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives ``body`` once, then waits on the real one (for a disconnect)."""
    sent = False

    async def receiving() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return receiving


def _scheduler(settings: Settings, state: ServingState) -> RetrainScheduler:
    """Background retraining whose published versions are hot-swapped into ``state``.

    Without ``retrain_models`` it retrains what is served: the active version's models and
    configurations, read at each run, so a version activated through the API is retrained next.
    A server started with no active version also trains its first one
    (``bootstrap_after_events``), with the same machinery.
    """

    def publish(version: str) -> None:
        state.swap(version)
        state.changed(Ring.MODELS)  # the other processes load it now, not at their next poll

    bootstrap = settings.bootstrap_after_events if state.version is None else 0
    return RetrainScheduler(state.store, state.registry, models=settings.retrain_model_configs,
                            every_seconds=settings.retrain_every_seconds,
                            after_events=settings.retrain_after_events, on_published=publish,
                            bootstrap_after_events=bootstrap or None,
                            retrain_options={"engine": settings.retrain_engine,
                                             "master": settings.retrain_spark_master})


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start polling the store, the heavy workers, and background retraining when a trigger is
    set or to train the first version when none is active; stop them on shutdown. Runs in each
    server process."""
    context: Context = app.state.context
    if app.state.settle_process:
        _settle_process(context.settings)
    context.guard.heavy.start()  # they load the version while the server starts
    poller = Poller(context.state, context.settings.sync_seconds)
    poller.start()
    scheduler = None
    settings = context.settings
    first = settings.bootstrap_after_events and context.state.version is None
    if first and not shared(context.state.store):  # the child that trains could not read it
        log.warning("no version is active and the event store lives in this process only: "
                    "train and activate the first version by hand")
        first = False
    if settings.retraining or first:
        scheduler = _scheduler(settings, context.state)
        scheduler.start()
    app.state.retraining = scheduler
    errors = ErrorLog(context.metrics.recent)  # the console's "recent errors"
    logging.getLogger("recengine").addHandler(errors)
    try:
        yield
    finally:
        logging.getLogger("recengine").removeHandler(errors)
        poller.stop()
        if scheduler is not None:
            scheduler.stop()
        context.guard.heavy.close()


def pin_compute_threads() -> None:
    """One compute thread per request, in BLAS and in torch: requests already run side by
    side, and a library fanning out inside each only contends. BLAS measured 6 % of /healthz
    throughput with its threads (docs/benchmarks.md); torch's two threads on two busy cores
    made the hybrid's ranker 7× slower per answer (169 ms against 23 ms, 5,000 items, load
    average 11). torch is imported only when a neural model loads, and takes its count then
    from MKL, which reads ``MKL_NUM_THREADS`` (the OpenMP runtime's own count, which MKL
    falls back on, was read from ``OMP_NUM_THREADS`` when :mod:`recengine.models.openmp`
    loaded it, before this); where torch is already imported, it is told directly. Processes
    the server starts (a background retrain) inherit both variables, so their torch (and any
    library that reads them) trains on one thread: on a host whose cores serve requests,
    their share."""
    threadpool_limits(1, user_api="blas")
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


def _settle_process(settings: Settings) -> None:
    """Per server process, before the first request.

    Requests run concurrently in threads: one compute thread each (:func:`pin_compute_threads`).
    The interpreter
    lock passes between threads every ``switch_interval_ms``: while a heavy request computes in
    a worker thread, the event loop waits that long each time it needs the lock, several times
    per light request (Python's 5 ms made a light p99 of 34 ms during a flood of heavy ones).
    And after the imports the garbage collector tracks about 220,000 objects, each full
    collection walking them all: a 100 ms pause at random moments under load. They live as
    long as the process, so they leave its view; what the app creates stays in it.
    """
    pin_compute_threads()
    sys.setswitchinterval(settings.switch_interval_ms / 1000)
    gc.collect()
    gc.freeze()


def create_app(settings: Settings | None = None, state: ServingState | None = None) -> FastAPI:
    """The API; without ``state`` it opens the store and registry named by ``settings``."""
    settings = settings or Settings()
    if state is None:
        state = ServingState(ModelRegistry(settings.registry), EventStore(settings.database_url),
                             approximate_min_items=settings.approximate_from,
                             ef_search=settings.approximate_ef_search,
                             cache_users=settings.cache_users,
                             live_per_user=settings.live_per_user,
                             live_max_events=settings.live_max_events,
                             rules=read_rules(settings.rules_file) if settings.rules_file else ())
        state.load_current()
    app = FastAPI(title="recengine", version="1", lifespan=_lifespan, openapi_url=None,
                  docs_url=None, redoc_url=None)  # served by routes.docs, behind read keys
    metrics = Metrics(lambda: state.version)
    app.state.context = Context(state, settings, metrics, Guard.of(settings, _heavy(settings,
                                                                                    state)))
    app.state.retraining = None
    app.state.settle_process = False
    app.add_exception_handler(RecengineError, _recengine_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_middleware(LimitAndMeasure, max_bytes=settings.max_request_bytes, metrics=metrics)
    routers: list[tuple[Any, str, str]] = [
        (recommendations.router, "/v1", "recommendations"),
        (sessions.router, "/v1", "recommendations"),
        (items.router, "/v1", "items"),
        (users.router, "/v1", "users"),
        (events.router, "/v1", "events"),
        (models.router, "/v1/models", "models"),
        (health.router, "", "health"),
        (docs.router, "", "docs"),
    ]
    app.add_api_route("/v1/models/retraining", _retraining_status, methods=["GET"],
                      tags=["models"])
    for router, prefix, tag in routers:
        app.include_router(router, prefix=prefix, tags=[tag])
    app.include_router(browse.router, prefix="/v1")  # each route tagged by its resource
    install_console(app)
    describe_limits(app, settings)
    return app


def _heavy(settings: Settings, state: ServingState) -> HeavyWorkers | None:
    """The heavy workers of ``settings``, building states as ``state`` is built; None (threads)
    with ``heavy_processes`` 0, or for a store that lives in this process only."""
    if not settings.heavy_processes:
        return None
    if not shared(state.store):
        log.warning("the event store lives in this process only: heavy requests are computed "
                    "in threads (RECENGINE_HEAVY_PROCESSES needs a file or a database server)")
        return None
    return HeavyWorkers(state.recipe(), settings.heavy_processes,
                        sync_seconds=settings.sync_seconds)


def served_app() -> FastAPI:
    """The app as ``recengine serve`` runs it in each of its processes (a factory for uvicorn):
    settings from ``RECENGINE_*`` variables, and the process settled for serving first."""
    app = create_app()
    app.state.settle_process = True
    return app


def _retraining_status(request: Request, _ctx: Reader) -> dict[str, Any]:
    """The background retraining's last run, result and pending events; enabled false if off.

    A store's error names the database's host, port and user: the answer says only that the
    store failed (the log has the whole message), as the 503 does.
    """
    scheduler: RetrainScheduler | None = request.app.state.retraining
    if scheduler is None:
        return {"enabled": False}
    status = scheduler.status()
    if str(status.get("last_error")).startswith(StoreError.__name__):
        status["last_error"] = f"{StoreError.__name__}: the event store failed (see the log)"
    return {"enabled": True, **status}
