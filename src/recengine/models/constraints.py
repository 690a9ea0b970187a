"""A small, safe language for what a user requires and prefers of an item, and its evaluation.

Why: knowledge-based recommendation starts from stated needs ("3 bedrooms, at most 200 a night,
pets allowed, near the lake"), not from history. The same need arrives from the API as JSON and
from the command line as one line of text, so both surface forms parse to one AST of frozen
dataclasses and print back from it: AST → JSON → AST and AST → string → AST give the same AST.
Nothing is ever evaluated as Python: the string form has its own tokenizer and recursive-descent
parser, the JSON form is walked node by node, and every error is a
:class:`~recengine.errors.DataError` that names the character offset (with a caret under it) or
the JSON path (``and[2].op``).

A :class:`Catalog` binds constraints to one item table. It turns each feature column into NumPy
arrays once (numbers as float64 with NaN for missing, dates as seconds, categories as int codes,
multi-valued labels as per-label item lists whose boolean masks are cached, text lower-cased), so
a constraint over 100k items costs a handful of vectorised operations: well under 10 ms
(``benchmarks/bench_constraints.py``). Unknown fields, and tests that do not fit a field's kind,
are reported against the catalogue when a constraint is evaluated.

Grammar of the string form (keywords are case-insensitive and reserved)::

    constraint  := and ("or" and)*
    and         := unary ("and" unary)*
    unary       := "not" unary | "(" constraint ")" | near | test
    near        := "near" "(" number "," number "," number ["," field "," field] ")"
    test        := field ( ("==" | "!=" | "<" | "<=" | ">" | ">=") value
                         | "between" value "and" value | "in" list
                         | "has" string | "has" ("any" | "all") list | "contains" string )
    list        := "(" value ("," value)* ")"
    value       := number | string        (strings in "double" or 'single' quotes, \\ escapes)
    field       := name | `any text`      (backticks for keywords and names with spaces)
    preferences := ["prefer"] [number ":"] constraint (";" [number ":"] constraint)* [";"]

so ``not`` binds tighter than ``and``, which binds tighter than ``or``. Meaning: numeric and date
fields take the six comparisons, ``between`` (inclusive) and ``in``, dates written as ISO
strings; categorical fields take ``==``, ``!=`` and ``in``, compared as strings; multi-valued
fields take ``has`` (contains the label), ``has any`` and ``has all``; text fields take
``contains`` (case-insensitive substring); ``near(lat, lon, km)`` keeps items whose great-circle
(haversine) distance from the point is at most ``km``, from the ``latitude`` and ``longitude``
columns unless two other fields are named. A missing value satisfies no test, so ``not`` of a test
holds for it.

Soft constraints are weighted preferences: an item scores Σ weight · [it matches]. Relaxation is
the classic knowledge-based answer to "no results": when a conjunction of requirements matches
nothing, :func:`relax` says which requirements to drop, one at a time first, then in pairs, and
how many items each choice would bring back.
"""

from __future__ import annotations

import difflib
import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations
from typing import Any, Literal

import numpy as np
import pandas as pd

from recengine.data.schema import FeatureKind
from recengine.data.training_data import TrainingData
from recengine.errors import DataError

__all__ = [
    "And",
    "Between",
    "Catalog",
    "Compare",
    "Constraint",
    "Contains",
    "Has",
    "In",
    "Near",
    "Not",
    "Or",
    "Preference",
    "Relaxation",
    "conjuncts",
    "constraint_to_json",
    "constraint_to_string",
    "describe",
    "haversine_km",
    "parse_constraint",
    "parse_preferences",
    "preferences_to_json",
    "preferences_to_string",
    "relax",
    "weigh_matches",
]

