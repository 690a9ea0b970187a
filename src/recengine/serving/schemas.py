"""Request and response models: the API's only wire format."""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, Self, TypeVar

import numpy as np
import pandas as pd
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)

from recengine.data.schema import UNSTORABLE, FeatureKind
from recengine.data.validation import MAX_DEVICE_LENGTH, parse_timestamps
from recengine.errors import DataError

__all__ = [
    "UNION_TAGS", "AudienceBatch", "AudienceList", "AudienceQuery", "AudienceUser",
    "BatchRecommendations", "Device", "Error", "EventBatch", "EventIn", "EventMinute", "EventOut",
    "EventsAccepted", "EventsIn", "EventsQuery", "HistoryQuery", "Id", "IssueOut", "ItemIn",
    "ItemOut", "ItemSummary", "Listing", "LoggedError", "MetricsHistory", "ModelList",
    "ModelVersion", "Page", "PageQuery", "RecommendationBatch", "RecommendationList",
    "RecommendationQuery", "RecommendedItem", "RequestMinuteOut", "SessionQuery",
    "SessionRecommendations", "SimilarBatch", "SimilarList", "SimilarQuery", "Status", "Text",
    "Timestamp", "UserEvents", "UserIn", "UserOut", "UserSummary", "plain_text",
]


def plain_text(value: str) -> str:
    """``value`` when every store can hold it and every response can carry it; else ValueError.

    PostgreSQL refuses NUL in text (the store answered 503, "retry later", for a permanent
    error), and a lone surrogate cannot be encoded as UTF-8 by SQLite, PostgreSQL or the JSON
    response (a 500). Checked here, at the API's edge, they are a 422 naming the field, the same
    on every store.

    >>> plain_text("u-1")
    'u-1'
    >>> plain_text("u\\x00")
    Traceback (most recent call last):
    ...
    ValueError: holds NUL at offset 1: text must be valid Unicode without NUL
    """
    bad = UNSTORABLE.search(value)
    if bad is not None:
        char = bad.group()
        what = "NUL" if char == "\x00" else f"a lone UTF-16 surrogate U+{ord(char):X}"
        raise ValueError(f"holds {what} at offset {bad.start()}: text must be valid Unicode "
                         "without NUL")
    return value


#: A string checked by :func:`plain_text`: every id, and every string the store keeps.
Text = Annotated[str, AfterValidator(plain_text)]


#: The device a request or an event comes from (mobile, tv, ...): context that a model such as
#: the hybrid reads; as long as the event store takes it.
Device = Annotated[Text, Field(max_length=MAX_DEVICE_LENGTH, description=(
    "The device the request (or event) comes from, such as mobile or tv: context that models "
    "which read it (the hybrid) rank by; the others ignore it."))]


def _number_as_text(value: Any) -> Any:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


#: A user or item id: a string (:data:`Text`), or an integer taken as its decimal string. One
#: type, not ``str | int``: pydantic names the member of a union in each error's location
#: (``user_id.int``), and the error should name the field.
Id = Annotated[Text, BeforeValidator(_number_as_text),
               WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "integer"}]})]


def _feature_value(value: Any) -> Any:
    """A feature's value: a scalar, or a flat list of scalars, its strings :func:`plain_text`.

    Dicts are left to the store, which refuses them naming the feature; nested lists are refused
    here, as no feature kind reads them and walking them would recurse as deep as the JSON.
    """
    for part in value if isinstance(value, list) else (value,):
        if isinstance(part, str):
            plain_text(part)
        elif isinstance(part, list) and isinstance(value, list):
            raise ValueError("a feature's list holds numbers, strings or dates, not lists")
    return value


FeatureValue = Annotated[Any, AfterValidator(_feature_value)]


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """Every list response: ``{data: [...], count: N}``, the count derived from the data."""

    data: list[T]
    count: int

    @classmethod
    def of(cls, data: list[T]) -> Self:
        return cls(data=data, count=len(data))


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RecommendedItem(BaseModel):
    item_id: str
    score: float
    source: str
    reason: str | None = None


class _Ranked(BaseModel):
    """What every list of recommendations carries."""

    model_version: str | None = Field(
        description="The registry version that answered; null while none is active.")
    items: list[RecommendedItem]
    count: int
    reason: str | None = Field(
        None, description="Why the list is what it is when no version is active: popularity "
        "over the stored events, or empty because the store holds none.")


class RecommendationList(_Ranked):
    user_id: str


class SessionRecommendations(_Ranked):
    """A user's list, for an anonymous session (no user), with the session's unknown items."""

    unknown_items: list[str] = Field(description=(
        "The session's item ids the model does not know (not in the catalogue it was trained "
        "on), each once: left out of the session, which is answered from the rest."))


class RecommendationQuery(BaseModel):
    """The query of ``GET /v1/users/{id}/recommendations``, validated as one model (per-parameter
    validation cost FastAPI more than the answer)."""

    k: int = Field(10, ge=1)
    model: Text | None = None
    constraint: Text | None = None
    rules: Text | None = Field(None, description=(
        "Business rules as a JSON list, as in the batch request's rules"))
    explain: bool = False
    offset: int = Field(0, ge=0)
    device: Device | None = None


