"""Every error and warning recengine raises, in one tree.

Callers catch :class:`RecengineError` to handle anything the library reports on purpose; the
command line turns it into a one-line message and an exit code, never a traceback. Each message
says what to fix.
"""

from __future__ import annotations

from functools import partial
from typing import Any

__all__ = [
    "DataError",
    "EngineError",
    "MissingExtraError",
    "ModelLoadError",
    "ModelNotFoundError",
    "NotFittedError",
    "NotSupportedError",
    "RecengineError",
    "RecengineWarning",
    "RegistryError",
    "StoreError",
    "UnknownIdError",
]


class RecengineError(Exception):
    """Base of every error recengine raises on purpose."""


class DataError(RecengineError, ValueError):
    """Input data that cannot be used, located as precisely as the format allows.

    Examples
    --------
    >>> str(DataError("'abc' is not a number", file="ratings.csv", row=17, column="rating"))
    "ratings.csv, row 17, column 'rating': 'abc' is not a number"
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.row = row
        self.column = column
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = []
        if self.file is not None:
            where.append(str(self.file))
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column {self.column!r}")
        return f"{', '.join(where)}: {self.message}" if where else self.message


class NotFittedError(RecengineError, ValueError, AttributeError):
    """A model was asked for results before ``fit`` was called.

    Examples
    --------
    >>> from recengine.models import Popularity
    >>> Popularity().recommend(["u1"])
    Traceback (most recent call last):
    ...
    recengine.errors.NotFittedError: Popularity is not fitted yet: call fit(data) first
    """


class UnknownIdError(RecengineError, KeyError):
    """A user or item id that the model or vocabulary has never seen."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


class NotSupportedError(RecengineError, NotImplementedError):
    """A model was asked for something its family cannot do (e.g. ratings from popularity)."""


class ModelNotFoundError(RecengineError, LookupError):
    """No model of that name, or no saved model at that path."""


class ModelLoadError(RecengineError, ValueError):
    """A saved model, or a registry version, that exists but cannot be served: a file missing,
    damaged or cut short, or arrays that disagree with each other or with the vocabularies.

    Loading refuses it whole (nothing of it is installed), naming the file and what is wrong,
    rather than serve wrong answers: the fix is to publish the model again, or to activate
    another version.

    Examples
    --------
    >>> str(ModelLoadError("item_factors_ has 10 rows, but the model has 30 items",
    ...                    path="registry/versions/v0002/wals"))
    'cannot load the model at registry/versions/v0002/wals: item_factors_ has 10 rows, but \
the model has 30 items'
    """

    def __init__(self, message: str, *, path: object) -> None:
        self.message = message
        self.path = str(path)
        super().__init__(f"cannot load the model at {self.path}: {message}")

    def __reduce__(self) -> tuple[Any, ...]:  # pickled whole (a heavy worker sends it back)
        return partial(type(self), path=self.path), (self.message,), self.__dict__


class StoreError(RecengineError):
    """The event store's database cannot be reached, opened or written.

    Examples
    --------
    >>> from recengine.store import EventStore
    >>> EventStore("mysql://me:secret@db/events")
    Traceback (most recent call last):
    ...
    recengine.errors.StoreError: unsupported database 'mysql' in mysql://me:***@db/events: \
use sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST:PORT/DATABASE
    """


class EngineError(RecengineError):
    """The distributed engine (Apache Spark) could not start, or one of its jobs failed for a
    reason that is not the data's: Java missing, a master that cannot be reached, an executor
    that ran out of memory. The message says what Spark reported, in one line.

    Examples
    --------
    >>> raise EngineError("Spark needs Java 17 or later, and no 'java' is on the PATH")
    Traceback (most recent call last):
    ...
    recengine.errors.EngineError: Spark needs Java 17 or later, and no 'java' is on the PATH
    """


class RegistryError(RecengineError, ValueError):
    """A registry operation that would break an invariant: deleting the active version,
    rolling back with no earlier version, publishing no model."""


class MissingExtraError(RecengineError, ImportError):
    """A feature whose optional packages are not installed: the message names the extra.

    The core install serves and trains the core models; text embeddings, PostgreSQL, tuning and
    plots come with extras (pyproject.toml), so a feature used without its extra says which one
    to install instead of failing on an import deep inside.

    Examples
    --------
    >>> raise MissingExtraError("tuning", extra="tune", reason="optuna is not installed")
    Traceback (most recent call last):
    ...
    recengine.errors.MissingExtraError: tuning needs the 'tune' extra \
(optuna is not installed): pip install 'recengine[tune]'
    """

    def __init__(self, feature: str, *, extra: str, reason: str) -> None:
        self.feature = feature
        self.extra = extra
        self.reason = reason
        super().__init__(f"{feature} needs the {extra!r} extra ({reason}): "
                         f"pip install 'recengine[{extra}]'")


    def __reduce__(self) -> tuple[Any, ...]:
        return (partial(type(self), extra=self.extra, reason=self.reason), (self.feature,),
                self.__dict__)


class RecengineWarning(UserWarning):
    """Base of every warning recengine issues."""
