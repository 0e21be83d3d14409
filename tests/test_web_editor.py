"""The editor's pages over real HTTP (uvicorn on 127.0.0.1), against a real SMTP server.

Each test starts the app on the test's own database, articles and templates,
and talks to it as the editor's browser would: session cookie, CSRF token in
every form, redirects after each action.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import logging
import os
import re
import shutil
import sqlite3
import threading
from email import message_from_bytes, policy
from html import unescape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from conftest import ROOT
from livesite import serve
from markupsafe import escape as markup_escape
from pydantic import SecretStr
from sqlalchemy import Engine, func, select
from sqlalchemy import event as sa_event
from webeditor import PASSWORD, EditorClient, editor_settings, flashes, wait_for

from newsletter import subscribers as subscriber_ops
from newsletter.app import SAMPLE_RECIPIENT, Ready, message_parts, prepare_send, render_fresh
from newsletter.capture import free_port
from newsletter.compose import compose_message
from newsletter.models import DeliveryStatus, SubscriberStatus
from newsletter.store import deliveries as delivery_store
from newsletter.store import editions as edition_store
from newsletter.store import subscribers as subscriber_store
from newsletter.store.editions import EditionStatus
from newsletter.store.schema import deliveries, test_sends
from newsletter.tokens import Purpose, Signer
from newsletter.web.editor import BackgroundSends
from newsletter.web.security import hash_password

DAY = dt.date(2026, 11, 25)
EDITION = f"/editor/edition/{DAY}"
PEOPLE = [
    ("ann@example.com", "Ann Lee"),
    ("zoe@example.org", "Zoë Müller"),
    ("bob@example.com", ""),
    ("chen@example.com", "陈美"),
]


@pytest.fixture
def web_settings(settings):
    return editor_settings(settings)


@pytest.fixture
def site(web_settings):
    with serve(web_settings) as url:
        yield url


@pytest.fixture
def client(site):
    client = EditorClient(site)
    yield client
    client.close()


@pytest.fixture
def editor(client):
    assert client.login().status_code == 303
    return client


def add_people(engine):
    for email, name in PEOPLE:
        subscriber_ops.add_subscriber(engine, email, name=name, source="test")


def escape(text: str) -> str:
    """What the pages' autoescape makes of `text`."""
    return str(markup_escape(text))


def same_but_tokens(shown: str, expected: str, settings) -> bool:
    """Equal once unsubscribe tokens (signed with a timestamp) are blanked; each shown token
    must be a valid one for the sample reader."""
    signer = Signer(settings.secret_key.get_secret_value())
    tokens = _TOKEN.findall(shown)
    assert tokens
    for token in tokens:
        assert signer.read(Purpose.UNSUBSCRIBE, token, max_age=60) == SAMPLE_RECIPIENT.email
    return _TOKEN.sub("TOKEN", shown) == _TOKEN.sub("TOKEN", expected)


_TOKEN = re.compile(r"(?<=/unsubscribe/)[A-Za-z0-9_.-]+")


def status_of(engine, day=DAY):
    stored = edition_store.get_edition(engine, day)
    return stored.status if stored else None


