"""``POST /v1/sessions/recommendations``: an anonymous visitor known only by a session's items.

The world of tests/serving/conftest.py, serving a version whose primary model is markov (order)
with ease (a bag) beside it: the same items in another order change markov's answer and not
ease's.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from recengine.data.synthetic import generate
from recengine.data.training_data import TrainingData
from recengine.data.weighting import aggregate
from recengine.models import EASE, Markov, Popularity
from recengine.models.base import Recommender
from recengine.pipeline.prepare import events_of, training_data
from recengine.serving.settings import Settings
from recengine.serving.state import ServingState

PATH = "/v1/sessions/recommendations"


@pytest.fixture(scope="module")
def fitted() -> dict[str, Recommender]:
    """The world's data (tests/serving/conftest.py) with its events in order, as markov needs."""
    dataset = generate(n_users=200, n_items=100, seed=0)
    data: TrainingData = training_data(dataset, aggregate(dataset.events, dataset.schema),
                                       events=events_of(dataset))
    return {"markov": Markov().fit(data), "ease": EASE(l2=20.0).fit(data),
            "popularity": Popularity().fit(data)}


@pytest.fixture
def markov_client(client: TestClient, state: ServingState,
           fitted: dict[str, Recommender]) -> TestClient:
    """The world's client, serving a version whose primary model is markov."""
    state.swap(state.registry.publish(fitted, data={"count": 0}, metrics={}), activate=True)
    return client


def _markov(client: TestClient) -> Markov:
    model = client.app.state.context.state.active.model
    assert isinstance(model, Markov)
    return model


def _ask(client: TestClient, items: list[Any], **options: Any) -> dict[str, Any]:
    response = client.post(PATH, json={"items": items, **options})
    assert response.status_code == 200, response.text
    return response.json()


def _ids(answer: dict[str, Any]) -> list[str]:
    return [item["item_id"] for item in answer["items"]]


@pytest.fixture(scope="module")
def pair(fitted: dict[str, Recommender]) -> tuple[str, str]:
    """Two items after which markov's next item differs (neither being the other)."""
    model = fitted["markov"]
    items = model.items_.ids.tolist()
    nexts = {i: model.recommend_history([i], 1)[0][0] for i in items}
    for a in items:
        for b in items:
            if len({a, b, nexts[a], nexts[b]}) == 4:
                return str(a), str(b)
    raise AssertionError("no two items with different next items")


def test_the_order_of_the_session_changes_an_order_models_answer(markov_client, pair):
    a, b = pair
    model = _markov(markov_client)
    forward, backward = _ask(markov_client, [a, b], k=5), _ask(markov_client, [b, a], k=5)
    assert _ids(forward) == model.recommend_history([a, b], 5)[0].tolist()
    assert _ids(backward) == model.recommend_history([b, a], 5)[0].tolist()
    assert _ids(forward)[0] != _ids(backward)[0]
    assert forward["model_version"] == markov_client.app.state.context.state.version
    assert {item["source"] for item in forward["items"]} == {"markov"}
    assert forward["count"] == 5 and forward["unknown_items"] == []


def test_a_bag_model_answers_both_orders_alike(markov_client, pair):
    a, b = pair
    forward = _ask(markov_client, [a, b], k=5, model="ease")
    assert _ids(forward) == _ids(_ask(markov_client, [b, a], k=5, model="ease"))
    assert {item["source"] for item in forward["items"]} == {"ease"}


def test_the_sessions_items_are_not_recommended_back(markov_client, pair):
    session = [*pair, *_ids(_ask(markov_client, list(pair), k=3))]
    for model in ("markov", "ease"):
        assert not set(session) & set(_ids(_ask(markov_client, session, k=20, model=model)))


