"""Evaluating constraints over an item table: :class:`Catalog`.

A :class:`Catalog` binds constraints to one item table. It turns each feature column into NumPy
arrays once (numbers as float64 with NaN for missing, dates as seconds, categories as int codes,
multi-valued labels as per-label item lists whose boolean masks are cached, text lower-cased), so
a constraint over 100k items costs a handful of vectorised operations: well under 10 ms
(``benchmarks/bench_constraints.py``). Unknown fields, and tests that do not fit a field's kind,
are reported against the catalogue when a constraint is evaluated.

What each test means: numeric and date fields take the six comparisons, ``between`` (inclusive) and
``in``, dates written as ISO strings; categorical fields take ``==``, ``!=`` and ``in``, compared
as strings; multi-valued fields take ``has`` (contains the label), ``has any`` and ``has all``;
text fields take ``contains`` (case-insensitive substring); ``near(lat, lon, km)`` keeps items
whose great-circle (haversine) distance from the point is at most ``km``, from the ``latitude`` and
``longitude`` columns unless two other fields are named. A missing value satisfies no test, so
``not`` of a test holds for it.
"""

from __future__ import annotations

import difflib
import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from recengine.data.schema import FeatureKind
from recengine.data.training_data import TrainingData
from recengine.errors import DataError
from recengine.models.constraints.nodes import (
    And,
    Between,
    Compare,
    Constraint,
    Contains,
    Has,
    In,
    Near,
    Not,
    Or,
    Scalar,
    _plain,
)
from recengine.models.constraints.parse import parse_constraint
from recengine.models.constraints.preferences import Preference, weigh_matches

EARTH_RADIUS_KM = 6371.0088  # mean radius (IUGG)


# -- evaluation -------------------------------------------------------------------------------
def haversine_km(lat1: float, lon1: float, lat2: np.ndarray, lon2: np.ndarray) -> np.ndarray:
    """Great-circle distance in km from one point to many (degrees), on a spherical Earth.

    >>> round(float(haversine_km(0.0, 0.0, np.array([0.0]), np.array([1.0]))[0]), 3)
    111.195
    """
    phi1, phi2 = math.radians(lat1), np.radians(lat2)
    half_dphi = (phi2 - phi1) / 2
    half_dlambda = (np.radians(lon2) - math.radians(lon1)) / 2
    a = np.sin(half_dphi) ** 2 + math.cos(phi1) * np.cos(phi2) * np.sin(half_dlambda) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.minimum(a, 1.0)))


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA \
        or value is pd.NaT


def _label_list(value: object) -> list[str]:
    """The labels of one multi-valued cell: a list, array or set; a lone string is one label."""
    if isinstance(value, list | tuple | set | frozenset | np.ndarray):
        return [str(v) for v in value if not _is_missing(v)]
    return [] if _is_missing(value) else [str(value)]


def _seconds(values: pd.Series) -> np.ndarray:
    """Dates as float seconds since 1970 (naive UTC), NaN where missing or unreadable."""
    stamps = pd.to_datetime(values, errors="coerce")
    if stamps.dt.tz is not None:
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    return (stamps - pd.Timestamp(0)).dt.total_seconds().to_numpy(dtype=np.float64,
                                                                  na_value=np.nan)


@lru_cache(maxsize=1024)
def _date_literal(text: str) -> float:
    """A date written in a constraint, as :func:`_seconds` (cached: pandas parsing is slow)."""
    return float(_seconds(pd.Series([text]))[0])


@dataclass(frozen=True)
class _Numbers:
    """A numeric or date column (dates as seconds); NaN where missing."""

    values: np.ndarray


@dataclass(frozen=True)
class _Labels:
    """A categorical column as int codes (-1 missing) into ``index`` (label → code)."""

    codes: np.ndarray
    index: dict[str, int]

    def isin(self, values: Sequence[Scalar]) -> np.ndarray:
        table = np.zeros(len(self.index) + 1, dtype=bool)  # slot 0 stands for "missing"
        table[[self.index[str(v)] + 1 for v in values if str(v) in self.index]] = True
        return table[self.codes + 1]


class _LabelSets:
    """A multi-valued column: the items of each label, and a cache of per-label masks."""

    def __init__(self, cells: np.ndarray) -> None:
        lists = [_label_list(v) for v in cells]
        lengths = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
        flat = np.array([label for labels in lists for label in labels], dtype=object)
        codes, uniques = pd.factorize(flat)
        items = np.repeat(np.arange(len(lists)), lengths)[np.argsort(codes, kind="stable")]
        bounds = np.r_[0, np.cumsum(np.bincount(codes, minlength=len(uniques)))]
        self.n = len(lists)
        self.index = {str(label): k for k, label in enumerate(uniques)}
        self.items = [items[bounds[k]:bounds[k + 1]] for k in range(len(uniques))]
        self.cache: dict[str, np.ndarray] = {}

    def mask(self, label: str) -> np.ndarray:
        """Read-only mask of the items that hold ``label`` (cached)."""
        found = self.cache.get(label)
        if found is None:
            found = np.zeros(self.n, dtype=bool)
            if label in self.index:
                found[self.items[self.index[label]]] = True
            found.flags.writeable = False
            self.cache[label] = found
        return found


