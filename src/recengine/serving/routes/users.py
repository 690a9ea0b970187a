"""The user catalogue: insert, replace, delete (with their events)."""

from __future__ import annotations

import pandas as pd
from fastapi import APIRouter

from recengine.serving.bell import Ring
from recengine.serving.deps import Writer
from recengine.serving.routes._common import STORE_DOWN, errors
from recengine.serving.schemas import Deleted, Text, UserIn, UserOut

router = APIRouter()


@router.put("/users/{user_id}", response_model=UserOut, responses=errors({503: STORE_DOWN}))
def put_user(user_id: Text, body: UserIn, ctx: Writer) -> UserOut:
    """Insert or replace a user's features, recording ``kinds`` (a misfit value is a 422)."""
    frame = pd.DataFrame([body.features], index=pd.Index([user_id], name="user_id"))
    ctx.store.upsert_users(frame, kinds=body.kinds)
    ctx.state.changed(Ring.CATALOGUES)  # the next answer places them by these features
    return UserOut(user_id=user_id, features=body.features, kinds=body.kinds)


@router.delete("/users/{user_id}", response_model=Deleted, responses=errors({503: STORE_DOWN}))
def delete_user(user_id: Text, ctx: Writer) -> Deleted:
    """Delete a user and all their events; their live history is forgotten too."""
    events = ctx.store.delete_user(user_id)
    ctx.state.changed(Ring.CATALOGUES)  # their live history and features go too
    return Deleted(id=user_id, deleted=True, events_deleted=events)
