"""A small demo store served by a real ``recengine serve``, and a headless Chromium to drive it.

The store is the demo's, smaller: the synthetic rentals (200 users, 100 items), their events,
items and users stored as ``recengine demo`` stores them, and two registry versions evaluated on
a stratified split (metrics to show and compare): v1 WALS with segment popularity and popularity
(active), v2 a smaller WALS with popularity. Built once per test session (per xdist worker).

Chromium is Debian's ``chromium`` with ``chromium-driver``, driven by Selenium. Without them the
browser tests skip, saying why; with ``RECENGINE_REQUIRE_BROWSER=1`` (as in CI) they fail.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from recengine.data.synthetic import generate
from recengine.data.weighting import aggregate
from recengine.evaluation.evaluator import evaluate
from recengine.models import WALS, Popularity
from recengine.models.segment_popularity import SegmentPopularity
from recengine.pipeline.prepare import events_of, prepare, training_data
from recengine.store.events import EventStore
from recengine.store.registry import ModelRegistry
from tests.serving.test_real_server import _free_port, served

READ_KEY = "console-read-key-0123456789"
WRITE_KEY = "console-write-key-0123456789"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
_REQUIRE = "RECENGINE_REQUIRE_BROWSER"


@dataclass
class DemoStore:
    database: Path
    registry: Path
    versions: tuple[str, str]


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> DemoStore:
    """The small demo store and registry, built once (see the module docstring)."""
    root = tmp_path_factory.mktemp("console")
    dataset = generate(n_users=200, n_items=100, seed=7)
    database = root / "recengine.db"
    with EventStore(f"sqlite:///{database}") as store:
        store.append(dataset.events)
        store.upsert_items(dataset.items, kinds=dataset.item_features)
        store.upsert_users(dataset.users, kinds=dataset.user_features)
        snapshot = store.snapshot()
    prepared = prepare(dataset, "stratified", test_fraction=0.25, seed=7)
    candidates = {"wals": WALS(factors=16, iterations=6), "small-wals": WALS(factors=4,
                                                                               iterations=3),
                  "segment-popularity": SegmentPopularity(), "popularity": Popularity()}
    metrics = evaluate(candidates, prepared.data, prepared.split, ks=[10]).metrics_by_model()
    data = training_data(dataset, aggregate(dataset.events, dataset.schema),
                         events=events_of(dataset))
    registry = ModelRegistry(root / "registry")
    v1 = registry.publish({"wals": WALS(factors=16, iterations=6).fit(data),
                           "segment-popularity": SegmentPopularity().fit(data),
                           "popularity": Popularity().fit(data)}, data=snapshot,
                          metrics={n: metrics[n] for n in ("wals", "segment-popularity",
                                                           "popularity")},
                          notes="console tests: the first version")
    v2 = registry.publish({"wals": WALS(factors=4, iterations=3).fit(data),
                           "popularity": Popularity().fit(data)}, data=snapshot,
                          metrics={"wals": metrics["small-wals"],
                                   "popularity": metrics["popularity"]},
                          notes="console tests: a smaller WALS")
    registry.activate(v2)
    registry.activate(v1)  # v1 active, v2 before it: a rollback has somewhere to go
    return DemoStore(database, root / "registry", (v1, v2))


@dataclass
class Console:
    """A running ``recengine serve`` over a private copy of the demo store."""

    base: str
    log: Path

    def api(self, path: str, **params: Any) -> Any:
        """``GET path`` from the JSON API with the read key, as JSON."""
        response = httpx.get(f"{self.base}{path}", params=params, timeout=30,
                             headers={"X-API-Key": READ_KEY})
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="session")
def console(demo_store: DemoStore, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Console]:
    """``recengine serve`` on a free port with read and write keys, its output in a log."""
    root = tmp_path_factory.mktemp("served")
    shutil.copy(demo_store.database, root / "recengine.db")
    shutil.copytree(demo_store.registry, root / "registry")
    port = _free_port()
    log = root / "server.log"
    env = {"RECENGINE_READ_KEYS": READ_KEY, "RECENGINE_WRITE_KEYS": WRITE_KEY,
           "RECENGINE_HEAVY_PROCESSES": "0", "RECENGINE_BOOTSTRAP_AFTER_EVENTS": "0"}
    command = [sys.executable, "-m", "recengine", "serve", "--port", str(port),
               "--registry", str(root / "registry"),
               "--database-url", f"sqlite:///{root / 'recengine.db'}"]
    with log.open("w") as sink, served(command, env, port, sink=sink) as base:
        yield Console(base, log)


def _browser_missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (the dev extra)"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists():
            return f"{path} is missing (apt-get install chromium chromium-driver)"
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Chromium at 1280×800 (skips, or fails under the env var, without it)."""
    reason = _browser_missing()
    if reason is not None:
        if os.environ.get(_REQUIRE) == "1":
            pytest.fail(f"{reason} ({_REQUIRE}=1)")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1280,800", "--force-device-scale-factor=1",
                 "--disable-extensions", "--no-first-run"):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"download.default_directory": "/dev/null"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    viewport(driver, 1280, 800)
    try:
        yield driver
    finally:
        driver.quit()


def viewport(driver: Any, width: int, height: int, *, mobile: bool = False) -> None:
    """Make the page ``width`` × ``height`` CSS pixels (the window holds its own bars)."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})


def screenshot(driver: Any, name: str) -> None:
    """Save the page as ``<folder>/<name>.png`` when ``RECENGINE_CONSOLE_SCREENSHOTS`` names a
    folder: the docs' screenshots (``docs/console/``) come from these very tests."""
    folder = os.environ.get("RECENGINE_CONSOLE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / f"{name}.png"))
