"""Continuous retraining: a background thread that retrains on a schedule or when data arrives.

:class:`RetrainScheduler` runs one daemon thread that wakes up every ``poll_seconds`` (by default
``min(every_seconds, 1.0)``) and starts a :func:`~recengine.pipeline.retrain.retrain` when

- **the schedule is due**: ``every_seconds`` have passed since the last run (or since start), or
- **enough data arrived**: ``after_events`` events were stored after the ones the served model saw;
- **the first version is due** (``bootstrap_after_events``): no version is active and the store
  holds that many events (all of them count; after a run that published nothing, those stored
  since it). A new deployment so trains and activates its first version by itself, with the
  configured ``models`` or else :data:`FIRST_MODELS`, and then retrains as usual.

**What is retrained.** By default (``models=None``) the active version's models, each with the
configuration in its manifest, read again at every run: a served 64-factor WALS is retrained as a
64-factor WALS, and a version activated by hand (a tuned one) is what the next run retrains. The
gate then compares like with like, so a scheduled run replaces the model unless the new data made
it worse. An explicit ``models`` (name → config) overrides this, e.g. to switch model class.

**What counts as new data.** Events with an id above the active version's snapshot (its
manifest's ``data.last_id``, recorded by the run that published it), so a server restarted after
10,000 new events retrains at once, and activating a version by hand (or a rollback) restarts
the count from that version's snapshot. A run that leaves the active version in place (the gate
rejected its candidate, or it failed) counts from its own snapshot instead, so it is not retried
at every poll. A version whose manifest has no ``last_id`` (trained from a file) is counted from
this scheduler's start or last run.

A run reads the last event id first, and trains on the events up to it
(:func:`~recengine.pipeline.isolated.retrain_until`, with their :meth:`EventStore.snapshot`), so
the manifest records exactly the events the models saw, and events appended during the run count
towards the next one. By default (``isolated=True``) the training runs in a child
process (:mod:`recengine.pipeline.isolated`), so it never holds the server's GIL; ``stop`` kills
a child that is still training. When the gate activates the new version, ``on_published`` gets
its id (the server passes its state's lock-protected hot swap), so serving never waits for
training. One run at a time, in one process of a deployment: a scheduler runs only while it holds
the store's ``retraining`` lease (:meth:`EventStore.hold_lease`), renewed as it polls and while
it trains, so with several server processes (``recengine serve --workers N``) exactly one
retrains, and another takes over within ``lease_seconds`` if that one dies. A failing run
(including "nothing to retrain": no active version and no ``models``) is logged and kept in
``last_error``, counts as a run for both triggers (no retry storm) and never kills the thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import make_url

from recengine.errors import ModelNotFoundError
from recengine.pipeline.isolated import ChildFailed, Outcome, retrain_in_child, retrain_until
from recengine.store.events import EventStore
from recengine.store.registry import ModelRegistry

__all__ = ["FIRST_MODELS", "RetrainScheduler", "manifest_models", "shared"]

log = logging.getLogger(__name__)

#: The store lease a deployment's retraining scheduler holds.
LEASE = "retraining"

#: What a first version trains when no models are configured: a personalised model, and the
#: popularity that answers users it cannot (default configurations).
FIRST_MODELS: Mapping[str, Mapping[str, Any]] = {"wals": {}, "popularity": {}}


def manifest_models(manifest: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """A version's models as :func:`retrain` takes them: name → its config plus ``"model"``.

    >>> manifest_models({"models": {"wals": {"model": "wals", "config": {"factors": 64}}}})
    {'wals': {'model': 'wals', 'factors': 64}}
    """
    return {name: {"model": entry["model"], **entry["config"]}
            for name, entry in manifest["models"].items()}


def shared(store: EventStore) -> bool:
    """Whether a child process can open ``store``: a file or a server, not SQLite in memory.

    >>> shared(EventStore("sqlite://"))
    False
    """
    return make_url(store.url).database not in (None, "", ":memory:")


class RetrainScheduler:
    """Retrain in a background thread every ``every_seconds`` or after ``after_events``, and
    train the first version once ``bootstrap_after_events`` events are stored.

    ``models`` (name → config) are retrained when given, else the active version's models with
    their configurations (see the module docstring).
    """

    def __init__(
        self,
        store: EventStore,
        registry: ModelRegistry,
        *,
        models: Mapping[str, Mapping[str, Any]] | None = None,
        every_seconds: float | None,
        after_events: int | None,
        on_published: Callable[[str], None],
        bootstrap_after_events: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        poll_seconds: float | None = None,
        retrain_options: Mapping[str, Any] | None = None,
        isolated: bool = True,
        lease_seconds: float = 30.0,
    ) -> None:
        if every_seconds is None and after_events is None and bootstrap_after_events is None:
            raise ValueError("set every_seconds, after_events or bootstrap_after_events")
        if every_seconds is not None and not every_seconds > 0:
            raise ValueError(f"every_seconds must be positive, got {every_seconds}")
        for name, count in (("after_events", after_events),
                            ("bootstrap_after_events", bootstrap_after_events)):
            if count is not None and count < 1:
                raise ValueError(f"{name} must be at least 1, got {count}")
        if models is not None and not models:
            raise ValueError("no models to retrain: pass None to retrain the active version's")
        if isolated and not shared(store):
            raise ValueError(f"{store!r} lives in this process only, where a child process "
                             "cannot read it: pass isolated=False")
        self.store = store
        self.registry = registry
        self.models = None if models is None else {
            name: dict(config) for name, config in models.items()}
        self.every_seconds = every_seconds
        self.after_events = after_events
        self.bootstrap_after_events = bootstrap_after_events
        self.on_published = on_published
        self.clock = clock
        self.poll_seconds = poll_seconds or min(every_seconds or 1.0, 1.0)
        self.retrain_options = dict(retrain_options or {})
        self.isolated = isolated
        self.lease_seconds = lease_seconds
        #: Who holds the lease, as the store records it: unique per scheduler.
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.leading = False
        self._lease_checked = -float("inf")
        self._run_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_trained_id: int | None = None
        #: The version active when the last run ended: while it still is, count from that run.
        self._ran_under: str | None = None
        #: version → its manifest's ``data.last_id`` (manifests never change).
        self._snapshot_ids: dict[str, int | None] = {}
        self._last_start = clock()
        self.runs = 0
        self.failures = 0
        self.published = 0
        self.last_run_at: str | None = None
        self.last_reason: str | None = None
        self.last_version: str | None = None
        self.last_trigger: str | None = None
        self.last_error: str | None = None
        self.last_models: dict[str, dict[str, Any]] | None = None

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        """Start the thread; without a snapshot id in the active manifest, count from now."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        if self._last_trained_id is None:
            self._last_trained_id = self.store.last_id()
        self._last_start = self.clock()
        self._thread = threading.Thread(target=self._loop, name="recengine-retrain", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the thread to stop and wait up to ``timeout`` s.

        A run in a child process is killed; a run in this process (``isolated=False``) is not
        cut short.
        """
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("retraining thread still busy after %.1f s; left as a daemon", timeout)
        if self.leading:
            with contextlib.suppress(Exception):  # it expires anyway
                self.store.release_lease(LEASE, self.holder)
            self.leading = False
            self._lease_checked = -float("inf")

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- what to retrain, and from which event ----------------------------------------------
    def models_to_train(self) -> dict[str, dict[str, Any]]:
        """The configured models, or else the active version's with their configurations,
        or :data:`FIRST_MODELS` for a first version when this scheduler bootstraps."""
        if self.models is not None:
            return {name: dict(config) for name, config in self.models.items()}
        version = self.registry.current()
        if version is None and self.bootstrap_after_events is not None:
            return {name: dict(config) for name, config in FIRST_MODELS.items()}
        if version is None:
            raise ModelNotFoundError(
                f"nothing to retrain: the registry at {self.registry.root} has no active version "
                "and no models are configured; activate a version, or name the models to train "
                "(the server's RECENGINE_RETRAIN_MODELS)")
        return manifest_models(self.registry.show(version))

    def counted_after(self) -> int:
        """The event id the data trigger counts from (see "What counts" in the module docs)."""
        ran = self._last_trained_id or 0
        version = self.registry.current()
        if version is None:
            return ran
        if version not in self._snapshot_ids:
            last_id = self.registry.show(version).get("data", {}).get("last_id")
            self._snapshot_ids[version] = None if last_id is None else int(last_id)
        snapshot = self._snapshot_ids[version]
        if snapshot is None:
            return ran
        return max(snapshot, ran) if version == self._ran_under else snapshot

    # -- triggers ---------------------------------------------------------------------------
    def due(self) -> str | None:
        """Which trigger fires now ("bootstrap", "schedule" or "events"), or None."""
        if self.bootstrap_after_events is not None and self.registry.current() is None:
            # the first version waits for enough events, whatever the other triggers say
            since = (self._last_trained_id or 0) if self.runs else 0
            enough = self.store.count(since_id=since) >= self.bootstrap_after_events
            return "bootstrap" if enough else None
        if self.every_seconds is not None and self.clock() - self._last_start >= self.every_seconds:
            return "schedule"
        if (self.after_events is not None
                and self.store.count(since_id=self.counted_after()) >= self.after_events):
            return "events"
        return None

    def lead(self) -> bool:
        """Whether this scheduler is the one that retrains: the lease is taken or renewed (a
        durable write) once a third of it has passed, not at every poll."""
        if time.monotonic() >= self._lease_checked + self.lease_seconds / 3:
            self._renew()
        return self.leading

    def _renew(self) -> None:
        self.leading = self.store.hold_lease(LEASE, self.holder, self.lease_seconds)
        self._lease_checked = time.monotonic()

    @contextlib.contextmanager
    def _leased(self) -> Iterator[None]:
        """Keep renewing the lease while a run lasts (training may take longer than it)."""
        done = threading.Event()

        def renew() -> None:
            while not done.wait(self.lease_seconds / 3):
                with contextlib.suppress(Exception):  # the next renewal tries again
                    self._renew()

        keeper = threading.Thread(target=renew, name="recengine-lease", daemon=True)
        keeper.start()
        try:
            yield
        finally:
            done.set()
            keeper.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                if not self.lead():
                    continue
                trigger = self.due()
                if trigger is not None:
                    self.run_once(trigger)
            except Exception as exc:  # the thread must never die
                log.exception("retraining trigger check failed")
                self.last_error = f"{type(exc).__name__}: {exc}"

    def run_once(self, trigger: str = "manual") -> bool:
        """One retrain now, unless one is already running; whether it ran."""
        if not self._run_lock.acquire(blocking=False):
            return False
        try:
            self._last_start = self.clock()
            self.last_trigger = trigger
            try:
                self._last_trained_id = self.store.last_id()
                self.last_models = self.models_to_train()
                with self._leased():
                    result = self._retrain(self._last_trained_id, self.last_models)
                self.last_reason = result.reason
                if result.activated and result.version is not None:
                    self.published += 1
                    self.last_version = result.version
                    self.on_published(result.version)
                self.last_error = None
                log.info("retrain (%s): %s", trigger, result.reason)
            except ChildFailed as exc:
                log.error("retrain (%s) failed in its process:\n%s", trigger, exc.details)
                self.last_error = str(exc)
                self.failures += 1
            except Exception as exc:
                log.exception("retrain (%s) failed", trigger)
                self.last_error = f"{type(exc).__name__}: {exc}"
                self.failures += 1
            finally:
                self._ran_under = self.registry.current()
                self.runs += 1
                self.last_run_at = datetime.now(UTC).isoformat(timespec="seconds")
            return True
        finally:
            self._run_lock.release()

    def _retrain(self, until_id: int, models: Mapping[str, Mapping[str, Any]]) -> Outcome:
        if self.isolated:
            return retrain_in_child(self.store.url, self.registry.root, models, until_id,
                                    self.retrain_options, self._stop)
        return retrain_until(self.store, self.registry, models, until_id, self.retrain_options)

    # -- status -----------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """What the scheduler did last and how much data is waiting, JSON-ready.

        ``models`` is None when the active version's models are retrained; ``last_models`` is
        what the last run trained (name → config).
        """
        try:
            after: int | None = self.counted_after()
            pending: int | None = self.store.count(since_id=after or 0)
        except Exception:
            after = pending = None
        return {
            "running": self.running,
            "leading": self.leading,
            "busy": self._run_lock.locked(),
            "every_seconds": self.every_seconds,
            "after_events": self.after_events,
            "bootstrap_after_events": self.bootstrap_after_events,
            "models": None if self.models is None else list(self.models),
            "runs": self.runs,
            "failures": self.failures,
            "published": self.published,
            "last_run_at": self.last_run_at,
            "last_trigger": self.last_trigger,
            "last_reason": self.last_reason,
            "last_version": self.last_version,
            "last_error": self.last_error,
            "last_models": self.last_models,
            "last_trained_id": self._last_trained_id,
            "counted_after_id": after,
            "events_since_last_training": pending,
        }