Scalar = int | float | str
COMPARISONS = ("==", "!=", "<", "<=", ">", ">=")
EARTH_RADIUS_KM = 6371.0088  # mean radius (IUGG)
DEFAULT_LAT, DEFAULT_LON = "latitude", "longitude"
_KEYWORDS = frozenset({"and", "or", "not", "between", "in", "has", "any", "all", "contains",
                       "near", "prefer"})


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


@dataclass(frozen=True)
class Preference:
    """A soft constraint: matching items score ``weight`` (negative weights penalise)."""

    constraint: Constraint
    weight: float = 1.0


# -- the string form: tokenizer ---------------------------------------------------------------
@dataclass(frozen=True)
class _Token:
    kind: Literal["number", "string", "name", "field", "symbol", "end"]
    text: str  # as written: its length is what the tokenizer consumed
    value: Any
    pos: int


_NUMBER = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SYMBOLS = ("==", "!=", "<=", ">=", "<", ">", "(", ")", ",", ":", ";")


def _caret(text: str, pos: int, width: int = 40) -> str:
    """The text around ``pos`` with a caret under it, two lines indented."""
    start, end = max(0, pos - width), min(len(text), pos + width)
    head = "..." if start > 0 else ""
    tail = "..." if end < len(text) else ""
    shown = re.sub(r"\s", " ", text[start:end])
    return f"  {head}{shown}{tail}\n  {' ' * (len(head) + pos - start)}^"


def _syntax_error(message: str, text: str, pos: int, column: str) -> DataError:
    return DataError(f"{message} at offset {pos}:\n{_caret(text, pos)}", column=column)


def _read_quoted(text: str, pos: int, column: str) -> tuple[str, int]:
    """The unescaped content of the quoted run at ``pos`` and the offset just past it."""
    quote, chars, k = text[pos], [], pos + 1
    while k < len(text):
        if text[k] == "\\" and k + 1 < len(text):
            chars.append(text[k + 1])
            k += 2
        elif text[k] == quote:
            return "".join(chars), k + 1
        else:
            chars.append(text[k])
            k += 1
    raise _syntax_error(f"unterminated {quote} quote", text, pos, column)


def _read_token(text: str, pos: int, column: str) -> _Token:
    char = text[pos]
    if char in "\"'`":
        value, end = _read_quoted(text, pos, column)
        return _Token("field" if char == "`" else "string", text[pos:end], value, pos)
    symbol = next((s for s in _SYMBOLS if text.startswith(s, pos)), None)
    if symbol is not None:
        return _Token("symbol", symbol, symbol, pos)
    if match := _NUMBER.match(text, pos):
        written = match.group()
        value = float(written) if any(c in written for c in ".eE") else int(written)
        if not math.isfinite(value):
            raise _syntax_error(f"number {written} is out of range", text, pos, column)
        return _Token("number", written, value, pos)
    if match := _NAME.match(text, pos):
        return _Token("name", match.group(), match.group(), pos)
    hint = " (comparisons are ==, !=, <, <=, >, >=)" if char in "=!" else ""
    raise _syntax_error(f"unexpected character {char!r}{hint}", text, pos, column)


def _tokenize(text: str, column: str) -> list[_Token]:
    tokens, pos = [], 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos == len(text):
            tokens.append(_Token("end", "", None, pos))
            return tokens
        tokens.append(_read_token(text, pos, column))
        pos += len(tokens[-1].text)


# -- the string form: recursive descent -------------------------------------------------------
_EXPECTED = {"number": "a number", "string": "a quoted string"}


