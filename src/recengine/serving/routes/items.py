"""Items: similar items, audiences (targeting), and the item catalogue."""

from __future__ import annotations

from typing import Annotated

import pandas as pd
from fastapi import APIRouter, HTTPException, Query

from recengine.serving.deps import Reader, Writer
from recengine.serving.routes._common import check_limit, score
from recengine.serving.schemas import (
    AudienceBatch,
    AudienceBatchOut,
    AudienceList,
    AudienceUser,
    Deleted,
    ItemIn,
    ItemOut,
    SimilarBatch,
    SimilarBatchOut,
    SimilarItem,
    SimilarList,
)
from recengine.serving.state import ServingState

router = APIRouter()


def _similar(state: ServingState, item: str, k: int) -> SimilarList:
    active = state.active
    ids, vals = active.model.similar_items(item, k)
    out = [SimilarItem(item_id=str(i), score=score(v))
           for i, v in zip(ids, vals, strict=True) if i is not None]
    return SimilarList(item_id=item, model_version=active.version, items=out, count=len(out))


def _audience(state: ServingState, items: list[str], n: int, combine: bool) -> list[AudienceList]:
    active = state.active
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


@router.get("/items/{item_id}/similar", response_model=SimilarList)
def similar(item_id: str, ctx: Reader,
            k: Annotated[int, Query(ge=1)] = 10) -> SimilarList:
    """The k items most similar to ``item_id``; 404 for an item the model does not know."""
    check_limit(k, ctx.settings.max_k, "k")
    return _similar(ctx.state, item_id, k)


@router.post("/similar", response_model=SimilarBatchOut)
def similar_batch(body: SimilarBatch, ctx: Reader) -> SimilarBatchOut:
    check_limit(body.k, ctx.settings.max_k, "k")
    check_limit(len(body.items), ctx.settings.max_batch, "items")
    data = [_similar(ctx.state, item, body.k) for item in body.items]
    return SimilarBatchOut.of(data)


@router.get("/items/{item_id}/audience", response_model=AudienceList)
def audience(item_id: str, ctx: Reader,
             n: Annotated[int, Query(ge=1)] = 100) -> AudienceList:
    """Targeting: the n users most likely to engage with ``item_id``."""
    check_limit(n, ctx.settings.max_k, "n")
    return _audience(ctx.state, [item_id], n, False)[0]


@router.post("/audience", response_model=AudienceBatchOut)
def audience_batch(body: AudienceBatch, ctx: Reader) -> AudienceBatchOut:
    check_limit(body.n, ctx.settings.max_k, "n")
    check_limit(len(body.items), ctx.settings.max_batch, "items")
    data = _audience(ctx.state, body.items, body.n, body.combine)
    return AudienceBatchOut.of(data)


@router.put("/items/{item_id}", response_model=ItemOut)
def put_item(item_id: str, body: ItemIn, ctx: Writer) -> ItemOut:
    """Insert or replace an item's features."""
    frame = pd.DataFrame([body.features], index=pd.Index([item_id], name="item_id"))
    ctx.store.upsert_items(frame)
    ctx.state.invalidate_features()
    return ItemOut(item_id=item_id, features=body.features)


@router.delete("/items/{item_id}", response_model=Deleted)
def delete_item(item_id: str, ctx: Writer) -> Deleted:
    """Remove an item from the catalogue (its events stay); 404 if it was not there."""
    if not ctx.store.delete_item(item_id):
        raise HTTPException(404, f"no item {item_id!r} in the catalogue")
    ctx.state.invalidate_features()
    return Deleted(id=item_id, deleted=True)
