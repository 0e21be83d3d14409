"""No unsafe defaults: no built-in secret, and no real send with the shipped placeholders.

The rule (`config.check_settings`): a missing or weak SECRET_KEY is always an error;
a sender in a reserved domain, the placeholder postal address, a BASE_URL nobody
outside can reach or one without https are errors in earnest and warnings in a
trial (relay on this machine, every name a test one: the demo, these tests).
"""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from conftest import Cli
from livesite import serve
from pydantic import SecretStr
from webeditor import EditorClient, editor_settings, flashes

from newsletter import app as core
from newsletter import subscribers as subscriber_ops
from newsletter.config import (
    PLACEHOLDER_POSTAL_ADDRESS,
    Severity,
    check_settings,
    is_test_host,
    is_trial,
    require_secret_key,
    secret_key_problem,
)
from newsletter.errors import ConfigError
from newsletter.store import editions as edition_store
from newsletter.web import create_app

DAY = dt.date(2026, 11, 25)
GOOD_SECRET = "kq3Vh0xR7mJc2Lw9Zt5Bn8Yp4Fs6Dg1Ae-Ui_Oo"
#: What a real deployment sets; the relay stays the test's own server on 127.0.0.1.
REAL = {
    "from_address": "news@dailybrief.net",
    "postal_address": "Daily Brief Ltd, 12 Harbour Road, Leith, EH6 6LX",
    "base_url": "https://news.dailybrief.net",
}


def in_earnest(settings, **changes):
    """The test settings with a real sender (so the send is in earnest) and `changes`."""
    return settings.model_copy(update={"from_address": REAL["from_address"], **changes})


def by_subject(findings):
    return {finding.subject: finding.severity for finding in findings}


# ── the secret ────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        (None, "is not set"),
        ("", "is not set"),
        ("change-me-to-a-long-random-string", "placeholder"),
        ("s3cret-but-short", "16 characters long; it must be at least 32"),
        ("ab" * 20, "only 2 different characters"),
    ],
)
def test_a_missing_placeholder_or_weak_secret_is_refused(settings, secret, problem):
    value = None if secret is None else SecretStr(secret)
    assert problem in secret_key_problem(value)
    weak = settings.model_copy(update={"secret_key": value})
    with pytest.raises(ConfigError) as caught:
        require_secret_key(weak)
    assert caught.value.where == "NEWSLETTER_SECRET_KEY"
    assert "newsletter init" in caught.value.hint
    with pytest.raises(ConfigError):
        create_app(weak)  # the web side signs sessions and links with it


def test_a_random_secret_is_accepted(settings):
    assert secret_key_problem(SecretStr(GOOD_SECRET)) is None
    strong = settings.model_copy(update={"secret_key": SecretStr(GOOD_SECRET)})
    assert require_secret_key(strong) == GOOD_SECRET