class _Parser:
    """One pass over the tokens of ``text``; ``column`` locates errors."""

    def __init__(self, text: str, column: str) -> None:
        self.text, self.column = text, column
        self.tokens = _tokenize(text, column)
        self.k = 0

    @property
    def token(self) -> _Token:
        return self.tokens[self.k]

    def advance(self) -> _Token:
        token = self.token
        if token.kind != "end":
            self.k += 1
        return token

    def error(self, expected: str, token: _Token | None = None) -> DataError:
        token = token or self.token
        found = "the end" if token.kind == "end" else repr(token.text)
        return _syntax_error(f"expected {expected}, found {found}", self.text, token.pos,
                             self.column)

    def at(self, word: str) -> bool:
        """Whether the current token is the keyword or symbol ``word``."""
        token = self.token
        return (token.kind == "name" and token.text.lower() == word) or (
            token.kind == "symbol" and token.text == word)

    def accept(self, word: str) -> bool:
        if self.at(word):
            self.advance()
            return True
        return False

    def expect(self, word: str) -> None:
        if not self.accept(word):
            raise self.error(repr(word))

    def literal(self, *kinds: str) -> Any:
        if self.token.kind in kinds:
            return self.advance().value
        raise self.error(" or ".join(_EXPECTED[k] for k in kinds))

    def literals(self, *kinds: str) -> tuple[Any, ...]:
        self.expect("(")
        values = [self.literal(*kinds)]
        while self.accept(","):
            values.append(self.literal(*kinds))
        self.expect(")")
        return tuple(values)

    def field(self) -> str:
        token = self.token
        if token.kind == "field" or (token.kind == "name"
                                     and token.text.lower() not in _KEYWORDS):
            return self.advance().value
        raise self.error("a field name, 'not', 'near' or '('")

    def finish(self, expected: str) -> None:
        if self.token.kind != "end":
            raise self.error(expected)

    # grammar rules, one method each
    def constraint(self) -> Constraint:
        parts = [self.conjunction()]
        while self.accept("or"):
            parts.append(self.conjunction())
        return _joined(Or, parts)

    def conjunction(self) -> Constraint:
        parts = [self.unary()]
        while self.accept("and"):
            parts.append(self.unary())
        return _joined(And, parts)

    def unary(self) -> Constraint:
        if self.accept("not"):
            return Not(self.unary())
        if self.accept("("):
            inner = self.constraint()
            self.expect(")")
            return inner
        if self.at("near"):
            return self.near()
        return self.test()

    def near(self) -> Near:
        self.advance()
        self.expect("(")
        values = []
        for name in ("lat", "lon", "km"):
            if values:
                self.expect(",")
            token = self.token
            values.append(self.literal("number"))
            if problem := _near_problem(name, values[-1]):
                raise _syntax_error(problem, self.text, token.pos, self.column)
        fields = (DEFAULT_LAT, DEFAULT_LON)
        if self.accept(","):
            lat_field = self.field()
            self.expect(",")
            fields = (lat_field, self.field())
        self.expect(")")
        return Near(*values, *fields)

    def test(self) -> Constraint:
        name = self.field()
        token = self.token
        if token.kind == "symbol" and token.text in COMPARISONS:
            self.advance()
            return Compare(name, token.text, self.literal("number", "string"))
        if self.accept("between"):
            low = self.literal("number", "string")
            self.expect("and")
            return Between(name, low, self.literal("number", "string"))
        if self.accept("in"):
            return In(name, self.literals("number", "string"))
        if self.accept("has"):
            if self.at("any") or self.at("all"):
                mode = self.advance().text.lower()
                return Has(name, self.literals("string"), mode)
            return Has(name, (self.literal("string"),))
        if self.accept("contains"):
            return Contains(name, self.literal("string"))
        raise self.error(f"a test after {name!r} (==, !=, <, <=, >, >=, between, in, has, "
                         "contains)")


def _near_problem(name: str, value: float) -> str | None:
    """Why ``value`` cannot be near()'s ``name`` argument, or None."""
    if name == "km":
        return None if 0 < value < math.inf else "km must be a positive distance"
    limit = 90 if name == "lat" else 180
    return None if -limit <= value <= limit else f"{name} must be between -{limit} and {limit}"


# -- the JSON form ----------------------------------------------------------------------------
_JSON_OPS = (*COMPARISONS, "between", "in", "has", "has_any", "has_all", "contains")