def test_unknown_items_are_left_out_and_listed(markov_client, pair):
    a, b = pair
    answer = _ask(markov_client, ["nope", a, 12345, "nope", b], k=5)
    assert answer["unknown_items"] == ["nope", "12345"]
    assert _ids(answer) == _ids(_ask(markov_client, [a, b], k=5))
    nothing_known = _ask(markov_client, ["nope", "never"], k=3)
    assert nothing_known["unknown_items"] == ["nope", "never"]
    assert {item["source"] for item in nothing_known["items"]} == {"popularity"}
    assert nothing_known["count"] == 3


def test_event_types_and_times_reach_the_model(markov_client, pair, asked):
    a, b = pair
    answer = _ask(markov_client, [a, b], k=4, event_types=["view", "book"],
                  timestamps=[1_700_000_000, "2023-11-14T22:15:00Z"])
    (query,) = asked
    assert query.user is None
    assert [(e.item_id, e.event_type, e.timestamp) for e in query.history] == [
        (a, "view", 1_700_000_000), (b, "book", 1_700_000_100)]
    assert _ids(answer) == _ids(_ask(markov_client, [a, b], k=4))  # markov reads the order only


def test_the_requests_device_reaches_the_model_and_a_model_blind_to_it_answers_once(
        markov_client, pair, world, asked):
    _ask(markov_client, list(pair), k=3, device="tv")
    user = f"/v1/users/{world.users[0]}/recommendations"
    for device in ("tv", "tv", "mobile", None):
        params = {"k": 3} | ({} if device is None else {"device": device})
        assert markov_client.get(user, params=params).status_code == 200
    # markov does not read the device: the user's first answer serves every device after it
    assert [dict(q.context) for q in asked] == [{"device": "tv"}, {"device": "tv"}]


def test_explanations_and_paging(markov_client, pair):
    a, b = pair
    whole = _ask(markov_client, [a, b], k=6)
    explained = _ask(markov_client, [a, b], k=3, offset=3, explain=True)
    assert _ids(explained) == _ids(whole)[3:]
    assert all(item["reason"] for item in explained["items"])
    assert all(item["reason"] is None for item in whole["items"])


@pytest.mark.parametrize(("body", "field"), [
    ({"items": ["i1", "i2"], "event_types": ["view"]}, "event_types"),
    ({"items": ["i1"], "timestamps": [1, 2]}, "timestamps"),
    ({"items": ["i1", "i2"], "timestamps": [1_700_000_000, "yesterday"]}, "timestamps.1"),
    ({"items": ["i1", "i2", "i3"], "timestamps": [3, 2, 4]}, "timestamps.1"),
    ({"items": ["i1"], "timestamps": [True]}, "timestamps.0"),
    ({"items": []}, "items"),
    ({"items": ["i1", None]}, "items.1"),
    ({"items": ["i1"], "event_types": ["a\x00"]}, "event_types.0"),
    ({"items": ["i1"], "k": 0}, "k"),
    ({"items": ["i1"], "k": 201}, "k"),
    ({"items": ["i1"], "offset": 201}, "offset"),
    ({"items": [f"i{n}" for n in range(51)]}, "items"),
    ({"items": ["i1"], "rules": [{"kind": "nope"}]}, "rules[0]"),
    ({"items": ["i1"], "user": "u1"}, "user"),
])
def test_bad_input_is_a_422_naming_the_field(client, body, field):
    response = client.post(PATH, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field, response.json()


def test_an_unknown_model_is_a_404(markov_client):
    assert markov_client.post(PATH, json={"items": ["i1"], "model": "nope"}).status_code == 404


def test_the_openapi_description_documents_it(client, settings: Settings):
    description = client.get("/openapi.json").json()
    operation = description["paths"][PATH]["post"]
    assert {"200", "404", "413", "422"} <= operation["responses"].keys()
    schema = description["components"]["schemas"]["SessionQuery"]
    assert schema["properties"]["items"]["maxItems"] == settings.max_batch
    assert schema["properties"]["k"]["maximum"] == settings.max_k
    answer = description["components"]["schemas"]["SessionRecommendations"]
    assert {"items", "count", "model_version", "unknown_items"} <= answer["properties"].keys()
