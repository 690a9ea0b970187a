"""Business rules applied after any recommender: exclude, boost or bury, freshness, pin, diversity.

Every real deployment needs them: the out-of-stock item must go, the promoted brand goes up, a
list of ten cabins in one region is a bad list. Rules are data (a JSON list, pydantic-validated)
so they can be set globally or per request, and they work on any model through its scores:

1. *Score rules* rewrite a block of score rows before the top-k: ``exclude`` (ids or attribute
   values) sets ``-inf``; ``boost`` multiplies the min-max normalised score of matching items by a
   factor (> 1 boosts, < 1 buries); ``freshness`` multiplies by ``0.5 ** (age / half_life)``.
2. *List rules* re-rank an over-fetched candidate list: ``max_per`` keeps at most ``n`` items per
   value of a field (a diversity cap); ``mmr`` trades relevance against similarity to the items
   already chosen (maximal marginal relevance, with the model's own item similarity); ``pin``
   puts an item at a fixed position.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from recengine.data.query import Queries
from recengine.data.schema import FeatureKind
from recengine.data.vocabulary import Vocabulary
from recengine.errors import DataError
from recengine.models.base import Recommender, check_fitted, normalise_scores
from recengine.models.constraints import Catalog

__all__ = ["Boost", "Exclude", "Freshness", "MaxPer", "Mmr", "Pin", "Require", "Rule",
           "RuleEngine", "parse_rules", "read_rules", "rules_from_json"]

Scalar = str | float | int | bool


class _Rule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Exclude(_Rule):
    """Never recommend these items, items whose ``field`` equals (or lists) ``value``, or items
    matching a constraint (``where``: the constraint language's string or JSON form)."""

    kind: Literal["exclude"] = "exclude"
    items: list[str] = Field(default_factory=list)
    field: str | None = None
    value: Scalar | None = None
    where: str | dict[str, Any] | None = None


class Require(_Rule):
    """Only recommend items matching a constraint (a knowledge-based filter on any model)."""

    kind: Literal["require"] = "require"
    where: str | dict[str, Any]


class Boost(_Rule):
    """Multiply the normalised score of items whose ``field`` matches ``value`` by ``factor``."""

    kind: Literal["boost"] = "boost"
    field: str
    value: Scalar
    factor: float = Field(gt=0, description="> 1 boosts, < 1 buries.")


class Freshness(_Rule):
    """Decay scores with the age of a date field: halved every ``half_life_days``."""

    kind: Literal["freshness"] = "freshness"
    field: str
    half_life_days: float = Field(gt=0)
    now: datetime | None = Field(None, description="Default: the newest date in the field.")


class MaxPer(_Rule):
    """At most ``n`` items per value of ``field`` (each label, for multi-valued fields)."""

    kind: Literal["max_per"] = "max_per"
    field: str
    n: int = Field(ge=1)


class Mmr(_Rule):
    """Maximal marginal relevance: ``λ · relevance − (1 − λ) · max similarity to chosen``."""

    kind: Literal["mmr"] = "mmr"
    relevance_weight: float = Field(0.7, ge=0, le=1)


class Pin(_Rule):
    """Put ``item`` at ``position`` (1-based) whatever its score."""

    kind: Literal["pin"] = "pin"
    item: str
    position: int = Field(ge=1)


Rule = Annotated[Exclude | Require | Boost | Freshness | MaxPer | Mmr | Pin,
                 Field(discriminator="kind")]
_RULES = TypeAdapter(list[Rule])

#: Candidates fetched per requested item before list rules re-rank them.
OVERFETCH = 4


def parse_rules(data: object) -> list[Rule]:
    """Rules from JSON-like data (a list of objects with a ``kind``); a DataError names the field.

    >>> parse_rules([{"kind": "boost", "field": "region", "value": "Coast", "factor": 2}])
    [Boost(kind='boost', field='region', value='Coast', factor=2.0)]
    """
    try:
        return _RULES.validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = "rules" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}"
                                  for p in first["loc"])
        raise DataError(first["msg"], column=where) from None


