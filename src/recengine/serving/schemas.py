"""Request and response models: the API's only wire format."""

from __future__ import annotations

from typing import Any, Generic, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from recengine.data.schema import FeatureKind

__all__ = [
    "AudienceBatch", "AudienceList", "AudienceQuery", "AudienceUser", "BatchRecommendations",
    "EventBatch", "EventIn", "EventsAccepted", "IssueOut", "ItemIn", "ItemOut", "ModelList",
    "ModelVersion", "Page", "RecommendationBatch", "RecommendationList", "RecommendationQuery",
    "RecommendedItem", "SimilarBatch", "SimilarList", "SimilarQuery", "Status", "UserIn",
    "UserOut",
]


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


class RecommendationList(BaseModel):
    user_id: str
    model_version: str | None = Field(
        description="The registry version that answered; null while none is active.")
    items: list[RecommendedItem]
    count: int
    reason: str | None = Field(
        None, description="Why the list is what it is when no version is active: popularity "
        "over the stored events, or empty because the store holds none.")


class RecommendationQuery(BaseModel):
    """The query of ``GET /v1/users/{id}/recommendations``, validated as one model (per-parameter
    validation cost FastAPI more than the answer)."""

    k: int = Field(10, ge=1)
    model: str | None = None
    constraint: str | None = None
    rules: str | None = Field(None, description=(
        "Business rules as a JSON list, as in the batch request's rules"))
    explain: bool = False
    offset: int = Field(0, ge=0)


class RecommendationBatch(_In):
    """Recommendations for several users, each with the options of the single request."""

    users: list[str] = Field(min_length=1)
    k: int = Field(10, ge=1)
    offset: int = Field(0, ge=0)
    model: str | None = None
    constraint: str | None = None
    rules: list[dict[str, Any]] = Field(default_factory=list, description=(
        "Business rules for this request, e.g. {\"kind\": \"boost\", \"field\": \"region\", "
        "\"value\": \"Coast\", \"factor\": 2}: kinds exclude, require, boost, freshness, "
        "max_per, mmr, pin."))
    explain: bool = False


BatchRecommendations = Page[RecommendationList]


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
    items: list[str] = Field(min_length=1)
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
    items: list[str] = Field(min_length=1)
    n: int = Field(100, ge=1)
    combine: bool = False


AudienceBatchOut = Page[AudienceList]


class EventIn(_In):
    """One event; values are checked by the event store's validation, not here."""

    user_id: str | int
    item_id: str | int
    event_type: str | None = None
    value: float | str | None = None
    timestamp: float | str | None = None
    event_id: str | None = None


class EventBatch(_In):
    events: list[EventIn] = Field(min_length=1)


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
    features: dict[str, Any] = Field(default_factory=dict)
    kinds: dict[str, FeatureKind] = Field(default_factory=dict, description=(
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


class Status(BaseModel):
    status: str
    model_version: str | None = None
