"""`newsletter doctor` against real parts: aiosmtpd with STARTTLS/TLS and a self-signed
certificate, a private Postfix, a closed port, a silent one, the app served by uvicorn,
real databases (SQLite files or PostgreSQL) and the project's templates."""

from __future__ import annotations

import shutil
import socket
import sqlite3
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from conftest import ROOT, Cli
from livesite import serve
from olddb import MAIN, make_old_database
from postfixserver import postfix_server
from pydantic import SecretStr
from test_smtp_security import USER, authenticator, certificate, secured, server_context
from webeditor import wait_for

from newsletter import doctor
from newsletter import subscribers as subscriber_ops
from newsletter.capture import free_port
from newsletter.config import Severity, check_settings
from newsletter.doctor import run_doctor
from newsletter.store.migrate import head_revision, upgrade

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
__all__ = ["certificate"]  # the module-scoped fixture, shared with test_smtp_security
REAL = {
    "from_address": "news@dailybrief.net",
    "postal_address": "Daily Brief Ltd, 12 Harbour Road, Leith, EH6 6LX",
    "base_url": "https://news.dailybrief.net",
}


def only(settings, *names):
    """The findings of the named checks alone (as `run_doctor` runs them, guarded)."""
    return run_doctor(settings, only=names).findings


def lines(findings):
    return [(f.severity, str(f)) for f in findings]


def errors(findings):
    return [str(f) for f in findings if f.severity is Severity.ERROR]


# ── settings and templates ────────────────────────────────────────────────────


def test_settings_are_judged_by_the_sending_rule(settings):
    found = only(settings, "settings")
    assert found[: len(check_settings(settings))] == check_settings(settings)
    assert found[-1].severity is Severity.INFO and "trial" in found[-1].message
    real = only(settings.model_copy(update=REAL), "settings")
    assert [f.severity for f in real] == [Severity.OK]
    weak = only(settings.model_copy(update={**REAL, "secret_key": SecretStr("short")}), "settings")
    assert errors(weak) == [
        "NEWSLETTER_SECRET_KEY: is 5 characters long; it must be at least 32 "
        "(run `newsletter init`, which writes a fresh one to .env)"
    ]


@pytest.fixture
def templates(tmp_path) -> Path:
    target = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", target)
    return target


def test_the_templates_render(settings):
    found = only(settings, "email templates", "web pages")
    assert [f.severity for f in found] == [Severity.OK, Severity.OK]
    assert "/subscribe" in found[1].message and "/editor/login" in found[1].message


def test_a_broken_email_template_is_an_error_with_file_and_line(settings, templates):
    text = templates / "edition.txt.j2"
    text.write_text(text.read_text(encoding="utf-8") + "{{ edition.no_such_field }}\n")
    broken = settings.model_copy(update={"templates_dir": templates})
    [found] = only(broken, "email templates")
    assert found.severity is Severity.ERROR
    assert found.subject.startswith("edition.txt.j2:") and "no_such_field" in found.message


def test_a_broken_web_template_names_the_page(settings, templates):
    (templates / "web" / "subscribe.html").write_text('{% extends "no-such-base.html" %}')
    found = only(settings.model_copy(update={"templates_dir": templates}), "web pages")
    assert [f.subject for f in found] == ["web page /subscribe"]
    assert "TemplateNotFound" in found[0].message and "no-such-base.html" in found[0].message
    assert "web" in found[0].fix


# ── the database ──────────────────────────────────────────────────────────────


def test_a_working_database_is_reachable_writable_and_counted(settings, engine):
    subscriber_ops.add_subscriber(engine, "ann@example.com")
    found = only(settings, "database")
    assert lines(found) == [
        (Severity.OK, f"database: {engine.url.render_as_string()}: reachable, writable, "
         "1 active subscribers"),
        (Severity.OK, f"schema: at {head_revision()}, this version's"),
    ]  # fmt: skip


def test_a_database_made_before_migrations_is_an_error_until_init_upgrades_it(
    settings, new_database_url
):
    url = new_database_url("old", empty=True)
    make_old_database(url, MAIN)  # the schema main made before revisions were recorded
    old = settings.model_copy(update={"database_url": url})
    schema = [f for f in only(old, "database") if f.subject == "schema"]
    assert [(f.severity, f.message) for f in schema] == [
        (
            Severity.ERROR,
            f"not versioned (made before migrations); this version needs {head_revision()}",
        )
    ]
    assert "newsletter init" in schema[0].fix
    upgrade(url)
    assert [f.severity for f in only(old, "database")] == [Severity.OK, Severity.OK]


@pytest.mark.sqlite_only
def test_a_missing_sqlite_file_is_an_error_and_is_not_created(settings, tmp_path):
    path = tmp_path / "typo" / "newsletter.db"
    [found] = only(settings.model_copy(update={"database_url": f"sqlite:///{path}"}), "database")
    assert found.severity is Severity.ERROR and found.subject == str(path)
    assert "`newsletter init`" in found.fix
    assert not path.parent.exists()