def count(engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


# ── login ─────────────────────────────────────────────────────────────────────

GET_PAGES = [
    "/editor",
    EDITION,
    f"{EDITION}?view=text",
    f"{EDITION}/html",
    f"{EDITION}/message.eml",
    "/editor/subscribers",
    "/editor/subscribers.csv",
]
POST_ACTIONS = [
    f"{EDITION}/test",
    f"{EDITION}/build",
    f"{EDITION}/hold",
    f"{EDITION}/unhold",
    f"{EDITION}/send",
    "/editor/subscribers/unsubscribe",
    "/editor/subscribers/delete",
    "/editor/logout",
]


def test_every_page_and_action_sends_a_stranger_to_the_login(client, engine):
    add_people(engine)
    for path in GET_PAGES:
        response = client.get(path)
        assert response.status_code == 303, path
        target = path.split("?")[0]
        assert response.headers["location"] == f"/editor/login?next={target}", path
    for path in POST_ACTIONS:
        data = {"confirm": "yes", "email": "ann@example.com"}
        response = client.post(path, data)  # even with a valid CSRF token of its session
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/editor/login?next="), path
    assert status_of(engine) is None
    assert subscriber_store.count_by_status(engine)[SubscriberStatus.ACTIVE] == len(PEOPLE)


def test_login_opens_the_session_and_goes_to_next(client):
    login_page = client.get("/editor/login?next=/editor/subscribers")
    assert login_page.status_code == 200
    assert 'name="password"' in login_page.text
    assert login_page.headers["content-security-policy"].startswith("default-src 'none'")
    response = client.login(next_path="/editor/subscribers?q=ann")
    assert response.status_code == 303
    assert response.headers["location"] == "/editor/subscribers?q=ann"
    assert client.get("/editor").status_code == 200
    assert client.get("/editor/login").headers["location"] == "/editor"  # already in


def test_wrong_password_shows_the_form_again_with_401(client):
    response = client.login(password="not it")
    assert response.status_code == 401
    assert "Wrong password" in response.text and 'name="password"' in response.text
    assert client.get("/editor").status_code == 303


def test_a_hashed_password_setting_works(settings):
    hashed = editor_settings(settings, editor_password=SecretStr(hash_password(PASSWORD)))
    with serve(hashed) as url:
        client = EditorClient(url)
        assert client.login(password="nope").status_code == 401
        assert client.login().status_code == 303
        assert client.get("/editor").status_code == 200
        client.close()


def test_login_without_the_forms_csrf_token_is_refused(client):
    client.get("/editor/login")
    response = client.post("/editor/login", {"password": PASSWORD}, csrf=False)
    assert response.status_code == 403
    assert client.get("/editor").status_code == 303


@pytest.mark.parametrize(
    "next_path",
    [
        "https://evil.example/",
        "//evil.example/path",
        "/\\evil.example",
        "/\t/evil.example",
        "javascript:alert(1)",
        "http:/evil.example",
        "",
    ],
)
def test_login_never_redirects_off_site(client, next_path):
    response = client.login(next_path=next_path)
    assert response.status_code == 303
    assert response.headers["location"] == "/editor"


def test_without_an_editor_password_every_login_is_refused(settings):
    closed = editor_settings(settings, editor_password=SecretStr(""))
    with serve(closed) as url:
        client = EditorClient(url)
        page = client.get("/editor/login")
        assert page.status_code == 200 and "NEWSLETTER_EDITOR_PASSWORD" in page.text
        for attempt in ("", PASSWORD, "anything"):
            response = client.login(password=attempt)
            assert response.status_code == 403
            assert "NEWSLETTER_EDITOR_PASSWORD" in response.text
            assert "newsletter hash-password" in response.text
        assert client.get("/editor").status_code == 303
        client.close()


def test_wrong_passwords_are_throttled(client):
    for _ in range(10):
        assert client.login(password="guess").status_code == 401
    response = client.login()  # even the right one, for a while
    assert response.status_code == 429
    assert "Too many wrong passwords" in response.text


def test_logout_needs_the_csrf_token_and_ends_the_session(editor):
    assert editor.post("/editor/logout", csrf=False).status_code == 403
    assert editor.get("/editor").status_code == 200
    response = editor.post("/editor/logout")
    assert response.status_code == 303
    assert response.headers["location"] == "/editor/login?ended=logout"
    assert "You are logged out." in editor.get(response.headers["location"]).text
    assert editor.get("/editor").status_code == 303


def test_actions_refuse_a_get(editor):
    for path in POST_ACTIONS:
        assert editor.get(path).status_code == 405, path


# ── CSRF ──────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("token", [None, "forged-token"])
def test_posts_without_a_valid_csrf_token_get_403_and_change_nothing(
    editor, engine, smtp_server, token
):
    add_people(engine)
    for path in POST_ACTIONS[:5]:  # the edition actions
        data = {"confirm": "yes", "email": "ann@example.com"}
        if token:
            data["csrf_token"] = token
        response = editor.post(path, data, csrf=False)
        assert response.status_code == 403, path
        assert "no longer valid" in response.text
    for path in ("/editor/subscribers/unsubscribe", "/editor/subscribers/delete"):
        data = {"confirm": "yes", "email": "ann@example.com"}
        if token:
            data["csrf_token"] = token
        assert editor.post(path, data, csrf=False).status_code == 403
    assert status_of(engine) is None
    assert smtp_server.received == []
    assert count(engine, test_sends) == 0
    ann = subscriber_store.get_subscriber(engine, "ann@example.com")
    assert ann is not None and ann.status is SubscriberStatus.ACTIVE


# ── dashboard ─────────────────────────────────────────────────────────────────


def test_dashboard_lists_dates_newest_first_with_counts_and_status(
    editor, engine, articles_dir, smtp_server
):
    (articles_dir / "2026-11-24" / "99-notes.rtf").write_text("{\\rtf1 not an article}")
    (articles_dir / "2026-11-22").mkdir()  # a day folder nobody built
    add_people(engine)
    editor.act(f"/editor/edition/{DAY}/hold")
    editor.act("/editor/edition/2026-11-24/build")
    editor.act("/editor/edition/2026-11-23/send")
    wait_for(lambda: status_of(engine, dt.date(2026, 11, 23)) is EditionStatus.SENT)

    page = editor.get("/editor")

    assert page.status_code == 200
    rows = re.findall(
        r"<tr[^>]*>\s*<td><a href=\"/editor/edition/([\d-]+)\">(.*?)</tr>", page.text, re.S
    )
    assert [date for date, _ in rows] == ["2026-11-25", "2026-11-24", "2026-11-23", "2026-11-22"]
    cells = {date: re.findall(r"<td[^>]*>(.*?)</td>", "<td>" + rest, re.S) for date, rest in rows}
    assert 'class="badge held"' in cells["2026-11-25"][3]
    assert 'class="badge built"' in cells["2026-11-24"][3]
    assert 'class="error">1<' in cells["2026-11-24"][2]  # one skipped file, kept with the edition
    assert cells["2026-11-24"][1].strip() == "5"  # articles in the stored edition
    assert 'class="badge sent"' in cells["2026-11-23"][3]
    assert cells["2026-11-23"][4].strip() == str(len(PEOPLE))  # delivered
    assert 'class="badge none">not built<' in cells["2026-11-22"][3]
    assert cells["2026-11-22"][1].strip() == "–" and cells["2026-11-22"][2].strip() == "–"


def test_dashboard_and_a_stored_preview_never_read_the_articles_again(editor, engine, articles_dir):
    """What the build found is stored with the edition: a page view reads no article file."""
    editor.act(f"{EDITION}/build")
    folder = articles_dir / DAY.isoformat()
    (folder / "99-broken.json").write_text("{not json")  # the source moves on after the build
    lead = sorted(folder.iterdir())[0]
    lead.write_text(lead.read_text().replace("Porto", "Lisbon"))

    board = editor.get("/editor")
    page = editor.get(EDITION)

    row = re.search(rf'href="{EDITION}">(.*?)</tr>', board.text, re.S).group(1)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", "<td>" + row, re.S)
    assert cells[1].strip() == "5" and cells[2].strip() == "0"  # as built, not as now
    assert "99-broken.json" not in page.text  # a skipped file is only what the build skipped
    assert "the articles changed since this edition was built" in page.text
    assert "Lisbon" not in page.text


def test_dashboard_survives_a_missing_articles_directory(settings, engine):
    broken = editor_settings(settings, articles_source=str(settings.articles_source) + "-gone")
    with serve(broken) as url:
        client = EditorClient(url)
        client.login()
        page = client.get("/editor")
        assert page.status_code == 200
        assert "cannot be read" in page.text and "does not exist" in page.text
        client.close()


# ── the preview ───────────────────────────────────────────────────────────────


def test_preview_is_the_message_compose_message_makes(editor, web_settings):
    expected = compose_message(
        render_fresh(web_settings, DAY).rendered, web_settings, SAMPLE_RECIPIENT
    )
    message = message_from_bytes(expected, policy=policy.default)
    html, text = message_parts(message)

    page = editor.get(EDITION)
    frame = editor.get(f"{EDITION}/html")
    text_page = editor.get(f"{EDITION}?view=text")

    assert page.status_code == 200
    subject = str(message["Subject"])
    assert f'<dd id="subject">{escape(subject)}</dd>' in page.text
    assert frame.status_code == 200
    # Byte for byte what the sample reader's client decodes, but for the unsubscribe
    # token, which carries the second it was signed in.
    assert same_but_tokens(frame.text, html, web_settings)
    assert "Hello Sample Reader," in frame.text
    shown_text = re.search(r'id="text-part">(.*?)</pre>', text_page.text, re.S).group(1)
    assert same_but_tokens(unescape(shown_text), text, web_settings)
    size = f"HTML {len(html.encode()) / 1024:.1f} KB"
    assert size in page.text


def test_a_stored_edition_is_previewed_from_the_store(editor, engine, articles_dir, web_settings):
    editor.act(f"{EDITION}/build")
    stored = edition_store.get_edition(engine, DAY)
    assert stored is not None and stored.status is EditionStatus.BUILT
    lead = sorted((articles_dir / DAY.isoformat()).iterdir())[0]
    lead.write_text(lead.read_text().replace("Porto", "Lisbon"))  # the source moves on

    frame = editor.get(f"{EDITION}/html")
    page = editor.get(EDITION)

    expected = compose_message(stored.rendered, web_settings, SAMPLE_RECIPIENT)
    html, _ = message_parts(message_from_bytes(expected, policy=policy.default))
    assert same_but_tokens(frame.text, html, web_settings) and "Porto" in frame.text
    assert "the articles changed since this edition was built" in page.text


def test_preview_frame_is_sandboxed_and_script_free(editor):
    page = editor.get(EDITION)
    frame = editor.get(f"{EDITION}/html")
    iframe = re.search(r"<iframe[^>]*>", page.text).group(0)
    assert f'src="{EDITION}/html"' in iframe
    assert 'sandbox="allow-popups allow-popups-to-escape-sandbox"' in iframe
    policy_header = frame.headers["content-security-policy"]
    assert "default-src 'none'" in policy_header and "sandbox" in policy_header
    assert "script-src" not in policy_header  # so scripts fall back to default-src 'none'
    assert frame.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert "<script" not in page.text


@pytest.mark.parametrize(
    ("view", "width"), [("phone", "375"), ("desktop", "800"), ("nonsense", "800"), (None, "800")]
)
def test_view_switch_sets_the_frame_width(editor, view, width):
    page = editor.get(EDITION + (f"?view={view}" if view else ""))
    iframe = re.search(r"<iframe[^>]*>", page.text).group(0)
    assert f'width="{width}"' in iframe
    assert f'href="{EDITION}?view=phone"' in page.text
    assert f'href="{EDITION}?view=text"' in page.text


def test_text_view_shows_the_text_part_and_no_frame(editor):
    page = editor.get(f"{EDITION}?view=text")
    assert '<pre class="text-part" id="text-part">' in page.text
    assert "<iframe" not in page.text


def test_eml_download_is_the_whole_message(editor):
    response = editor.get(f"{EDITION}/message.eml")
    assert response.status_code == 200
    assert response.headers["content-type"] == "message/rfc822"
    assert "attachment" in response.headers["content-disposition"]
    message = message_from_bytes(response.content, policy=policy.default)
    assert message["To"] == "Sample Reader <reader@example.com>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_warnings_for_size_missing_link_image_alt_and_skipped_files(editor, articles_dir):
    day = articles_dir / "2026-11-26"
    day.mkdir()
    paragraph = "The council met again on Tuesday to discuss the harbour works. " * 12
    for number in range(1, 21):
        article = {
            "headline": f"Long story number {number} about the harbour",
            "summary": [paragraph] * 8,
            "source": "example.com",
            "date": "2026-11-26",
        }
        if number != 3:
            article["url"] = f"https://example.com/story-{number}"
        (day / f"{number:02}-story.json").write_text(json.dumps(article))
    (day / "21-picture.md").write_text(
        "---\ntitle: A picture\nlink: https://example.com/p\nimage: https://example.com/p.png\n"
        "---\n\nA photo story.\n"
    )
    (day / "22-broken.json").write_text("{not json")

    page = editor.get("/editor/edition/2026-11-26")

    assert page.status_code == 200
    warnings = re.search(r'id="warnings">(.*?)</div>', page.text, re.S).group(1)
    assert "Gmail clips messages over 102 KB" in warnings
    assert "Long story number 3 about the harbour" in warnings
    assert "has no link to the full article" in warnings
    assert "22-broken.json" in warnings
    assert 'class="error">HTML' in page.text  # the size itself is flagged


def test_image_without_alt_is_a_warning(editor, articles_dir):
    (articles_dir / DAY.isoformat() / "06-picture.md").write_text(
        "---\ntitle: A picture story\nlink: https://example.com/p\n"
        "image: https://example.com/p.png\n---\n\nA photo story.\n"
    )
    page = editor.get(EDITION)
    assert "image without alt text" in page.text


def test_a_broken_template_is_shown_with_file_and_line(settings, tmp_path):
    templates = tmp_path / "broken-templates"
    shutil.copytree(ROOT / "templates", templates)
    html_template = templates / "edition.html.j2"
    lines = html_template.read_text().splitlines(keepends=True)
    number = next(i for i, line in enumerate(lines, 1) if "<title>" in line)
    lines[number - 1] = "<title>{{ edition.no_such_field }}</title>\n"
    html_template.write_text("".join(lines))
    broken = editor_settings(settings, templates_dir=templates)
    with serve(broken) as url:
        client = EditorClient(url)
        client.login()
        page = client.get(EDITION)
        frame = client.get(f"{EDITION}/html")
        built = client.act(f"{EDITION}/build")
        client.close()
    assert page.status_code == 200
    assert "The template is broken" in page.text
    assert f"<code>edition.html.j2:{number}</code>" in page.text
    assert "no_such_field" in page.text
    assert frame.status_code == 500 and f"edition.html.j2:{number}" in frame.text
    [(kind, text)] = flashes(built)
    assert kind == "error" and f"edition.html.j2:{number}" in text


def test_unknown_and_empty_dates_are_404(editor, engine):
    assert editor.get("/editor/edition/2026-13-45").status_code == 404
    assert editor.get("/editor/edition/yesterday").status_code == 404
    assert editor.get("/editor/edition/2030-01-01").status_code == 404
    assert editor.get("/editor/edition/2030-01-01/html").status_code == 404
    assert editor.get("/editor/edition/2030-01-01/message.eml").status_code == 404
    page = editor.act("/editor/edition/2030-01-01/hold")
    [(kind, text)] = flashes(page)
    assert kind == "error" and "no articles" in text
    assert status_of(engine, dt.date(2030, 1, 1)) is None


# ── test sends ────────────────────────────────────────────────────────────────


def test_a_test_send_reaches_the_server_and_is_not_a_delivery(editor, engine, smtp_server):
    add_people(engine)
    response = editor.post(f"{EDITION}/test", {"email": "Editor@Example.net"})
    assert response.status_code == 303 and response.headers["location"] == EDITION
    page = editor.get(EDITION)

    [(kind, text)] = flashes(page)
    assert kind == "ok" and "Test sent to Editor@example.net" in text and "250" in text
    assert smtp_server.recipients() == ["Editor@example.net"]
    message = smtp_server.received[0].message
    assert str(message["Subject"]) in page.text
    assert count(engine, deliveries) == 0 and count(engine, test_sends) == 1
    assert status_of(engine) is EditionStatus.BUILT  # stored, as `send --to` does
    assert 'value="Editor@example.net"' in page.text  # remembered for the next test


def test_a_test_send_to_a_bad_address_is_refused(editor, smtp_server, engine):
    page = editor.act(f"{EDITION}/test", email="not an address")
    [(kind, text)] = flashes(page)
    assert kind == "error" and "not a valid email address" in text
    assert smtp_server.received == [] and count(engine, test_sends) == 0


def test_a_test_send_with_the_relay_down_says_so(settings):
    down = editor_settings(settings, smtp_port=free_port())
    with serve(down) as url:
        client = EditorClient(url)
        client.login()
        page = client.act(f"{EDITION}/test", email="me@example.com")
        client.close()
    [(kind, text)] = flashes(page)
    assert kind == "error"
    assert "cannot reach the SMTP relay" in text and "NEWSLETTER_SMTP_HOST" in text


# ── edition controls ──────────────────────────────────────────────────────────


def test_each_control_asks_first(editor, engine, smtp_server):
    add_people(engine)
    for action in ("build", "hold", "send"):
        response = editor.post(f"{EDITION}/{action}")
        assert response.status_code == 200, action
        assert 'name="confirm" value="yes"' in response.text
        assert f'action="{EDITION}/{action}"' in response.text
    assert status_of(engine) is None and smtp_server.received == []


def test_hold_stores_and_holds_then_unhold_releases(editor, engine, smtp_server, caplog):
    caplog.set_level(logging.INFO, logger="newsletter.editor")
    add_people(engine)

    held = editor.act(f"{EDITION}/hold")
    assert flashes(held) == [("ok", f"The edition of {DAY} is on hold: it will not be sent.")]
    assert status_of(engine) is EditionStatus.HELD
    assert 'class="badge held" id="status"' in held.text

    refused = editor.act(f"{EDITION}/send")
    [(kind, text)] = flashes(refused)
    assert kind == "error" and "on hold" in text
    assert smtp_server.received == [] and count(engine, deliveries) == 0

    released = editor.act(f"{EDITION}/unhold")
    assert flashes(released)[0][0] == "ok"
    assert status_of(engine) is EditionStatus.BUILT
    again = editor.act(f"{EDITION}/unhold")
    assert flashes(again)[0] == ("error", "not changed: the edition is not on hold")

    logged = [r for r in caplog.records if r.getMessage() == "editor_action"]
    actions = [(r._fields["action"], r._fields["outcome"][:7]) for r in logged]
    assert ("hold", "ok") in actions and ("send_now", "refused") in actions
    assert all(r._fields["date"] == DAY.isoformat() for r in logged if "date" in r._fields)


def test_build_then_rebuild_picks_up_changed_articles(editor, engine, articles_dir):
    built = editor.act(f"{EDITION}/build")
    assert flashes(built)[0][0] == "ok" and status_of(engine) is EditionStatus.BUILT
    lead = sorted((articles_dir / DAY.isoformat()).iterdir())[0]
    lead.write_text(lead.read_text().replace("Porto", "Lisbon"))

    rebuilt = editor.act(f"{EDITION}/build")

    [(kind, text)] = flashes(rebuilt)
    assert kind == "ok" and text.startswith("Rebuilt:") and "Lisbon" in text
    stored = edition_store.get_edition(engine, DAY)
    assert "Lisbon" in stored.rendered.subject and stored.status is EditionStatus.BUILT


def test_a_held_edition_can_be_rebuilt_and_stays_held(editor, engine, articles_dir):
    editor.act(f"{EDITION}/hold")
    lead = sorted((articles_dir / DAY.isoformat()).iterdir())[0]
    lead.write_text(lead.read_text().replace("Porto", "Lisbon"))
    editor.act(f"{EDITION}/build")
    stored = edition_store.get_edition(engine, DAY)
    assert "Lisbon" in stored.rendered.subject and stored.status is EditionStatus.HELD


def test_send_now_delivers_once_to_every_active_subscriber(editor, engine, smtp_server):
    add_people(engine)
    subscriber_ops.unsubscribe(engine, "bob@example.com")

    started = editor.act(f"{EDITION}/send")

    [(kind, text)] = flashes(started)
    assert kind == "ok" and "Sending to 3 active subscribers" in text
    wait_for(lambda: "Last send from this server" in editor.get(EDITION).text)
    page = editor.get(EDITION)
    assert status_of(engine) is EditionStatus.SENT
    assert 'class="badge sent" id="status"' in page.text
    assert "sent <b>3</b>" in page.text
    expected = sorted(email for email, _ in PEOPLE if email != "bob@example.com")
    assert sorted(smtp_server.recipients()) == expected  # each exactly once

    for action, words in (
        ("send", "already been sent"),
        ("hold", "not held"),
        ("build", "not rebuilt"),
    ):
        [(kind, text)] = flashes(editor.act(f"{EDITION}/{action}"))
        assert kind == "error" and words in text, action
    assert sorted(smtp_server.recipients()) == expected


# ── subscribers ───────────────────────────────────────────────────────────────


def test_subscriber_counts_and_search(editor, engine):
    add_people(engine)
    subscriber_ops.unsubscribe(engine, "bob@example.com")
    page = editor.get("/editor/subscribers?q=EXAMPLE.COM")
    assert page.status_code == 200
    counts = re.search(r'id="subscriber-counts">(.*?)</div>\s*<div class="card">', page.text, re.S)
    assert "<b>3</b><span>active</span>" in counts.group(1)
    assert "<b>1</b><span>unsubscribed</span>" in counts.group(1)
    results = re.search(r'id="results">(.*?)</table>', page.text, re.S).group(1)
    assert "ann@example.com" in results and "bob@example.com" in results
    assert "zoe@example.org" not in results
    assert "No address contains" in editor.get("/editor/subscribers?q=nobody").text


def test_unsubscribe_one_asks_then_unsubscribes(editor, engine):
    add_people(engine)
    ask = editor.post("/editor/subscribers/unsubscribe", {"email": "ann@example.com"})
    assert ask.status_code == 200 and 'name="confirm" value="yes"' in ask.text
    assert subscriber_store.get_subscriber(engine, "ann@example.com").status is (
        SubscriberStatus.ACTIVE
    )
    done = editor.act("/editor/subscribers/unsubscribe", email="ann@example.com")
    assert flashes(done) == [("ok", "ann@example.com is unsubscribed.")]
    assert subscriber_store.get_subscriber(engine, "ann@example.com").status is (
        SubscriberStatus.UNSUBSCRIBED
    )
    unknown = editor.act("/editor/subscribers/unsubscribe", email="nobody@example.com")
    assert flashes(unknown)[0][0] == "error"


def test_delete_one_asks_then_erases(editor, engine):
    add_people(engine)
    ask = editor.post("/editor/subscribers/delete", {"email": "zoe@example.org"})
    assert ask.status_code == 200 and "Erase zoe@example.org?" in ask.text
    assert subscriber_store.get_subscriber(engine, "zoe@example.org") is not None
    done = editor.act("/editor/subscribers/delete", email="zoe@example.org")
    assert flashes(done)[0][0] == "ok"
    assert subscriber_store.get_subscriber(engine, "zoe@example.org") is None
    again = editor.act("/editor/subscribers/delete", email="zoe@example.org")
    [(kind, text)] = flashes(again)
    assert kind == "error" and "not on the list" in text


def test_csv_export_is_an_attachment_of_the_list(editor, engine):
    add_people(engine)
    subscriber_ops.unsubscribe(engine, "bob@example.com")

    everyone = editor.get("/editor/subscribers.csv")
    active = editor.get("/editor/subscribers.csv?status=active")

    assert everyone.status_code == 200
    assert everyone.headers["content-type"].startswith("text/csv")
    assert everyone.headers["content-disposition"].startswith('attachment; filename="subscribers-')
    rows = list(csv.DictReader(io.StringIO(everyone.text)))
    assert {row["email"]: row["status"] for row in rows}["bob@example.com"] == "unsubscribed"
    assert len(rows) == len(PEOPLE)
    assert {row["name"] for row in rows} >= {"Zoë Müller", "陈美"}
    active_rows = list(csv.DictReader(io.StringIO(active.text)))
    assert sorted(r["email"] for r in active_rows) == sorted(
        e for e, _ in PEOPLE if e != "bob@example.com"
    )
    assert editor.get("/editor/subscribers.csv?status=nonsense").status_code == 400


# ── background sends ──────────────────────────────────────────────────────────


def test_stopping_background_sends_records_what_went_and_leaves_the_rest_queued(
    engine, settings, smtp_server
):
    """What the server's shutdown does (`editor.stop_sends`): nothing lost, nothing doubled."""
    for number in range(40):
        subscriber_ops.add_subscriber(engine, f"reader{number}@example.com")
    slow = settings.model_copy(update={"rate_limit": 10.0})
    ready = prepare_send(engine, slow, DAY)
    assert isinstance(ready, Ready)

    sends = BackgroundSends()
    run = sends.start(engine, slow, ready)
    wait_for(lambda: len(smtp_server.received) >= 3)  # under way
    assert sends.running(DAY)
    asyncio.run(sends.stop_all(timeout=10))

    assert not run.running and run.result is not None and "stopped early" in run.result
    counts = delivery_store.count_by_status(engine, ready.stored.id)
    sent = counts[DeliveryStatus.SENT]
    assert 0 < sent < 40 and len(smtp_server.received) == sent
    assert counts[DeliveryStatus.QUEUED] == 40 - sent


# ── nothing blocks the server ─────────────────────────────────────────────────


class FeedServer:
    """A JSON Feed over real HTTP that counts its fetches; `gate`, when cleared, holds every
    fetch until the test sets it (a slow feed, as slow as the test wants)."""

    def __init__(self) -> None:
        self.fetches = 0
        self.arrived = threading.Event()
        self.gate = threading.Event()
        self.gate.set()
        feed = {
            "version": "https://jsonfeed.org/version/1.1",
            "title": "Harbour News",
            "items": [
                {
                    "id": str(number),
                    "url": f"https://harbour.example/{number}",
                    "title": f"Harbour story number {number}",
                    "content_text": "The council met on Tuesday to discuss the works.",
                    "date_published": "2026-11-25T08:00:00+01:00",
                }
                for number in (1, 2, 3)
            ],
        }
        body = json.dumps(feed).encode()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the http.server API)
                owner.fetches += 1
                owner.arrived.set()
                owner.gate.wait(30)
                self.send_response(200)
                self.send_header("Content-Type", "application/feed+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/feed.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fed_editor(settings):
    """An editor logged in to a site whose articles come from a feed."""
    feed = FeedServer()
    try:
        with serve(editor_settings(settings, articles_source=feed.url)) as url:
            client = EditorClient(url)
            assert client.login().status_code == 303
            yield client, feed, url
            client.close()
    finally:
        feed.close()


def test_a_feed_is_fetched_once_per_build_and_never_by_a_page_view(fed_editor):
    client, feed, _ = fed_editor
    board = client.get("/editor")
    assert board.status_code == 200 and feed.fetches == 0  # the stored editions and today

    built = client.act(f"{EDITION}/build")
    assert flashes(built)[0][0] == "ok" and feed.fetches == 1

    for path in ("/editor", EDITION, f"{EDITION}?view=text", f"{EDITION}/html"):
        assert client.get(path).status_code == 200, path
    assert client.get(f"{EDITION}/message.eml").status_code == 200
    assert "Harbour story number 1" in client.get(f"{EDITION}/html").text
    assert feed.fetches == 1


def test_pages_answer_while_a_preview_waits_on_a_slow_feed(fed_editor):
    client, feed, url = fed_editor
    feed.gate.clear()  # the next fetch hangs until the test lets it go
    preview: dict[str, httpx.Response] = {}
    reader = threading.Thread(target=lambda: preview.update(page=client.get(EDITION)))
    reader.start()
    try:
        assert feed.arrived.wait(20), "the preview never fetched the feed"
        with httpx.Client(base_url=url, timeout=10, cookies=client.http.cookies) as other:
            assert other.get("/healthz").status_code == 200
            assert other.get("/editor").status_code == 200  # the dashboard fetches nothing
            assert other.get("/editor/subscribers").status_code == 200
        assert reader.is_alive()  # the preview was still waiting all along
    finally:
        feed.gate.set()
        reader.join(timeout=30)
    assert preview["page"].status_code == 200
    assert "Harbour story number 1" in client.get(f"{EDITION}/html").text


def hold_write_lock(url: str):  # noqa: ANN201 (a DB-API connection)
    """A second connection that blocks every write and no read: SQLite's write lock, or on
    PostgreSQL an EXCLUSIVE lock on the tables the actions write."""
    if url.startswith("sqlite:///"):
        holder = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None, timeout=30)
        holder.execute("BEGIN IMMEDIATE")
        return holder
    import psycopg

    holder = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)
    holder.execute("BEGIN")
    holder.execute("LOCK TABLE subscribers, editions IN EXCLUSIVE MODE")
    return holder


