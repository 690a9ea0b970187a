"""Group commit: concurrent writers share one durable transaction instead of one each.

A durable commit waits for the disk (an fsync on SQLite with ``synchronous=FULL``, a WAL flush on
PostgreSQL), and a database takes one writer at a time, so one transaction per API request caps
ingestion at the number of commits per second the disk allows, however small the events. Here a
caller queues its batch and waits; one caller at a time, the leader, takes everything queued,
commits it in one transaction and hands each caller its own result. While the leader waits for the
disk, the next callers queue up behind it, so the group grows with the load and no caller waits
for a timer.

Nothing is acknowledged early: a caller returns only once the transaction holding its batch has
committed. Each batch stays all or nothing. When a statement of a merged transaction fails, the
transaction is rolled back and each batch is committed on its own, so one bad batch fails only its
own caller. A failure to begin or to commit is not any one batch's doing (and a commit whose
outcome is unknown must not be repeated), so every caller of that group gets it.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

__all__ = ["BatchFailed", "GroupCommit"]

BatchT = TypeVar("BatchT")
ResultT = TypeVar("ResultT")


class BatchFailed(Exception):
    """Raised by a commit function when writing the batches failed before the commit.

    One of them may be at fault, so :class:`GroupCommit` commits each on its own; ``error`` is
    what a batch's caller gets when its batch fails alone.
    """

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass
class _Ticket(Generic[BatchT, ResultT]):
    """One caller's batch, and once committed (or failed), its outcome."""

    batch: BatchT
    done: bool = False
    result: ResultT | None = None
    error: BaseException | None = None

    def settle(self, result: ResultT | None = None, error: BaseException | None = None) -> None:
        self.result, self.error, self.done = result, error, True

    def outcome(self) -> ResultT:
        if self.error is not None:
            raise self.error
        return cast(ResultT, self.result)


class GroupCommit(Generic[BatchT, ResultT]):
    """Commit batches from many threads, each group of waiting batches in one transaction.

    ``commit(batches)`` writes and commits the batches in one transaction and returns one result
    per batch, in order; it raises :class:`BatchFailed` when a batch's statements failed, and
    anything else for a failure that concerns the whole transaction.

    Examples
    --------
    >>> def commit(batches):  # one transaction for all of them, in a real store
    ...     return [len(batch) for batch in batches]
    >>> GroupCommit(commit).submit(["e1", "e2"])
    2
    """

    def __init__(self, commit: Callable[[Sequence[BatchT]], list[ResultT]]) -> None:
        self._commit = commit
        self._turn = threading.Condition()
        self._queue: list[_Ticket[BatchT, ResultT]] = []
        self._leading = False

    def submit(self, batch: BatchT) -> ResultT:
        """Commit ``batch`` (with whatever else is waiting) and return its result once durable."""
        ticket: _Ticket[BatchT, ResultT] = _Ticket(batch)
        with self._turn:
            self._queue.append(ticket)
            while self._leading and not ticket.done:
                self._turn.wait()
            if ticket.done:  # a leader committed it
                return ticket.outcome()
            self._leading = True
            group, self._queue = self._queue, []
        try:
            self._lead(group)
        finally:
            with self._turn:
                self._leading = False
                self._turn.notify_all()
        return ticket.outcome()

    def _lead(self, group: list[_Ticket[BatchT, ResultT]]) -> None:
        """Commit the group and settle every ticket in it, whatever happens."""
        try:
            self._commit_group(group)
        except BaseException as exc:  # an interrupt: nobody may wait for a leader that left
            for ticket in group:
                if not ticket.done:
                    ticket.settle(error=_own_copy(exc))
            raise

    def _commit_group(self, group: list[_Ticket[BatchT, ResultT]]) -> None:
        """One transaction for the group; if a batch's statements failed, one for each batch."""
        try:
            results = self._commit([t.batch for t in group])
        except BatchFailed as failed:
            if len(group) == 1:
                group[0].settle(error=failed.error)
            else:
                for ticket in group:
                    self._commit_alone(ticket)
        except Exception as exc:
            for ticket in group:
                ticket.settle(error=_own_copy(exc))
        else:
            for ticket, result in zip(group, results, strict=True):
                ticket.settle(result)

    def _commit_alone(self, ticket: _Ticket[BatchT, ResultT]) -> None:
        try:
            ticket.settle(self._commit([ticket.batch])[0])
        except BatchFailed as failed:
            ticket.settle(error=failed.error)
        except Exception as exc:
            ticket.settle(error=exc)


def _own_copy(error: BaseException) -> BaseException:
    """A copy for one caller: one exception raised in several threads would mix their tracebacks."""
    twin = copy.copy(error)
    twin.__cause__, twin.__suppress_context__ = error.__cause__, error.__suppress_context__
    return twin
