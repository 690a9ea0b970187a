"""The web console (issue 15): what a recommender does, seen in a browser, served by the API.

Pages are rendered on the server from Jinja2 templates (``templates/``), with htmx 2.0.11
(vendored in ``static/``, its licence beside it) swapping parts of a page in place: search as
you type, the lists of a user after a constraint or a posted event. Charts are inline SVG drawn by
:mod:`.charts`. Nothing is loaded from outside the server, and no build step is needed: the
templates and static files ship in the wheel.

Each page calls what the JSON API calls: a user's lists come from the recommendation route's
own function, so ``/console/users/{id}`` shows exactly the ids of
``GET /v1/users/{id}/recommendations``. Keys are taken once, in a form, and kept as a signed
session cookie (:mod:`.session`); every write needs a write key and a CSRF token.

Pages: overview (:mod:`.overview`), users (:mod:`.users`), items (:mod:`.items`), models
(:mod:`.models`), data (:mod:`.data`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from fastapi import FastAPI, Form, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from recengine.serving.console import data, items, models, overview, users
from recengine.serving.console.render import context_of, error_page, htmx, page, secure
from recengine.serving.console.session import (
    COOKIE,
    LoginRequired,
    Refused,
    Session,
    login_role,
    session_of,
)
from recengine.serving.deps import _address

__all__ = ["install_console"]

#: The vendored files (htmx and its licence, the style sheet).
STATIC = Path(__file__).parent / "static"


def install_console(app: FastAPI) -> None:
    """Serve the console under ``/console`` (left out of the OpenAPI description)."""
    app.add_api_route("/console/login", _login_form, methods=["GET"], include_in_schema=False)
    app.add_api_route("/console/login", _login, methods=["POST"], include_in_schema=False)
    app.add_api_route("/console/logout", _logout, methods=["POST"], include_in_schema=False)
    for module in (overview, users, items, models, data):
        app.include_router(module.router, include_in_schema=False)
    app.mount("/console/static", StaticFiles(directory=STATIC), name="console-static")
    app.add_exception_handler(LoginRequired, _to_login)
    app.add_exception_handler(Refused, _refused)


def _safe_next(target: str) -> str:
    """Only a console page of this server: never an open redirect."""
    return target if target.startswith("/console") and "//" not in target else "/console"


def _login_form(request: Request, next: str = "/console") -> Response:
    return page(request, session_of(request), "login.html", next=_safe_next(next))


def _login(request: Request, key: Annotated[str, Form()] = "",
           next: Annotated[str, Form()] = "/console") -> Response:
    """Check ``key`` as the API checks its header; on success, a session of its role."""
    ctx = context_of(request)
    guard, address, target = ctx.guard, _address(request), _safe_next(next)
    if wait := guard.failures.wait(address):
        return page(request, session_of(request), "login.html", status=429, next=target,
                    message=f"too many wrong keys from this address: wait {wait:.0f} s")
    role = login_role(ctx, key) if key else None
    if role is None:
        if key:
            guard.failures.failed(address)
        return page(request, session_of(request), "login.html", status=403, next=target,
                    message="that key is not one of this server's keys")
    return secure(RedirectResponse(target, status_code=303), Session.start(guard, role),
                  request)


def _logout(request: Request, csrf: Annotated[str, Form()] = "") -> Response:
    session_of(request).check_csrf(csrf)
    response = secure(RedirectResponse("/console", status_code=303))
    response.delete_cookie(COOKIE, path="/console")
    return response


def _to_login(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    target = f"/console/login?next={quote(exc.path)}"
    if htmx(request):
        return secure(Response(status_code=200, headers={"HX-Redirect": target}))
    return secure(RedirectResponse(target, status_code=303))


def _refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Refused)
    return error_page(request, exc.status, exc.message)
