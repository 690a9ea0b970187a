"""The lexical layer of the string form: keywords, names, numbers, symbols, and the tokenizer.

The parser (:mod:`.parse`) reads these tokens and the printer (:mod:`.nodes`) writes by the same
rules. Syntax errors name the character offset and show a caret under it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal

from recengine.errors import DataError

_KEYWORDS = frozenset({"and", "or", "not", "between", "in", "has", "any", "all", "contains",
                       "near", "prefer"})


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
        number = float(written) if any(c in written for c in ".eE") else int(written)
        if not math.isfinite(number):
            raise _syntax_error(f"number {written} is out of range", text, pos, column)
        return _Token("number", written, number, pos)
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