def test_an_empty_database_lacks_its_tables(settings, new_database_url, db_kind):
    url = new_database_url("empty", empty=True)
    if db_kind == "sqlite":
        Path(url.removeprefix("sqlite:///")).touch()  # an empty file is an empty database
    [found] = only(settings.model_copy(update={"database_url": url}), "database")
    assert found.severity is Severity.ERROR
    assert found.message.startswith("tables missing: ") and "deliveries" in found.message


def test_a_read_only_database_is_an_error(settings, engine, db_kind):
    if db_kind == "sqlite":
        path = settings.database_url.removeprefix("sqlite:///")
        url = f"sqlite:///file:{path}?mode=ro&uri=true"
    else:
        url = settings.database_url + "?options=-c%20default_transaction_read_only%3Don"
    [found] = only(settings.model_copy(update={"database_url": url}), "database")
    assert found.severity is Severity.ERROR and "read-only" in found.message
    assert "writable" in found.fix


# ── the relay ─────────────────────────────────────────────────────────────────


@pytest.fixture(params=["starttls", "tls"])
def tls_relay(request, certificate):
    options = dict(authenticator=authenticator, auth_require_tls=True)
    if request.param == "starttls":
        options.update(tls_context=server_context(certificate))
    else:
        options.update(ssl_context=server_context(certificate), auth_require_tls=False)
    controller = Controller(
        _Accept(), hostname="127.0.0.1", port=free_port(), ready_timeout=10, **options
    )
    controller.start()
    yield request.param, controller
    controller.stop()


class _Accept:
    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        return "250 OK"


def relay(settings, port, **changes):
    return settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": port, **changes})


def test_an_untrusted_self_signed_certificate_is_an_error_naming_smtp_ca_file(settings, tls_relay):
    mode, controller = tls_relay
    found = only(relay(settings, controller.port, smtp_security=mode), "relay")
    [error] = errors(found)
    assert "certificate is not trusted: self-signed certificate" in error
    assert "NEWSLETTER_SMTP_CA_FILE" in error
    if mode == "starttls":  # what it offered before TLS is still reported
        assert "offers STARTTLS" in str(found[0]) and found[0].severity is Severity.OK


def test_a_trusted_relay_reports_tls_what_it_offers_and_the_login(settings, tls_relay, certificate):
    mode, controller = tls_relay
    found = only(secured(settings, mode, controller, certificate), "relay")
    assert errors(found) == []
    how = "STARTTLS" if mode == "starttls" else "TLS"
    assert f"connected with {how} (TLSv1." in found[0].message
    assert "AUTH LOGIN PLAIN" in found[0].message and "SIZE" in found[0].message
    assert any("certificate CN=127.0.0.1, expires" in f.message for f in found)
    assert any(f.message == f"login as {USER} accepted" for f in found)


def test_wrong_credentials_are_an_error(settings, tls_relay, certificate):
    mode, controller = tls_relay
    wrong = secured(settings, mode, controller, certificate, password="nope")
    [error] = errors(only(wrong, "relay"))
    assert "refused our credentials: 535" in error and "NEWSLETTER_SMTP_PASSWORD" in error


def test_starttls_offered_but_unused_is_noted(settings, certificate):
    controller = Controller(
        _Accept(),
        hostname="127.0.0.1",
        port=free_port(),
        ready_timeout=10,
        tls_context=server_context(certificate),
    )
    controller.start()
    try:
        found = only(relay(settings, controller.port, smtp_security="none"), "relay")
    finally:
        controller.stop()
    assert found[0].message.startswith("connected without TLS: offers STARTTLS")
    [note] = [f for f in found if "unused" in f.message]
    assert note.severity is Severity.INFO  # loopback: a local relay in the clear is fine
    assert note.fix == "set NEWSLETTER_SMTP_SECURITY=starttls"


@pytest.fixture(scope="module")
def postfix():
    with postfix_server(message_size_limit="5242880") as server:
        yield server


def test_a_postfix_relay_reports_pipelining_chunking_and_size(settings, postfix):
    before = len(postfix.log())
    found = only(relay(settings, postfix.port), "relay")
    assert errors(found) == []
    [offers] = [f for f in found if f.severity is Severity.OK]
    assert offers.subject == f"relay 127.0.0.1:{postfix.port}"
    assert offers.message == (
        "connected without TLS: offers PIPELINING, CHUNKING, SIZE 5242880 (5.0 MB), "
        "SMTPUTF8, 8BITMIME"
    )
    # it said goodbye: smtpd logs the session's commands once it has hung up
    wait_for(lambda: "ehlo=1 quit=1 commands=2" in postfix.log()[before:])


