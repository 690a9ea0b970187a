"""A retrain in a child process: it publishes, reports failures as text, and stops when asked."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from recengine.pipeline import isolated
from recengine.pipeline.isolated import ChildFailed, retrain_in_child
from recengine.pipeline.schedule import RetrainScheduler
from recengine.store.events import EventStore
from recengine.store.registry import ModelRegistry

POPULARITY = {"popularity": {}}


def test_a_run_in_the_child_publishes_the_events_up_to_its_id(store: EventStore,
                                                              registry: ModelRegistry) -> None:
    until = store.last_id() - 50
    outcome = retrain_in_child(store.url, registry.root, POPULARITY, until, {},
                               threading.Event())
    assert outcome.activated and outcome.version == registry.current() == "v0001"
    assert "first version" in outcome.reason
    assert registry.show("v0001")["data"] == store.snapshot(until_id=until)


def test_a_failure_in_the_child_comes_back_as_its_message_and_trace(
        store: EventStore, registry: ModelRegistry) -> None:
    with pytest.raises(ChildFailed, match="no-such-model") as failure:
        retrain_in_child(store.url, registry.root, {"no-such-model": {}}, store.last_id(), {},
                         threading.Event())
    assert "Traceback" in failure.value.details
    assert registry.current() is None


def test_stop_kills_the_child_at_once(store: EventStore, registry: ModelRegistry) -> None:
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()  # the child is still importing at 0.3 s
    start = time.monotonic()
    with pytest.raises(InterruptedError):
        retrain_in_child(store.url, registry.root, POPULARITY, store.last_id(), {}, stop)
    assert time.monotonic() - start < 2.0
    assert registry.current() is None


def test_the_scheduler_trains_in_another_process(store: EventStore, registry: ModelRegistry,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """This process's ``retrain`` is never called: the spawned child has its own."""
    def in_this_process(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("trained in the server's process")

    monkeypatch.setattr(isolated, "retrain_store", in_this_process)
    published: list[str] = []
    s = RetrainScheduler(store, registry, models=POPULARITY, every_seconds=60,
                         after_events=None, on_published=published.append)
    assert s.isolated and s.run_once() and published == ["v0001"], s.last_error


def test_an_in_memory_store_cannot_be_read_by_a_child(registry: ModelRegistry) -> None:
    with EventStore("sqlite://") as store, pytest.raises(ValueError, match="isolated=False"):
        RetrainScheduler(store, registry, models=POPULARITY, every_seconds=60,
                         after_events=None, on_published=print)


def test_a_killed_server_leaves_no_training_behind(store: EventStore,
                                                   registry: ModelRegistry) -> None:
    """SIGKILL gives the server no chance to stop its child: the kernel must."""
    script = (f"import threading\nfrom recengine.pipeline.isolated import retrain_in_child\n"
              f"print('ready', flush=True)\n"
              f"retrain_in_child({store.url!r}, {str(registry.root)!r}, {POPULARITY!r}, "
              f"{store.last_id()}, {{}}, threading.Event())\n")
    server = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None and server.stdout.readline() == "ready\n"
    time.sleep(0.5)  # the child is spawned, and still starting
    server.kill()
    server.wait()
    time.sleep(10)  # an orphaned child publishes within about 5 s
    assert registry.current() is None and not registry.versions()
