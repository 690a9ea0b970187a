"""The user catalogue: insert, replace, delete (with their events)."""

from __future__ import annotations

import pandas as pd
from fastapi import APIRouter

from recengine.serving.deps import StateDep, StoreDep, WriteKey
from recengine.serving.schemas import Deleted, UserIn, UserOut

router = APIRouter(dependencies=[WriteKey])


@router.put("/users/{user_id}", response_model=UserOut)
def put_user(user_id: str, body: UserIn, store: StoreDep) -> UserOut:
    frame = pd.DataFrame([body.features], index=pd.Index([user_id], name="user_id"))
    store.upsert_users(frame)
    return UserOut(user_id=user_id, features=body.features)


@router.delete("/users/{user_id}", response_model=Deleted)
def delete_user(user_id: str, store: StoreDep, state: StateDep) -> Deleted:
    """Delete a user and all their events; their live history is forgotten too."""
    events = store.delete_user(user_id)
    state.forget(user_id)
    return Deleted(id=user_id, deleted=True, events_deleted=events)
