"""Continuous retraining: a background thread that retrains on a schedule or when data arrives.

:class:`RetrainScheduler` runs one daemon thread that wakes up every ``poll_seconds`` (by default
``min(every_seconds, 1.0)``) and starts a :func:`~recengine.pipeline.retrain.retrain` when

- **the schedule is due**: ``every_seconds`` have passed since the last run (or since start), or
- **enough data arrived**: ``store.count(since_id=last_trained_id) >= after_events``.

A run takes :meth:`EventStore.snapshot` first and trains on ``store.dataset(until_id=...)`` of that
snapshot, so the manifest records exactly the events the models saw, and events appended during
the run count towards the next one. When the gate activates the new version, ``on_published``
gets its id (the server passes its state's lock-protected hot swap), so serving never waits for
training. One run at a time; a failing run is logged and kept in ``last_error``, counts as a run
for both triggers (no retry storm) and never kills the thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from recengine.pipeline.retrain import retrain
from recengine.store.events import EventStore
from recengine.store.registry import ModelRegistry

__all__ = ["RetrainScheduler"]

log = logging.getLogger(__name__)


class RetrainScheduler:
    """Retrain ``models`` in a background thread every ``every_seconds`` or ``after_events``."""

    def __init__(
        self,
        store: EventStore,
        registry: ModelRegistry,
        *,
        models: Mapping[str, Mapping[str, Any]],
        every_seconds: float | None,
        after_events: int | None,
        on_published: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
        poll_seconds: float | None = None,
        retrain_options: Mapping[str, Any] | None = None,
    ) -> None:
        if every_seconds is None and after_events is None:
            raise ValueError("set every_seconds, after_events or both")
        if every_seconds is not None and not every_seconds > 0:
            raise ValueError(f"every_seconds must be positive, got {every_seconds}")
        if after_events is not None and after_events < 1:
            raise ValueError(f"after_events must be at least 1, got {after_events}")
        if not models:
            raise ValueError("no models to retrain")
        self.store = store
        self.registry = registry
        self.models = {name: dict(config) for name, config in models.items()}
        self.every_seconds = every_seconds
        self.after_events = after_events
        self.on_published = on_published
        self.clock = clock
        self.poll_seconds = poll_seconds or min(every_seconds or 1.0, 1.0)
        self.retrain_options = dict(retrain_options or {})
        self._run_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_trained_id: int | None = None
        self._last_start = clock()
        self.runs = 0
        self.failures = 0
        self.last_run_at: str | None = None
        self.last_reason: str | None = None
        self.last_version: str | None = None
        self.last_trigger: str | None = None
        self.last_error: str | None = None

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        """Start the thread; the data trigger counts events stored from now on."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        if self._last_trained_id is None:
            self._last_trained_id = self.store.last_id()
        self._last_start = self.clock()
        self._thread = threading.Thread(target=self._loop, name="recengine-retrain", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the thread to stop and wait up to ``timeout`` s (a running fit is not cut short)."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("retraining thread still busy after %.1f s; left as a daemon", timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- triggers ---------------------------------------------------------------------------
    def due(self) -> str | None:
        """Which trigger fires now ("schedule" or "events"), or None."""
        if self.every_seconds is not None and self.clock() - self._last_start >= self.every_seconds:
            return "schedule"
        if self.after_events is not None:
            since = self._last_trained_id or 0
            if self.store.count(since_id=since) >= self.after_events:
                return "events"
        return None

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
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
                snapshot = self.store.snapshot()
                self._last_trained_id = int(snapshot["last_id"])
                dataset = self.store.dataset(until_id=snapshot["last_id"])
                result = retrain(dataset, self.registry, models=self.models,
                                 data_snapshot=snapshot, **self.retrain_options)
                self.last_reason = result.reason
                if result.activated and result.version is not None:
                    self.last_version = result.version
                    self.on_published(result.version)
                self.last_error = None
                log.info("retrain (%s): %s", trigger, result.reason)
            except Exception as exc:
                log.exception("retrain (%s) failed", trigger)
                self.last_error = f"{type(exc).__name__}: {exc}"
                self.failures += 1
            finally:
                self.runs += 1
                self.last_run_at = datetime.now(UTC).isoformat(timespec="seconds")
            return True
        finally:
            self._run_lock.release()

    # -- status -----------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """What the scheduler did last and how much data is waiting, JSON-ready."""
        try:
            pending: int | None = self.store.count(since_id=self._last_trained_id or 0)
        except Exception:
            pending = None
        return {
            "running": self.running,
            "busy": self._run_lock.locked(),
            "every_seconds": self.every_seconds,
            "after_events": self.after_events,
            "models": list(self.models),
            "runs": self.runs,
            "failures": self.failures,
            "last_run_at": self.last_run_at,
            "last_trigger": self.last_trigger,
            "last_reason": self.last_reason,
            "last_version": self.last_version,
            "last_error": self.last_error,
            "last_trained_id": self._last_trained_id,
            "events_since_last_training": pending,
        }
