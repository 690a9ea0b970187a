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
from typing import Any, Literal

from fastapi import Request
from fastapi.responses import Response

from recengine.errors import RecengineError
from recengine.serving.console.render import context_of, failure, page
from recengine.serving.console.session import Session

__all__ = ["PAGE", "Paging", "catalogue", "number"]

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


def catalogue(request: Request, session: Session, what: Literal["user", "item"], q: str,
              offset: str) -> Response:
    """A page of the users (items) whose id contains ``q``, searched as one types."""
    store = context_of(request).store
    paging = Paging(offset=number(offset, 0), q=q[:200])
    values: dict[str, Any] = {"what": what, "paging": paging,
                              "example": "u12" if what == "user" else "i42"}
    try:
        rows, total = store.listed(what, q=paging.q, limit=paging.limit, offset=paging.offset)
        deleted = store.deleted_items() if rows and what == "item" else set()
    except RecengineError as exc:
        status, message, _ = failure(exc)
        return page(request, session, "catalogue.html", status=status, rows=[], total=0,
                    deleted=set(), message=message, **values)
    return page(request, session, "catalogue.html", rows=rows, total=total, deleted=deleted,
                **values)
