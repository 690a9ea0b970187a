"""The AST of the constraint language, and its printed forms: string, JSON and words.

Each node is a frozen dataclass. ``str(node)`` is the string form, so the printers live beside
the nodes; they follow the lexical rules of :mod:`.tokens`, so what they write parses back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from recengine.errors import DataError
from recengine.models.constraints.tokens import _KEYWORDS, _NAME

Scalar = int | float | str
COMPARISONS = ("==", "!=", "<", "<=", ">", ">=")
DEFAULT_LAT, DEFAULT_LON = "latitude", "longitude"


# -- the AST ----------------------------------------------------------------------------------
class _Node:
    """Base of every constraint node: ``str(node)`` is its string form."""

    __slots__ = ()

    def __str__(self) -> str:
        return constraint_to_string(self)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Compare(_Node):
    """``field op value`` with ``op`` one of ``==, !=, <, <=, >, >=``."""

    field: str
    op: str
    value: Scalar


@dataclass(frozen=True)
class Between(_Node):
    """``low <= field <= high``."""

    field: str
    low: Scalar
    high: Scalar


@dataclass(frozen=True)
class In(_Node):
    """The field's value is one of ``values``."""

    field: str
    values: tuple[Scalar, ...]


@dataclass(frozen=True)
class Has(_Node):
    """A multi-valued field holds any (or all) of ``labels``; one label is plain ``has``."""

    field: str
    labels: tuple[str, ...]
    mode: Literal["any", "all"] = "any"


@dataclass(frozen=True)
class Contains(_Node):
    """A text field contains ``text``, ignoring case."""

    field: str
    text: str


@dataclass(frozen=True)
class Near(_Node):
    """Within ``km`` kilometres (great circle) of ``(lat, lon)``."""

    lat: float
    lon: float
    km: float
    lat_field: str = DEFAULT_LAT
    lon_field: str = DEFAULT_LON


@dataclass(frozen=True)
class And(_Node):
    """Every part holds (two parts or more)."""

    parts: tuple[Constraint, ...]

    def __post_init__(self) -> None:
        _check_arity(self)


@dataclass(frozen=True)
class Or(_Node):
    """Some part holds (two parts or more)."""

    parts: tuple[Constraint, ...]

    def __post_init__(self) -> None:
        _check_arity(self)


@dataclass(frozen=True)
class Not(_Node):
    """The part does not hold."""

    part: Constraint


Constraint = Compare | Between | In | Has | Contains | Near | And | Or | Not


def _check_arity(node: And | Or) -> None:
    if len(node.parts) < 2:
        raise DataError(f"{type(node).__name__} needs two parts or more; use the part itself")


def _joined(kind: type[And] | type[Or], parts: Sequence[Constraint]) -> Constraint:
    """``parts`` joined by ``kind``; one part stands alone."""
    return parts[0] if len(parts) == 1 else kind(tuple(parts))


# -- printing ---------------------------------------------------------------------------------
def _quote(text: str, quote: str = '"') -> str:
    return quote + text.replace("\\", "\\\\").replace(quote, "\\" + quote) + quote


def _field_text(name: str) -> str:
    plain = _NAME.fullmatch(name) and name.lower() not in _KEYWORDS
    return name if plain else _quote(name, "`")


def _literal(value: Scalar) -> str:
    if isinstance(value, str):
        return _quote(value)
    return str(int(value)) if isinstance(value, int | np.integer) else repr(float(value))


def _literals(values: Sequence[Scalar]) -> str:
    return f"({', '.join(map(_literal, values))})"


def _grouped(part: Constraint, needs_parens: tuple[type, ...]) -> str:
    text = constraint_to_string(part)
    return f"({text})" if isinstance(part, needs_parens) else text


