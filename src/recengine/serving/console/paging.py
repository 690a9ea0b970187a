"""Pages of a list in the console, and numbers read leniently from its links and forms.

A console link or form must never answer a JSON 422 meant for programs: a page number that is
not one is read as the first page, and limits are clamped.

>>> number("12", 0), number("-3", 0), number("x", 5)
(12, 0, 5)
>>> Paging(offset=50, limit=25).previous, Paging(offset=50, limit=25).next_offset(80)
(25, 75)
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PAGE", "Paging", "number"]

#: Rows per page of a list.
PAGE = 25


def number(text: str, default: int, *, top: int = 2**31 - 1) -> int:
    """``text`` as a whole number from 0 to ``top``; ``default`` when it is not one."""
    text = text.strip()
    if not text.isdigit():
        return default
    return min(int(text), top)


@dataclass(frozen=True)
class Paging:
    """Where a page starts, its size, and the search it belongs to."""

    offset: int = 0
    limit: int = PAGE
    q: str = ""

    @property
    def previous(self) -> int | None:
        return max(0, self.offset - self.limit) if self.offset else None

    def next_offset(self, total: int) -> int | None:
        following = self.offset + self.limit
        return following if following < total else None
