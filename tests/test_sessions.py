"""Server-side editor sessions: what the cookie and the table hold, how a session
starts, lasts and ends, and the form cookie of the pages shown before a login.

The app runs in-process (Starlette's TestClient) on the test's real database;
the attacks over HTTP are in test_security_sessions.py.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Iterator

import pytest
from sqlalchemy import insert, select, text
from starlette.testclient import TestClient
from webeditor import PASSWORD, editor_settings

from newsletter.store.engine import utcnow
from newsletter.store.schema import editor_sessions
from newsletter.web import create_app
from newsletter.web.login_throttle import LoginThrottle

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def app_client(settings, **changes) -> TestClient:
    web = editor_settings(settings, **changes)
    return TestClient(create_app(web), base_url=web.base_url, follow_redirects=False)


@pytest.fixture
def client(settings) -> Iterator[TestClient]:
    with app_client(settings) as client:
        yield client


def token_of(client: TestClient, path: str) -> str:
    found = _CSRF.search(client.get(path).text)
    assert found
    return found.group(1)


def log_in(client: TestClient, password: str = PASSWORD):
    token = token_of(client, "/editor/login")
    return client.post("/editor/login", data={"csrf_token": token, "password": password})


def set_cookies(response) -> dict[str, str]:
    """name -> the whole Set-Cookie line, lower-cased."""
    lines = response.headers.get_list("set-cookie")
    return {line.split("=", 1)[0]: line.lower() for line in lines}


def rows(engine) -> list:
    with engine.connect() as conn:
        return conn.execute(select(editor_sessions)).all()


def test_the_cookie_holds_a_random_id_and_the_table_only_its_hash(client, engine):
    response = log_in(client)
    assert response.status_code == 303
    cookie = set_cookies(response)["newsletter_session"]
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/;" in cookie
    assert f"max-age={12 * 3600}" in cookie
    session_id = client.cookies["newsletter_session"]
    assert len(session_id) >= 43  # secrets.token_urlsafe(32)
    (row,) = rows(engine)
    assert row.id_hash == hashlib.sha256(session_id.encode()).hexdigest()
    assert session_id not in repr(tuple(row))
    assert row.expires_at - row.created_at == dt.timedelta(hours=12)


def test_cookies_are_secure_when_the_base_url_is_https(settings):
    with app_client(settings, base_url="https://news.example.org") as client:
        assert "; secure" in set_cookies(client.get("/editor/login"))["newsletter_form"]
        cookies = set_cookies(log_in(client))
        assert "; secure" in cookies["newsletter_session"]
        assert "; secure" in cookies["newsletter_device"]


def test_the_lifetime_is_the_setting_and_the_cookie_says_what_remains(settings, engine):
    with app_client(settings, editor_session_hours=1.5) as client:
        cookie = set_cookies(log_in(client))["newsletter_session"]
    assert "max-age=5400" in cookie
    (row,) = rows(engine)
    assert row.expires_at - row.created_at == dt.timedelta(hours=1.5)


def test_each_login_gets_a_new_id_and_the_old_one_is_dead(client, engine):
    assert log_in(client).status_code == 303
    first = client.cookies["newsletter_session"]
    client.cookies.clear()
    assert log_in(client).status_code == 303
    second = client.cookies["newsletter_session"]
    assert first != second
    client.cookies.clear()
    client.cookies.set("newsletter_session", first)
    assert client.get("/editor").status_code == 200  # two browsers, two sessions
    token = token_of(client, "/editor")  # logging in again from the first browser
    response = client.post("/editor/login", data={"csrf_token": token, "password": PASSWORD})
    assert response.status_code == 303
    third = response.cookies["newsletter_session"]
    assert third not in (first, second)
    client.cookies.clear()
    client.cookies.set("newsletter_session", first)
    assert client.get("/editor").status_code == 303
    assert len(rows(engine)) == 2


def test_the_anonymous_form_token_is_useless_after_login(client):
    form_token = token_of(client, "/editor/login")
    response = client.post("/editor/login", data={"csrf_token": form_token, "password": PASSWORD})
    assert response.status_code == 303
    assert "max-age=0" in set_cookies(response)["newsletter_form"]
    assert client.post("/editor/logout", data={"csrf_token": form_token}).status_code == 403
    assert client.get("/editor").status_code == 200
    assert token_of(client, "/editor") != form_token


def test_expired_rows_are_deleted_at_login(client, engine):
    old = utcnow() - dt.timedelta(days=2)
    with engine.begin() as conn:
        conn.execute(
            insert(editor_sessions).values(
                id_hash="0" * 64,
                created_at=old,
                expires_at=old + dt.timedelta(hours=12),
                password_mark="x",
                csrf="y",
                data="{}",
            )
        )
    assert log_in(client).status_code == 303
    assert [row.id_hash for row in rows(engine)] != ["0" * 64]
    assert len(rows(engine)) == 1


def test_a_forged_or_unknown_session_cookie_is_cleared_and_opens_nothing(client):
    client.cookies.set("newsletter_session", "x" * 43)
    response = client.get("/editor")
    assert response.status_code == 303
    assert "max-age=0" in set_cookies(response)["newsletter_session"]


def test_a_flash_message_is_kept_across_the_redirect_without_a_new_cookie(client, engine):
    assert log_in(client).status_code == 303
    token = token_of(client, "/editor")
    before = rows(engine)[0].expires_at
    answer = client.post(
        "/editor/edition/2026-11-25/test", data={"csrf_token": token, "email": "not an address"}
    )
    assert answer.status_code == 303 and "set-cookie" not in answer.headers
    page = client.get(answer.headers["location"])
    assert 'class="flash error"' in page.text
    assert 'class="flash error"' not in client.get(answer.headers["location"]).text  # shown once
    assert rows(engine)[0].expires_at == before


def test_logout_deletes_the_row_and_clears_the_cookie(client, engine):
    assert log_in(client).status_code == 303
    response = client.post("/editor/logout", data={"csrf_token": token_of(client, "/editor")})
    assert response.status_code == 303
    assert "max-age=0" in set_cookies(response)["newsletter_session"]
    assert rows(engine) == []


def test_the_cli_logs_out_everywhere(settings, engine, cli_env):
    cli_env["NEWSLETTER_DATABASE_URL"] = settings.database_url
    with app_client(settings) as one, app_client(settings) as two:
        assert log_in(one).status_code == 303 and log_in(two).status_code == 303
        assert len(rows(engine)) == 2
        result = cli_env.run("logout-everywhere")
        assert "ended 2 editor sessions" in result.stdout
        assert one.get("/editor").status_code == 303 and two.get("/editor").status_code == 303
    assert rows(engine) == []


def test_a_session_store_that_cannot_be_read_is_a_clear_503(client, engine):
    assert log_in(client).status_code == 303
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE editor_sessions"))
    response = client.get("/editor")
    assert response.status_code == 503
    assert "sessions cannot be read" in response.text
    assert client.get("/archive").status_code == 503  # the cookie is sent there too
    client.cookies.clear()
    assert client.get("/archive").status_code == 200  # without one, no query at all


def test_the_form_cookie_is_set_once_and_its_token_is_good_only_with_it(settings):
    with app_client(settings) as one, app_client(settings) as two:
        first = one.get("/subscribe")
        assert "newsletter_form" in set_cookies(first)
        assert first.headers["cache-control"] == "private, no-store"
        second = one.get("/subscribe")
        assert "set-cookie" not in second.headers
        token = _CSRF.search(first.text).group(1)
        assert _CSRF.search(second.text).group(1) == token
        two.get("/editor/login")  # a form cookie of its own
        refused = two.post("/editor/login", data={"csrf_token": token, "password": PASSWORD})
        assert refused.status_code == 403
    with app_client(settings) as fresh:  # no cookie at all
        refused = fresh.post("/editor/login", data={"csrf_token": token, "password": PASSWORD})
        assert refused.status_code == 403


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_throttle_lets_the_editor_in_again_once_the_window_passes():
    clock = Clock()
    throttle = LoginThrottle(per_client=3, overall=5, window=600, concurrent=1, clock=clock)
    first = throttle.admit("198.51.100.7", None)
    assert first.wait == 0
    assert throttle.admit("198.51.100.8", None).busy  # one check at a time, overall
    throttle.finished(first, ok=False)
    for _ in range(2):
        throttle.finished(throttle.admit("198.51.100.7", None), ok=False)
    assert throttle.admit("198.51.100.7", None).wait == 600  # recorded before any check
    throttle.finished(throttle.admit("198.51.100.8", None), ok=False)
    throttle.finished(throttle.admit("198.51.100.9", None), ok=False)
    assert throttle.admit("198.51.100.10", None).wait == 600  # the overall cap: 5
    assert throttle.admit("198.51.100.10", "device-id").wait == 0  # a device is apart
    clock.now += 600
    assert throttle.admit("198.51.100.7", None).wait == 0