def _at(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _kind_of(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), type(value).__name__)


class _JsonReader:
    """Walks JSON-like data into the AST; ``root`` names the whole value in errors."""

    def __init__(self, root: str) -> None:
        self.root = root

    def error(self, path: str, message: str) -> DataError:
        return DataError(message, column=path or self.root)

    def only(self, obj: Mapping[str, Any], allowed: tuple[str, ...], path: str) -> None:
        for key in obj:
            if key not in allowed:
                raise self.error(_at(path, str(key)), f"unexpected key {key!r}; this object "
                                 f"takes {', '.join(allowed)}")

    def require(self, obj: Mapping[str, Any], key: str, path: str) -> Any:
        if key not in obj:
            raise self.error(_at(path, key), f"missing key {key!r}")
        return obj[key]

    def mapping(self, value: object, path: str, what: str = "an object") -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.error(path, f"expected {what}, got {_kind_of(value)}")
        return value

    def items(self, value: object, path: str) -> list[Any]:
        if not isinstance(value, list) or not value:
            got = "an empty list" if isinstance(value, list) else _kind_of(value)
            raise self.error(path, f"expected a non-empty list, got {got}")
        return value

    def scalar(self, value: object, path: str, *, strings: bool = True,
               numbers: bool = True) -> Scalar:
        if numbers and isinstance(value, int | float) and not isinstance(value, bool):
            if math.isfinite(value):
                return value
            raise self.error(path, f"{value} is not a finite number")
        if strings and isinstance(value, str):
            return value
        wanted = " or ".join(w for w, ok in (("a number", numbers), ("a string", strings)) if ok)
        raise self.error(path, f"expected {wanted}, got {_kind_of(value)}")

    def scalars(self, value: object, path: str, *, strings_only: bool = False) -> tuple[Any, ...]:
        return tuple(self.scalar(v, _at(path, k), numbers=not strings_only)
                     for k, v in enumerate(self.items(value, path)))

    def constraint(self, value: object, path: str = "") -> Constraint:
        obj = self.mapping(value, path, "a constraint object")
        for word, kind in (("and", And), ("or", Or)):
            if word in obj:
                self.only(obj, (word,), path)
                parts = self.items(obj[word], _at(path, word))
                return _joined(kind, [self.constraint(p, _at(_at(path, word), k))
                                      for k, p in enumerate(parts)])
        if "not" in obj:
            self.only(obj, ("not",), path)
            return Not(self.constraint(obj["not"], _at(path, "not")))
        if "near" in obj:
            self.only(obj, ("near",), path)
            return self.near(obj["near"], _at(path, "near"))
        if "field" in obj or "op" in obj:
            return self.test(obj, path)
        raise self.error(path, "expected a key and, or, not, near, or field/op/value; got "
                         f"{', '.join(map(repr, obj)) or 'no keys'}")

    def near(self, value: object, path: str) -> Near:
        obj = self.mapping(value, path)
        self.only(obj, ("lat", "lon", "km", "lat_field", "lon_field"), path)
        args: list[Any] = []
        for name in ("lat", "lon", "km"):
            number = self.scalar(self.require(obj, name, path), _at(path, name), strings=False)
            if problem := _near_problem(name, float(number)):
                raise self.error(_at(path, name), problem)
            args.append(number)
        for name, default in (("lat_field", DEFAULT_LAT), ("lon_field", DEFAULT_LON)):
            args.append(self.scalar(obj.get(name, default), _at(path, name), numbers=False))
        return Near(*args)

    def test(self, obj: Mapping[str, Any], path: str) -> Constraint:
        self.only(obj, ("field", "op", "value"), path)
        name = self.require(obj, "field", path)
        if not isinstance(name, str) or not name:
            raise self.error(_at(path, "field"), f"expected a field name, got {_kind_of(name)}")
        op = self.require(obj, "op", path)
        if op not in _JSON_OPS:
            raise self.error(_at(path, "op"), f"unknown operator {op!r}; operators: "
                             f"{', '.join(_JSON_OPS)}")
        value, where = self.require(obj, "value", path), _at(path, "value")
        if op in COMPARISONS:
            return Compare(name, op, self.scalar(value, where))
        if op == "between":
            pair = self.scalars(value, where)
            if len(pair) != 2:
                raise self.error(where, f"between takes [low, high], got {len(pair)} values")
            return Between(name, *pair)
        if op == "in":
            return In(name, self.scalars(value, where))
        if op in ("has", "contains"):
            text = self.scalar(value, where, numbers=False)
            return Has(name, (text,)) if op == "has" else Contains(name, text)
        return Has(name, self.scalars(value, where, strings_only=True), op.removeprefix("has_"))

    def preferences(self, value: object) -> tuple[Preference, ...]:
        obj = self.mapping(value, "", 'an object {"prefer": [...]}')
        self.only(obj, ("prefer",), "")
        entries = self.require(obj, "prefer", "")
        if not isinstance(entries, list):
            raise self.error("prefer", f"expected a list, got {_kind_of(entries)}")
        found = []
        for k, entry in enumerate(entries):
            path = _at("prefer", k)
            item = self.mapping(entry, path, 'an object {"weight": ..., "constraint": ...}')
            self.only(item, ("weight", "constraint"), path)
            weight = self.scalar(item.get("weight", 1), _at(path, "weight"), strings=False)
            constraint = self.constraint(self.require(item, "constraint", path),
                                         _at(path, "constraint"))
            found.append(Preference(constraint, weight))
        return tuple(found)


