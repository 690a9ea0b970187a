"""Heavy requests computed in other processes, so that they never hold the server's interpreter.

Computed in worker threads, heavy requests (batches, reasons, constraints, rules) shared the
server process's interpreter lock with its event loop: during a flood of them a light request
waited for the lock several times, each wait up to a switch interval, and its p99 stayed at
23 ms against a 20 ms target (docs/benchmarks.md). :class:`HeavyWorkers` computes them in
``processes`` child processes instead, each with its own interpreter and its own
:class:`~recengine.serving.state.ServingState`, built from the server's
:class:`~recengine.serving.state.Recipe` (the same store, registry, bell and options) as each
process of ``recengine serve --workers N`` builds its own:

- A worker follows the deployment as a server process does: before answering it hears the bell
  and reads what is new in the store (events, catalogue writes); it polls every
  ``sync_seconds`` and loads a version activated elsewhere. Each request also carries what its
  server serves (:meth:`~recengine.serving.state.ServingState.serves`: the version, and where
  live histories start), and a worker serving anything else follows it first, so a heavy answer
  is the one the server's own thread would have given.
- A request is a *job*: a module-level function ``job(state, *args)`` that returns the answer's
  finished JSON (bytes), and its arguments, sent through a pipe (pickled: both ends are this
  server). The bytes come back as they are; an error is raised again in the server, so the
  application's handlers answer it as they would from a thread (a 4xx naming the field).
- Workers run at a lower priority (``nice``): when both want a core, the light requests win.
- A worker that dies (killed, out of memory, a crash in native code) is noticed at once, as its
  pipe closes: the request it was computing gets a :class:`WorkerLostError` (503) and a new
  worker takes its place. A worker leaves when its server does: the server's end of the pipe
  closes, and the worker's next read ends it.

Each worker computes one request at a time; the heavy budget
(:class:`~recengine.serving.limits.HeavyBudget`) lets at most ``processes`` in at once and
queues the rest. Workers are spawned, not forked: a fork would copy the server's threads' locks
and its database connections. Each holds a copy of the served version (its memory, once more).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import multiprocessing
import os
import pickle
import queue
import signal
import threading
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from recengine.errors import ModelLoadError, RecengineError
from recengine.serving.state import Poller, Recipe

__all__ = ["NICENESS", "HeavyWorkers", "Job", "WorkerLostError"]

log = logging.getLogger(__name__)

#: How much lower a worker's scheduling priority is than its server's.
NICENESS = 10

#: A heavy request: ``job(state, *args)`` gives the answer's JSON. Module-level, so that it is
#: sent by name.
Job = Callable[..., bytes]
#: What a server serves (:meth:`~recengine.serving.state.ServingState.serves`).
Serves = tuple[str | None, int]


class WorkerLostError(RecengineError):
    """The process computing a heavy request stopped before it answered (maps to 503); a new
    one has taken its place, so the request may be sent again."""


class _Worker:
    """One worker process and the server's end of its pipe."""

    def __init__(self, process: BaseProcess, conn: Connection) -> None:
        self.process, self.conn = process, conn

    def ask(self, message: tuple[Job, Sequence[Any], Serves]) -> tuple[str, Any]:
        """Send one job, wait for its reply; ``EOFError`` or ``OSError`` if the worker died."""
        self.conn.send(message)
        reply: tuple[str, Any] = self.conn.recv()
        return reply

    def stop(self, timeout: float = 2.0) -> int | None:
        """Close the pipe (the worker leaves after its current job), wait, then kill; the
        exit code."""
        self.conn.close()
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout)
        return self.process.exitcode


class HeavyWorkers:
    """``processes`` worker processes computing heavy requests over states built from
    ``recipe`` (see the module).

    :meth:`call` blocks: the server calls it from a worker thread, whose wait holds no lock.
    Workers start with :meth:`start`, or on the first call; :meth:`close` stops them.
    """

    def __init__(self, recipe: Recipe, processes: int, *, sync_seconds: float = 1.0,
                 niceness: int = NICENESS) -> None:
        if processes < 1:
            raise ValueError(f"processes must be at least 1, got {processes}")
        self.recipe = recipe
        self.processes = processes
        self.sync_seconds = sync_seconds
        self.niceness = niceness
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self._running: list[_Worker] = []
        self._lock = threading.Lock()
        self._started = self._closed = False

    def start(self) -> None:
        """Spawn the workers, once; each loads the served version before its first answer."""
        with self._lock:
            if self._started:
                return
            self._started = True
            for _ in range(self.processes):
                self._idle.put(self._spawn())

    def pids(self) -> list[int]:
        """The workers' process ids (those running now)."""
        with self._lock:
            return [w.process.pid for w in self._running if w.process.pid is not None]

    def call(self, job: Job, args: Sequence[Any], serves: Serves) -> bytes:
        """``job(state, *args)`` in an idle worker whose state follows ``serves`` (what the
        server serves); the job's error is raised here. A worker that dies meanwhile is replaced
        and :class:`WorkerLostError` raised."""
        self.start()
        worker = self._idle.get()
        back: _Worker | None = worker  # what goes back to the idle ones
        try:
            kind, value = worker.ask((job, tuple(args), serves))
        except (EOFError, OSError):
            code = worker.stop()
            back = self._replace(worker)
            raise WorkerLostError(
                f"the process computing heavy requests stopped (exit code {code}) before "
                "answering; a new one is starting: retry") from None
        finally:
            if back is not None:
                self._idle.put(back)
        if kind == "error":
            raise value
        return bytes(value)

    def close(self) -> None:
        """Stop every worker: those computing finish their job first (a few seconds at most)."""
        with self._lock:
            self._closed = True
            running, self._running = self._running, []
        for worker in running:
            worker.stop()

    def _replace(self, dead: _Worker) -> _Worker | None:
        """A new worker in ``dead``'s place; None once the workers are closed."""
        with self._lock:
            if dead in self._running:
                self._running.remove(dead)
            return None if self._closed else self._spawn()

    def _spawn(self) -> _Worker:
        """A new worker (under the lock)."""
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        process = context.Process(target=_work, name="recengine-heavy", daemon=True,
                                  args=(theirs, self.recipe, self.sync_seconds, self.niceness))
        process.start()
        theirs.close()  # the worker's end lives in the worker only: its death closes the pipe
        worker = _Worker(process, ours)
        self._running.append(worker)
        return worker


def _work(conn: Connection, recipe: Recipe, sync_seconds: float, niceness: int) -> None:
    """A worker: build the state, then answer jobs until the server closes the pipe."""
    from recengine.serving.app import pin_compute_threads  # and the routes' jobs

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the server, which stops us
    with contextlib.suppress(OSError):  # its name in ps and top (Linux)
        Path("/proc/self/comm").write_text("recengine-heavy")
    os.nice(niceness)
    pin_compute_threads()  # as in the server's processes
    state = recipe.build()
    try:
        state.load_current()
    except ModelLoadError as exc:  # the server serves what it had; each job names its version
        log.warning("heavy worker: %s", exc)
    poller = Poller(state, sync_seconds)
    poller.start()
    gc.collect()
    gc.freeze()  # what lives as long as the process, out of the collector's walks
    while True:
        try:
            job, args, serves = conn.recv()
        except (EOFError, OSError):
            break  # the server is gone
        reply: tuple[str, bytes | Exception]
        try:
            state.follow(serves)  # the server swapped first, say: answer from what it serves
            reply = ("done", job(state, *args))
        except Exception as exc:
            reply = ("error", _portable(exc))
        try:
            conn.send(reply)
        except OSError:
            break
    poller.stop()


def _portable(exc: Exception) -> Exception:
    """``exc`` if it survives the pipe, else a ``RuntimeError`` saying what it was; an error
    that is not one of ours carries the worker's traceback (the server's log shows it)."""
    if not isinstance(exc, RecengineError):
        exc.add_note(f"in the heavy worker (pid {os.getpid()}):\n{traceback.format_exc()}")
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
    return exc
