"""Every console page in a real headless Chromium against a real ``recengine serve``.

One server and one browser per test session (per xdist worker, :mod:`.conftest`); each test
signs in as it needs to, so it stands alone whichever worker runs it. What a person would do:
sign in, search, open a user and check the lists against the API's answers, try a constraint,
open an item, compare versions, activate and roll back, post an event and watch the lists
change, upload a file with a bad row.
With ``RECENGINE_CONSOLE_SCREENSHOTS=docs/console`` each page is saved as the docs' screenshot.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.serving.console.conftest import (
    READ_KEY,
    WRITE_KEY,
    Console,
    DemoStore,
    screenshot,
    viewport,
)


def wait_for(condition: Callable[[], Any], seconds: float = 30, page: Any = None) -> Any:
    """``condition()``'s first truthy value, polled; fails the test after ``seconds``, with
    the text of ``page`` (a driver) if given."""
    deadline = time.monotonic() + seconds
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as exc:  # the page is still changing under us
            last = exc
        time.sleep(0.05)
    shown = page.find_element("css selector", "body").text[:2000] if page is not None else ""
    raise AssertionError(f"timed out waiting ({last!r}) on {shown!r}")


def css(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(driver.find_elements(By.CSS_SELECTOR, selector))


def one(driver: Any, selector: str) -> Any:
    return wait_for(lambda: (css(driver, selector) or [None])[0])


def sign_in(driver: Any, console: Console, key: str, then: str = "/console", *,
            accepted: bool = True) -> None:
    driver.get(f"{console.base}/console/login?next={then}")
    field = one(driver, "#key")
    field.send_keys(key)
    field.submit()
    if accepted:
        wait_for(lambda: "/console/login" not in driver.current_url)
    else:
        wait_for(lambda: css(driver, ".error"))
    assert key not in driver.current_url


def signed_in(driver: Any, console: Console, key: str) -> None:
    """This browser signed in with ``key`` (at once if it is already): each test stands alone,
    whichever worker runs it."""
    role = "write" if key == WRITE_KEY else "read"
    if not driver.current_url.startswith(console.base):
        driver.get(f"{console.base}/console/static/console.css")  # the cookie's site
    cookie = driver.get_cookie("recengine_console")
    if cookie is None or not cookie["value"].startswith(f"{role}:"):
        sign_in(driver, console, key)


def lists(driver: Any, model: str = "served") -> list[str]:
    """One list of a user's page once it is there (the page shown if it never is)."""
    return list(wait_for(lambda: listed(driver, model), page=driver))


def listed(driver: Any, model: str) -> list[str]:
    """The item ids of one list on a user's page, in order."""
    return [li.get_attribute("data-item-id")
            for li in css(driver, f'.list[data-model="{model}"] li[data-item-id]')]