class RecommendationBatch(_In):
    """Recommendations for several users, each with the options of the single request."""

    users: list[Text] = Field(min_length=1)
    k: int = Field(10, ge=1)
    offset: int = Field(0, ge=0)
    model: Text | None = None
    constraint: Text | None = None
    rules: list[dict[str, Any]] = Field(default_factory=list, description=(
        "Business rules for this request, e.g. {\"kind\": \"boost\", \"field\": \"region\", "
        "\"value\": \"Coast\", \"factor\": 2}: kinds exclude, require, boost, freshness, "
        "max_per, mmr, pin."))
    explain: bool = False
    device: Device | None = None


BatchRecommendations = Page[RecommendationList]


def _timestamp_text(value: Any) -> Any:
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


#: A time: unix seconds, or an ISO 8601 string, as events take it (one type, as :data:`Id`).
Timestamp = Annotated[Text, BeforeValidator(_timestamp_text),
                      WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "number"}]})]


class SessionQuery(_In):
    """An anonymous session: the items a visitor chose, oldest first, and the options of the
    user's request (an empty ``model`` or ``constraint`` is none).

    The session is the visitor's whole history: order models (markov) read its order, the
    others its items; its items are not recommended back.
    """

    items: list[Id] = Field(min_length=1, description="The session's item ids, oldest first.")
    event_types: list[Text] | None = Field(None, description=(
        "Each item's event type (view, click, book, ...), as many as items."))
    timestamps: list[Timestamp] | None = Field(None, description=(
        "Each item's time, unix seconds or ISO 8601, as many as items and never decreasing."))
    k: int = Field(10, ge=1)
    offset: int = Field(0, ge=0)
    model: Text | None = None
    constraint: Text | None = None
    rules: list[dict[str, Any]] = Field(default_factory=list, description=(
        "Business rules for this request, as in the batch request's rules."))
    explain: bool = False
    device: Device | None = None

    @field_validator("event_types", "timestamps")
    @classmethod
    def _one_per_item(cls, values: list[Any] | None, info: ValidationInfo) -> list[Any] | None:
        items = info.data.get("items")
        if values is not None and items is not None and len(values) != len(items):
            raise ValueError(f"{len(values)} {info.field_name} for {len(items)} items: give "
                             "one per item, or none")
        return values

    def seconds(self) -> list[int] | None:
        """:attr:`timestamps` as unix seconds; a :class:`DataError` names the first bad one."""
        if self.timestamps is None:
            return None
        parsed = parse_timestamps(pd.Series(self.timestamps, dtype=object))
        bad = np.flatnonzero(parsed.isna().to_numpy())
        if len(bad):
            raise DataError(f"{self.timestamps[bad[0]]!r} is not a time: give unix seconds or "
                            "ISO 8601", column=f"timestamps.{bad[0]}")
        seconds = parsed.to_numpy().astype("datetime64[s]").astype(np.int64)
        back = np.flatnonzero(np.diff(seconds) < 0)
        if len(back):
            raise DataError(f"timestamps go back in time at item {back[0] + 1}: items are "
                            "oldest first", column=f"timestamps.{back[0] + 1}")
        return [int(t) for t in seconds]


class SimilarItem(BaseModel):
    item_id: str
    score: float


class SimilarList(BaseModel):
    item_id: str
    model_version: str
    items: list[SimilarItem]
    count: int


class SimilarQuery(BaseModel):
    k: int = Field(10, ge=1)


class SimilarBatch(_In):
    items: list[Text] = Field(min_length=1)
    k: int = Field(10, ge=1)


SimilarBatchOut = Page[SimilarList]


class AudienceUser(BaseModel):
    user_id: str
    score: float


class AudienceList(BaseModel):
    items: list[str]
    model_version: str
    users: list[AudienceUser]
    count: int


class AudienceQuery(BaseModel):
    n: int = Field(100, ge=1)


class AudienceBatch(_In):
    items: list[Text] = Field(min_length=1)
    n: int = Field(100, ge=1)
    combine: bool = False


AudienceBatchOut = Page[AudienceList]


class EventIn(_In):
    """One event; values are checked by the event store's validation, strings here
    (:func:`plain_text`), so a batch holding a NUL or a lone surrogate is refused whole on every
    store (a 422 naming ``events.{index}.{field}``) before anything is stored."""

    user_id: Id
    item_id: Id
    event_type: Text | None = None
    value: float | Text | None = None
    timestamp: float | Text | None = None
    event_id: Text | None = None
    device: Device | None = None


class EventBatch(_In):
    events: list[EventIn] = Field(min_length=1)


def _one_or_batch(value: Any) -> str:
    return "batch" if isinstance(value, dict) and "events" in value else "event"


#: The tags of :data:`EventsIn`, which pydantic puts in each error's location; the error
#: handler leaves them out of the field it names (``events.1.user_id``, not
#: ``batch.events.1.user_id``).
UNION_TAGS = frozenset({"event", "batch"})

