"""The server's fallback chain: personalised, then popular in the user's segment, then popular.

A new user PUT a moment before asking, with no event yet, is answered by segment-popularity from
the features just stored; one without features, by popularity.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from recengine.data.query import Query
from recengine.data.synthetic import generate
from recengine.data.weighting import aggregate
from recengine.models import WALS, Popularity, SegmentPopularity
from recengine.pipeline.prepare import events_of, training_data
from recengine.serving.app import create_app
from recengine.serving.settings import Settings
from recengine.serving.state import ServingState
from recengine.store.events import EventStore
from recengine.store.registry import ModelRegistry

WRITE = {"X-API-Key": "chain-write-key-16"}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    root = tmp_path_factory.mktemp("chain")
    dataset = generate(n_users=300, n_items=80, seed=3)
    data = training_data(dataset, aggregate(dataset.events, dataset.schema),
                         events=events_of(dataset))
    registry = ModelRegistry(root / "registry")
    models = {"wals": WALS(factors=8, iterations=4).fit(data),
              "segments": SegmentPopularity().fit(data), "popularity": Popularity().fit(data)}
    registry.activate(registry.publish(models, data={"count": len(dataset.events)},
                                       metrics={}))
    store = EventStore(f"sqlite:///{root / 'events.db'}")
    store.ingest(dataset.events.astype({"timestamp": str}).to_dict("records"))
    store.upsert_items(dataset.items)
    store.upsert_users(dataset.users, kinds=dataset.user_features)
    state = ServingState(registry, store)
    state.load_current()
    yield TestClient(create_app(Settings(write_keys=WRITE["X-API-Key"]), state))
    store.close()


def _answer(client: TestClient, user: str) -> list[dict]:
    response = client.get(f"/v1/users/{user}/recommendations", params={"k": 5})
    assert response.status_code == 200, response.text
    return response.json()["items"]


def test_a_new_user_put_just_before_is_answered_by_their_segment(client: TestClient) -> None:
    state: ServingState = client.app.state.context.state
    segments = state.named(state.active, "segments")
    stored = state.store.users()  # two training users' profiles, worn by new users
    profiles = {"like-u000": stored.loc["u000"].to_dict(),
                "like-u001": stored.loc["u001"].to_dict()}
    answers = {}
    for user, features in profiles.items():
        before = _answer(client, user)
        assert {item["source"] for item in before} == {"popularity"}  # no features yet
        assert client.put(f"/v1/users/{user}", json={"features": features},
                          headers=WRITE).status_code == 200
        after = _answer(client, user)
        assert {item["source"] for item in after} == {"segment-popularity"}
        expected, _ = segments.recommend_query(Query(user=user, user_features=features), 5)
        assert [item["item_id"] for item in after] == expected.tolist()
        answers[user] = [item["item_id"] for item in after]
    assert answers["like-u000"] != answers["like-u001"]


def test_a_known_user_is_answered_by_the_personalised_model(client: TestClient) -> None:
    assert {item["source"] for item in _answer(client, "u001")} == {"wals"}


def test_unknown_features_fall_back_to_popularity(client: TestClient) -> None:
    assert client.put("/v1/users/odd", json={"features": {"segment": "astronaut"}},
                      headers=WRITE).status_code == 200
    assert {item["source"] for item in _answer(client, "odd")} == {"popularity"}
