"""Editor sessions that end, and the cookies of the web side, set in one place.

The session cookie holds a random id (`secrets.token_urlsafe(32)`); the row in
`editor_sessions` (`store/sessions.py`) holds its SHA-256 and the rest. So:

* logging out deletes the row, and a copy of the cookie taken before opens
  nothing anywhere; "log out everywhere" (dashboard button, `newsletter
  logout-everywhere`) deletes every row;
* a row carries a keyed mark of the password it was opened with
  (`Signer.mac(Purpose.SESSION, password)`): change EDITOR_PASSWORD (or
  SECRET_KEY) and every session is dead;
* the lifetime (EDITOR_SESSION_HOURS) is fixed at login and never slides:
  writing a flash message stores data, never `expires_at`;
* every login gets a new id (and the anonymous form cookie is dropped).

`SessionCookies` is the ASGI middleware that loads the row for a request,
gives handlers `request.session` as a plain dict (what the editor pages keep
their flash messages and last test address in), writes it back before the
response starts, and adds the Set-Cookie lines. A request without a session
cookie costs no query. Pages shown before any login (the login and sign-up
forms) get a form cookie instead, only when they render a form
(`security.csrf_token`); a response that sets any cookie is never publicly
cacheable.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from newsletter.config import Settings
from newsletter.errors import StoreError
from newsletter.hygiene import one_line
from newsletter.logs import event
from newsletter.store import sessions as session_store
from newsletter.store.engine import utcnow
from newsletter.tokens import Purpose, Signer
from newsletter.web.proxy import client_address

log = logging.getLogger("newsletter.web")

SESSION_COOKIE = "newsletter_session"
FORM_COOKIE = "newsletter_form"
EDITOR = "editor"  # the key of `request.session` that says "logged in" (templates read it)
_STATE = "newsletter.session"


@dataclass
class SessionState:
    """What one request knows of its session and the cookies its response must set."""

    settings: Settings
    secure: bool
    data: dict[str, Any]  # the very dict `request.session` is
    row: session_store.SessionRow | None = None
    saved: str = "{}"  # `data` as stored, to write it back only when it changed
    form_value: str = ""  # the form cookie's value, from the request or new
    form_is_new: bool = False
    cookies: list[str] = field(default_factory=list)

    @property
    def logged_in(self) -> bool:
        return self.row is not None

    def cookie(self, name: str, value: str, *, max_age: int | None, path: str = "/") -> None:
        """A Set-Cookie line: HttpOnly, SameSite=Strict, Secure over https."""
        parts = [f"{name}={value}", f"Path={path}", "HttpOnly", "SameSite=Strict"]
        if max_age is not None:
            parts.append(f"Max-Age={max_age}")
        if self.secure:
            parts.append("Secure")
        self.cookies.append("; ".join(parts))


def state_of(request: HTTPConnection) -> SessionState:
    return request.scope[_STATE]


def password_mark(signer: Signer, settings: Settings) -> str:
    """The keyed mark of the current editor password a live session must carry."""
    return signer.mac(Purpose.SESSION, settings.editor_password.get_secret_value())


def form_value(request: HTTPConnection) -> str:
    """The form cookie's random value; a new one (set on this response) when there is none."""
    state = state_of(request)
    if not state.form_value:
        state.form_value = secrets.token_urlsafe(32)
        state.form_is_new = True
        state.cookie(FORM_COOKIE, state.form_value, max_age=None)
    return state.form_value


