"""The editor login, the signed session cookie, and CSRF tokens for every form.

The password is compared as a salted hash in constant time (EDITOR_PASSWORD
may be given as a `pbkdf2_sha256$…` hash or, for a quick start, in clear). The
session is Starlette's signed cookie. Each session gets a random CSRF token;
every POST form carries it and `check_csrf` refuses a request without it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

ITERATIONS = 200_000
SESSION_USER = "editor"
SESSION_CSRF = "csrf"


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """`pbkdf2_sha256$iterations$salt$hash`, the form EDITOR_PASSWORD may be stored in."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, ITERATIONS)
    encode = base64.urlsafe_b64encode
    return f"pbkdf2_sha256${ITERATIONS}${encode(salt).decode()}${encode(digest).decode()}"


def check_password(given: str, configured: str) -> bool:
    if not configured:
        return False
    if configured.startswith("pbkdf2_sha256$"):
        try:
            _, iterations, salt, expected = configured.split("$")
            digest = hashlib.pbkdf2_hmac(
                "sha256", given.encode(), base64.urlsafe_b64decode(salt), int(iterations)
            )
        except ValueError:
            return False
        return hmac.compare_digest(base64.urlsafe_b64encode(digest).decode(), expected)
    # A clear-text setting: compare hashes of both, so timing says nothing of the password.
    return hmac.compare_digest(
        hashlib.sha256(given.encode()).digest(), hashlib.sha256(configured.encode()).digest()
    )


def csrf_token(request: Request) -> str:
    token = request.session.get(SESSION_CSRF)
    if not token:
        token = secrets.token_urlsafe(32)
        request.session[SESSION_CSRF] = token
    return token


async def check_csrf(request: Request) -> bool:
    """True when the form's `csrf_token` matches the session's."""
    form = await request.form()
    given = str(form.get("csrf_token", ""))
    expected = request.session.get(SESSION_CSRF, "")
    return bool(expected) and hmac.compare_digest(given, expected)


def is_editor(request: Request) -> bool:
    return request.session.get(SESSION_USER) is True


Handler = Callable[[Request], Awaitable[Response]]


def editor_only(handler: Handler) -> Handler:
    """Send anyone not logged in to the login page; refuse a POST without a valid CSRF token."""

    async def wrapped(request: Request) -> Response:
        if not is_editor(request):
            return RedirectResponse(f"/editor/login?next={request.url.path}", status_code=303)
        if request.method == "POST" and not await check_csrf(request):
            pages = request.app.state.pages
            return pages.render(
                request,
                "error.html",
                status_code=403,
                title="Form expired",
                message="This form is no longer valid (its security token is missing or old). "
                "Go back, reload the page and try again.",
            )
        return await handler(request)

    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped
