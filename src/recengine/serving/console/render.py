"""Pages from the package's Jinja2 templates, with the session's cookie and strict headers.

Templates autoescape everything (ids, features and error messages are user data). Every answer
forbids framing and outside resources (``Content-Security-Policy``: this server only, so no page
can load anything from elsewhere, by design and by the browser's enforcement), and is never
cached: pages show a user's data.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from recengine.errors import DataError, RecengineError, StoreError
from recengine.serving.console.session import COOKIE, Session, session_of
from recengine.serving.deps import Context
from recengine.serving.routes._common import STORE_DOWN, status_of

__all__ = ["HEADERS", "context_of", "error_page", "failure", "htmx", "page", "secure"]

_ENV = Environment(loader=PackageLoader("recengine.serving.console", "templates"),
                   autoescape=select_autoescape(default=True), trim_blocks=True,
                   lstrip_blocks=True)

#: Sent with every console answer.
HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; img-src 'self' data:; style-src 'self'; "
                                "script-src 'self'; frame-ancestors 'none'; form-action 'self'"),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def context_of(request: Request) -> Context:
    return request.app.state.context


def htmx(request: Request) -> bool:
    """Whether htmx asked (it then swaps in a fragment, not a whole page)."""
    return request.headers.get("HX-Request") == "true"


def secure(response: Response, session: Session | None = None,
           request: Request | None = None) -> Response:
    """``response`` with :data:`HEADERS`, and the session's cookie when it is new: marked
    ``Secure`` when ``request`` came over HTTPS (directly, or through a proxy uvicorn trusts),
    so it never travels in clear there, while plain-HTTP localhost still works."""
    response.headers.update(HEADERS)
    if session is not None and session.new:
        # no max_age: the browser forgets it when it closes; the server's expiry bounds it too
        over_https = request is not None and request.url.scheme == "https"
        response.set_cookie(COOKIE, session.cookie(), httponly=True, samesite="strict",
                            path="/console", secure=over_https)
    return response


def page(request: Request, session: Session, template: str, *, status: int = 200,
         **values: Any) -> Response:
    """``template`` rendered with ``values``, the session and the page's path."""
    ctx = context_of(request)
    html = _ENV.get_template(template).render(
        session=session, path=request.url.path, version=ctx.state.version,
        nav=request.url.path.split("/")[2] if request.url.path.count("/") > 1 else "",
        **values)
    return secure(HTMLResponse(html, status_code=status), session, request)


def error_page(request: Request, status: int, message: str, field: str | None = None
               ) -> Response:
    """The error as a page, or as a fragment for htmx (swapped in where the answer goes)."""
    template = "_error.html" if htmx(request) else "error.html"
    heading = {403: "Not allowed", 404: "Not found", 429: "Too many requests"}.get(
        status, "That did not work")
    return page(request, session_of(request), template, status=status, message=message,
                field=field, heading=heading)


def failure(exc: RecengineError) -> tuple[int, str, str | None]:
    """The status the API would answer ``exc`` with, its message, and the field it names."""
    if isinstance(exc, StoreError):  # its text names the database's host and user
        return status_of(exc), STORE_DOWN, None
    field = exc.column if isinstance(exc, DataError) else None
    return status_of(exc), getattr(exc, "message", str(exc)), field