class _Texts:
    """A text column lower-cased, and a cache of masks per searched phrase."""

    def __init__(self, cells: np.ndarray) -> None:
        self.lowered = [("" if _is_missing(v) else str(v)).lower() for v in cells]
        self.cache: dict[str, np.ndarray] = {}

    def contains(self, text: str) -> np.ndarray:
        needle = text.lower()
        found = self.cache.get(needle)
        if found is None:
            found = np.fromiter((needle in s for s in self.lowered), dtype=bool,
                                count=len(self.lowered))
            found.flags.writeable = False
            self.cache[needle] = found
        return found


_Column = _Numbers | _Labels | _LabelSets | _Texts
_NUMERIC_OPS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
    ">": operator.gt, ">=": operator.ge,
}
_HINTS = {
    FeatureKind.NUMERIC: "compare it with ==, !=, <, <=, >, >=, between or in",
    FeatureKind.DATE: 'compare it with an ISO date string, e.g. >= "2024-06-01"',
    FeatureKind.CATEGORICAL: "use ==, != or in (...)",
    FeatureKind.MULTI: "use has, has any (...) or has all (...)",
    FeatureKind.TEXT: 'use contains "..."',
}
_ORDERED = (FeatureKind.NUMERIC, FeatureKind.DATE)


def _build_column(values: pd.Series, kind: FeatureKind) -> _Column:
    if kind is FeatureKind.NUMERIC:
        return _Numbers(pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64,
                                                                       na_value=np.nan))
    if kind is FeatureKind.DATE:
        return _Numbers(_seconds(values))
    cells = values.to_numpy(dtype=object)
    if kind is FeatureKind.MULTI:
        return _LabelSets(cells)
    if kind is FeatureKind.TEXT:
        return _Texts(cells)
    present = ~pd.isna(cells)
    codes = np.full(len(cells), -1, dtype=np.int64)
    found, uniques = pd.factorize(np.array([str(v) for v in cells[present]], dtype=object))
    codes[present] = found
    return _Labels(codes, {str(label): k for k, label in enumerate(uniques)})


