"""One retrain in a child process, so that training never holds the server's interpreter.

Trained in a thread of the server, a run shared the GIL with the requests: under load, p99
rose from about 8 ms to 195 ms for the length of the run (docs/benchmarks.md). The child is
*spawned*, not forked, because a forked copy of a server inherits its threads' locks and its
open database connections. It opens the store and the registry by URL and path, takes the
snapshot of the events up to the id it is given (reading and hashing every event: seconds of
work at 400,000 events), trains on them, and publishes through the registry, whose file lock
and atomic renames hold across processes. It runs at a lower priority (``nice``), so the
requests come first when both want the two cores. The parent only reads the outcome and swaps
the new version in.

Stopping kills the child, and so does the server's death, even by SIGKILL (on Linux, through
the kernel's parent-death signal): an orphaned run must not publish and activate a version after
its server is gone. A run cut short leaves at most an unlisted staging folder in the registry
(see :mod:`recengine.store.registry`), and its events stay in the store for the next.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import threading
import traceback
from collections.abc import Mapping
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, NamedTuple

from recengine.pipeline.retrain import retrain_store
from recengine.store.events import EventStore
from recengine.store.registry import ModelRegistry

__all__ = ["ChildFailed", "Outcome", "retrain_in_child", "retrain_until"]

#: How much lower the child's scheduling priority is than the server's.
NICENESS = 10


#: prctl's option for the signal a process gets when its parent dies (linux/prctl.h).
_PR_SET_PDEATHSIG = 1


class Outcome(NamedTuple):
    """What a run in the child did: the gate's reason, and the version if it was activated."""

    reason: str
    activated: bool
    version: str | None


class ChildFailed(Exception):
    """The run failed in the child; ``str()`` is the child's "Type: message"."""

    def __init__(self, summary: str, details: str = "") -> None:
        super().__init__(summary)
        self.details = details


def retrain_until(store: EventStore, registry: ModelRegistry,
                  models: Mapping[str, Mapping[str, Any]], until_id: int,
                  options: Mapping[str, Any]) -> Outcome:
    """:func:`~recengine.pipeline.retrain.retrain_store`: a retrain on the events up to
    ``until_id``, whose snapshot goes into the manifest."""
    result = retrain_store(store, registry, until_id=until_id, models=models, **options)
    return Outcome(result.reason, result.activated, result.version)


def retrain_in_child(store_url: str, registry_root: str | Path,
                     models: Mapping[str, Mapping[str, Any]], until_id: int,
                     options: Mapping[str, Any], stop: threading.Event,
                     poll_seconds: float = 0.2) -> Outcome:
    """:func:`retrain_until` in a child process.

    Raises :class:`ChildFailed` when the run fails there, and ``InterruptedError`` when
    ``stop`` is set first (the child is killed).
    """
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(
        target=_run, name="recengine-retrain", daemon=True,
        args=(sender, os.getpid(), store_url, str(registry_root),
              {k: dict(v) for k, v in models.items()}, until_id, dict(options)))
    child.start()
    sender.close()
    try:
        while not receiver.poll(poll_seconds):
            if stop.is_set():
                child.kill()
                raise InterruptedError("retraining stopped: the child process was killed")
            if not child.is_alive() and not receiver.poll():
                raise ChildFailed(f"the retraining process died (exit code {child.exitcode})")
        kind, payload = receiver.recv()
    finally:
        receiver.close()
        child.join(timeout=5)
        if child.is_alive():
            child.kill()
            child.join()
    if kind == "failed":
        raise ChildFailed(*payload)
    return Outcome(*payload)


def _run(sender: Connection, parent: int, store_url: str, registry_root: str,
         models: dict[str, dict[str, Any]], until_id: int, options: dict[str, Any]) -> None:
    """The child: train, then send ("done", Outcome fields) or ("failed", (summary, trace))."""
    _die_with(parent)
    os.nice(NICENESS)
    try:
        with EventStore(store_url) as store:
            outcome = retrain_until(store, ModelRegistry(registry_root), models, until_id,
                                    options)
        sender.send(("done", tuple(outcome)))
    except BaseException as exc:  # everything goes back to the parent, as text
        sender.send(("failed", (f"{type(exc).__name__}: {exc}", traceback.format_exc())))
    finally:
        sender.close()


def _die_with(parent: int) -> None:
    """Have the kernel kill this process when ``parent`` dies (Linux; elsewhere a no-op)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the signal was set
        os._exit(1)
