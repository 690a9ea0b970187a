"""Hostile input is a 4xx naming the field, never a 500 (issue 11, findings 1, 2 and 4).

Deep nesting in a constraint, in rules or in the body; NUL and lone UTF-16 surrogates in ids
and stored strings, refused whole at the API's edge on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from recengine.models.constraints import MAX_DEPTH
from recengine.serving.app import create_app
from recengine.serving.settings import Settings
from recengine.serving.state import ServingState
from recengine.store.events import EventStore
from recengine.store.registry import ModelRegistry
from tests.serving.conftest import WRITE_KEY, World

DEEP_CONSTRAINTS = ["(" * 400 + "bedrooms == 1" + ")" * 400, "not " * 1000 + "bedrooms == 1"]
JSON = {"content-type": "application/json"}


def _nots(n: int) -> dict:
    node: dict = {"field": "bedrooms", "op": "==", "value": 1}
    for _ in range(n):
        node = {"not": node}
    return node


@pytest.fixture
def loose(settings: Settings, state: ServingState) -> TestClient:
    """The app with server errors answered as HTTP 500 (not raised), as a client sees them."""
    return TestClient(create_app(settings, state), raise_server_exceptions=False)


@pytest.mark.parametrize("constraint", DEEP_CONSTRAINTS)
def test_deep_constraint_is_422_naming_it(loose: TestClient, world: World,
                                          constraint: str) -> None:
    single = loose.get(f"/v1/users/{world.users[0]}/recommendations",
                       params={"constraint": constraint})
    batch = loose.post("/v1/recommendations", json={"users": world.users[:2],
                                                    "constraint": constraint})
    for response in (single, batch):
        assert response.status_code == 422, response.text
        assert response.json()["field"] == "constraint"
        assert f"nested deeper than {MAX_DEPTH} levels" in response.json()["detail"]


@pytest.mark.parametrize("rules", [
    "[" * 5000 + "]" * 5000,
    json.dumps([{"kind": "require", "where": _nots(500)}]),
    json.dumps([{"kind": "exclude", "where": "not " * 1000 + "bedrooms == 1"}])])
def test_deep_rules_are_422_naming_them(loose: TestClient, world: World, rules: str) -> None:
    response = loose.get(f"/v1/users/{world.users[0]}/recommendations", params={"rules": rules})
    assert response.status_code == 422, response.text
    assert response.json()["field"]
    if rules.startswith("[["):
        assert response.json()["field"] == "rules"


def test_body_nested_past_the_parser_is_422_naming_the_body(loose: TestClient,
                                                            world: World) -> None:
    body = '{"users": ["u"], "rules": ' + "[" * 5000 + "]" * 5000 + "}"
    response = loose.post("/v1/recommendations", content=body, headers=JSON)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "body"


def test_deep_values_in_a_bad_body_are_reported_not_echoed_into_a_500(
        loose: TestClient, write: dict[str, str]) -> None:
    deep = 1
    for _ in range(900):
        deep = [deep]
    event = {"user_id": "u", "item_id": "i", "event_type": "view", "value": deep}
    response = loose.post("/v1/events", json=event, headers=write)
    assert response.status_code == 422 and response.json()["field"]
    nan = loose.post("/v1/recommendations", content='{"users": ["u"], "k": NaN}', headers=JSON)
    assert nan.status_code == 422 and nan.json()["field"] == "k"


BAD_IDS = {"surrogate": b'"\\ud800"', "low surrogate": b'"u\\udc00"', "nul": b'"a\\u0000b"'}


@pytest.mark.parametrize("raw", BAD_IDS.values(), ids=BAD_IDS.keys())
@pytest.mark.parametrize("field", ["user_id", "item_id", "event_id"])
def test_bad_text_in_an_event_refuses_the_batch_naming_the_row(
        loose: TestClient, state: ServingState, field: str, raw: bytes) -> None:
    before = len(state.store.events())
    body = _batch_with(field, raw)
    response = loose.post("/v1/events", content=body, headers={**JSON, "X-API-Key": WRITE_KEY})
    assert response.status_code == 422, response.text
    assert response.json()["field"] == f"events.1.{field}"
    assert len(state.store.events()) == before  # the good first row is not stored either


def _batch_with(field: str, raw: bytes) -> bytes:
    """Two events; the second's ``field`` is the raw JSON string ``raw``."""
    good = {"user_id": "u1", "item_id": "i1", "event_type": "view", "event_id": "e1"}
    bad = {**good, "event_id": "e2", field: "@@BAD@@"}
    return json.dumps({"events": [good, bad]}).encode().replace(b'"@@BAD@@"', raw)


