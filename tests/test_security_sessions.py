"""The attacks of issue 11 on the editor login and sessions, replayed over HTTP.

Each test quotes the attack as the issue states it and fails if it gets
through. The site is the real app under uvicorn on 127.0.0.1 (`livesite.py`);
concurrent guesses are sent with httpx's AsyncClient, all at once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re

import httpx
from livesite import serve
from pydantic import SecretStr
from sqlalchemy import update
from webeditor import PASSWORD, EditorClient, editor_settings

from newsletter import subscribers as subscriber_ops
from newsletter.app import prepare_edition, send_edition
from newsletter.store.engine import utcnow
from newsletter.store.schema import editor_sessions
from newsletter.web.security import hash_password

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


async def guesses(url: str, count: int, *, forwarded_for: bool) -> list[int]:
    """`count` wrong passwords sent at once by one client (one form cookie and token),
    each with its own X-Forwarded-For when asked; the status codes."""
    limits = httpx.Limits(max_connections=count + 5)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        form = await client.get("/editor/login")
        token = _CSRF.search(form.text)
        assert token, form.text

        async def guess(n: int) -> int:
            headers = {"X-Forwarded-For": f"198.18.{n // 250}.{n % 250}"}
            response = await client.post(
                "/editor/login",
                data={"csrf_token": token[1], "password": f"guess {n}"},
                headers=headers if forwarded_for else {},
            )
            return response.status_code

        return list(await asyncio.gather(*(guess(n) for n in range(count))))


def test_rotating_forwarded_for_from_a_trusted_proxy_buys_no_more_guesses(settings):
    """Attack: "With rotating `X-Forwarded-For` from loopback, 200 wrong guesses in 0.2 s,
    never a 429." Loopback is the trusted proxy here, so each guess seems another
    client's: the overall cap still stops them."""
    web = editor_settings(settings, trusted_proxies="127.0.0.1", login_attempts_overall=12)
    with serve(web) as url:
        codes = asyncio.run(guesses(url, 30, forwarded_for=True))
    assert set(codes) <= {401, 429}
    assert codes.count(401) <= 12 and codes.count(429) >= 18


def test_rotating_forwarded_for_from_an_untrusted_peer_counts_as_one_client(settings):
    """Attack: the same rotating `X-Forwarded-For`, sent at once, from a peer nobody
    trusts: the header is ignored and the per-client limit holds, even concurrently."""
    web = editor_settings(settings, editor_password=SecretStr(hash_password(PASSWORD)))
    with serve(web) as url:
        codes = asyncio.run(guesses(url, 30, forwarded_for=True))
    assert set(codes) <= {401, 429}
    assert codes.count(401) <= 10 and codes.count(429) >= 20


def test_concurrent_guesses_with_a_pbkdf2_password_are_not_all_evaluated(settings):
    """Attack: "120 concurrent guesses with a pbkdf2 password are all evaluated (the
    throttle is checked before the awaited check and recorded after it)"."""
    web = editor_settings(settings, editor_password=SecretStr(hash_password(PASSWORD)))
    with serve(web) as url:
        codes = asyncio.run(guesses(url, 120, forwarded_for=False))
    assert set(codes) <= {401, 429}
    assert codes.count(401) <= 10  # the per-client limit, however many arrive at once


def test_wrong_guesses_from_the_proxys_address_do_not_lock_the_editor_out(settings):
    """Attack: "ten wrong guesses from the proxy's address lock the real editor out".
    The editor's browser logged in before, so it carries a device cookie and is
    counted on its own; the attacker shares its address and fills that count (a
    device cookie of the attacker's making is signed by nobody and counts as none)."""
    with serve(editor_settings(settings)) as url:
        editor = EditorClient(url)
        attacker = EditorClient(url)
        attacker.http.cookies.set("newsletter_device", "made-up.0123abcd", path="/editor/login")
        try:
            assert editor.login().status_code == 303
            assert editor.post("/editor/logout").status_code == 303
            for _ in range(10):
                assert attacker.login(password="guess").status_code == 401
            assert attacker.login().status_code == 429  # the attacker's address is locked
            assert editor.login(password="typo").status_code == 401  # not 429
            assert editor.login().status_code == 303
            assert editor.get("/editor").status_code == 200
        finally:
            editor.close()
            attacker.close()


def copied_client(url: str, cookie: str) -> httpx.Client:
    """Another browser, given only the session cookie copied out of the first."""
    return httpx.Client(base_url=url, timeout=30, cookies={"newsletter_session": cookie})