def constraint_to_string(constraint: Constraint) -> str:
    """The string form; parsing it gives the same constraint back.

    >>> from recengine.models.constraints import parse_constraint
    >>> constraint_to_string(parse_constraint({"not": {"or": [
    ...     {"field": "bedrooms", "op": "<", "value": 2}, {"near": {"lat": 46.5, "lon": 8,
    ...     "km": 50}}]}}))
    'not (bedrooms < 2 or near(46.5, 8, 50))'
    """
    match constraint:
        case And(parts):  # a nested conjunction keeps its parentheses, so it round-trips
            return " and ".join(_grouped(p, (And, Or)) for p in parts)
        case Or(parts):
            return " or ".join(_grouped(p, (Or,)) for p in parts)
        case Not(part):
            return f"not {_grouped(part, (And, Or))}"
        case Compare(name, op, value):
            return f"{_field_text(name)} {op} {_literal(value)}"
        case Between(name, low, high):
            return f"{_field_text(name)} between {_literal(low)} and {_literal(high)}"
        case In(name, values):
            return f"{_field_text(name)} in {_literals(values)}"
        case Has(name, labels, mode):
            if len(labels) == 1 and mode == "any":
                return f"{_field_text(name)} has {_literal(labels[0])}"
            return f"{_field_text(name)} has {mode} {_literals(labels)}"
        case Contains(name, text):
            return f"{_field_text(name)} contains {_literal(text)}"
        case Near(lat, lon, km, lat_field, lon_field):
            args = [_literal(lat), _literal(lon), _literal(km)]
            if (lat_field, lon_field) != (DEFAULT_LAT, DEFAULT_LON):
                args += [_field_text(lat_field), _field_text(lon_field)]
            return f"near({', '.join(args)})"
    raise TypeError(f"not a constraint: {type(constraint).__name__}")


def constraint_to_json(constraint: Constraint) -> dict[str, Any]:
    """The JSON form (plain dicts and lists); :func:`parse_constraint` reads it back.

    >>> from recengine.models.constraints import parse_constraint
    >>> constraint_to_json(parse_constraint('amenities has all ("wifi", "pool")'))
    {'field': 'amenities', 'op': 'has_all', 'value': ['wifi', 'pool']}
    """
    match constraint:
        case And(parts) | Or(parts):
            return {type(constraint).__name__.lower(): [constraint_to_json(p) for p in parts]}
        case Not(part):
            return {"not": constraint_to_json(part)}
        case Compare(name, op, value):
            return {"field": name, "op": op, "value": value}
        case Between(name, low, high):
            return {"field": name, "op": "between", "value": [low, high]}
        case In(name, values):
            return {"field": name, "op": "in", "value": list(values)}
        case Has(name, labels, mode):
            if len(labels) == 1 and mode == "any":
                return {"field": name, "op": "has", "value": labels[0]}
            return {"field": name, "op": f"has_{mode}", "value": list(labels)}
        case Contains(name, text):
            return {"field": name, "op": "contains", "value": text}
        case Near(lat, lon, km, lat_field, lon_field):
            near: dict[str, Any] = {"lat": lat, "lon": lon, "km": km}
            if (lat_field, lon_field) != (DEFAULT_LAT, DEFAULT_LON):
                near |= {"lat_field": lat_field, "lon_field": lon_field}
            return {"near": near}
    raise TypeError(f"not a constraint: {type(constraint).__name__}")


def _words(name: str) -> str:
    return name.replace("_", " ")


def _plain(value: Scalar) -> str:
    """A value for people: strings bare, whole numbers without a decimal point."""
    if isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


_PHRASES: dict[str, Callable[[str, str], str]] = {
    ">=": lambda f, v: f"{v}+ {f}", ">": lambda f, v: f"{f} over {v}",
    "<=": lambda f, v: f"{f} up to {v}", "<": lambda f, v: f"{f} under {v}",
    "==": lambda f, v: f"{f} {v}", "!=": lambda f, v: f"{f} not {v}",
}


def describe(constraint: Constraint) -> str:
    """The constraint in words, for explanations.

    >>> from recengine.models.constraints import parse_constraint
    >>> describe(parse_constraint('bedrooms >= 3 and amenities has "pets allowed"'))
    '3+ bedrooms, pets allowed'
    """
    match constraint:
        case And(parts):
            return ", ".join(map(describe, parts))
        case Or(parts):
            return " or ".join(map(describe, parts))
        case Not(part):
            return f"not {describe(part)}"
        case Compare(name, op, value):
            return _PHRASES[op](_words(name), _plain(value))
        case Between(name, low, high):
            return f"{_words(name)} {_plain(low)} to {_plain(high)}"
        case In(name, values):
            return f"{_words(name)} {' or '.join(map(_plain, values))}"
        case Has(_, labels, mode):
            return (" or " if mode == "any" else " and ").join(labels)
        case Contains(name, text):
            return f'{_words(name)} mentions "{text}"'
        case Near(lat, lon, km, _, _):
            return f"within {_plain(km)} km of ({_plain(lat)}, {_plain(lon)})"
    raise TypeError(f"not a constraint: {type(constraint).__name__}")


# -- structure --------------------------------------------------------------------------------
def conjuncts(constraint: Constraint) -> list[Constraint]:
    """The requirements of a (possibly nested) conjunction; anything else is one requirement."""
    if isinstance(constraint, And):
        return [c for part in constraint.parts for c in conjuncts(part)]
    return [constraint]