@pytest.mark.parametrize(
    ("security", "expected"),
    [
        ("tls", "the TLS handshake failed at connect: WRONG_VERSION_NUMBER"),
        ("starttls", "the relay does not offer STARTTLS, and NEWSLETTER_SMTP_SECURITY is starttls"),
    ],
)
def test_tls_settings_that_do_not_match_the_relay_are_errors(settings, postfix, security, expected):
    [*_, found] = only(relay(settings, postfix.port, smtp_security=security), "relay")
    assert found.severity is Severity.ERROR and found.message == expected
    assert "NEWSLETTER_SMTP_SECURITY" in found.fix


def test_a_closed_port_is_an_error_with_the_fix(settings):
    port = free_port()
    [found] = only(relay(settings, port), "relay")
    assert found.severity is Severity.ERROR and found.subject == f"relay 127.0.0.1:{port}"
    assert found.message == "cannot connect to the relay: Connection refused"
    assert "NEWSLETTER_SMTP_HOST and NEWSLETTER_SMTP_PORT" in found.fix


def test_a_relay_that_never_greets_is_bounded_by_smtp_timeout(settings):
    with socket.socket() as silent:  # the kernel completes the handshake; nobody answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        [found] = only(relay(settings, port, smtp_timeout=0.5), "relay")
    assert found.severity is Severity.ERROR
    assert found.message == "no answer at connect within NEWSLETTER_SMTP_TIMEOUT (0.5 s)"


# ── the site ──────────────────────────────────────────────────────────────────


def test_a_served_site_answers_health_and_a_public_page(settings, engine):
    settings = settings.model_copy(update={"metrics_token": SecretStr("m" * 32)})
    with serve(settings) as url:  # doctor asks BASE_URL: here, wherever the site listens
        found = only(settings.model_copy(update={"base_url": url}), "site")
    assert lines(found) == [
        (Severity.OK, f"site: {url}/healthz answers: database ok, scheduler stopped"),
        (Severity.OK, f"site: {url}/subscribe answers 200"),
    ]


def test_metrics_anyone_can_read_is_a_warning(settings, engine):
    with serve(settings) as url:  # no METRICS_TOKEN, no proxy in front
        found = only(settings.model_copy(update={"base_url": url}), "site")
    assert lines(found)[-1] == (
        Severity.WARNING, f"{url}/metrics: answers anyone: the list's size and the sender's "
        "bounce and complaint rates (set NEWSLETTER_METRICS_TOKEN (Prometheus sends it as a "
        "bearer token), or deny /metrics in the proxy to all but the monitoring host)")  # fmt: skip


def test_a_reserved_base_url_is_not_asked(settings):
    assert lines(only(settings, "site")) == [
        (Severity.INFO, "site: not checked: news.example.org is a name reserved for examples, "
         "no site answers there"),
    ]  # fmt: skip


def test_no_site_is_a_warning_naming_newsletter_serve(settings):
    base = f"http://127.0.0.1:{free_port()}"
    [found] = only(settings.model_copy(update={"base_url": base}), "site")
    assert found.severity is Severity.WARNING and found.subject == f"{base}/healthz"
    assert found.message == "nothing answers there (Connection refused)"
    assert "`newsletter serve`" in found.fix


# ── the command ───────────────────────────────────────────────────────────────


def test_the_command_prints_a_line_per_finding_and_exits_by_errors(cli_env, tmp_path):
    cli_env.run("init", cwd=tmp_path)  # the database (and nothing else: no .env.example here)
    passing = cli_env.run("doctor", cwd=tmp_path)
    output = passing.stdout.splitlines()
    assert output[-1].startswith("0 errors, ") and "ready to send" in output[-1]
    words = {line.split()[0] for line in output[:-1]}
    assert words <= {"ok", "info", "warning"} and "ok" in words
    assert any(line.startswith("ok      relay 127.0.0.1:") for line in output)

    closed = Cli(cli_env, NEWSLETTER_SMTP_PORT=str(free_port()))
    failing = closed.run("doctor", cwd=tmp_path, check=False)
    assert failing.returncode == 1
    [error] = [line for line in failing.stdout.splitlines() if line.startswith("error")]
    assert "Connection refused (check NEWSLETTER_SMTP_HOST" in error
    summary = failing.stdout.splitlines()[-1]
    assert summary.startswith("1 error, ")
    assert summary.endswith(": fix the errors before the first send")


def test_a_check_that_breaks_is_reported_and_the_others_run(settings, monkeypatch):
    def broken(settings):
        raise sqlite3.OperationalError("an unforeseen failure")

    monkeypatch.setattr(doctor, "CHECKS", (("database", broken), *doctor.CHECKS[:1]))
    found = run_doctor(settings).findings
    assert found[0].subject == "database" and "OperationalError" in found[0].message
    assert len(found) > 1  # the settings check still ran
