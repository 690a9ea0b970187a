"""The hybrid's configuration: which recommenders propose candidates, how many, and how the
ranker over their union is trained. One pydantic model, so the same settings come from Python,
a JSON or TOML file (``recengine evaluate --config hybrid.toml``) or the tuner."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from recengine.models.base import ModelConfig

__all__ = ["DEFAULT_RATING_SOURCES", "DEFAULT_SOURCES", "HybridConfig", "RankerConfig",
           "RatingHeadConfig", "SourceConfig"]


class SourceConfig(ModelConfig):
    """One candidate generator: a recommender, the name its candidates are tagged with, and
    how many it proposes per request."""

    model: str = Field(description="A model name (wals, ease, ...) or an import path "
                       "package.module:Class.")
    name: str | None = Field(None, description="The tag of its candidates and of its "
                             "features; default: the model's name.")
    params: dict[str, Any] = Field(default_factory=dict,
                                   description="The model's own configuration.")
    depth: int = Field(100, ge=1, description="Candidates it proposes per request.")
    needs: Literal["item-features", "user-features"] | None = Field(
        None, description="Used only when the training data has what it names (a content "
        "source needs item features, a segment source user features); skipped otherwise.")

    @property
    def tag(self) -> str:
        return self.name or self.model


#: Collaborative, item-to-item and content sources, WALS's factors mapped from item features
#: (items without events), and popularity (overall and in the user's segment) for users with
#: nothing else to go on: each covers what the others miss, and every one is cheap to fit.
DEFAULT_SOURCES: tuple[SourceConfig, ...] = (
    SourceConfig(model="wals"),
    SourceConfig(model="ease"),
    SourceConfig(model="item-knn"),
    SourceConfig(model="content", needs="item-features"),
    SourceConfig(model="wals-features", needs="item-features"),
    SourceConfig(model="popularity", depth=50),
    SourceConfig(model="segment-popularity", depth=50, needs="user-features"),
)


class RankerConfig(ModelConfig):
    """The ranking network (DCN-v2: cross layers beside a deep tower) and its training."""

    cross_layers: int = Field(2, ge=0, description="Explicit feature-crossing layers.")
    hidden: tuple[int, ...] = Field((128, 64), description="The deep tower's layer widths.")
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    learning_rate: float = Field(2e-3, gt=0.0)
    weight_decay: float = Field(1e-5, ge=0.0)
    epochs: int = Field(40, ge=1, description="Most passes over the training users.")
    patience: int = Field(5, ge=1, description="Epochs without a better validation nDCG@10 "
                          "before training stops (the best network is kept).")
    users_per_batch: int = Field(32, ge=1, description="Users whose candidate lists make one "
                                 "batch of the listwise loss.")


#: Rating predictors that err differently: low-rank models of two sizes, a neighbourhood of
#: rated items, the bias baseline, and an implicit model of *which* items the user rates
#: (people rate what they chose to watch: that a pair was likely to be rated says something of
#: its rating).
DEFAULT_RATING_SOURCES: tuple[SourceConfig, ...] = (
    SourceConfig(model="wals", name="wals-explicit", params={"feedback": "explicit"}),
    SourceConfig(model="wals", name="wals-explicit-16",
                 params={"feedback": "explicit", "factors": 16, "random_state": 1}),
    SourceConfig(model="knn-baseline"),
    SourceConfig(model="bias"),
    SourceConfig(model="wals", name="wals-implicit", params={"feedback": "implicit"}),
)


class RatingHeadConfig(ModelConfig):
    """The optional rating head: a DCN-v2 predicting explicit ratings from the predictions of
    its own sources (cross-fitted, so it learns how far to trust each on pairs none of them
    saw) and the user's and item's features."""

    sources: tuple[SourceConfig, ...] = Field(DEFAULT_RATING_SOURCES, min_length=1,
                                              description="The first should predict ratings: "
                                              "the head starts as its prediction.")
    folds: int = Field(5, ge=2, description="Cross-fitting folds: each source is fitted this "
                       "many times, each time predicting the pairs it did not see.")
    max_pairs: int = Field(1_000_000, ge=100, description="Most rated pairs the network "
                           "learns from (drawn at random).")
    cross_layers: int = Field(2, ge=0)
    hidden: tuple[int, ...] = Field((64, 32))
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    learning_rate: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(1e-5, ge=0.0)
    epochs: int = Field(60, ge=1)
    patience: int = Field(5, ge=1, description="Epochs without a lower validation RMSE "
                          "before training stops (the best network is kept).")
    batch_size: int = Field(512, ge=1)
    validation_share: float = Field(0.1, gt=0.0, lt=1.0, description="Share of the pairs "
                                    "kept for early stopping.")

    @model_validator(mode="after")
    def _distinct_tags(self) -> RatingHeadConfig:
        _check_distinct([s.tag for s in self.sources])
        return self


def _check_distinct(tags: list[str]) -> None:
    repeated = sorted({t for t in tags if tags.count(t) > 1})
    if repeated:
        raise ValueError(f"two sources are tagged {repeated[0]!r}: name one of them")


class HybridConfig(ModelConfig):
    """Sources, the union, the carve the ranker learns from, and the ranker."""

    sources: tuple[SourceConfig, ...] = Field(DEFAULT_SOURCES, min_length=1)
    candidates: int = Field(300, ge=1, description="Most candidates per request in the union "
                            "(the best-ranked by any source first).")
    similarity_source: str | None = Field(
        "item-knn", description="The source (by tag) whose item similarities give the "
        "history features (how alike a candidate is to the user's recent items), similar "
        "items and MMR; None (or \"\", for TOML): none.")
    recent_items: int = Field(5, ge=1, description="Recent items the history features read.")
    carve: Literal["random", "time", "cutoff"] = Field(
        "random", description="Which pairs the ranker learns to find: a random share of each "
        "user's (for random splits), each user's most recent share, or everyone's pairs after "
        "one moment (for a global time split: predicting the future).")
    carve_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    cold_users: float = Field(0.1, ge=0.0, lt=1.0, description="Share of the carved users "
                              "whose every pair is held out: they teach the ranker new users, "
                              "known by their features only.")
    cold_items: float = Field(0.0, ge=0.0, lt=1.0, description="Share of the items made "
                              "new in the carve (their pairs the carve does not hold out "
                              "are hidden): lists to judge the ranker on new items by. It "
                              "orders new items among themselves only if it ranks these "
                              "better than its start does; without them, never.")
    carves: int = Field(1, ge=1, description="Carves to learn from, each with its own draw "
                        "and its own fit of the sources: more lists for the ranker, at the "
                        "cost of fitting the sources once per carve.")
    max_users: int = Field(5000, ge=10, description="Most users the ranker learns from (drawn "
                           "at random; memory grows with users × carves × candidates × "
                           "features).")
    validation_users: float = Field(0.1, gt=0.0, lt=1.0, description="Share of them kept "
                                    "for early stopping.")
    refit_sources: bool = Field(True, description="Refit the sources on all the data once "
                                "the ranker is trained (its features are scale- and "
                                "rotation-free: scores standardised per request, ranks).")
    max_feature_columns: int = Field(64, ge=0, description="Most encoded item (and user) "
                                     "feature columns the ranker reads; wider fields are left "
                                     "out (text reaches it through a content source).")
    trend_days: float = Field(30.0, gt=0.0, description="The recent window of an item's "
                              "popularity trend.")
    ranker: RankerConfig = Field(default_factory=RankerConfig)
    ratings: RatingHeadConfig | None = Field(None, description="The rating head (explicit "
                                             "ratings only): when set, the hybrid predicts "
                                             "ratings too, and RMSE applies.")
    random_state: int = 0

    @field_validator("similarity_source", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _distinct_tags(self) -> HybridConfig:
        tags = [s.tag for s in self.sources]
        _check_distinct(tags)
        if self.similarity_source is not None and self.similarity_source not in tags:
            raise ValueError(f"similarity_source {self.similarity_source!r} is not a source")
        return self