def test_there_is_no_built_in_secret(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NEWSLETTER_SECRET_KEY", raising=False)
    from newsletter.config import load_settings

    assert load_settings().secret_key is None


@pytest.mark.parametrize(
    ("command", "secret"),
    [
        ("serve", None),
        ("run", None),
        ("send", None),
        ("inbound", None),
        ("send", "change-me-to-a-long-random-string"),
        ("serve", "too-short"),
    ],
)
def test_signing_commands_refuse_to_start_without_a_usable_secret(cli_env, command, secret):
    env = Cli({k: v for k, v in cli_env.items() if k != "NEWSLETTER_SECRET_KEY"})
    if secret is not None:
        env["NEWSLETTER_SECRET_KEY"] = secret
    result = env.run(command, check=False)
    assert result.returncode == 1, result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "NEWSLETTER_SECRET_KEY" in lines[0] and "`newsletter init`" in lines[0]
    assert "Traceback" not in result.stderr and "serving on" not in result.stdout


def test_commands_that_sign_nothing_run_without_a_secret(cli_env):
    env = Cli({k: v for k, v in cli_env.items() if k != "NEWSLETTER_SECRET_KEY"})
    listed = env.run("articles", "--date", DAY.isoformat())
    assert "Porto" in listed.stdout or listed.stdout.strip()
    env.run("subscribers", "list")


# ── the placeholders: what makes a trial ───────────────────────────────────────


@pytest.mark.parametrize(
    "host",
    [
        "example.com", "NEWS.Example.ORG", "a.b.example.net", "relay.example", "site.test",
        "x.invalid", "localhost", "app.localhost", "127.0.0.1", "127.8.9.1", "::1", "[::1]",
        "example.com.",
    ],
)  # fmt: skip
def test_reserved_and_loopback_names_are_test_hosts(host):
    assert is_test_host(host)


@pytest.mark.parametrize(
    "host", ["dailybrief.net", "example.co", "notexample.com", "test.com", "10.0.0.5", "mytest"]
)
def test_real_names_are_not_test_hosts(host):
    assert not is_test_host(host)


def test_a_local_send_to_test_names_only_warns(settings):
    assert is_trial(settings)  # the suite's own: 127.0.0.1, daily.example.org, news.example.org
    found = by_subject(check_settings(settings))
    assert found == {
        "NEWSLETTER_FROM_ADDRESS": Severity.WARNING,
        "NEWSLETTER_POSTAL_ADDRESS": Severity.WARNING,
        "NEWSLETTER_BASE_URL": Severity.WARNING,
    }


def test_a_remote_relay_makes_every_placeholder_an_error(settings):
    remote = settings.model_copy(update={"smtp_host": "smtp.dailybrief.net"})
    assert not is_trial(remote)
    found = check_settings(remote)
    assert {f.subject for f in found} == {
        "NEWSLETTER_FROM_ADDRESS",
        "NEWSLETTER_POSTAL_ADDRESS",
        "NEWSLETTER_BASE_URL",
    }
    assert all(f.severity is Severity.ERROR for f in found)
    assert all(f.fix for f in found)  # each says what to do


def test_a_real_sender_through_a_local_relay_is_in_earnest(settings):
    local = in_earnest(settings, base_url="http://127.0.0.1:8000")
    assert not is_trial(local)
    messages = [str(f) for f in check_settings(local) if f.severity is Severity.ERROR]
    assert any("NEWSLETTER_POSTAL_ADDRESS" in m for m in messages)
    assert any("cannot be reached by recipients" in m for m in messages)
    assert any("not https" in m and "RFC 8058" in m for m in messages)


def test_an_http_public_base_url_is_always_an_error(settings):
    plain = settings.model_copy(update={**REAL, "base_url": "http://news.dailybrief.net"})
    assert check_settings(plain) and all(
        f.severity is Severity.ERROR and f.subject == "NEWSLETTER_BASE_URL"
        for f in check_settings(plain)
    )


def test_real_settings_have_no_findings(settings):
    assert check_settings(settings.model_copy(update=REAL)) == ()
    assert PLACEHOLDER_POSTAL_ADDRESS == type(settings)(_env_file=None).postal_address


# ── the rule applied: every send refuses, dry runs and test sends warn ──────────


def test_prepare_send_refuses_placeholders_in_earnest_before_building(engine, settings):
    subscriber_ops.add_subscriber(engine, "ann@example.com")
    with pytest.raises(ConfigError) as caught:
        core.prepare_send(engine, in_earnest(settings), DAY)
    assert caught.value.where == "NEWSLETTER_POSTAL_ADDRESS"
    assert "1 more: `newsletter doctor` lists them" in caught.value.hint  # BASE_URL
    assert edition_store.get_edition(engine, DAY) is None  # nothing built, nothing queued
    with pytest.raises(ConfigError):
        asyncio.run(core.publish(engine, in_earnest(settings), DAY))  # the scheduler's job


def test_a_local_relay_to_a_list_of_real_people_is_in_earnest(engine, settings, smtp_server):
    # A site left as `init` wrote it (placeholder sender, postal address, BASE_URL),
    # relaying through the Postfix on this machine: a trial by its settings alone.
    assert is_trial(settings)
    subscriber_ops.add_subscriber(engine, "ann@example.com")
    subscriber_ops.add_subscriber(engine, "bob@lists.example.net")
    assert core.real_recipient(engine, settings) is None  # test names only: still a trial
    subscriber_ops.add_subscriber(engine, "Cleo@Mail.Example.COM.au")  # not reserved
    assert core.real_recipient(engine, settings) == "Cleo@mail.example.com.au"
    with pytest.raises(ConfigError) as caught:
        core.prepare_send(engine, settings, DAY)
    assert caught.value.where == "NEWSLETTER_FROM_ADDRESS"
    assert edition_store.get_edition(engine, DAY) is None and smtp_server.received == []
    found = check_settings(settings, real_recipient="Cleo@Mail.Example.COM.au")
    assert by_subject(found)["subscribers"] is Severity.INFO  # says why it is in earnest
    subscriber_ops.unsubscribe(engine, "cleo@mail.example.com.au")
    assert core.real_recipient(engine, settings) is None  # only active addresses count


def test_real_settings_send_through_the_same_path(engine, settings, smtp_server):
    subscriber_ops.add_subscriber(engine, "ann@example.com")
    outcome = asyncio.run(core.publish(engine, settings.model_copy(update=REAL), DAY))
    assert isinstance(outcome, core.Sent) and outcome.summary.sent == 1
    assert smtp_server.recipients() == ["ann@example.com"]


def test_the_cli_send_is_refused_in_earnest_and_warns_in_a_trial(cli_env, smtp_server):
    cli_env.run("subscribers", "add", "ann@example.com")
    earnest = Cli(cli_env, NEWSLETTER_FROM_ADDRESS=REAL["from_address"])

    refused = earnest.run("send", "--date", DAY.isoformat(), check=False)
    assert refused.returncode == 1
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "NEWSLETTER_POSTAL_ADDRESS" in lines[0], refused.stderr
    assert smtp_server.received == []

    dry = earnest.run("send", "--date", DAY.isoformat(), "--dry-run")
    assert "warning: NEWSLETTER_POSTAL_ADDRESS" in dry.stderr and "would get it" in dry.stdout
    test = earnest.run("send", "--date", DAY.isoformat(), "--to", "me@example.com")
    assert "warning: NEWSLETTER_BASE_URL" in test.stderr
    assert smtp_server.recipients() == ["me@example.com"]  # the test send only

    trial = cli_env.run("send", "--date", DAY.isoformat())
    assert "sent 1" in trial.stdout
    assert "warning: NEWSLETTER_FROM_ADDRESS" in trial.stderr
    assert "refuses this" not in trial.stderr


def test_run_refuses_to_start_in_earnest(cli_env):
    earnest = Cli(cli_env, NEWSLETTER_SMTP_HOST="smtp.dailybrief.net")
    result = earnest.run("run", check=False)
    assert result.returncode == 1 and "scheduler started" not in result.stdout
    assert "NEWSLETTER_FROM_ADDRESS" in result.stderr and "not sending" in result.stderr


def test_the_editors_send_now_is_refused_in_earnest(settings, engine, smtp_server):
    subscriber_ops.add_subscriber(engine, "ann@example.com")
    with serve(editor_settings(in_earnest(settings))) as url:
        editor = EditorClient(url)
        try:
            assert editor.login().status_code == 303
            [(kind, text)] = flashes(editor.act(f"/editor/edition/{DAY}/send"))
        finally:
            editor.close()
    assert kind == "error" and "NEWSLETTER_POSTAL_ADDRESS" in text
    assert smtp_server.received == [] and edition_store.get_edition(engine, DAY) is None