class Catalog:
    """Item attributes as NumPy arrays, built once, to evaluate constraints over every item.

    ``features`` has one row per item (row ``i`` is item index ``i``); ``kinds`` says which
    columns are features and of what kind. Use :meth:`from_training_data` for a model's items.

    Examples
    --------
    >>> items = pd.DataFrame({"bedrooms": [1, 3, 4], "amenities": [["wifi"], [], ["wifi"]]})
    >>> catalog = Catalog(items, {"bedrooms": "numeric", "amenities": "multi"})
    >>> catalog.mask('bedrooms >= 3 and amenities has "wifi"').tolist()
    [False, False, True]
    """

    def __init__(self, features: pd.DataFrame,
                 kinds: Mapping[str, FeatureKind | str]) -> None:
        absent = [name for name in kinds if name not in features.columns]
        if absent:
            raise DataError(f"features {', '.join(map(repr, absent))} are declared but not in "
                            "the item table", column=absent[0])
        self.n_items = len(features)
        self.kinds = {name: FeatureKind(kind) for name, kind in kinds.items()}
        self._columns = {name: _build_column(features[name], kind)
                         for name, kind in self.kinds.items()}

    @classmethod
    def from_training_data(cls, data: TrainingData) -> Catalog:
        """The catalogue of a model's items (aligned with ``data.items``)."""
        return cls(data.item_features, data.item_feature_kinds)

    def __repr__(self) -> str:
        return f"Catalog({self.n_items} items, fields: {', '.join(self.kinds) or 'none'})"

    # -- public evaluation ---------------------------------------------------------------------
    def mask(self, constraint: Constraint | str | Mapping[str, Any]) -> np.ndarray:
        """Boolean ``[n_items]``: which items satisfy ``constraint`` (any of its forms)."""
        found = self._eval(parse_constraint(constraint))
        return found if found.flags.writeable else found.copy()

    def count(self, constraint: Constraint | str | Mapping[str, Any]) -> int:
        """How many items satisfy ``constraint``."""
        return int(np.count_nonzero(self._eval(parse_constraint(constraint))))

    def preference_matches(self, preferences: Sequence[Preference]) -> np.ndarray:
        """Boolean ``[len(preferences), n_items]``: which items each preference matches."""
        out = np.zeros((len(preferences), self.n_items), dtype=bool)
        for k, preference in enumerate(preferences):
            out[k] = self._eval(preference.constraint)
        return out

    def preference_scores(self, preferences: Sequence[Preference]) -> np.ndarray:
        """Float32 ``[n_items]``: Σ weight · match over ``preferences``."""
        return weigh_matches(preferences, self.preference_matches(preferences))

    # -- one method per node ---------------------------------------------------------------------
    def _eval(self, c: Constraint) -> np.ndarray:
        match c:
            case And(parts):
                return _all_of([self._eval(p) for p in parts], self.n_items)
            case Or(parts):
                out = np.zeros(self.n_items, dtype=bool)
                for part in parts:
                    out |= self._eval(part)
                return out
            case Not(part):
                return ~self._eval(part)
            case Compare():
                return self._compare(c)
            case Between():
                column = self._column(c, c.field, _ORDERED)
                low, high = (self._number(c, c.field, v) for v in (c.low, c.high))
                if low > high:
                    raise self._error(c, f"the range is empty ({_plain(c.low)} > "
                                      f"{_plain(c.high)})")
                return (column.values >= low) & (column.values <= high)
            case In():
                column = self._column(c, c.field, (*_ORDERED, FeatureKind.CATEGORICAL))
                if isinstance(column, _Labels):
                    return column.isin(c.values)
                return np.isin(column.values, [self._number(c, c.field, v) for v in c.values])
            case Has():
                sets = self._column(c, c.field, (FeatureKind.MULTI,))
                masks = [sets.mask(str(label)) for label in c.labels]
                if len(masks) == 1:
                    return masks[0]
                return _all_of(masks, self.n_items) if c.mode == "all" else np.logical_or.reduce(
                    masks)
            case Contains():
                return self._column(c, c.field, (FeatureKind.TEXT,)).contains(c.text)
            case Near():
                return self._near(c)
        raise TypeError(f"not a constraint: {type(c).__name__}")

    def _compare(self, c: Compare) -> np.ndarray:
        column = self._column(c, c.field, (*_ORDERED, FeatureKind.CATEGORICAL))
        if isinstance(column, _Labels):
            if c.op not in ("==", "!="):
                raise self._error(c, f"{c.field!r} is categorical, so it has no order; "
                                  f"{_HINTS[FeatureKind.CATEGORICAL]}")
            equal = column.isin([c.value])
            return equal if c.op == "==" else ~equal & (column.codes >= 0)
        found = _NUMERIC_OPS[c.op](column.values, self._number(c, c.field, c.value))
        return found & ~np.isnan(column.values) if c.op == "!=" else found

    def _near(self, c: Near) -> np.ndarray:
        lat = self._column(c, c.lat_field, (FeatureKind.NUMERIC,)).values
        lon = self._column(c, c.lon_field, (FeatureKind.NUMERIC,)).values
        # Great-circle distance is at least R·|Δlatitude|: a cheap band, then haversine in it.
        band = math.degrees(c.km / EARTH_RADIUS_KM)
        candidates = np.flatnonzero(np.abs(lat - c.lat) <= band)
        out = np.zeros(self.n_items, dtype=bool)
        out[candidates] = haversine_km(c.lat, c.lon, lat[candidates], lon[candidates]) <= c.km
        return out

    # -- checks against the catalogue --------------------------------------------------------
    def _error(self, c: Constraint, message: str) -> DataError:
        return DataError(f"in `{c}`: {message}", column="constraint")

    def _column(self, c: Constraint, name: str, usable: tuple[FeatureKind, ...]) -> Any:
        if name not in self.kinds:
            close = difflib.get_close_matches(name, list(self.kinds), n=1)
            guess = f" (did you mean {close[0]!r}?)" if close else ""
            raise DataError(f"unknown field {name!r}{guess}; fields: "
                            f"{', '.join(self.kinds) or 'none'}", column="constraint")
        kind = self.kinds[name]
        if kind not in usable:
            raise self._error(c, f"{name!r} is {kind.value}: {_HINTS[kind]}")
        return self._columns[name]

    def _number(self, c: Constraint, name: str, value: Scalar) -> float:
        """``value`` as the number a numeric or date column holds."""
        if self.kinds[name] is FeatureKind.DATE:
            seconds = _date_literal(value) if isinstance(value, str) else math.nan
            if math.isnan(seconds):
                raise self._error(c, f"{name!r} is a date: {value!r} is not one; write an ISO "
                                  'date string, e.g. "2024-06-01"')
            return float(seconds)
        if isinstance(value, str):
            raise self._error(c, f"{name!r} is numeric: {value!r} is not a number")
        return float(value)


def _all_of(masks: Sequence[np.ndarray], n: int) -> np.ndarray:
    """Element-wise AND of ``masks`` (all-True when there are none)."""
    out = np.ones(n, dtype=bool)
    for mask in masks:
        out &= mask
    return out