def test_a_cookie_copied_before_logout_opens_nothing_after_it(settings):
    """Attack: "a cookie copied before logout still opens the editor after it"."""
    with serve(editor_settings(settings)) as url:
        editor = EditorClient(url)
        try:
            assert editor.login().status_code == 303
            copied = editor.http.cookies["newsletter_session"]
            with copied_client(url, copied) as thief:
                assert thief.get("/editor").status_code == 200  # the copy works while logged in
                assert editor.post("/editor/logout").status_code == 303
                assert thief.get("/editor").status_code == 303
                assert thief.get("/editor/subscribers.csv").status_code == 303
        finally:
            editor.close()


def test_log_out_everywhere_ends_every_session(settings):
    """Log out everywhere (the dashboard's button) ends the sessions of other browsers."""
    with serve(editor_settings(settings)) as url:
        here, there = EditorClient(url), EditorClient(url)
        try:
            assert here.login().status_code == 303 and there.login().status_code == 303
            assert "logout-everywhere" in here.get("/editor").text
            assert here.post("/editor/logout-everywhere", csrf=False).status_code == 403
            assert there.get("/editor").status_code == 200
            assert here.post("/editor/logout-everywhere").status_code == 303
            assert there.get("/editor").status_code == 303
            assert here.get("/editor").status_code == 303
        finally:
            here.close()
            there.close()


def test_a_cookie_issued_before_a_password_change_opens_nothing(settings):
    """Attack: "so does one issued before a password change"."""
    with serve(editor_settings(settings)) as url:
        editor = EditorClient(url)
        try:
            assert editor.login().status_code == 303
            copied = editor.http.cookies["newsletter_session"]
        finally:
            editor.close()
    changed = editor_settings(settings, editor_password=SecretStr("a new password, long enough"))
    with serve(changed) as url, copied_client(url, copied) as thief:
        assert thief.get("/editor").status_code == 303


def test_flash_messages_do_not_make_the_lifetime_slide(settings, engine):
    """Attack: "every flash message re-signs it, so the 12-hour limit slides for ever".
    Actions that leave a message set no new cookie and keep `expires_at`; once
    the lifetime from login is over, the session is over."""
    with serve(editor_settings(settings)) as url:
        editor = EditorClient(url)
        try:
            login = editor.login()
            assert login.status_code == 303
            assert "max-age=43200" in login.headers["set-cookie"].lower()
            expires = _expiry(engine)
            for _ in range(3):  # a test send to a bad address: refused, with a message
                answer = editor.post("/editor/edition/2026-11-25/test", {"email": "not an address"})
                assert answer.status_code == 303
                assert "newsletter_session" not in answer.headers.get("set-cookie", "")
                assert editor.get(answer.headers["location"]).status_code == 200
            assert _expiry(engine) == expires
            with engine.begin() as conn:  # twelve hours on: what the row says is the end
                conn.execute(
                    update(editor_sessions).values(expires_at=utcnow() - dt.timedelta(seconds=1))
                )
            assert editor.get("/editor").status_code == 303
        finally:
            editor.close()


def _expiry(engine) -> dt.datetime:
    with engine.connect() as conn:
        (expires,) = conn.execute(
            editor_sessions.select().with_only_columns(editor_sessions.c.expires_at)
        ).one()
    return expires


PUBLIC_WITHOUT_FORMS = ["/archive", "/archive/2026-11-25", "/archive/feed.xml", "/unsubscribe"]


def test_public_pages_without_a_form_set_no_cookie(settings, engine, smtp_server):
    """Attack: "anonymous, publicly cached pages set a session cookie"."""
    subscriber_ops.add_subscriber(engine, "ann@example.com", "Ann")
    prepared = prepare_edition(engine, settings, dt.date(2026, 11, 25))
    assert prepared is not None
    asyncio.run(send_edition(engine, settings, prepared.stored))
    with serve(editor_settings(settings)) as url, httpx.Client(base_url=url, timeout=30) as web:
        for path in [*PUBLIC_WITHOUT_FORMS, "/healthz"]:
            response = web.get(path)
            assert response.status_code == 200, path
            assert "set-cookie" not in response.headers, path
        for path in ("/subscribe", "/editor/login"):  # a form: a form cookie, never cached
            web.cookies.clear()
            response = web.get(path)
            assert response.status_code == 200
            cookie = response.headers["set-cookie"].lower()
            assert cookie.startswith("newsletter_form=")
            assert "httponly" in cookie and "samesite=strict" in cookie
            assert "no-store" in response.headers["cache-control"]
            assert "private" in response.headers["cache-control"]
