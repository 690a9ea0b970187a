"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse

from recengine.serving.deps import MetricsDep, StateDep
from recengine.serving.schemas import Status

router = APIRouter()


@router.get("/healthz", response_model=Status)
def healthz() -> Status:
    """200 whenever the process is up."""
    return Status(status="ok")


@router.get("/readyz", response_model=Status, responses={503: {"model": Status}})
def readyz(state: StateDep) -> Status | JSONResponse:
    """200 only when a model is loaded."""
    version = state.version
    if version is None:
        return JSONResponse(status_code=503, content={"status": "no model loaded"})
    return Status(status="ready", model_version=version)


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(state: StateDep, counters: MetricsDep) -> PlainTextResponse:
    """Prometheus text exposition format 0.0.4."""
    return PlainTextResponse(counters.render(state.version),
                             media_type="text/plain; version=0.0.4; charset=utf-8")