# -- parsing and printing, public -------------------------------------------------------------
def parse_constraint(source: Constraint | str | Mapping[str, Any]) -> Constraint:
    """A constraint from its string form, its JSON form (a dict), or a constraint as is.

    >>> parse_constraint('bedrooms >= 3 and amenities has "pets allowed"')
    And(parts=(Compare(field='bedrooms', op='>=', value=3), Has(field='amenities', \
labels=('pets allowed',), mode='any')))
    >>> parse_constraint({"field": "region", "op": "in", "value": ["Old Town"]})
    In(field='region', values=('Old Town',))
    >>> parse_constraint("bedrooms => 3")
    Traceback (most recent call last):
    ...
    recengine.errors.DataError: column 'constraint': unexpected character '=' (comparisons are \
==, !=, <, <=, >, >=) at offset 9:
      bedrooms => 3
               ^
    """
    if isinstance(source, _Node):
        return source  # type: ignore[return-value]
    if isinstance(source, str):
        parser = _Parser(source, "constraint")
        if parser.token.kind == "end":
            raise parser.error("a constraint")
        constraint = parser.constraint()
        parser.finish("'and', 'or' or the end")
        return constraint
    if isinstance(source, Mapping):
        return _JsonReader("constraint").constraint(source)
    raise TypeError("a constraint is a string, a JSON object (dict) or a Constraint, got "
                    f"{type(source).__name__}")


def parse_preferences(
    source: str | Mapping[str, Any] | Sequence[Preference | tuple[Any, float]] | None,
) -> tuple[Preference, ...]:
    """Weighted preferences from the string form, the JSON form or ``(constraint, weight)`` pairs.

    >>> [(str(p.constraint), p.weight) for p in parse_preferences(
    ...     'prefer 2: amenities has "hot tub"; region == "Alpine Lakes"')]
    [('amenities has "hot tub"', 2), ('region == "Alpine Lakes"', 1.0)]
    """
    if source is None:
        return ()
    if isinstance(source, str):
        return _parse_preference_string(source)
    if isinstance(source, Mapping):
        return _JsonReader("preferences").preferences(source)
    if isinstance(source, Sequence):
        return tuple(p if isinstance(p, Preference) else Preference(parse_constraint(p[0]),
                                                                    p[1]) for p in source)
    raise TypeError("preferences are a string, a JSON object (dict) or a list of (constraint, "
                    f"weight) pairs, got {type(source).__name__}")