def rules_from_json(text: str) -> list[Rule]:
    """Rules from JSON text; a DataError names ``rules`` when the text is not a JSON list of rules.

    Rules nest only inside their ``where`` constraints, which hold
    :data:`~recengine.models.constraints.parse.MAX_DEPTH` levels; JSON nested past Python's stack
    (``[[[[...`` a thousand deep) makes ``json.loads`` raise ``RecursionError``, reported here as
    the bad input it is.

    >>> rules_from_json("[" * 5000 + "]" * 5000)
    Traceback (most recent call last):
    ...
    recengine.errors.DataError: column 'rules': rules nest too deeply to parse
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"rules must be a JSON list of rules: {exc}", column="rules") from None
    except RecursionError:
        raise DataError("rules nest too deeply to parse", column="rules") from None
    return parse_rules(data)


def read_rules(path: str | Path) -> list[Rule]:
    """Rules from a JSON file (a list, as :func:`parse_rules` takes); errors name the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise DataError(f"cannot read rules: {exc}", file=str(path)) from None
    try:
        return rules_from_json(text)
    except DataError as exc:
        raise DataError(exc.message, file=str(path), column=exc.column) from None


class RuleEngine:
    """Rules bound to a catalogue: per-item masks and multipliers are computed once."""

    def __init__(self, rules: Sequence[Rule], items: Vocabulary, item_features: pd.DataFrame,
                 kinds: Mapping[str, FeatureKind] | None = None) -> None:
        self.rules = list(rules)
        self.items = items
        self.features = item_features
        self.kinds = kinds
        n = len(items)
        self.excluded = np.zeros(n, dtype=bool)
        self.multiplier = np.ones(n, dtype=np.float32)
        for rule in self.rules:
            if isinstance(rule, Exclude):
                idx = items.index(rule.items, missing="negative")
                self.excluded[idx[idx >= 0]] = True
                if rule.field is not None:
                    self.excluded |= self._matches(rule.field, rule.value)
                if rule.where is not None:
                    self.excluded |= self._catalog().mask(rule.where)
            elif isinstance(rule, Require):
                self.excluded |= ~self._catalog().mask(rule.where)
            elif isinstance(rule, Boost):
                self.multiplier[self._matches(rule.field, rule.value)] *= rule.factor
            elif isinstance(rule, Freshness):
                self.multiplier *= self._decay(rule)
        self.pins = sorted((r for r in self.rules if isinstance(r, Pin)), key=lambda r: r.position)
        self.caps = [r for r in self.rules if isinstance(r, MaxPer)]
        self.mmr = next((r for r in self.rules if isinstance(r, Mmr)), None)
        self._cap_labels = {cap.field: self._labels(cap.field) for cap in self.caps}

    def _catalog(self) -> Catalog:
        if self.kinds is None:
            raise DataError("constraint rules need the item feature kinds", column="where")
        if not hasattr(self, "_catalog_cache"):
            self._catalog_cache = Catalog(self.features, self.kinds)
        return self._catalog_cache

    def _column(self, field: str) -> pd.Series:
        if field not in self.features.columns:
            known = ", ".join(map(str, self.features.columns)) or "none"
            raise DataError(f"unknown item field {field!r}; fields: {known}", column="field")
        return self.features[field]

    def _matches(self, field: str, value: Scalar | None) -> np.ndarray:
        column = self._column(field)
        return np.fromiter(
            ((value in v) if isinstance(v, list | tuple | np.ndarray) else v == value
             for v in column), dtype=bool, count=len(column))

    def _labels(self, field: str) -> list[tuple[object, ...]]:
        return [tuple(v) if isinstance(v, list | tuple | np.ndarray) else (v,)
                for v in self._column(field)]

    def _decay(self, rule: Freshness) -> np.ndarray:
        dates = pd.to_datetime(self._column(rule.field), errors="coerce")
        now = pd.Timestamp(rule.now) if rule.now is not None else dates.max()
        age_days = ((now - dates).dt.total_seconds() / 86400).clip(lower=0).fillna(0)
        return np.power(0.5, age_days.to_numpy() / rule.half_life_days).astype(np.float32)

    @property
    def excluded_items(self) -> np.ndarray | None:
        """The indices of the items no answer may hold (None when there are none)."""
        return np.flatnonzero(self.excluded) if self.excluded.any() else None

    def transform(self, scores: np.ndarray) -> np.ndarray:
        """Score rules on a block of rows: normalise each row to [0, 1], scale, exclude."""
        out = (normalise_scores(scores) + 1e-6) * self.multiplier
        out[:, self.excluded] = -np.inf
        return out.astype(np.float32)

    @property
    def reranks(self) -> bool:
        return bool(self.pins or self.caps or self.mmr)

    def recommend(self, model: Recommender, queries: Queries | np.ndarray, n: int, *,
                  exclude_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` of ``model`` for queries (or training user indices), every rule applied."""
        check_fitted(model)
        if not isinstance(queries, Queries):
            queries = model.training_queries(queries)
        users = queries.users
        depth = n * OVERFETCH if self.reranks else n
        # The exclusions go as such too, so that a model proposing candidates (the hybrid)
        # proposes among the items the rules keep.
        idx, val = model.recommend_queries(queries, depth, exclude_seen=exclude_seen,
                                           exclude=self.excluded_items,
                                           transform=self.transform)
        if not self.reranks:
            return idx, val
        out_idx = np.full((len(users), n), -1, dtype=np.int32)
        out_val = np.full((len(users), n), np.nan, dtype=np.float32)
        for row in range(len(users)):
            chosen = self._rerank(model, idx[row], val[row], n)
            out_idx[row, :len(chosen)] = [i for i, _ in chosen]
            out_val[row, :len(chosen)] = [s for _, s in chosen]
        return out_idx, out_val

    def _rerank(self, model: Recommender, idx: np.ndarray, val: np.ndarray,
                n: int) -> list[tuple[int, float]]:
        valid = idx >= 0
        idx, val = idx[valid], val[valid]
        pinned = {int(i) for i in self.items.index([p.item for p in self.pins],
                                                   missing="negative") if i >= 0}
        keep = np.array([i not in pinned for i in idx], dtype=bool)
        idx, val = idx[keep], val[keep]
        order = self._mmr_order(model, idx, val) if self.mmr else list(range(len(idx)))
        chosen: list[tuple[int, float]] = []
        counts: dict[tuple[str, object], int] = {}
        slots = n - len(pinned)
        for k in order:
            if len(chosen) == slots:
                break
            labels = [(c.field, label) for c in self.caps
                      for label in self._cap_labels[c.field][idx[k]]]
            if any(counts.get(key, 0) >= cap.n for cap in self.caps for key in labels
                   if key[0] == cap.field):
                continue
            for key in labels:
                counts[key] = counts.get(key, 0) + 1
            chosen.append((int(idx[k]), float(val[k])))
        for pin in self.pins:
            i = int(self.items.index([pin.item], missing="negative")[0])
            if i >= 0 and not self.excluded[i]:
                chosen.insert(min(pin.position - 1, len(chosen)), (i, float("nan")))
        return chosen[:n]

    def _mmr_order(self, model: Recommender, idx: np.ndarray, val: np.ndarray) -> list[int]:
        """Greedy MMR over the candidates, using the model's item similarity."""
        assert self.mmr is not None
        if len(idx) == 0:
            return []
        sim = np.asarray(model.similarity(idx), dtype=np.float64)[:, idx]
        rel = (val - val.min()) / (val.max() - val.min() if val.max() > val.min() else 1.0)
        lam = self.mmr.relevance_weight
        remaining = list(range(len(idx)))
        order = [remaining.pop(0)]
        while remaining:
            penalty = sim[np.ix_(remaining, order)].max(axis=1)
            gains = lam * rel[remaining] - (1 - lam) * penalty
            order.append(remaining.pop(int(np.argmax(gains))))
        return order
