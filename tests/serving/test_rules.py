"""Business rules through the API: per request (query or batch body) and for the whole server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from recengine.errors import DataError
from recengine.models.rules import read_rules
from recengine.serving.app import create_app
from recengine.serving.settings import Settings
from recengine.serving.state import ServingState
from recengine.store.events import EventStore
from recengine.store.registry import ModelRegistry
from tests.serving.conftest import World


def _ids(body: dict) -> list[str]:
    return [item["item_id"] for item in body["items"]]


def test_rules_in_the_query(client: TestClient, state: ServingState, world: World) -> None:
    url = f"/v1/users/{world.users[0]}/recommendations"
    plain = _ids(client.get(url, params={"k": 5}).json())
    rules = [{"kind": "exclude", "items": plain[:2]}, {"kind": "pin", "item": plain[4],
                                                       "position": 1}]
    ruled = _ids(client.get(url, params={"k": 5, "rules": json.dumps(rules)}).json())
    assert ruled[0] == plain[4]
    assert not set(plain[:2]) & set(ruled)
    regions = state.store.items()["region"]
    capped = _ids(client.get(url, params={
        "k": 8, "rules": json.dumps([{"kind": "max_per", "field": "region", "n": 1}])}).json())
    assert regions.loc[capped].is_unique


@pytest.mark.parametrize(("rules", "field"), [
    ("not json", "rules"),
    (json.dumps([{"kind": "boost", "field": "region"}]), "rules[0].boost.value"),
    (json.dumps([{"kind": "max_per", "field": "no_such_feature", "n": 1}]), "rules"),
])
def test_bad_rules_are_422_naming_the_field(client: TestClient, world: World, rules: str,
                                            field: str) -> None:
    response = client.get(f"/v1/users/{world.users[0]}/recommendations",
                          params={"rules": rules})
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field


def test_batch_takes_every_option_of_the_single_request(client: TestClient,
                                                        world: World) -> None:
    users = world.users[:3]
    options = {"k": 3, "offset": 2, "explain": True, "constraint": "bedrooms >= 2",
               "rules": [{"kind": "boost", "field": "region", "value": "Coast", "factor": 3}]}
    batch = client.post("/v1/recommendations", json={"users": users, **options})
    assert batch.status_code == 200, batch.text
    for user, entry in zip(users, batch.json()["data"], strict=True):
        single = client.get(f"/v1/users/{user}/recommendations", params={
            **{k: v for k, v in options.items() if k != "rules"},
            "rules": json.dumps(options["rules"]), "explain": "true"}).json()
        assert _ids(entry) == _ids(single)
        assert all(item["reason"] for item in entry["items"])
    bad = client.post("/v1/recommendations", json={"users": users, "rules": [{"kind": "x"}]})
    assert bad.status_code == 422
    assert bad.json()["field"].startswith("rules")


def test_server_rules_apply_to_every_answer(world: World, tmp_path: Path) -> None:
    plain = ServingState(ModelRegistry(world.registry_root), EventStore(world.database_url))
    plain.load_current()
    user = world.users[0]
    top = [r.item for r in plain.recommend(user, 3)[1]]
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps([{"kind": "exclude", "items": top}]))
    state = ServingState(ModelRegistry(world.registry_root), EventStore(world.database_url),
                         rules=read_rules(rules), cache_users=10)
    state.load_current()
    client = TestClient(create_app(Settings(), state))
    for _ in range(2):  # computed, then from the answer cache
        body = client.get(f"/v1/users/{user}/recommendations", params={"k": 10}).json()
        assert body["count"] == 10
        assert not set(top) & set(_ids(body))
    batch = client.post("/v1/recommendations", json={"users": [user, "cold"], "k": 10}).json()
    assert not set(top) & {i for entry in batch["data"] for i in _ids(entry)}


def test_bad_rules_file_names_the_file(world: World, tmp_path: Path) -> None:
    broken = tmp_path / "rules.json"
    broken.write_text("[{")
    with pytest.raises(DataError, match=r"rules\.json"):
        read_rules(broken)
    broken.write_text(json.dumps([{"kind": "max_per", "field": "nope", "n": 1}]))
    state = ServingState(ModelRegistry(world.registry_root), EventStore(world.database_url),
                         rules=read_rules(broken))
    with pytest.raises(DataError, match=r"RECENGINE_RULES_FILE.*nope"):
        state.load_current()  # a rule the catalogue cannot satisfy fails the load, saying where