def test_viewing_needs_a_read_key_then_the_overview_shows_the_state(browser: Any,
                                                                    console: Console) -> None:
    browser.get(f"{console.base}/console/static/console.css")
    browser.delete_all_cookies()
    browser.get(f"{console.base}/console")
    wait_for(lambda: "/console/login" in browser.current_url)  # read keys are set
    sign_in(browser, console, "not-a-key-of-this-server", accepted=False)
    assert "not one of this server's keys" in one(browser, ".error").text
    sign_in(browser, console, READ_KEY)
    assert browser.current_url == f"{console.base}/console"
    assert one(browser, '[data-testid="active-version"]').text == "v0001"
    assert one(browser, '[data-testid="users"]').text == "200"
    assert one(browser, '[data-testid="items"]').text == "100"
    assert css(browser, "svg.chart")  # request rate and latency, drawn by the server
    cookie = browser.get_cookie("recengine_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert READ_KEY not in cookie["value"]
    assert READ_KEY not in console.log.read_text()  # the key never reaches a log line
    screenshot(browser, "overview")


def test_users_search_and_a_users_lists_match_the_api(browser: Any, console: Console) -> None:
    signed_in(browser, console, READ_KEY)
    browser.get(f"{console.base}/console/users")
    box = one(browser, "#q")
    box.send_keys("u01")  # htmx swaps the results in as one types
    wait_for(lambda: (ids := [a.get_attribute("data-user-id")
                              for a in css(browser, "#results [data-user-id]")])
             and all("u01" in i for i in ids))
    screenshot(browser, "users")
    one(browser, '#results a[data-user-id="u012"]').click()
    wait_for(lambda: browser.current_url.endswith("/console/users/u012"))
    served = lists(browser)
    assert served == [i["item_id"] for i in
                      console.api("/v1/users/u012/recommendations")["items"]]
    version = console.api("/v1/models")["data"]
    names = next(v["models"] for v in version if v["active"])
    for name in names:  # every model of the active version, side by side
        assert listed(browser, name) == [i["item_id"] for i in console.api(
            "/v1/users/u012/recommendations", model=name)["items"]], name
    history = console.api("/v1/users/u012/events", order="desc", limit=20)["data"]
    rows = css(browser, '[data-testid="history"] tbody tr')
    assert [r.find_elements("css selector", "td")[1].text for r in rows] == [
        e["item_id"] for e in history]
    screenshot(browser, "user")


def test_a_constraint_tried_live(browser: Any, console: Console) -> None:
    signed_in(browser, console, READ_KEY)
    browser.get(f"{console.base}/console/users/u012")
    before = lists(browser)
    field = one(browser, "#constraint")
    field.send_keys("bedrooms >=")  # not a constraint: the API's 422, naming the field
    field.submit()
    error = one(browser, '[data-testid="lists-error"]')
    assert "constraint" in error.text
    field = one(browser, "#constraint")
    field.clear()
    field.send_keys("bedrooms >= 3")
    field.submit()
    after = lists(browser)
    expected = [i["item_id"] for i in console.api(
        "/v1/users/u012/recommendations", constraint="bedrooms >= 3")["items"]]
    assert after == expected and after != before


def test_items_search_features_similar_and_audience(browser: Any, console: Console) -> None:
    signed_in(browser, console, READ_KEY)
    browser.get(f"{console.base}/console/items?q=i0")
    one(browser, '#results a[data-item-id="i03"]').click()
    wait_for(lambda: browser.current_url.endswith("/console/items/i03"))
    assert css(browser, '[data-testid="features"] dt')
    similar = [li.get_attribute("data-item-id")
               for li in css(browser, '[data-testid="similar"] li[data-item-id]')]
    assert similar == [i["item_id"] for i in console.api("/v1/items/i03/similar")["items"]]
    audience = [r.find_elements("css selector", "td")[1].text
                for r in css(browser, '[data-testid="audience"] tbody tr')]
    assert audience == [u["user_id"] for u in console.api("/v1/items/i03/audience",
                                                          n=20)["users"]]
    screenshot(browser, "item")
    link = one(browser, '[data-testid="audience-csv"]').get_attribute("href")
    cookies = {c["name"]: c["value"] for c in browser.get_cookies()}
    text = httpx.get(link, cookies=cookies, timeout=30).text  # the browser's session
    assert text.splitlines()[0] == "user_id,score"
    assert [line.split(",")[0] for line in text.splitlines()[1:21]] == audience


def test_models_compare_activate_and_roll_back(browser: Any, console: Console,
                                               demo_store: DemoStore) -> None:
    v1, v2 = demo_store.versions
    signed_in(browser, console, READ_KEY)
    browser.get(f"{console.base}/console/models")
    assert one(browser, f'tr[data-version="{v1}"]').get_attribute("data-active") == "true"
    assert not css(browser, "form[action$='/activate']")  # a read key cannot
    screenshot(browser, "models")
    one(browser, "form[action='/console/models/compare'] button").click()
    rows = wait_for(lambda: css(browser, '[data-testid="compare-metrics"] tbody tr'))
    assert any(r.text.startswith("wals ndcg@10") for r in rows)
    screenshot(browser, "compare")
    sign_in(browser, console, WRITE_KEY, then="/console/models")
    one(browser, f"form[action='/console/models/{v2}/activate'] button").click()
    # The page before the click may show a notice too: wait for the new one's words.
    wait_for(lambda: f"{v2} is active" in one(browser, '[data-testid="notice"]').text)
    assert console.api("/v1/users/u012/recommendations")["model_version"] == v2
    one(browser, "form[action='/console/models/rollback'] button").click()
    wait_for(lambda: f"{v1} is active" in one(browser, '[data-testid="notice"]').text)
    assert console.api("/v1/users/u012/recommendations")["model_version"] == v1
    assert WRITE_KEY not in console.log.read_text()


def test_a_posted_event_is_folded_into_the_lists(browser: Any, console: Console) -> None:
    signed_in(browser, console, WRITE_KEY)
    browser.get(f"{console.base}/console/users/u020")
    before = lists(browser)
    item = before[0]
    one(browser, "#ev-item").send_keys(item)
    one(browser, "#ev-type").clear()
    one(browser, "#ev-type").send_keys("booking")
    one(browser, "#post-event button").click()
    wait_for(lambda: "event stored" in one(browser, '[data-testid="notice"]').text)
    after = lists(browser)
    assert item not in after  # booked now: seen items are not recommended
    assert after == [i["item_id"] for i in
                     console.api("/v1/users/u020/recommendations")["items"]]
    first = css(browser, '[data-testid="history"] tbody tr')[0].text
    assert item in first and "booking" in first
    screenshot(browser, "user-after-event")


def test_upload_with_a_bad_row_then_ingest(browser: Any, console: Console,
                                           tmp_path: Path) -> None:
    signed_in(browser, console, WRITE_KEY)
    upload = tmp_path / "new-events.csv"
    upload.write_text("user_id,item_id,event_type,value,timestamp\n"
                      "newcomer,i01,view,,2025-06-01T10:00:00\n"
                      "newcomer,i02,rating,9,2025-06-01T10:01:00\n"
                      "newcomer,i03,click,,2025-06-01T10:02:00\n")
    browser.get(f"{console.base}/console/data")
    one(browser, "#file").send_keys(str(upload))
    one(browser, "form[action='/console/data/check'] button").click()
    issues = wait_for(lambda: css(browser, '[data-testid="issues"] tbody tr'))
    assert len(issues) == 1
    cells = [td.text for td in issues[0].find_elements("css selector", "td")]
    assert cells[:3] == ["new-events.csv", "3", "value"]
    assert one(browser, '[data-testid="rows-accepted"]').text == "2"
    screenshot(browser, "data")
    one(browser, "form[action='/console/data/ingest'] button").click()
    assert "2 events stored" in one(browser, '[data-testid="ingested"]').text
    events = console.api("/v1/users/newcomer/events")["data"]
    assert [e["item_id"] for e in events] == ["i01", "i03"]


def test_keyboard_and_phone_width(browser: Any, console: Console) -> None:
    from selenium.webdriver.common.keys import Keys

    signed_in(browser, console, READ_KEY)
    browser.get(f"{console.base}/console/users")
    browser.find_element("css selector", "body").send_keys(Keys.TAB)
    focused = browser.switch_to.active_element
    assert focused.text == "Skip to content"  # the first stop, then Enter jumps to main
    labels = {label.get_attribute("for") for label in css(browser, "label")}
    assert "q" in labels  # every field has its label
    viewport(browser, 390, 844, mobile=True)
    try:
        for path in ("/console", "/console/users", "/console/items/i03", "/console/models",
                     "/console/data", "/console/users/u012"):
            browser.get(f"{console.base}{path}")
            one(browser, "h1")
            width = browser.execute_script("return document.documentElement.scrollWidth")
            assert width <= browser.execute_script("return window.innerWidth"), path
        lists(browser)
        screenshot(browser, "user-phone")
    finally:
        viewport(browser, 1280, 800)
