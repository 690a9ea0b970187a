"""Items: similar items, audiences (targeting), and the item catalogue."""

from __future__ import annotations

from typing import Annotated

import pandas as pd
from fastapi import APIRouter, HTTPException, Query
from starlette.responses import Response

from recengine.errors import UnknownIdError
from recengine.serving.bell import Ring
from recengine.serving.deps import Reader, Writer
from recengine.serving.routes._common import (
    NO_MODEL,
    NOT_SUPPORTED,
    STORE_DOWN,
    WORKER_LOST,
    check_cost,
    check_limit,
    errors,
    heavy,
    json_body,
    score,
)
from recengine.serving.routes._direct import DirectRoute
from recengine.serving.schemas import (
    AudienceBatch,
    AudienceBatchOut,
    AudienceList,
    AudienceQuery,
    AudienceUser,
    Deleted,
    ItemIn,
    ItemOut,
    SimilarBatch,
    SimilarBatchOut,
    SimilarItem,
    SimilarList,
    SimilarQuery,
    Text,
)
from recengine.serving.state import ServingState

router = APIRouter()

#: What the model's answers about items may answer besides their lists.
_SIMILAR = errors({400: NOT_SUPPORTED, 404: "an item the active model does not know",
                   503: NO_MODEL})
_AUDIENCE = errors({400: NOT_SUPPORTED,
                    404: "an item the active model does not know, or one deleted from the "
                         "catalogue", 503: NO_MODEL})
#: The batches': heavy requests.
_SIMILAR_BATCH = _SIMILAR | errors({503: f"{NO_MODEL}; or {WORKER_LOST}"})
_AUDIENCE_BATCH = _AUDIENCE | errors({503: f"{NO_MODEL}; or {WORKER_LOST}"})


def _similar(state: ServingState, item: str, k: int) -> SimilarList:
    active, found = state.similar(item, k)
    out = [SimilarItem(item_id=i, score=score(v)) for i, v in found]
    return SimilarList(item_id=item, model_version=active.version, items=out, count=len(out))


def _audience(state: ServingState, items: list[str], n: int, combine: bool) -> list[AudienceList]:
    """Targeting; 404 for a deleted item: a promotion of what cannot be served has no audience."""
    active = state.active
    deleted = sorted(set(items) & active.hidden_ids) if active.hidden else []
    if deleted:
        raise UnknownIdError(f"item(s) deleted from the catalogue: {', '.join(deleted)}")
    ids, vals = active.model.audience(items, n, combine=combine)
    if combine:
        groups = [(items, ids, vals)]
    else:
        groups = [([item], ids[row], vals[row]) for row, item in enumerate(items)]
    out = []
    for group, users, scores in groups:
        found = [AudienceUser(user_id=str(u), score=score(s))
                 for u, s in zip(users, scores, strict=True) if u is not None]
        out.append(AudienceList(items=group, model_version=active.version, users=found,
                                count=len(found)))
    return out


def similar(item_id: Text, ctx: Reader, query: Annotated[SimilarQuery, Query()]) -> SimilarList:
    """The k items most similar to ``item_id``; 404 for an item the model does not know."""
    check_limit(query.k, ctx.settings.max_k, "k")
    return _similar(ctx.state, item_id, query.k)


router.add_api_route("/items/{item_id}/similar", similar, methods=["GET"],
                     response_model=SimilarList, route_class_override=DirectRoute,
                     responses=_SIMILAR)


@router.post("/similar", response_model=SimilarBatchOut, responses=_SIMILAR_BATCH)
async def similar_batch(body: SimilarBatch, ctx: Reader) -> Response:
    """The k most similar items for each of ``items``: a heavy request (the heavy budget)."""
    check_limit(body.k, ctx.settings.max_k, "k")
    check_limit(len(body.items), ctx.settings.max_batch, "items")
    check_cost(ctx.settings, len(body.items), body.k, batch="items")
    return await heavy(ctx, _similar_batch, body.items, body.k)


def _similar_batch(state: ServingState, items: list[str], k: int) -> bytes:
    return json_body(SimilarBatchOut.of([_similar(state, item, k) for item in items]))


def audience(item_id: Text, ctx: Reader, query: Annotated[AudienceQuery, Query()]
             ) -> AudienceList:
    """Targeting: the n users most likely to engage with ``item_id``."""
    check_limit(query.n, ctx.settings.max_k, "n")
    return _audience(ctx.state, [item_id], query.n, False)[0]


router.add_api_route("/items/{item_id}/audience", audience, methods=["GET"],
                     response_model=AudienceList, route_class_override=DirectRoute,
                     responses=_AUDIENCE)


@router.post("/audience", response_model=AudienceBatchOut, responses=_AUDIENCE_BATCH)
async def audience_batch(body: AudienceBatch, ctx: Reader) -> Response:
    """The n users most likely to engage with each of ``items`` (or all of them, ``combine``):
    a heavy request (the heavy budget)."""
    check_limit(body.n, ctx.settings.max_k, "n")
    check_limit(len(body.items), ctx.settings.max_batch, "items")
    check_cost(ctx.settings, 1 if body.combine else len(body.items), body.n, batch="items")
    return await heavy(ctx, _audience_batch, body.items, body.n, body.combine)


def _audience_batch(state: ServingState, items: list[str], n: int, combine: bool) -> bytes:
    return json_body(AudienceBatchOut.of(_audience(state, items, n, combine)))


@router.put("/items/{item_id}", response_model=ItemOut, responses=errors({503: STORE_DOWN}))
def put_item(item_id: Text, body: ItemIn, ctx: Writer) -> ItemOut:
    """Insert or replace an item's features, recording ``kinds``; a deleted item is served again.

    A value that does not fit its feature's kind (given now or recorded before) is a 422 naming
    the feature, and nothing is written.
    """
    frame = pd.DataFrame([body.features], index=pd.Index([item_id], name="item_id"))
    ctx.store.upsert_items(frame, kinds=body.kinds)
    ctx.state.changed(Ring.CATALOGUES)
    return ItemOut(item_id=item_id, features=body.features, kinds=body.kinds)


@router.delete("/items/{item_id}", response_model=Deleted,
               responses=errors({404: "the item is deleted already", 503: STORE_DOWN}))
def delete_item(item_id: Text, ctx: Writer) -> Deleted:
    """Delete an item: out of the catalogue and never recommended until PUT again.

    Its events stay, but retraining leaves them out. 404 if it was deleted already.
    """
    deleted = ctx.store.delete_item(item_id)
    ctx.state.changed(Ring.CATALOGUES)  # even so: a retry must not skip what a failed call missed
    if not deleted:
        raise HTTPException(404, f"item {item_id!r} is deleted already")
    return Deleted(id=item_id, deleted=True)
