"""API keys (issue 11, finding 5): compared in constant time, long enough, throttled on failure,
an empty header the same everywhere; what describes the API behind the read key; store errors
that name no host, port or user."""

from __future__ import annotations

import hmac

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from recengine.serving import deps
from recengine.serving.app import create_app
from recengine.serving.settings import MIN_KEY_LENGTH, Settings
from recengine.serving.state import ServingState
from recengine.store.events import EventStore
from tests.serving.conftest import READ_KEY, WRITE_KEY, World

OTHER_KEY = "another-read-key-for-tests"


@pytest.fixture
def closed(state: ServingState) -> TestClient:
    """Reads and writes behind keys, three failed keys allowed per minute."""
    settings = Settings(read_keys=f"{READ_KEY},{OTHER_KEY}", write_keys=WRITE_KEY,
                        auth_failure_limit=3)
    return TestClient(create_app(settings, state))


def test_every_key_is_compared_in_constant_time(closed: TestClient, world: World,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[bytes] = []
    real = hmac.compare_digest

    def compare(given: bytes, key: bytes) -> bool:
        compared.append(key)
        return real(given, key)

    monkeypatch.setattr(deps.hmac, "compare_digest", compare)
    for key in (READ_KEY, OTHER_KEY, "not-a-key-of-ours-at-all"):
        compared.clear()
        closed.get(f"/v1/users/{world.users[0]}/recommendations", headers={"X-API-Key": key})
        assert sorted(compared) == sorted(k.encode() for k in (READ_KEY, OTHER_KEY, WRITE_KEY))


def test_a_key_with_any_latin1_character_is_a_403_not_a_500(closed: TestClient,
                                                           world: World) -> None:
    response = closed.get(f"/v1/users/{world.users[0]}/recommendations",
                          headers={"X-API-Key": "clé-é-é-é-é-é-é-é".encode("latin-1")})
    assert response.status_code == 403


@pytest.mark.parametrize("keys", ["x", "k1-long-enough-16, short-key"])
def test_short_keys_are_refused_at_settings_load(keys: str) -> None:
    for name in ("read_keys", "write_keys"):
        with pytest.raises(ValidationError, match=f"at least {MIN_KEY_LENGTH}"):
            Settings(**{name: keys})


@pytest.mark.parametrize(("method", "url"), [
    ("GET", "/v1/users/{user}/recommendations"), ("GET", "/v1/items/{item}/similar"),
    ("GET", "/v1/items/{item}/audience"), ("GET", "/v1/models"), ("POST", "/v1/events"),
    ("PUT", "/v1/items/{item}"), ("DELETE", "/v1/users/{user}"), ("POST", "/v1/models/rollback"),
    ("POST", "/v1/recommendations"), ("GET", "/metrics")])
def test_an_empty_key_is_a_401_on_every_route(closed: TestClient, world: World, method: str,
                                              url: str) -> None:
    url = url.format(user=world.users[0], item=world.items[0])
    response = closed.request(method, url, headers={"X-API-Key": ""}, json={})
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "APIKey"


def test_failed_keys_are_throttled_per_address(closed: TestClient, world: World) -> None:
    url = f"/v1/users/{world.users[0]}/recommendations"
    assert [closed.get(url, headers={"X-API-Key": f"wrong-key-number-{i}"}).status_code
            for i in range(3)] == [403] * 3
    throttled = closed.get(url, headers={"X-API-Key": READ_KEY})  # even the right key, now
    assert throttled.status_code == 429
    assert 1 <= int(throttled.headers["retry-after"]) <= 60
    other = TestClient(closed.app, client=("10.0.0.2", 5000))
    assert other.get(url, headers={"X-API-Key": READ_KEY}).status_code == 200


@pytest.mark.parametrize("url", ["/metrics", "/docs", "/openapi.json", "/redoc",
                                 "/docs/oauth2-redirect"])
def test_what_describes_the_api_needs_a_read_key_when_reads_do(closed: TestClient,
                                                               state: ServingState,
                                                               url: str) -> None:
    assert closed.get(url).status_code == 401
    assert closed.get(url, headers={"X-API-Key": READ_KEY}).status_code == 200
    open_reads = TestClient(create_app(Settings(write_keys=WRITE_KEY), state))
    assert open_reads.get(url).status_code == 200


def test_the_docs_page_carries_its_description(closed: TestClient) -> None:
    page = closed.get("/docs", headers={"X-API-Key": READ_KEY}).text
    assert '"spec"' in page and "/v1/users/{user_id}/recommendations" in page


def test_store_errors_name_no_host_port_or_user(state: ServingState, world: World,
                                                caplog: pytest.LogCaptureFixture) -> None:
    state.store.close()
    state.store = EventStore("postgresql+psycopg://alice-the-user@127.0.0.1:1/nowhere")
    client = TestClient(create_app(Settings(write_keys=WRITE_KEY), state))
    event = {"user_id": world.users[0], "item_id": world.items[0], "event_type": "view"}
    response = client.post("/v1/events", json=event, headers={"X-API-Key": WRITE_KEY})
    assert response.status_code == 503
    for secret in ("alice-the-user", "127.0.0.1", ":1/", "nowhere", "postgresql"):
        assert secret not in response.text
    assert "alice-the-user" in caplog.text  # the operator still reads what failed


def test_retraining_status_names_no_database_address(state: ServingState) -> None:
    settings = Settings(write_keys=WRITE_KEY, retrain_every_seconds=3600)
    with TestClient(create_app(settings, state)) as client:
        client.app.state.retraining.last_error = (
            "StoreError: cannot read events in postgresql://alice-the-user@db.internal:5432/x")
        status = client.get("/v1/models/retraining").json()
    assert status["last_error"].startswith("StoreError")
    assert "alice-the-user" not in status["last_error"] and "5432" not in status["last_error"]