def _parse_preference_string(text: str) -> tuple[Preference, ...]:
    parser = _Parser(text, "preferences")
    parser.accept("prefer")
    found = []
    while parser.token.kind != "end":
        weight = 1.0
        if parser.token.kind == "number":
            weight = parser.advance().value
            parser.expect(":")
        found.append(Preference(parser.constraint(), weight))
        if not parser.accept(";"):
            parser.finish("';', 'and', 'or' or the end")
    return tuple(found)


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


def preferences_to_string(preferences: Sequence[Preference]) -> str:
    """The string form of weighted preferences (``prefer w: constraint; ...``)."""
    return "prefer " + "; ".join(f"{_literal(p.weight)}: {p.constraint}" for p in preferences)


def preferences_to_json(preferences: Sequence[Preference]) -> dict[str, Any]:
    """The JSON form of weighted preferences: ``{"prefer": [{"weight", "constraint"}, ...]}``."""
    return {"prefer": [{"weight": p.weight, "constraint": constraint_to_json(p.constraint)}
                       for p in preferences]}


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


def conjuncts(constraint: Constraint) -> list[Constraint]:
    """The requirements of a (possibly nested) conjunction; anything else is one requirement."""
    if isinstance(constraint, And):
        return [c for part in constraint.parts for c in conjuncts(part)]
    return [constraint]


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


def weigh_matches(preferences: Sequence[Preference], matches: np.ndarray) -> np.ndarray:
    """Σ weight · match per item, from :meth:`Catalog.preference_matches`'s boolean matrix."""
    weights = np.array([p.weight for p in preferences], dtype=np.float32)
    return (weights @ matches.astype(np.float32)).astype(np.float32)


# -- relaxation -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Relaxation:
    """One way out of an empty result: drop ``dropped`` (string forms), get ``count`` items.

    ``constraint`` is what remains of the requirements (None when nothing remains).
    """

    dropped: tuple[str, ...]
    count: int
    constraint: Constraint | None


def relax(catalog: Catalog, constraint: Constraint | str | Mapping[str, Any], *,
          max_dropped: int = 2) -> list[Relaxation]:
    """Which requirements to drop when ``constraint`` matches no item: the classic relaxation.

    The requirements are the parts of the (possibly nested) conjunction; an ``or`` or a ``not``
    counts as one. Dropping one requirement is tried first; only if no single drop brings any
    item back are pairs tried, and so on up to ``max_dropped``. The answers that return items
    come sorted by how many (most first; ties keep the order of the requirements). Nothing needs
    relaxing, and the answer is empty, when the constraint already matches an item.

    >>> items = pd.DataFrame({"bedrooms": [1, 3, 4], "price": [80, 150, 300]})
    >>> catalog = Catalog(items, {"bedrooms": "numeric", "price": "numeric"})
    >>> [(r.dropped, r.count) for r in relax(catalog, "bedrooms >= 4 and price <= 200")]
    [(('bedrooms >= 4',), 2), (('price <= 200',), 1)]
    """
    parts = conjuncts(parse_constraint(constraint))
    masks = [catalog._eval(p) for p in parts]
    if _all_of(masks, catalog.n_items).any():
        return []
    for size in range(1, min(max_dropped, len(parts)) + 1):
        found = []
        for dropped in combinations(range(len(parts)), size):
            kept = [k for k in range(len(parts)) if k not in dropped]
            count = int(np.count_nonzero(_all_of([masks[k] for k in kept], catalog.n_items)))
            if count:
                found.append(Relaxation(tuple(str(parts[k]) for k in dropped), count,
                                        _joined(And, [parts[k] for k in kept]) if kept
                                        else None))
        if found:
            return sorted(found, key=lambda r: -r.count)
    return []