async def open_session(request: Request) -> None:
    """Log this browser in: a new id and row (the old session, if any, ends), a new cookie."""
    app = request.app.state
    state = state_of(request)
    if state.row is not None:
        await run_in_threadpool(session_store.end, app.engine, state.row.id_hash)
    session_id = secrets.token_urlsafe(32)
    now = utcnow()
    hours = state.settings.editor_session_hours
    state.row = await run_in_threadpool(
        lambda: session_store.create(
            app.engine,
            session_id=session_id,
            now=now,
            expires_at=now + dt.timedelta(hours=hours),
            password_mark=password_mark(app.signer, state.settings),
            csrf=secrets.token_urlsafe(32),
            client=client_address(request),
            user_agent=one_line(request.headers.get("user-agent", "")),
        )
    )
    state.data.clear()
    state.data[EDITOR] = True
    state.saved = "{}"
    state.cookie(SESSION_COOKIE, session_id, max_age=round(hours * 3600))
    if state.form_value:  # the anonymous form token is of no use once logged in
        state.form_value = ""
        state.cookie(FORM_COOKIE, "", max_age=0)


async def end_session(request: Request) -> None:
    """Log out: the row goes, so every copy of the cookie is dead; the cookie is cleared."""
    state = state_of(request)
    if state.row is not None:
        await run_in_threadpool(session_store.end, request.app.state.engine, state.row.id_hash)
    _forget(state)


async def end_every_session(request: Request) -> int:
    """Log out everywhere, this browser included; how many sessions there were."""
    ended = await run_in_threadpool(session_store.end_all, request.app.state.engine)
    _forget(state_of(request))
    return ended


def _forget(state: SessionState) -> None:
    state.row = None
    state.data.clear()
    state.cookie(SESSION_COOKIE, "", max_age=0)


class SessionCookies:
    """ASGI middleware: `request.session` from the session row; cookies on the way out."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.https_base = settings.base_url.startswith("https://")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        connection = HTTPConnection(scope)
        secure = self.https_base or scope.get("scheme") == "https"
        state = SessionState(self.settings, secure, data={})
        scope["session"] = state.data
        scope[_STATE] = state
        state.form_value = connection.cookies.get(FORM_COOKIE, "")[:100]
        session_id = connection.cookies.get(SESSION_COOKIE, "")
        if session_id:
            try:
                await self._load(scope, state, session_id[:100])
            except StoreError as exc:
                event(log, "session_unreadable", error=exc.message)
                answer = PlainTextResponse(
                    "The editor sessions cannot be read just now (the database did not "
                    "answer). Try again in a minute.",
                    status_code=503,
                    headers={"Cache-Control": "no-store", "Retry-After": "60"},
                )
                await answer(scope, receive, send)
                return

        async def send_with_cookies(message: Message) -> None:
            if message["type"] == "http.response.start":
                await self._save(scope, state)
                if state.cookies:
                    headers = MutableHeaders(scope=message)
                    for cookie in state.cookies:
                        headers.append("set-cookie", cookie)
                    headers["cache-control"] = "private, no-store"
            await send(message)

        await self.app(scope, receive, send_with_cookies)

    async def _load(self, scope: Scope, state: SessionState, session_id: str) -> None:
        app = scope["app"].state
        row = await run_in_threadpool(session_store.find, app.engine, session_id)
        if row is None:
            state.cookie(SESSION_COOKIE, "", max_age=0)
            return
        configured = self.settings.editor_password.get_secret_value()
        if (
            row.expires_at <= utcnow()
            or not configured
            or row.password_mark != password_mark(app.signer, self.settings)
        ):
            await run_in_threadpool(session_store.end, app.engine, row.id_hash)
            state.cookie(SESSION_COOKIE, "", max_age=0)
            return
        state.row = row
        state.data.update(row.data)
        state.data[EDITOR] = True
        state.saved = json.dumps(row.data, sort_keys=True)

    async def _save(self, scope: Scope, state: SessionState) -> None:
        """Write the session's data back if a handler changed it (never its lifetime)."""
        if state.row is None:
            return
        data = {key: value for key, value in state.data.items() if key != EDITOR}
        text = json.dumps(data, sort_keys=True)
        if text == state.saved:
            return
        try:
            await run_in_threadpool(
                session_store.save_data, scope["app"].state.engine, state.row.id_hash, data
            )
        except StoreError as exc:  # the page is still right; only a flash message is lost
            event(log, "session_unsaved", error=exc.message)
        state.saved = text
