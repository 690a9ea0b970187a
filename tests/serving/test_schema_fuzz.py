"""A bounded schemathesis pass over every documented operation (issue 11).

The app runs in process over a real registry and SQLite store (``conftest.state``, a private copy
per operation), with read and write keys set. Schemathesis generates valid and invalid requests
from the OpenAPI description the server publishes, deterministically and at most
``MAX_EXAMPLES`` fuzzed per operation, and checks every answer: no server error, each status one
the operation documents, each body as its schema says. GET requests carry the read key, the rest
the write key; schemathesis also sends requests without one (the documented 401).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from recengine.serving.app import create_app
from recengine.serving.settings import Settings
from recengine.serving.state import ServingState
from recengine.store.events import EventStore
from recengine.store.registry import ModelRegistry
from tests.serving.conftest import READ_KEY, WRITE_KEY

#: Fuzzed examples per operation, on top of schemathesis's own examples and its coverage
#: phase (boundary values, missing and wrong-typed fields): the pass takes seconds.
MAX_EXAMPLES = 40

SETTINGS = Settings(read_keys=READ_KEY, write_keys=WRITE_KEY, max_request_bytes=64 * 1024,
                    max_k=200, max_batch=50)

CONFIG = SchemathesisConfig.from_dict({
    "seed": 11,
    "generation": {"mode": "all", "deterministic": True, "max-examples": MAX_EXAMPLES,
                   "database": "none"},
})

CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


def _description() -> dict[str, Any]:
    """The OpenAPI description the server publishes with ``SETTINGS``: it depends on the routes
    and the settings only, so an empty registry and store serve to build it."""
    with tempfile.TemporaryDirectory() as root:
        state = ServingState(ModelRegistry(Path(root) / "registry"), EventStore("sqlite://"))
        try:
            return create_app(SETTINGS, state).openapi()
        finally:
            state.store.close()


schema = schemathesis.openapi.from_dict(_description(), config=CONFIG)


@pytest.fixture
def app(state: ServingState) -> FastAPI:
    return create_app(SETTINGS, state)


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_operation_conforms(case: Any, app: FastAPI) -> None:
    key = READ_KEY if case.method == "GET" else WRITE_KEY
    case.call_and_validate(app=app, headers={"X-API-Key": key}, checks=CHECKS)


# What the pass found, each checked on its own.

def test_every_error_is_described_as_the_server_writes_it() -> None:
    """FastAPI described a 422 body this server never sends, and no 401, 403, 404, 503."""
    description = _description()
    assert "HTTPValidationError" not in description["components"]["schemas"]
    error = {"$ref": "#/components/schemas/Error"}
    for path, operations in description["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            if operation.get("security"):
                assert {"401", "403", "429"} <= responses.keys(), (method, path)
            for code, response in responses.items():
                if code.startswith("4") and path != "/readyz":
                    assert response["content"]["application/json"]["schema"] == error, (
                        method, path, code)
    paths = description["paths"]
    assert "404" in paths["/v1/items/{item_id}/similar"]["get"]["responses"]
    assert "404" in paths["/v1/items/{item_id}"]["delete"]["responses"]
    assert "404" in paths["/v1/models/{version}/activate"]["post"]["responses"]
    assert "404" in paths["/v1/users/{user_id}/recommendations"]["get"]["responses"]


def test_keyless_and_wrong_keys_answer_documented_errors(app: FastAPI) -> None:
    from fastapi.testclient import TestClient

    client = TestClient(app)
    missing = client.get("/v1/models")
    assert missing.status_code == 401 and missing.json()["detail"]
    wrong = client.post("/v1/models/rollback", headers={"X-API-Key": READ_KEY})
    assert wrong.status_code == 403 and wrong.json()["detail"]


def test_a_body_that_is_not_utf8_is_a_422_naming_it(client: Any, write: dict[str, str]) -> None:
    """FastAPI answered 400 "There was an error parsing the body", naming nothing."""
    response = client.put("/v1/items/i1", content=b"\xff\xfe{", headers={
        **write, "Content-Type": "application/json"})
    assert response.status_code == 422
    assert response.json()["field"] == "body"


def test_json_that_does_not_parse_names_the_body(client: Any, write: dict[str, str]) -> None:
    """The field named was the parser's offset ("7"), not a field of the request."""
    response = client.post("/v1/events", content=b'{"user_', headers={
        **write, "Content-Type": "application/json"})
    assert response.status_code == 422
    assert response.json()["field"] == "body"


def test_an_empty_model_or_constraint_in_a_batch_is_none(client: Any, world: Any) -> None:
    """As in the single request; the batch answered 404 for the model named ''."""
    user = world.users[0]
    single = client.get(f"/v1/users/{user}/recommendations", params={"model": "", "k": 3})
    batch = client.post("/v1/recommendations", json={"users": [user], "k": 3, "model": "",
                                                      "constraint": ""})
    assert single.status_code == batch.status_code == 200
    assert batch.json()["data"][0]["items"] == single.json()["items"]
