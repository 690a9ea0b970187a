"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse

from recengine.serving.deps import Open, Reader
from recengine.serving.metrics import CONTENT_TYPE
from recengine.serving.schemas import Status

router = APIRouter()


@router.get("/healthz", response_model=Status)
async def healthz() -> Status:
    """200 whenever the process is up."""
    return Status(status="ok")


@router.get("/readyz", response_model=Status, responses={503: {"model": Status}})
async def readyz(ctx: Open) -> Status | JSONResponse:
    """200 only when a model version is loaded. Before, recommendations are still answered
    (popularity over the stored events, see
    :meth:`~recengine.serving.state.ServingState.serving`), but nothing that
    needs a trained model is: 503 says the server is not fully ready."""
    version = ctx.state.version
    if version is None:
        return JSONResponse(status_code=503, content={"status": "no model loaded"})
    return Status(status="ready", model_version=version)


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(ctx: Reader) -> PlainTextResponse:
    """Prometheus text exposition format 0.0.4; a read key when read keys are set (the counts
    say which routes and users are served)."""
    return PlainTextResponse(ctx.metrics.render(), media_type=CONTENT_TYPE)
