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
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from newsletter.tokens import Purpose
from newsletter.web.editor_common import log_action, page, redirect
from newsletter.web.proxy import client_address
from newsletter.web.security import check_csrf, check_password, editor_only, is_editor
from newsletter.web.sessions import end_every_session, end_session, open_session, state_of

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


DEVICE_COOKIE = "newsletter_device"
DEVICE_MAX_AGE = 365 * 24 * 3600


@dataclass
class Admission:
    """The outcome of `LoginThrottle.admit`: evaluate the password, or wait `wait` seconds."""

    wait: float
    key: str = ""
    overall: bool = False  # counted against the overall cap (no device cookie)
    busy: bool = False  # refused because enough passwords are being checked right now


@dataclass
class LoginThrottle:
    """Login attempts, counted before they are evaluated, per client and overall.

    * Every attempt is recorded by `admit` *before* the password is checked, in
      one synchronous call (no await between the check and the record: the
      event loop runs nothing else meanwhile), so 100 concurrent guesses cannot
      all pass a check none of them has been recorded in yet.
    * Per client (`proxy.client_address`): at most `per_client` attempts in
      `window` seconds; a success forgets that client's count.
    * Overall: at most `overall` attempts per window from all clients together,
      and at most `concurrent` password checks at once, so forged or rotating
      addresses buy no more guesses (nor pbkdf2 CPU time) than that.
    * A browser that logged in before carries a signed device cookie (OWASP's
      "device cookie" pattern): its attempts are counted per device, and not
      against the per-client or overall counts an attacker fills, so guessing
      from the editor's own network or proxy does not lock the editor out.

    Kept in memory (one server process): a restart forgets it, which only helps
    the real editor. The dict stays bounded: only admitted attempts are
    recorded, at most `overall` per window besides devices, and stale keys go.
    """

    per_client: int = 10
    overall: int = 30
    window: float = 600.0
    concurrent: int = 2
    clock: Callable[[], float] = time.monotonic
    attempts: dict[str, deque[float]] = field(default_factory=dict)
    everyone: deque[float] = field(default_factory=deque)
    running: int = 0

    def admit(self, client: str, device: str | None) -> Admission:
        """Record an attempt now and say whether to evaluate it (wait 0) or refuse it."""
        now = self.clock()
        key = f"device:{device}" if device else f"client:{client}"
        mine = self._recent(key, now)
        if len(mine) >= self.per_client:
            return Admission(self.window - (now - mine[0]))
        if device is None:
            while self.everyone and now - self.everyone[0] >= self.window:
                self.everyone.popleft()
            if len(self.everyone) >= self.overall:
                return Admission(self.window - (now - self.everyone[0]))
            if self.running >= self.concurrent:
                return Admission(1.0, busy=True)
            self.everyone.append(now)
            self.running += 1
        mine.append(now)
        self.attempts[key] = mine
        return Admission(0.0, key, overall=device is None)

    def finished(self, admission: Admission, *, ok: bool) -> None:
        """The password was checked: free its slot; a success forgets its key's count."""
        if admission.overall:
            self.running -= 1
        if ok:
            self.attempts.pop(admission.key, None)

    def _recent(self, key: str, now: float) -> deque[float]:
        if len(self.attempts) > 2 * self.overall + 1000:  # sweep keys whose window passed
            stale = [k for k, times in self.attempts.items() if now - times[-1] >= self.window]
            for old in stale:
                del self.attempts[old]
        mine = self.attempts.get(key, deque())
        while mine and now - mine[0] >= self.window:
            mine.popleft()
        return mine


def throttle_of(request: Request) -> LoginThrottle:
    state = request.app.state
    if getattr(state, "login_throttle", None) is None:
        settings = state.settings
        state.login_throttle = LoginThrottle(
            per_client=settings.login_attempts_per_client,
            overall=settings.login_attempts_overall,
            window=settings.login_window_minutes * 60,
        )
    return state.login_throttle


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
    await open_session(request)  # a new id, a new row, a new CSRF token
    _device_cookie(request)
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
    """End the session (POST with the CSRF token, so no other site can log an editor out).

    The row is deleted: a copy of the cookie, anywhere, opens nothing after this.
    """
    await end_session(request)
    log_action(request, "logout", "ok")
    return redirect("/editor/login")


@editor_only
async def logout_everywhere(request: Request) -> Response:
    """End every editor session, on every browser, this one included (POST, CSRF)."""
    ended = await end_every_session(request)
    log_action(request, "logout_everywhere", "ok", sessions=ended)
    return redirect("/editor/login")
