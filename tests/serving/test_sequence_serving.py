"""A served next-item model reads each user's live, ordered history: an event posted a moment
ago changes the next answer, as the model computes it from the history with that event last."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from recengine.data.query import Event, Query
from recengine.data.training_data import TrainingData
from recengine.models import Popularity
from recengine.models.base import Recommender
from recengine.serving.state import ServingState

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def fitted(world_data: TrainingData) -> dict[str, Recommender]:
    from recengine.models.sasrec import SASRec

    return {"sasrec": SASRec(hidden=16, layers=1, epochs=3).fit(world_data),
            "popularity": Popularity().fit(world_data)}


def _ids(client: TestClient, user: str) -> list[str]:
    answer = client.get(f"/v1/users/{user}/recommendations", params={"k": 5, "model": "sasrec"})
    assert answer.status_code == 200, answer.text
    return [item["item_id"] for item in answer.json()["items"]]


def test_a_posted_event_changes_the_next_item_models_answer(
        client: TestClient, state: ServingState, fitted: dict[str, Recommender],
        write: dict[str, str]) -> None:
    state.swap(state.registry.publish(fitted, data={"count": 0}, metrics={}), activate=True)
    sasrec = fitted["sasrec"]
    user = str(sasrec.users_.ids[0])
    before = _ids(client, user)
    assert before == sasrec.recommend_query(Query(user=user), 5)[0].tolist()
    # an item after which sasrec's answer for this user changes
    item = next(str(i) for i in sasrec.items_.ids
                if sasrec.recommend_query(Query(user=user, history=[Event(str(i))]), 5)[0]
                .tolist() != before)
    posted = client.post("/v1/events", headers=write,
                         json={"user_id": user, "item_id": item, "event_type": "view"})
    assert posted.status_code == 200, posted.text
    after = _ids(client, user)
    expected = sasrec.recommend_query(Query(user=user, history=state.live_events(user)), 5)
    assert after == expected[0].tolist() and after != before
    assert [e.item_id for e in state.live_events(user) or []] == [item]