#: ``POST /v1/events``'s body, one event or ``{events: [...]}``: chosen by the ``events`` key,
#: so a bad batch is reported as a batch, not also as a single event missing its ids.
EventsIn = Annotated[Annotated[EventIn, Tag("event")] | Annotated[EventBatch, Tag("batch")],
                     Discriminator(_one_or_batch)]


class IssueOut(BaseModel):
    row: int
    field: str | None
    problem: str
    message: str


class EventsAccepted(BaseModel):
    accepted: int
    duplicates: int
    rejected: int
    issues: list[IssueOut]


class _FeaturesIn(_In):
    features: dict[Text, FeatureValue] = Field(default_factory=dict)
    kinds: dict[Text, FeatureKind] = Field(default_factory=dict, description=(
        "The kind of features, kept by the store for every item (user): e.g. {\"listed_date\": "
        "\"date\", \"description\": \"text\"} makes date comparisons and text search "
        "available in constraints. Features without a recorded kind are guessed from values."))


class _FeaturesOut(BaseModel):
    features: dict[str, Any]
    kinds: dict[str, FeatureKind] = Field(default_factory=dict)


class ItemIn(_FeaturesIn):
    pass


class ItemOut(_FeaturesOut):
    item_id: str


class UserIn(_FeaturesIn):
    pass


class UserOut(_FeaturesOut):
    user_id: str


class Deleted(BaseModel):
    id: str
    deleted: bool
    events_deleted: int = 0


class ModelVersion(BaseModel):
    version: str
    created_at: str | None = None
    models: list[str]
    active: bool
    notes: str = ""
    metrics: dict[str, Any] = Field(default_factory=dict)


ModelList = Page[ModelVersion]


class Activated(BaseModel):
    model_version: str


class Error(BaseModel):
    """Every error's body: what went wrong and, for bad input, the field it names.

    A 422 for a request that does not match its schema also lists pydantic's ``errors``; a
    refused batch of events carries the counts of ``EventsAccepted`` beside these.
    """

    detail: str
    field: str | None = Field(None, description=(
        "The input that was refused, dotted (``events.1.user_id``), or ``body``; null or absent "
        "when none is named."))
    errors: list[dict[str, Any]] | None = Field(None, description=(
        "Each validation error, where the request did not match its schema."))


class Status(BaseModel):
    status: str
    model_version: str | None = None


# -- browsing: paged users, items and histories; activity over time (the console's read API) --

#: The most rows one page of a list holds.
MAX_PAGE = 1000


class PageQuery(BaseModel):
    """A page of a list in id order: ids containing ``q`` (any case), ``limit`` from ``offset``."""

    q: Text = Field("", max_length=200, description="Only ids containing this text (any case).")
    limit: int = Field(50, ge=1, le=MAX_PAGE)
    offset: int = Field(0, ge=0, le=2**31 - 1)


class Listing(BaseModel, Generic[T]):
    """A page of a list: ``data``, its ``count``, the ``total`` matching and where it starts."""

    data: list[T]
    count: int
    total: int = Field(description="How many match in all, over every page.")
    offset: int

    @classmethod
    def of(cls, data: list[T], total: int, offset: int) -> Self:
        return cls(data=data, count=len(data), total=total, offset=offset)


class UserSummary(BaseModel):
    """A user with events or features in the store."""

    user_id: str
    events: int
    last_event_at: str | None = Field(description="The time of the latest event, ISO 8601.")


class ItemSummary(BaseModel):
    """An item with events or features in the store; ``deleted`` ones are never recommended."""

    item_id: str
    events: int
    last_event_at: str | None
    deleted: bool


class EventsQuery(BaseModel):
    """A page of a user's history, oldest first (``order=desc``: newest first)."""

    limit: int = Field(50, ge=1, le=MAX_PAGE)
    offset: int = Field(0, ge=0, le=2**31 - 1)
    order: Literal["asc", "desc"] = "asc"


class EventOut(BaseModel):
    """One stored event: ``id`` is the store's, increasing in the order events arrived."""

    id: int
    item_id: str
    event_type: str
    value: float | None
    timestamp: str | None
    device: str | None = None


class UserEvents(Listing[EventOut]):
    user_id: str


class HistoryQuery(BaseModel):
    minutes: int = Field(60, ge=1, le=60, description="How many minutes back, up to 60.")


class EventMinute(BaseModel):
    """Events of one type that arrived in one minute (UTC)."""

    minute: str
    event_type: str
    count: int


class RequestMinuteOut(BaseModel):
    """One minute's requests to the API in the answering process, with latency quantiles."""

    minute: str
    count: int
    p50_ms: float | None
    p99_ms: float | None


class LoggedError(BaseModel):
    at: str
    source: str
    message: str


class MetricsHistory(BaseModel):
    """The last ``minutes``: events stored per minute and type (every process's, from the
    store), and the answering process's requests per minute and its latest errors."""

    minutes: int
    events: list[EventMinute]
    requests: list[RequestMinuteOut]
    errors: list[LoggedError]
