"""What an event log holds: event types, their valid values, and how each becomes feedback.

An event is ``(user_id, item_id, event_type, value, timestamp)``. Each event type says whether it
is explicit (a rating) or implicit (a view, a play, a purchase...), which values are valid, and how
its value turns into confidence (see :mod:`recengine.data.weighting`). The defaults below cover the
common types; a project passes its own :class:`EventSchema` (or a JSON file of one) for others.
"""

from __future__ import annotations

import json
import re
from enum import StrEnum
from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from recengine.errors import DataError

__all__ = [
    "EVENT_COLUMNS",
    "UNSTORABLE",
    "EventSchema",
    "EventType",
    "FeatureKind",
    "Feedback",
    "Transform",
]

#: Columns of a validated event table, in order.
EVENT_COLUMNS = ("user_id", "item_id", "event_type", "value", "timestamp")

#: Characters no database stores as text, refused in every id and event field: NUL (PostgreSQL
#: refuses it in text) and UTF-16 surrogates (JSON's ``"\\ud800"`` escape decodes to one when it
#: is not half of a pair, and UTF-8, SQLite, PostgreSQL and pandas' Arrow strings cannot hold it).
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class Feedback(StrEnum):
    """Whether an event states a preference (a rating) or only reveals one (a view, a play)."""

    EXPLICIT = "explicit"
    IMPLICIT = "implicit"


class Transform(StrEnum):
    """How an implicit event's value becomes its contribution ``f(value)`` to confidence.

    - ``one``: presence only (a click; a purchase whose value is a price).
    - ``identity``: the value itself (fraction watched).
    - ``log1p``: ``log(1 + value)``, which tames heavy-tailed counts (plays).
    - ``median``: ``min(value / median, 1)``, with the median of that event type's values: time on
      page, where anything past a typical read counts as a full read.
    """

    ONE = "one"
    IDENTITY = "identity"
    LOG1P = "log1p"
    MEDIAN = "median"


class FeatureKind(StrEnum):
    """Kinds of item and user features, so encoders need not guess from dtypes."""

    CATEGORICAL = "categorical"
    MULTI = "multi"  # a list of labels: genres, tags, amenities
    NUMERIC = "numeric"
    DATE = "date"
    TEXT = "text"


class EventType(BaseModel):
    """Validation rules and weighting of one event type."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    feedback: Feedback = Feedback.IMPLICIT
    value_required: bool = False
    default_value: float = Field(1.0, description="Value used when an optional value is absent.")
    min_value: float | None = 0.0
    max_value: float | None = None
    transform: Transform = Transform.ONE
    alpha: float = Field(1.0, ge=0, description="Weight of this event type in the confidence.")

    @model_validator(mode="after")
    def _range_is_ordered(self) -> Self:
        if (self.min_value is not None and self.max_value is not None
                and self.min_value > self.max_value):
            raise ValueError(f"min_value {self.min_value} exceeds max_value {self.max_value}")
        return self


def _default_event_types() -> dict[str, EventType]:
    explicit = Feedback.EXPLICIT
    return {
        "rating": EventType(feedback=explicit, value_required=True, min_value=1, max_value=5,
                            transform=Transform.IDENTITY),
        "view": EventType(),
        "click": EventType(),
        "play": EventType(transform=Transform.LOG1P),
        "dwell": EventType(value_required=True, transform=Transform.MEDIAN),
        "watch": EventType(value_required=True, max_value=1, transform=Transform.IDENTITY),
        "add-to-cart": EventType(alpha=2.0),
        "purchase": EventType(alpha=4.0),
        "booking": EventType(alpha=4.0),
    }


class EventSchema(BaseModel):
    """The event types a log may contain.

    Examples
    --------
    >>> schema = EventSchema()
    >>> schema.event_types["play"].transform
    <Transform.LOG1P: 'log1p'>
    >>> schema.with_rating_range(0.5, 5).event_types["rating"].min_value
    0.5
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_types: dict[str, EventType] = Field(default_factory=_default_event_types)

    def with_rating_range(self, low: float, high: float) -> EventSchema:
        """A copy whose ``rating`` type accepts ``low``..``high`` (datasets differ)."""
        rating = self.event_types["rating"].model_copy(update={"min_value": low,
                                                                "max_value": high})
        return self.model_copy(update={"event_types": {**self.event_types, "rating": rating}})

    @classmethod
    def from_file(cls, path: str | Path) -> EventSchema:
        """Read a schema from JSON: ``{"event_types": {"like": {"alpha": 2}}}``."""
        path = Path(path)
        try:
            return cls.model_validate(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"cannot read event schema: {exc}", file=str(path)) from None
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            raise DataError(f"{first['msg']}", file=str(path), column=field) from None
