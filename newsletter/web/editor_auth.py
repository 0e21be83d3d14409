"""Logging editors in and out.

One shared password (EDITOR_PASSWORD, clear or hashed) opens a session. The
login form is itself CSRF-protected (so another site cannot log a browser into
a session of its choosing), `next` may only be a local path (the login page is
no open redirect), and wrong passwords are throttled per client address.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from newsletter.web.editor_common import flash, log_action, page, redirect
from newsletter.web.proxy import client_address
from newsletter.web.security import (
    SESSION_CSRF,
    SESSION_USER,
    check_csrf,
    check_password,
    editor_only,
    is_editor,
)

HOME = "/editor"
NO_PASSWORD = (
    "Editor logins are switched off: no editor password is set. Set "
    "NEWSLETTER_EDITOR_PASSWORD in .env or the environment (best as a hash: run "
    "`newsletter hash-password` and paste what it prints), then restart the server."
)


def safe_next(value: str | None) -> str:
    """Where to go after logging in: a path on this site, else the dashboard.

    Refused: absolute URLs, scheme-relative `//host`, backslashes (browsers read
    `/\\host` as `//host`) and control characters or spaces (browsers drop tabs
    and newlines, turning `/\\t/host` into `//host`).
    """
    if not value or not value.startswith("/") or value.startswith("//"):
        return HOME
    if "\\" in value or any(ord(char) <= 0x20 or ord(char) == 0x7F for char in value):
        return HOME
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return HOME
    return value


@dataclass
class LoginThrottle:
    """At most `limit` wrong passwords per client address in `window` seconds.

    Guessing over HTTP becomes too slow to matter while a typo costs nothing.
    Kept in memory: a restart forgets it, which only helps the real editor.
    """

    limit: int = 10
    window: float = 600.0
    failures: dict[str, list[float]] = field(default_factory=dict)

    def wait(self, client: str) -> float:
        """Seconds until `client` may try again; 0 when it may now."""
        now = time.monotonic()
        recent = [t for t in self.failures.get(client, []) if now - t < self.window]
        self.failures[client] = recent
        if len(recent) < self.limit:
            return 0.0
        return self.window - (now - recent[0])

    def failed(self, client: str) -> None:
        self.failures.setdefault(client, []).append(time.monotonic())

    def succeeded(self, client: str) -> None:
        self.failures.pop(client, None)


def throttle_of(request: Request) -> LoginThrottle:
    state = request.app.state
    if getattr(state, "login_throttle", None) is None:
        state.login_throttle = LoginThrottle()
    return state.login_throttle


async def login(request: Request) -> Response:
    """GET: the password form. POST: check it, open the session, go to `next`."""
    settings = request.app.state.settings
    configured = settings.editor_password.get_secret_value()
    if request.method == "GET":
        target = safe_next(request.query_params.get("next"))
        if is_editor(request):
            return redirect(target)
        return _form(request, target, error=None if configured else NO_PASSWORD)
    form = await request.form()
    target = safe_next(str(form.get("next", "")))
    if not await check_csrf(request):
        return _form(
            request,
            target,
            error="This form had expired (or cookies are off). Try again.",
            status_code=403,
        )
    if not configured:
        log_action(request, "login", "refused: no editor password set")
        return _form(request, target, error=NO_PASSWORD, status_code=403)
    client = client_address(request)
    throttle = throttle_of(request)
    wait = throttle.wait(client)
    if wait > 0:
        log_action(request, "login", "throttled")
        minutes = max(1, round(wait / 60))
        message = f"Too many wrong passwords. Try again in about {minutes} minute(s)."
        return _form(request, target, error=message, status_code=429)
    given = str(form.get("password", ""))
    if not await run_in_threadpool(check_password, given, configured):  # pbkdf2 takes a while
        throttle.failed(client)
        log_action(request, "login", "wrong password")
        return _form(request, target, error="Wrong password.", status_code=401)
    throttle.succeeded(client)
    request.session.clear()  # a fresh session (and CSRF token) for the logged-in editor
    request.session[SESSION_USER] = True
    request.session[SESSION_CSRF] = secrets.token_urlsafe(32)
    log_action(request, "login", "ok")
    return redirect(target)


def _form(request: Request, target: str, *, error: str | None, status_code: int = 200) -> Response:
    disabled = not request.app.state.settings.editor_password.get_secret_value()
    return page(
        request,
        "login.html",
        status_code=status_code,
        next=target,
        error=error,
        disabled=disabled,
    )


@editor_only
async def logout(request: Request) -> Response:
    """End the session (POST with the CSRF token, so no other site can log an editor out)."""
    request.session.clear()
    log_action(request, "logout", "ok")
    flash(request, "info", "You are logged out.")
    return redirect("/editor/login")
