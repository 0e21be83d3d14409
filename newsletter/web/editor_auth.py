"""Logging editors in and out.

One shared password (EDITOR_PASSWORD, clear or hashed) opens a server-side
session (`sessions.py`). The login form is itself CSRF-protected (so another
site cannot log a browser into a session of its choosing), `next` may only be a
local path (the login page is no open redirect), and attempts are throttled
per client, per device and overall (`LoginThrottle`).
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from newsletter.errors import StoreError
from newsletter.tokens import Purpose
from newsletter.web.editor_common import log_action, message_page, page, redirect
from newsletter.web.login_throttle import throttle_of
from newsletter.web.proxy import client_address
from newsletter.web.security import check_csrf, check_password, editor_only, is_editor
from newsletter.web.sessions import end_every_session, end_session, open_session, state_of

HOME = "/editor"
STORE_DOWN = (
    "The database did not answer, so nothing changed: try again in a minute "
    "(or run `newsletter logout-everywhere` on the server)."
)
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


DEVICE_COOKIE = "newsletter_device"
DEVICE_MAX_AGE = 365 * 24 * 3600


def device_of(request: Request) -> str | None:
    """The id in a valid device cookie (`nonce.mac`, keyed by `Purpose.DEVICE`), else None."""
    nonce, _, mac = request.cookies.get(DEVICE_COOKIE, "")[:200].partition(".")
    if not nonce or not mac:
        return None
    expected = request.app.state.signer.mac(Purpose.DEVICE, nonce)
    return nonce if hmac.compare_digest(mac.encode(), expected.encode()) else None


def _device_cookie(request: Request) -> None:
    """Mark this browser as one an editor logged in from (a new id after each login)."""
    nonce = secrets.token_urlsafe(16)
    mac = request.app.state.signer.mac(Purpose.DEVICE, nonce)
    state_of(request).cookie(
        DEVICE_COOKIE, f"{nonce}.{mac}", max_age=DEVICE_MAX_AGE, path="/editor/login"
    )


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
    throttle = throttle_of(request)
    # No await between here and the record: admit() checks and records in one step.
    admission = throttle.admit(client_address(request), device_of(request))
    if admission.wait > 0:
        log_action(request, "login", "busy" if admission.busy else "throttled")
        if admission.busy:
            message = "The server is checking other logins just now. Try again in a moment."
        else:
            minutes = max(1, round(admission.wait / 60))
            message = f"Too many wrong passwords. Try again in about {minutes} minute(s)."
        response = _form(request, target, error=message, status_code=429)
        response.headers["Retry-After"] = str(max(1, round(admission.wait)))
        return response
    given = str(form.get("password", ""))
    ok = False
    try:
        ok = await run_in_threadpool(check_password, given, configured)  # pbkdf2 takes a while
    finally:
        throttle.finished(admission, ok=ok)
    if not ok:
        log_action(request, "login", "wrong password")
        return _form(request, target, error="Wrong password.", status_code=401)
    try:
        await open_session(request)  # a new id, a new row, a new CSRF token
    except StoreError as exc:
        log_action(request, "login", "session not stored", error=exc.message)
        return _form(request, target, error=STORE_DOWN, status_code=503)
    _device_cookie(request)
    log_action(request, "login", "ok")
    return redirect(target)


#: What the login page says after a logout (the session, and its flash messages, are gone).
ENDED = {
    "logout": "You are logged out.",
    "everywhere": "Every editor session has ended, on every browser. Log in again to go on.",
}


def _form(request: Request, target: str, *, error: str | None, status_code: int = 200) -> Response:
    disabled = not request.app.state.settings.editor_password.get_secret_value()
    return page(
        request,
        "login.html",
        status_code=status_code,
        next=target,
        error=error,
        disabled=disabled,
        notice=ENDED.get(request.query_params.get("ended", "")) if error is None else None,
    )


@editor_only
async def logout(request: Request) -> Response:
    """End the session (POST with the CSRF token, so no other site can log an editor out).

    The row is deleted: a copy of the cookie, anywhere, opens nothing after this.
    """
    try:
        await end_session(request)
    except StoreError as exc:
        log_action(request, "logout", "session not deleted", error=exc.message)
        return message_page(request, "Not logged out", STORE_DOWN, 503)
    log_action(request, "logout", "ok")
    return redirect("/editor/login?ended=logout")


@editor_only
async def logout_everywhere(request: Request) -> Response:
    """End every editor session, on every browser, this one included (POST, CSRF)."""
    try:
        ended = await end_every_session(request)
    except StoreError as exc:
        log_action(request, "logout_everywhere", "sessions not deleted", error=exc.message)
        return message_page(request, "Sessions not ended", STORE_DOWN, 503)
    log_action(request, "logout_everywhere", "ok", sessions=ended)
    return redirect("/editor/login?ended=everywhere")
