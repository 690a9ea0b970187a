"""Knowledge-based recommendation: items that meet stated requirements, ranked by preferences.

Why: a traveller with no history, or one looking for something new ("3 bedrooms, pets allowed,
near the lake"), is served best by what they say, not by what they did. Requirements are hard
constraints (an item that fails one is never recommended); preferences are soft (each adds its
weight to the items that meet it); popularity, the number of training users, breaks ties, so
even a user with no history gets a sensible ranked list. Constraints come in the string or the
JSON form of :mod:`recengine.models.constraints`; the config stores the JSON form, so it
round-trips through JSON like every config.

The same constraints narrow and re-rank any other model's scores: :func:`apply_constraints` (one
block of scores) and :func:`constraint_transform` (a ``transform`` for
:meth:`~recengine.models.base.Recommender.recommend_indices`), for the hybrid and the server.

Saved state is arrays only (the base class writes nothing else): each item's final score
(``-inf`` where a requirement fails), which preferences it meets, and its popularity. The
catalogue itself is needed only while fitting.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from recengine.data.query import Queries
from recengine.data.training_data import TrainingData
from recengine.errors import DataError, RecengineWarning
from recengine.models.base import (
    ModelConfig,
    Recommender,
    ScoreTransform,
    Shape,
    TrainingOptions,
    normalise_scores,
)
from recengine.models.constraints import (
    Catalog,
    Constraint,
    Preference,
    constraint_to_json,
    describe,
    parse_constraint,
    parse_preferences,
    preferences_to_json,
    relax,
    weigh_matches,
)
from recengine.progress import ProgressCallback

__all__ = ["KnowledgeBased", "apply_constraints", "constraint_transform"]

ConstraintSource = Constraint | str | Mapping[str, Any] | None
PreferenceSource = str | Mapping[str, Any] | Sequence[Preference] | None


def _validated(parse: Any, value: Any) -> Any:
    """Run a parser inside a pydantic validator, its error becoming the validation message.

    The base class names the config field; a JSON path inside the value is kept.
    """
    try:
        return parse(value)
    except DataError as exc:
        inner = exc.column not in (None, "constraint", "preferences")
        text = f"at {exc.column}: {exc.message}" if inner else exc.message
    except TypeError as exc:
        text = str(exc)
    raise PydanticCustomError("invalid_constraint", "{text}", {"text": text})


class KnowledgeBased(Recommender):
    """Items meeting a hard ``constraint``, ranked by weighted ``preferences``, then popularity.

    Examples
    --------
    >>> import pandas as pd
    >>> pairs = pd.DataFrame({"user_id": ["u1", "u2", "u2"], "item_id": ["a", "b", "c"],
    ...                       "rating": float("nan"), "feedback": 1.0})
    >>> items = pd.DataFrame({"bedrooms": [1, 3, 4], "amenities": [[], ["pool"], []]},
    ...                      index=["a", "b", "c"])
    >>> data = TrainingData.from_interactions(
    ...     pairs, items=items, item_feature_kinds={"bedrooms": "numeric", "amenities": "multi"})
    >>> model = KnowledgeBased(constraint="bedrooms >= 3",
    ...                        preferences='prefer 1: amenities has "pool"').fit(data)
    >>> model.recommend_history([], n=3)[0].tolist()
    ['b', 'c', None]
    >>> model.config.constraint
    {'field': 'bedrooms', 'op': '>=', 'value': 3}
    """

    name = "knowledge"

    class Config(ModelConfig):
        constraint: dict[str, Any] | None = Field(
            None, description="Hard requirement, string or JSON form; stored as JSON.")
        preferences: dict[str, Any] | None = Field(
            None, description='Soft preferences, string or JSON form {"prefer": [...]}; '
            "stored as JSON.")
        fallback: Literal["popularity", "none"] = Field(
            "popularity", description="Tie-break among items with equal preference scores.")

        @field_validator("constraint", mode="before")
        @classmethod
        def _constraint_as_json(cls, value: ConstraintSource) -> dict[str, Any] | None:
            if value is None:
                return None
            return _validated(lambda v: constraint_to_json(parse_constraint(v)), value)

        @field_validator("preferences", mode="before")
        @classmethod
        def _preferences_as_json(cls, value: PreferenceSource) -> dict[str, Any] | None:
            found = _validated(parse_preferences, value)
            return preferences_to_json(found) if found else None

    config: Config
    state = ("scores_", "matches_", "popularity_")
    scores_: np.ndarray  # float32 [n_items], -inf where the hard constraint fails
    matches_: np.ndarray  # bool [n_preferences, n_items]
    popularity_: np.ndarray  # int64 [n_items], training users per item

    def state_shapes(self) -> dict[str, Shape]:
        return {"scores_": ("items",), "matches_": (len(self.preferences), "items"),
                "popularity_": ("items",)}

    @cached_property
    def constraint(self) -> Constraint | None:
        """The hard constraint, parsed (None: every item qualifies)."""
        stored = self.config.constraint
        return None if stored is None else parse_constraint(stored)

    @cached_property
    def preferences(self) -> tuple[Preference, ...]:
        """The soft preferences, parsed."""
        return parse_preferences(self.config.preferences)

    def _train(self, data: TrainingData, options: TrainingOptions,
               progress: ProgressCallback | None) -> dict[str, Any]:
        catalog = Catalog.from_training_data(data)
        allowed = _allowed(catalog, self.constraint)
        matches = catalog.preference_matches(self.preferences)
        popularity = data.item_counts().astype(np.int64)
        preference = weigh_matches(self.preferences, matches)
        tie = (_tie_break(preference, allowed, popularity)
               if self.config.fallback == "popularity" else 0.0)
        return {"matches_": matches, "popularity_": popularity,
                "scores_": np.where(allowed, preference + tie, -np.inf).astype(np.float32)}

    def _score(self, queries: Queries) -> np.ndarray:
        return np.broadcast_to(self.scores_, (len(queries), len(self.scores_)))

    def _explain(self, queries: Queries, items: np.ndarray) -> list[str]:
        return [self._reason(int(i)) for i in items]

    def _reason(self, item: int) -> str:
        if not np.isfinite(self.scores_[item]):
            return "does not meet the requirements"
        met = [describe(p.constraint) for k, p in enumerate(self.preferences)
               if p.weight > 0 and self.matches_[k, item]]
        if met:
            return ", ".join(met)
        chosen = f"{int(self.popularity_[item])} of {len(self.users_)} users chose it"
        return f"meets the requirements; {chosen}" if self.constraint else f"popular: {chosen}"


def _allowed(catalog: Catalog, constraint: Constraint | None) -> np.ndarray:
    """Items meeting ``constraint``; warns, with the best relaxation, when there are none."""
    if constraint is None:
        return np.ones(catalog.n_items, dtype=bool)
    allowed = catalog.mask(constraint)
    if not allowed.any():
        options = relax(catalog, constraint)
        hint = (f"; dropping {' and '.join(options[0].dropped)} would give "
                f"{options[0].count} items") if options else ""
        warnings.warn(RecengineWarning(f"the constraint matches no item{hint}"), stacklevel=4)
    return allowed


def _tie_break(preference: np.ndarray, allowed: np.ndarray,
               popularity: np.ndarray) -> np.ndarray:
    """Popularity scaled below half the smallest gap between preference scores.

    So it orders items with equal preference scores and never overturns a difference.
    """
    levels = np.unique(preference[allowed])
    gap = float(np.diff(levels).min()) if len(levels) > 1 else 1.0
    return (0.5 * gap * popularity / (popularity.max(initial=0) + 1.0)).astype(np.float32)


def constraint_transform(catalog: Catalog, constraint: ConstraintSource = None,
                         preferences: PreferenceSource = None, weight: float = 1.0,
                         ) -> ScoreTransform:
    """A score transform that applies ``constraint`` and ``preferences`` to any model's scores.

    The mask and the preference scores are computed once, here; the transform then costs one
    pass over each block. See :func:`apply_constraints` for what it does to a block.
    """
    allowed = None if constraint is None else catalog.mask(constraint)
    bonus = np.float32(weight) * catalog.preference_scores(parse_preferences(preferences))

    def transform(scores: np.ndarray) -> np.ndarray:
        if scores.shape[-1] != catalog.n_items:
            raise DataError(f"scores cover {scores.shape[-1]} items, the catalogue "
                            f"{catalog.n_items}")
        out = np.array(np.atleast_2d(scores), dtype=np.float64)
        if allowed is not None:
            out[:, ~allowed] = -np.inf
        return (normalise_scores(out) + bonus).astype(np.float32)

    return transform


def apply_constraints(scores: np.ndarray, catalog: Catalog, constraint: ConstraintSource = None,
                      preferences: PreferenceSource = None, weight: float = 1.0) -> np.ndarray:
    """Any model's scores ``[batch, n_items]``, masked by ``constraint``, re-weighted.

    Items failing the hard constraint, and scores that were not finite, become ``-inf``; the
    remaining scores of each row are min-max scaled to [0, 1], so that models of any scale mix
    alike, and ``weight`` × (Σ preference weight · match) is added. With ``weight=1`` a weight-1
    preference is worth the whole range of the model's scores; a small weight only breaks
    near-ties; ``weight=0`` keeps the model's order and only filters.

    >>> import pandas as pd
    >>> catalog = Catalog(pd.DataFrame({"bedrooms": [1, 3, 4]}), {"bedrooms": "numeric"})
    >>> apply_constraints(np.array([[5.0, 1.0, 3.0]]), catalog, "bedrooms >= 2",
    ...                   'prefer 2: bedrooms >= 4').tolist()
    [[-inf, 0.0, 3.0]]
    """
    return constraint_transform(catalog, constraint, preferences, weight)(scores)
