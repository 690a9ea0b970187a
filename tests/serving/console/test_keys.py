"""The console's keys, sessions and contract, in process (no browser): fast and exact."""

from __future__ import annotations

import logging
import re

import pytest
from fastapi.testclient import TestClient

from recengine.serving.app import create_app
from recengine.serving.settings import Settings
from recengine.serving.state import ServingState
from tests.serving.conftest import READ_KEY, WRITE_KEY, World


@pytest.fixture
def keyed(state: ServingState) -> TestClient:
    return TestClient(create_app(Settings(read_keys=READ_KEY, write_keys=WRITE_KEY), state),
                      base_url="http://testserver")


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found is not None, html
    return found.group(1)


def _sign_in(client: TestClient, key: str, then: str = "/console") -> None:
    response = client.post("/console/login", data={"key": key, "next": then},
                           follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == then


def test_the_console_answers_html_and_a_users_ids_are_the_apis(client: TestClient,
                                                               world: World) -> None:
    page = client.get("/console")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for user in world.users[:3]:
        html = client.get(f"/console/users/{user}").text
        served = html.split('data-model="served"')[1].split("</ol>")[0]
        shown = re.findall(r'data-item-id="([^"]+)"', served)
        api = client.get(f"/v1/users/{user}/recommendations").json()
        assert shown == [i["item_id"] for i in api["items"]] and len(shown) == 10


def test_every_page_renders(client: TestClient, world: World) -> None:
    user, item = world.users[0], world.items[0]
    for path in ("/console", "/console/users?q=u", f"/console/users/{user}",
                 f"/console/users/{user}/live?k=3", "/console/items?offset=25",
                 f"/console/items/{item}", "/console/models", "/console/data",
                 f"/console/models/compare?a={world.versions[0]}&b={world.versions[1]}",
                 "/console/login", "/console/static/htmx.min.js", "/console/static/console.css"):
        assert client.get(path).status_code == 200, path
    csv = client.get(f"/console/items/{item}/audience.csv", params={"n": 5})
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.text.splitlines()[0] == "user_id,score" and len(csv.text.splitlines()) == 6


def test_bad_input_on_a_page_is_a_4xx_naming_the_field_never_a_5xx(client: TestClient,
                                                                    world: World) -> None:
    user = world.users[0]
    bad = client.get(f"/console/users/{user}", params={"constraint": "price <"})
    assert bad.status_code == 422 and "constraint" in bad.text
    rules = client.get(f"/console/users/{user}", params={"rules": "[{"})
    assert rules.status_code == 422 and "rules" in rules.text
    for path in (f"/console/users/{user}?k=abc&events_offset=-1", "/console/items?offset=x",
                 "/console/models/compare?a=v9&b=nope", "/console/items/no-such-item",
                 "/console/items/no-such-item/audience.csv"):
        assert client.get(path).status_code < 500, path


def test_viewing_needs_a_read_key_when_read_keys_are_set(keyed: TestClient) -> None:
    response = keyed.get("/console/users", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/console/login?next=/console/users"
    assert keyed.get("/console/static/console.css").status_code == 200  # no data in it
    wrong = keyed.post("/console/login", data={"key": "not-the-key-at-all"})
    assert wrong.status_code == 403  # and no session: at most an anonymous one
    assert wrong.cookies.get("recengine_console", "none:").startswith("none:")
    _sign_in(keyed, READ_KEY, "/console/users")
    cookie = keyed.cookies["recengine_console"]
    assert READ_KEY not in cookie and cookie.startswith("read:")
    assert keyed.get("/console/users").status_code == 200
    header = [h for h in keyed.post("/console/login", data={"key": READ_KEY},
                                    follow_redirects=False).headers.get_list("set-cookie")]
    assert "HttpOnly" in header[0] and "SameSite=strict" in header[0].replace("Strict",
                                                                             "strict")


def test_signing_out_ends_the_session(keyed: TestClient) -> None:
    _sign_in(keyed, READ_KEY)
    token = _csrf(keyed.get("/console").text)
    assert keyed.post("/console/logout", data={"csrf": "0" * 32}).status_code == 403
    out = keyed.post("/console/logout", data={"csrf": token}, follow_redirects=False)
    assert out.status_code == 303 and 'recengine_console=""' in out.headers["set-cookie"]
    assert keyed.get("/console", follow_redirects=False).status_code == 303


def test_a_forged_or_altered_cookie_is_no_session(keyed: TestClient) -> None:
    _sign_in(keyed, READ_KEY)
    _role, expires, nonce, signature = keyed.cookies["recengine_console"].split(":")
    keyed.cookies.clear()
    keyed.cookies.set("recengine_console", f"write:{expires}:{nonce}:{signature}",
                      path="/console")
    assert keyed.get("/console", follow_redirects=False).status_code == 303


def test_writes_need_the_write_key_and_the_csrf_token(keyed: TestClient, world: World) -> None:
    v2 = world.versions[1]
    _sign_in(keyed, READ_KEY)
    token = _csrf(keyed.get("/console/models").text)  # the sign-out form's
    refused = keyed.post(f"/console/models/{v2}/activate", data={"csrf": token})
    assert refused.status_code == 403 and "write key" in refused.text
    _sign_in(keyed, WRITE_KEY, "/console/models")
    token = _csrf(keyed.get("/console/models").text)
    no_token = keyed.post(f"/console/models/{v2}/activate", data={})
    assert no_token.status_code == 403
    stale = keyed.post(f"/console/models/{v2}/activate", data={"csrf": "0" * 32})
    assert stale.status_code == 403
    done = keyed.post(f"/console/models/{v2}/activate", data={"csrf": token},
                      follow_redirects=False)
    assert done.status_code == 303 and "/console/models?done=" in done.headers["location"]
    assert keyed.get("/v1/models", headers={"X-API-Key": READ_KEY}).json()["data"][0] == {
        **keyed.get("/v1/models", headers={"X-API-Key": READ_KEY}).json()["data"][0],
        "version": v2, "active": True}
    back = keyed.post("/console/models/rollback", headers={"X-CSRF-Token": token},
                      follow_redirects=False)
    assert back.status_code == 303
    nothing = keyed.post("/console/models/rollback", headers={"X-CSRF-Token": token})
    assert nothing.status_code == 409  # the API's answer: nothing to roll back to


def test_a_posted_event_changes_the_lists_at_once(keyed: TestClient, world: World) -> None:
    user = world.users[1]
    _sign_in(keyed, WRITE_KEY)
    token = _csrf(keyed.get(f"/console/users/{user}").text)
    first = keyed.get(f"/v1/users/{user}/recommendations",
                      headers={"X-API-Key": READ_KEY}).json()["items"][0]["item_id"]
    answer = keyed.post(f"/console/users/{user}/events", headers={"X-CSRF-Token": token},
                        data={"item_id": first, "event_type": "booking"})
    assert answer.status_code == 200 and "event stored" in answer.text
    after = keyed.get(f"/v1/users/{user}/recommendations",
                      headers={"X-API-Key": READ_KEY}).json()["items"]
    assert first not in [i["item_id"] for i in after]
    bad = keyed.post(f"/console/users/{user}/events", headers={"X-CSRF-Token": token},
                     data={"item_id": "", "event_type": "booking"})
    assert bad.status_code == 422


def test_the_key_never_reaches_a_url_or_a_log(keyed: TestClient,
                                              caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        response = keyed.post("/console/login", data={"key": WRITE_KEY, "next": "/console"})
        keyed.get("/console/data")
    assert response.status_code == 200 and WRITE_KEY not in str(response.url)
    assert all(WRITE_KEY not in str(r.url) for r in response.history)
    assert WRITE_KEY not in caplog.text
    assert WRITE_KEY not in response.text


def test_an_upload_is_checked_row_by_row_then_ingested(keyed: TestClient, world: World) -> None:
    _sign_in(keyed, WRITE_KEY, "/console/data")
    token = _csrf(keyed.get("/console/data").text)
    body = ("user_id,item_id,event_type,value,timestamp\n"
            f"fresh,{world.items[0]},view,,2025-01-01T00:00:00\n"
            f"fresh,{world.items[1]},rating,7,2025-01-01T00:00:01\n")
    checked = keyed.post("/console/data/check", data={"csrf": token},
                         files={"file": ("fresh.csv", body, "text/csv")})
    assert checked.status_code == 200
    row = re.search(r"<td>fresh.csv</td><td class=\"num\">(\d+)</td><td>(\w+)</td>",
                    checked.text)
    assert row is not None and row.groups() == ("3", "value")
    upload = re.search(r'name="token" value="([^"]+)"', checked.text)
    assert upload is not None
    done = keyed.post("/console/data/ingest", data={"csrf": token, "token": upload.group(1),
                                                    "name": "fresh.csv"})
    assert "1 events stored" in done.text
    again = keyed.post("/console/data/ingest", data={"csrf": token, "token": upload.group(1)})
    assert again.status_code == 404  # ingested once: the upload is gone
    wrong = keyed.post("/console/data/check", data={"csrf": token},
                       files={"file": ("notes.txt", "hello", "text/plain")})
    assert wrong.status_code == 422 and "file" in wrong.text
    escape = keyed.post("/console/data/ingest", data={"csrf": token, "token": "../CURRENT"})
    assert escape.status_code == 404


def test_the_session_cookie_is_marked_secure_over_https_only(state: ServingState) -> None:
    settings = Settings(read_keys=READ_KEY, write_keys=WRITE_KEY)
    for base, secure in (("http://testserver", False), ("https://testserver", True)):
        client = TestClient(create_app(settings, state), base_url=base)
        header = client.post("/console/login", data={"key": READ_KEY},
                             follow_redirects=False).headers["set-cookie"]
        assert ("; Secure" in header or "; secure" in header) == secure, header
