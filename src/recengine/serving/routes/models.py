"""Registry versions: list, activate (hot swap), roll back."""

from __future__ import annotations

from fastapi import APIRouter

from recengine.serving.deps import Reader, Writer
from recengine.serving.routes._common import STORE_DOWN, errors
from recengine.serving.schemas import Activated, ModelList, ModelVersion, Text

router = APIRouter()


@router.get("", response_model=ModelList)
def list_models(ctx: Reader) -> ModelList:
    data = [ModelVersion(version=m["version"], created_at=m.get("created_at"),
                         models=list(m.get("models", {})), active=m["active"],
                         notes=m.get("notes", ""), metrics=m.get("metrics", {}))
            for m in ctx.state.registry.list()]
    return ModelList.of(data)


#: A version that exists but cannot be loaded: refused whole, the old version keeps serving.
_UNLOADABLE = ("the version cannot be loaded (damaged or inconsistent files, named in the detail); "
               "the version served before stays active")


@router.post("/rollback", response_model=Activated, responses=errors({
    409: f"no version was active before this one, or {_UNLOADABLE}", 503: STORE_DOWN}))
def rollback(ctx: Writer) -> Activated:
    """Re-activate the previous version and serve it (requests in flight finish on the old)."""
    return Activated(model_version=ctx.state.rollback().version)


@router.post("/{version}/activate", response_model=Activated, responses=errors({
    404: "no such version in the registry", 409: _UNLOADABLE, 503: STORE_DOWN}))
def activate(version: Text, ctx: Writer) -> Activated:
    """Activate ``version`` in the registry and hot-swap it in; 404 for an unknown version,
    409 for one that cannot be loaded (the version served before keeps serving)."""
    return Activated(model_version=ctx.state.swap(version, activate=True).version)
