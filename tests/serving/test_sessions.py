"""``POST /v1/sessions/recommendations``: an anonymous visitor known only by a session's items.

A version whose primary model is markov (order) with ease (a bag) beside it: the same items in
another order change markov's answer and not ease's.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from recengine.data.synthetic import generate
from recengine.data.weighting import aggregate
from recengine.models import EASE, Markov, Popularity
from recengine.models.fallback import FallbackChain
from recengine.pipeline.prepare import events_of, training_data
from recengine.serving.app import create_app
from recengine.serving.settings import Settings
from recengine.serving.state import ServingState
from recengine.store.events import EventStore
from recengine.store.registry import ModelRegistry

READ = {"X-API-Key": "session-read-key-16"}
PATH = "/v1/sessions/recommendations"
SETTINGS = Settings(read_keys=READ["X-API-Key"], write_keys="session-write-key-16", max_k=50,
                    max_batch=20, max_explained=100)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    root = tmp_path_factory.mktemp("sessions")
    dataset = generate(n_users=300, n_items=80, seed=5)
    data = training_data(dataset, aggregate(dataset.events, dataset.schema),
                         events=events_of(dataset))
    registry = ModelRegistry(root / "registry")
    models = {"markov": Markov().fit(data), "ease": EASE(l2=20.0).fit(data),
              "popularity": Popularity().fit(data)}
    registry.activate(registry.publish(models, data={"count": len(dataset.events)},
                                       metrics={}))
    store = EventStore(f"sqlite:///{root / 'events.db'}")
    store.ingest(dataset.events.astype({"timestamp": str}).to_dict("records"))
    state = ServingState(registry, store)
    state.load_current()
    yield TestClient(create_app(SETTINGS, state), headers=READ)
    store.close()


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
def pair(client: TestClient) -> tuple[str, str]:
    """Two items after which markov's next item differs (neither being the other)."""
    model = _markov(client)
    items = model.items_.ids.tolist()
    nexts = {i: model.recommend_history([i], 1)[0][0] for i in items}
    for a in items:
        for b in items:
            if len({a, b, nexts[a], nexts[b]}) == 4:
                return str(a), str(b)
    raise AssertionError("no two items with different next items")


def test_the_order_of_the_session_changes_an_order_models_answer(client, pair):
    a, b = pair
    model = _markov(client)
    forward, backward = _ask(client, [a, b], k=5), _ask(client, [b, a], k=5)
    assert _ids(forward) == model.recommend_history([a, b], 5)[0].tolist()
    assert _ids(backward) == model.recommend_history([b, a], 5)[0].tolist()
    assert _ids(forward)[0] != _ids(backward)[0]
    assert forward["model_version"] == client.app.state.context.state.version
    assert {item["source"] for item in forward["items"]} == {"markov"}
    assert forward["count"] == 5 and forward["unknown_items"] == []


def test_a_bag_model_answers_both_orders_alike(client, pair):
    a, b = pair
    forward = _ask(client, [a, b], k=5, model="ease")
    assert _ids(forward) == _ids(_ask(client, [b, a], k=5, model="ease"))
    assert {item["source"] for item in forward["items"]} == {"ease"}


def test_the_sessions_items_are_not_recommended_back(client, pair):
    session = [*pair, *_ids(_ask(client, list(pair), k=3))]
    for model in ("markov", "ease"):
        assert not set(session) & set(_ids(_ask(client, session, k=20, model=model)))


def test_unknown_items_are_left_out_and_listed(client, pair):
    a, b = pair
    answer = _ask(client, ["nope", a, 12345, "nope", b], k=5)
    assert answer["unknown_items"] == ["nope", "12345"]
    assert _ids(answer) == _ids(_ask(client, [a, b], k=5))
    nothing_known = _ask(client, ["nope", "never"], k=3)
    assert nothing_known["unknown_items"] == ["nope", "never"]
    assert {item["source"] for item in nothing_known["items"]} == {"popularity"}
    assert nothing_known["count"] == 3


def test_event_types_and_times_reach_the_model(client, pair, monkeypatch):
    asked = []
    original = FallbackChain.recommend

    def spy(self, query, *args, **kwargs):
        asked.append(query)
        return original(self, query, *args, **kwargs)

    monkeypatch.setattr(FallbackChain, "recommend", spy)
    a, b = pair
    answer = _ask(client, [a, b], k=4, event_types=["view", "book"],
                  timestamps=[1_700_000_000, "2023-11-14T22:15:00Z"])
    (query,) = asked
    assert query.user is None
    assert [(e.item_id, e.event_type, e.timestamp) for e in query.history] == [
        (a, "view", 1_700_000_000), (b, "book", 1_700_000_100)]
    assert _ids(answer) == _ids(_ask(client, [a, b], k=4))  # markov reads the order only


def test_explanations_and_paging(client, pair):
    a, b = pair
    whole = _ask(client, [a, b], k=6)
    explained = _ask(client, [a, b], k=3, offset=3, explain=True)
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
    ({"items": ["i1"], "k": 51}, "k"),
    ({"items": ["i1"], "offset": 51}, "offset"),
    ({"items": [f"i{n}" for n in range(21)]}, "items"),
    ({"items": ["i1"], "rules": [{"kind": "nope"}]}, "rules[0]"),
    ({"items": ["i1"], "user": "u1"}, "user"),
])
def test_bad_input_is_a_422_naming_the_field(client, body, field):
    response = client.post(PATH, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field, response.json()


def test_an_unknown_model_is_a_404_and_reads_need_a_key(client):
    assert client.post(PATH, json={"items": ["i1"], "model": "nope"}).status_code == 404
    assert client.post(PATH, json={"items": ["i1"]}, headers={"X-API-Key": ""}).status_code == 401


def test_the_openapi_description_documents_it(client):
    description = client.get("/openapi.json").json()
    operation = description["paths"][PATH]["post"]
    assert {"200", "404", "413", "422"} <= operation["responses"].keys()
    schema = description["components"]["schemas"]["SessionQuery"]
    assert schema["properties"]["items"]["maxItems"] == SETTINGS.max_batch
    assert schema["properties"]["k"]["maximum"] == SETTINGS.max_k
    answer = description["components"]["schemas"]["SessionRecommendations"]
    assert {"items", "count", "model_version", "unknown_items"} <= answer["properties"].keys()
