"""Parsing both surface forms into the AST; nothing is ever evaluated as Python.

The string form is parsed by recursive descent over :mod:`.tokens`; the JSON form is walked node
by node, and its errors name the JSON path (``and[2].op``).

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

so ``not`` binds tighter than ``and``, which binds tighter than ``or``.

Both forms nest at most :data:`MAX_DEPTH` levels (each ``not``, parenthesis, ``and``/``or``
object): the parser recurses once per level, and a request of a thousand ``not`` would otherwise
exhaust Python's stack (a ``RecursionError``, not an answer). Real constraints nest a few levels.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal, overload

from recengine.errors import DataError
from recengine.models.constraints.nodes import (
    COMPARISONS,
    DEFAULT_LAT,
    DEFAULT_LON,
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
    _joined,
    _Node,
)
from recengine.models.constraints.preferences import Preference
from recengine.models.constraints.tokens import _KEYWORDS, _syntax_error, _Token, _tokenize

#: How deeply a constraint may nest (``not``, parentheses, ``and``/``or`` objects), in both forms.
MAX_DEPTH = 32

# -- the string form: recursive descent -------------------------------------------------------
_EXPECTED = {"number": "a number", "string": "a quoted string"}


class _Parser:
    """One pass over the tokens of ``text``; ``column`` locates errors."""

    def __init__(self, text: str, column: str) -> None:
        self.text, self.column = text, column
        self.tokens = _tokenize(text, column)
        self.k = 0
        self.depth = 0

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
        if self.at("not") or self.at("("):
            return self.nested()
        if self.at("near"):
            return self.near()
        return self.test()

    def nested(self) -> Constraint:
        """``not`` or a parenthesised constraint: one level deeper, up to :data:`MAX_DEPTH`."""
        if self.depth == MAX_DEPTH:
            raise _syntax_error(f"nested deeper than {MAX_DEPTH} levels", self.text,
                                self.token.pos, self.column)
        self.depth += 1
        inner: Constraint
        if self.accept("not"):
            inner = Not(self.unary())
        else:
            self.expect("(")
            inner = self.constraint()
            self.expect(")")
        self.depth -= 1
        return inner

    def near(self) -> Near:
        self.advance()
        self.expect("(")
        values: list[float] = []
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
        lat, lon, km = values
        return Near(lat, lon, km, *fields)

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
                mode: Literal["any", "all"] = "any" if self.at("any") else "all"
                self.advance()
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

    @overload
    def scalar(self, value: object, path: str, *, strings: Literal[False],
               numbers: Literal[True] = ...) -> int | float: ...
    @overload
    def scalar(self, value: object, path: str, *, strings: Literal[True] = ...,
               numbers: Literal[False]) -> str: ...
    @overload
    def scalar(self, value: object, path: str, *, strings: bool = ...,
               numbers: bool = ...) -> Scalar: ...
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

    def constraint(self, value: object, path: str = "", depth: int = 0) -> Constraint:
        """The constraint at ``path``, ``depth`` levels of and/or/not below the root."""
        obj = self.mapping(value, path, "a constraint object")
        nests = next((word for word in ("and", "or", "not") if word in obj), None)
        if nests is not None and depth == MAX_DEPTH:
            raise self.error(path, f"nested deeper than {MAX_DEPTH} levels")
        for word, kind in (("and", And), ("or", Or)):
            if word in obj:
                self.only(obj, (word,), path)
                parts = self.items(obj[word], _at(path, word))
                return _joined(kind, [self.constraint(p, _at(_at(path, word), k), depth + 1)
                                      for k, p in enumerate(parts)])
        if "not" in obj:
            self.only(obj, ("not",), path)
            return Not(self.constraint(obj["not"], _at(path, "not"), depth + 1))
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


# -- public -----------------------------------------------------------------------------------
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
        return source
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
    if isinstance(source, Sequence) and not isinstance(source, str):  # mypy: not str again
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