@pytest.mark.parametrize(
    ("action", "statement"),
    [
        ("/editor/subscribers/unsubscribe", "UPDATE subscribers"),
        (f"{EDITION}/hold", "UPDATE editions SET status"),
        (f"{EDITION}/build", "UPDATE editions SET subject"),
    ],
    ids=["unsubscribe", "hold", "rebuild"],
)
def test_an_action_waiting_on_a_locked_database_holds_up_no_other_page(
    editor, engine, web_settings, site, action, statement
):
    """Another connection holds the write lock; the action's write waits for it (up to the
    busy timeout) in a thread, while the server goes on answering."""
    add_people(engine)
    editor.act(f"{EDITION}/build")
    token = editor.csrf()
    arrived = threading.Event()

    def hook(conn, cursor, sql, parameters, context, executemany):  # noqa: ANN001, ARG001
        if " ".join(sql.split()).startswith(statement):
            arrived.set()

    holder = hold_write_lock(web_settings.database_url)
    sa_event.listen(Engine, "before_cursor_execute", hook)  # the server's engine too
    answered: dict[str, httpx.Response] = {}
    form = {"confirm": "yes", "csrf_token": token, "email": "ann@example.com"}
    acting = threading.Thread(target=lambda: answered.update(r=editor.http.post(action, data=form)))
    acting.start()
    try:
        assert arrived.wait(30), "the action never reached the database"
        with httpx.Client(base_url=site, timeout=10) as other:
            assert other.get("/healthz").status_code == 200
            assert other.get("/archive").status_code == 200
        assert acting.is_alive()  # still waiting for the lock
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        acting.join(timeout=60)
        sa_event.remove(Engine, "before_cursor_execute", hook)
    assert answered["r"].status_code == 303
    assert flashes(editor.get(answered["r"].headers["location"]))[0][0] == "ok"


