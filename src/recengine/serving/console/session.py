"""Who is looking: the console's session cookie, what it may do, and its CSRF token.

A browser cannot send the API's ``X-API-Key`` header from a link, and a key must never go into
a URL (it would land in the history, in proxies' and the server's access logs). So the console
takes a key once, in a login form posted to the server, checks it as the API does (the same
keys, compared in constant time, a wrong one counted against the address by the same
:class:`~recengine.serving.limits.FailureThrottle`), and answers with a session cookie that
holds no key: the role the key gave (``read`` or ``write``), an expiry, a random nonce, and an
HMAC over them. The HMAC's secret is derived from every configured key, so every server process
of a deployment accepts it without sharing state, only a key holder could forge one, and
changing the keys ends every session. The cookie is ``HttpOnly`` (no script reads it),
``SameSite=Strict`` (no other site's page sends it) and lives for the browser session (at most
:data:`LIFETIME_SECONDS`).

Every write is a POST carrying a CSRF token (a form field, or htmx's ``X-CSRF-Token`` header)
derived from the session's nonce: a request another site forged carries neither the cookie
(SameSite) nor the token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, Request

from recengine.serving.deps import Context, Guard

__all__ = ["COOKIE", "LIFETIME_SECONDS", "Editor", "LoginRequired", "Refused", "Session",
           "Viewer", "login_role", "session_of"]

#: The session cookie's name.
COOKIE = "recengine_console"
#: The longest a session lasts, even in a browser left open.
LIFETIME_SECONDS = 12 * 3600

Role = Literal["none", "read", "write"]


class LoginRequired(Exception):
    """The page needs a read key this browser has not given: the login page answers."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


class Refused(Exception):
    """A console request refused: ``status`` and a sentence for the page."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _secret(guard: Guard) -> bytes:
    return hashlib.sha256(b"recengine-console\0" + b"\0".join(guard.keys)).digest()


def _sign(guard: Guard, text: str) -> str:
    return hmac.new(_secret(guard), text.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Session:
    """This browser's session: its role, whether its cookie must be (re)sent, and what the
    deployment's keys let it do."""

    role: Role
    nonce: str
    expires: int
    guard: Guard
    new: bool = False

    @property
    def can_read(self) -> bool:
        return self.guard.readers is None or self.role in ("read", "write")

    @property
    def can_write(self) -> bool:
        if self.guard.writers is None:  # anonymous writes (local demos)
            return True
        return self.role == "write" and bool(self.guard.writers)

    @property
    def needs_login(self) -> bool:
        """Whether a key would give this browser more than it has."""
        return not self.can_write and bool(self.guard.keys)

    @property
    def csrf(self) -> str:
        """The token every write must carry."""
        return _sign(self.guard, f"csrf:{self.nonce}")[:32]

    def cookie(self) -> str:
        body = f"{self.role}:{self.expires}:{self.nonce}"
        return f"{body}:{_sign(self.guard, body)}"

    def check_csrf(self, token: str | None) -> None:
        if not token or not hmac.compare_digest(token.encode(), self.csrf.encode()):
            raise Refused(403, "this form is out of date (or was sent by another site): "
                               "reload the page and try again")

    @classmethod
    def start(cls, guard: Guard, role: Role = "none") -> Session:
        return cls(role, secrets.token_hex(16), int(time.time()) + LIFETIME_SECONDS, guard,
                   new=True)


def session_of(request: Request) -> Session:
    """The session of the request's cookie when it is valid and current, else a new one with
    no role (sent back with the response)."""
    guard = _context(request).guard
    text = request.cookies.get(COOKIE, "")
    parts = text.split(":")
    if len(parts) == 4 and parts[0] in ("none", "read", "write") and parts[1].isdigit():
        role, expires, nonce, signature = parts
        good = hmac.compare_digest(signature.encode(),
                                   _sign(guard, f"{role}:{expires}:{nonce}").encode())
        if good and int(expires) > time.time():
            return Session(role, nonce, int(expires), guard)  # type: ignore[arg-type]
    return Session.start(guard)


def login_role(context: Context, key: str) -> Role | None:
    """The role ``key`` gives (``write`` for a write key), None for a key that is none of them."""
    given = key.encode()
    settings = context.settings
    role: Role | None = None
    for candidate in context.guard.keys:  # every key compared in full, whatever matches
        if hmac.compare_digest(given, candidate):
            role = "write" if candidate.decode() in settings.write_key_set else "read"
    return role


def _context(request: Request) -> Context:
    return request.app.state.context


async def viewer(request: Request) -> Session:
    """This browser's session, once it may look (a read key where read keys are set)."""
    session = session_of(request)
    if not session.can_read:
        raise LoginRequired(request.url.path)
    return session


async def editor(request: Request) -> Session:
    """This browser's session, once it may write (a write key) and the request carries the
    session's CSRF token (htmx's header, or the form's ``csrf`` field)."""
    session = await viewer(request)
    if not session.can_write:
        raise Refused(403, "this needs a write key: sign in with one (Enter a key, at the top)")
    token = request.headers.get("X-CSRF-Token")
    if token is None:
        value = (await request.form()).get("csrf")
        token = value if isinstance(value, str) else None
    session.check_csrf(token)
    return session


#: A page's session, once it may look.
Viewer = Annotated[Session, Depends(viewer)]
#: A write's session, once it may write, its CSRF token checked.
Editor = Annotated[Session, Depends(editor)]