@pytest.mark.parametrize("raw", BAD_IDS.values(), ids=BAD_IDS.keys())
def test_bad_text_in_bodies_is_422_naming_the_field(loose: TestClient, write: dict[str, str],
                                                    raw: bytes) -> None:
    cases = [("/v1/recommendations", b'{"users": ["u", ' + raw + b"]}", "users.1"),
             ("/v1/similar", b'{"items": [' + raw + b"]}", "items.0"),
             ("/v1/audience", b'{"items": [' + raw + b"]}", "items.0"),
             ("/v1/recommendations", b'{"users": ["u"], "model": ' + raw + b"}", "model")]
    for url, body, field in cases:
        response = loose.post(url, content=body, headers=JSON)
        assert response.status_code == 422, (url, response.text)
        assert response.json()["field"] == field
    feature = loose.put("/v1/items/x", content=b'{"features": {"f": [' + raw + b"]}}",
                        headers={**JSON, **write})
    assert feature.status_code == 422 and feature.json()["field"].startswith("features.f")
    name = loose.put("/v1/users/x", content=b'{"features": {' + raw + b": 1}}",
                     headers={**JSON, **write})
    assert name.status_code == 422 and name.json()["field"].startswith("features.")


def test_nested_feature_lists_are_422(loose: TestClient, write: dict[str, str]) -> None:
    response = loose.put("/v1/items/x", json={"features": {"f": [[[1]]]}}, headers=write)
    assert response.status_code == 422 and response.json()["field"] == "features.f"


@pytest.mark.parametrize(("method", "url", "field"), [
    ("GET", "/v1/users/a%00b/recommendations", "user_id"),
    ("GET", "/v1/items/a%00b/similar", "item_id"),
    ("GET", "/v1/items/a%00b/audience", "item_id"),
    ("PUT", "/v1/items/a%00b", "item_id"),
    ("DELETE", "/v1/items/a%00b", "item_id"),
    ("PUT", "/v1/users/a%00b", "user_id"),
    ("DELETE", "/v1/users/a%00b", "user_id"),
    ("POST", "/v1/models/a%00b/activate", "version")])
def test_nul_in_a_path_id_is_422_naming_it(loose: TestClient, write: dict[str, str],
                                           method: str, url: str, field: str) -> None:
    body = {"json": {"features": {}}} if method == "PUT" else {}
    response = loose.request(method, url, headers=write, **body)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field


# -- the same on PostgreSQL -------------------------------------------------------------------
@pytest.fixture
def pg_client(world: World, postgres_url: str, tmp_path: Path) -> Iterator[TestClient]:
    shutil.copytree(world.registry_root, tmp_path / "registry")
    store = EventStore(postgres_url)
    state = ServingState(ModelRegistry(tmp_path / "registry"), store, cache_users=100)
    state.load_current()
    yield TestClient(create_app(Settings(write_keys=WRITE_KEY), state),
                     raise_server_exceptions=False)
    store.close()


@pytest.mark.parametrize("raw", BAD_IDS.values(), ids=BAD_IDS.keys())
def test_bad_text_is_422_on_postgres_and_nothing_is_stored(pg_client: TestClient,
                                                           raw: bytes) -> None:
    headers = {**JSON, "X-API-Key": WRITE_KEY}
    response = pg_client.post("/v1/events", content=_batch_with("user_id", raw), headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "events.1.user_id"
    good = pg_client.post("/v1/events", content=_batch_with("user_id", b'"u2"'), headers=headers)
    assert good.json()["accepted"] == 2  # e1 was not stored by the refused batch
    item = pg_client.put("/v1/items/a%00b", json={"features": {"f": "x"}}, headers=headers)
    assert item.status_code == 422 and item.json()["field"] == "item_id"
    feature = pg_client.put("/v1/items/ok", content=b'{"features": {"f": ' + raw + b"}}",
                            headers=headers)
    assert feature.status_code == 422 and feature.json()["field"] == "features.f"