def test_hostile_article_files_never_break_a_page_or_the_send(editor, articles_dir, cli_env):
    """The issue's files: a JSON article and a JSON Feed-style number of 5,000 digits (a
    ValueError, not a JSONDecodeError, in Python), a 16 KB Markdown article of nested
    brackets, a FIFO. Each is a skipped file; the pages answer and the day still goes out."""
    day = articles_dir / DAY.isoformat()
    (day / "90-huge-number.json").write_text(
        '{"headline": "Counted", "summary": "A number.", "url": "https://example.com/n", '
        '"rank": ' + "9" * 5000 + "}"
    )
    (day / "91-brackets.md").write_text(
        "---\nheadline: Brackets\nurl: https://example.com/b\n---\n\n" + "[" * 8000 + "]" * 8000
    )
    os.mkfifo(day / "92-pipe.txt")

    assert editor.get("/editor").status_code == 200
    page = editor.get(EDITION)
    assert page.status_code == 200
    assert "92-pipe.txt" in page.text  # skipped, with its reason
    html = editor.get(f"{EDITION}/html")
    assert html.status_code == 200 and "Counted" in html.text and "Brackets" in html.text

    listed = cli_env.run("articles", "--date", DAY.isoformat())
    assert "Counted" in listed.stdout  # a long number is just a number
    assert "92-pipe.txt" in listed.stderr and "Traceback" not in listed.stderr
    cli_env.run("subscribers", "add", "reader@example.net")
    sent = cli_env.run("send", "--date", DAY.isoformat())
    assert "sent 1," in sent.stdout
