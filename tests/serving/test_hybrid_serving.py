"""A served hybrid: answered as the model answers, with its sources in the reasons, off the
event loop, and changed by an event posted a moment ago (its sources read the live history).

The server asks at the request's time, which the ranker reads (hour, weekday, time since the
user's last event), so the expected answers are asked at the test's time: the same to within
the milliseconds between them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from recengine.data.query import Event, Query
from recengine.data.training_data import TrainingData
from recengine.models import Popularity
from recengine.models.base import Capability, Recommender
from recengine.serving.state import ServingState
from tests.models.conformance import device_data

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def fitted(world_data: TrainingData) -> dict[str, Recommender]:
    from recengine.models.hybrid import Hybrid

    hybrid = Hybrid(ranker={"hidden": (16,), "epochs": 3, "patience": 2}).fit(world_data)
    return {"hybrid": hybrid, "popularity": Popularity().fit(world_data)}


def _answer(client: TestClient, user: str, **params: object) -> dict:
    answer = client.get(f"/v1/users/{user}/recommendations",
                        params={"k": 5, "model": "hybrid", **params})
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_the_hybrid_is_served_and_follows_posted_events(
        client: TestClient, state: ServingState, fitted: dict[str, Recommender],
        write: dict[str, str]) -> None:
    state.swap(state.registry.publish(fitted, data={"count": 0}, metrics={}), activate=True)
    hybrid = fitted["hybrid"]
    user = str(hybrid.users_.ids[0])
    before = [i["item_id"] for i in _answer(client, user)["items"]]
    _answer(client, user, model="popularity")
    assert state.ready(user, "popularity") and not state.ready(user, "hybrid")  # off the loop
    assert before == hybrid.recommend_query(Query(user=user, time=datetime.now(UTC)), 5)[0].tolist()
    explained = _answer(client, user, explain="true")["items"]
    assert all(i["reason"].startswith("proposed by ") for i in explained)
    item = next(str(i) for i in hybrid.items_.ids
                if hybrid.recommend_query(Query(user=user, history=[Event(str(i))],
                                                time=datetime.now(UTC)), 5)[0]
                .tolist() != before)
    posted = client.post("/v1/events", headers=write,
                         json={"user_id": user, "item_id": item, "event_type": "view"})
    assert posted.status_code == 200, posted.text
    after = [i["item_id"] for i in _answer(client, user)["items"]]
    expected = hybrid.recommend_query(
        Query(user=user, history=state.live_events(user), time=datetime.now(UTC)), 5)
    assert after == expected[0].tolist() and after != before


def test_a_hybrid_that_reads_the_device_keeps_an_answer_per_device(
        client: TestClient, state: ServingState, asked: list) -> None:
    from recengine.models.hybrid import Hybrid

    data = device_data()
    hybrid = Hybrid(sources=[{"model": "popularity", "depth": 40}], similarity_source=None,
                    ranker={"hidden": (16,), "epochs": 2, "patience": 1}).fit(data)
    assert hybrid.supports(Capability.CONTEXT)
    models = {"hybrid": hybrid, "popularity": Popularity().fit(data)}
    state.swap(state.registry.publish(models, data={"count": 0}, metrics={}), activate=True)
    user = str(hybrid.users_.ids[0])
    for device in ("tv", "tv", "mobile", "mobile", None, None):
        _answer(client, user, **({} if device is None else {"device": device}))
    # each device asked once, the repeats from the cache
    assert [dict(q.context) for q in asked] == [{"device": "tv"}, {"device": "mobile"}, {}]
