"""The `newsletter` command as a user runs it: a subprocess, real SQLite, real SMTP."""

from __future__ import annotations

import asyncio
import datetime as dt
from email import message_from_bytes, policy
from pathlib import Path

import pytest
import typer.main
from conftest import Cli

from newsletter import app as core
from newsletter import subscribers as subscriber_ops
from newsletter.cli import app
from newsletter.models import EditionStatus
from newsletter.store import editions as edition_store

ROOT = Path(__file__).resolve().parent.parent
DAY = "2026-11-25"


def newsletter(env, *args, cwd=None, check=True):
    return env.run(*args, cwd=cwd, check=check)


def test_send_delivers_once_per_active_subscriber_and_a_rerun_delivers_none(
    cli_env, smtp_server, tmp_path
):
    csv = tmp_path / "list.csv"
    csv.write_text(
        "email,name\nann@example.com,Ann\nzoe@exämple.example.org,Zoë\nbad-address,Nobody\n"
        "bob@example.com,Bob\nzoë@example.org,Zoë\n",
        encoding="utf-8",
    )
    imported = newsletter(cli_env, "subscribers", "import", str(csv))
    assert "3 added" in imported.stdout
    assert f"{csv}:4" in imported.stderr  # the invalid rows, by line
    assert f"{csv}:6" in imported.stderr  # a non-ASCII mailbox name needs SMTPUTF8
    newsletter(cli_env, "subscribers", "remove", "bob@example.com")

    first = newsletter(cli_env, "send", "--date", DAY)
    assert "sent 2, skipped 0, failed 0" in first.stdout
    assert sorted(smtp_server.recipients()) == ["ann@example.com", "zoe@xn--exmple-cua.example.org"]
    for item in smtp_server.received:
        message = message_from_bytes(item.data, policy=policy.default)
        assert message["Subject"].startswith("The Daily Brief")
        assert message["To"].addresses[0].addr_spec == item.rcpt_tos[0]

    second = newsletter(cli_env, "send", "--date", DAY)
    assert "sent 0" in second.stdout
    assert len(smtp_server.received) == 2

    status = newsletter(cli_env, "status", "--date", DAY)
    assert "sent" in status.stdout and "│ 2" in status.stdout


def test_preview_writes_the_files_and_reports_size(cli_env, tmp_path):
    out = tmp_path / "preview"
    result = newsletter(cli_env, "preview", "--date", DAY, "--output", str(out))
    assert "subject: The Daily Brief" in result.stdout
    assert "KB" in result.stdout
    html = (out / "edition.html").read_text(encoding="utf-8")
    text = (out / "edition.txt").read_text(encoding="utf-8")
    sample = message_from_bytes((out / "sample.eml").read_bytes(), policy=policy.default)
    assert html.startswith("<!DOCTYPE html>") and "Hello Sample Reader," in html
    assert "Hello Sample Reader," in text
    assert sample["To"].addresses[0].addr_spec == "reader@example.com"


def test_send_to_is_a_test_send_apart_from_deliveries(cli_env, smtp_server):
    newsletter(cli_env, "subscribers", "add", "ann@example.com")
    result = newsletter(cli_env, "send", "--date", DAY, "--to", "editor@elsewhere.example")
    assert "test send to editor@elsewhere.example: sent" in result.stdout
    assert smtp_server.recipients() == ["editor@elsewhere.example"]
    newsletter(cli_env, "send", "--date", DAY)
    assert smtp_server.recipients() == ["editor@elsewhere.example", "ann@example.com"]


def test_a_day_without_articles_is_a_clear_message_and_exit_zero(cli_env, smtp_server):
    result = newsletter(cli_env, "send", "--date", "2020-01-01")
    assert "no articles for 2020-01-01" in result.stdout
    failing = Cli(cli_env, NEWSLETTER_FAIL_ON_EMPTY="true")
    assert newsletter(failing, "send", "--date", "2020-01-01", check=False).returncode == 1
    assert smtp_server.received == []


def test_dry_run_sends_nothing(cli_env, smtp_server):
    newsletter(cli_env, "subscribers", "add", "ann@example.com")
    result = newsletter(cli_env, "send", "--date", DAY, "--dry-run")
    assert "1 active subscribers" in result.stdout
    assert smtp_server.received == []


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("NEWSLETTER_SMTP_PORT", "abc", "NEWSLETTER_SMTP_PORT: Input should be a valid integer"),
        ("NEWSLETTER_SEND_TIME", "7am", "NEWSLETTER_SEND_TIME: must be HH:MM"),
        ("NEWSLETTER_TIMEZONE", "Mars/Olympus", "NEWSLETTER_TIMEZONE: must be an IANA time zone"),
        ("NEWSLETTER_SMTP_SECURITY", "ssl", "NEWSLETTER_SMTP_SECURITY: Input should be 'none'"),
    ],
)
def test_a_bad_setting_is_one_line_naming_the_key(cli_env, key, value, expected):
    result = newsletter(Cli(cli_env, **{key: value}), "status", check=False)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0]


def test_bad_date_and_missing_file_are_clear_errors(cli_env):
    result = newsletter(cli_env, "send", "--date", "25/11/2026", check=False)
    assert result.returncode == 1 and "--date: not a date: '25/11/2026'" in result.stderr
    result = newsletter(cli_env, "subscribers", "import", "/nowhere/list.csv", check=False)
    assert result.returncode == 1 and "/nowhere/list.csv" in result.stderr
    assert "Traceback" not in result.stderr


def test_init_writes_env_with_a_fresh_secret(cli_env, tmp_path):
    work = tmp_path / "project"
    work.mkdir()
    (work / ".env.example").write_text(
        (ROOT / ".env.example").read_text(encoding="utf-8"), encoding="utf-8"
    )
    env = Cli({k: v for k, v in cli_env.items() if k != "NEWSLETTER_SECRET_KEY"})
    env["NEWSLETTER_DATABASE_URL"] = "sqlite:///var/newsletter.db"
    newsletter(env, "init", cwd=work)
    text = (work / ".env").read_text(encoding="utf-8")
    assert "NEWSLETTER_SECRET_KEY=change-me" not in text
    assert (work / "var" / "newsletter.db").exists()


def test_every_command_has_help_with_an_example():
    group = typer.main.get_command(app)

    def walk(command, path):
        yield path, command
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, [*path, name])

    for path, command in walk(group, []):
        assert command.help and "Example:" in command.help, f"`newsletter {' '.join(path)}`"


def test_env_example_documents_every_setting():
    from newsletter.config import Settings

    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    lines = text.splitlines()
    for name in Settings.model_fields:
        key = f"NEWSLETTER_{name.upper()}="
        assert key in text, f"{key} missing from .env.example"
        index = next(i for i, line in enumerate(lines) if line.startswith(key))
        assert lines[index - 1].startswith("#"), f"{key} has no comment above it"


def test_inbound_unsubscribes_from_a_mailto_message_on_stdin(cli_env):
    import subprocess

    from newsletter.tokens import Purpose, Signer

    newsletter(cli_env, "subscribers", "add", "ann@example.com")
    token = Signer(cli_env["NEWSLETTER_SECRET_KEY"]).sign(Purpose.UNSUBSCRIBE, "ann@example.com")
    message = (
        f"From: Ann <ann@example.com>\r\nTo: unsubscribe@daily.example.org\r\n"
        f"Subject: unsubscribe {token}\r\n\r\nplease\r\n"
    ).encode()
    result = subprocess.run(
        [*cli_env.command, "inbound"], input=message, env=dict(cli_env), capture_output=True
    )
    assert result.returncode == 0, result.stderr
    listing = newsletter(cli_env, "subscribers", "list", "--status", "unsubscribed")
    assert "ann@example.com" in listing.stdout
    forged = message.replace(token.encode(), token[:-3].encode() + b"xyz")
    result = subprocess.run(
        [*cli_env.command, "inbound"], input=forged, env=dict(cli_env), capture_output=True
    )
    assert result.returncode == 1


def test_dry_run_counts_sent_failed_and_skipped_as_already_handled(
    cli_env, settings, engine, smtp_server
):
    """One definition of "already handled" (a final status), the same as the progress bar's."""
    for email in ("ann@example.com", "bob@example.com", "cleo@example.com"):
        subscriber_ops.add_subscriber(engine, email)
    ready = core.prepare_send(engine, settings, dt.date(2026, 11, 25))
    subscriber_ops.unsubscribe(engine, "cleo@example.com")  # queued, then skipped at claim
    asyncio.run(core.deliver(engine, settings, ready, stop=asyncio.Event()))
    subscriber_ops.add_subscriber(engine, "dan@example.com")
    shared = Cli(cli_env, NEWSLETTER_DATABASE_URL=settings.database_url)

    result = newsletter(shared, "send", "--date", DAY, "--dry-run")

    assert (
        f"dry run: 3 active subscribers, 3 already handled for {DAY}, 1 would get it now; "
        "nothing sent"
    ) in result.stdout
    assert len(smtp_server.received) == 2


def test_preview_and_send_use_the_stored_edition_and_a_refused_rebuild_stops(
    cli_env, settings, engine, articles_dir, tmp_path
):
    stored = core.prepare_edition(engine, settings, dt.date(2026, 11, 25)).stored
    lead = sorted((articles_dir / DAY).iterdir())[0]
    lead.write_text(lead.read_text().replace("Porto", "Lisbon"))  # the source moves on
    shared = Cli(cli_env, NEWSLETTER_DATABASE_URL=settings.database_url)

    shown = newsletter(shared, "preview", "--date", DAY, "--output", str(tmp_path / "p"))
    assert f"subject: {stored.rendered.subject}" in shown.stdout and "Porto" in shown.stdout
    assert "the articles changed since this edition was built" in shown.stderr

    edition_store.set_edition_status(engine, stored.id, EditionStatus.SENDING)
    refused = newsletter(shared, "send", "--date", DAY, "--rebuild", check=False)
    assert refused.returncode == 1
    assert f"--rebuild: the edition of {DAY} is already sending" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_inbound_names_where_an_unreadable_message_was_set_aside(cli_env, tmp_path):
    maildir = tmp_path / "unsub"
    for folder in ("new", "cur", "tmp"):
        (maildir / folder).mkdir(parents=True)
    nested = b"".join(
        f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n'.encode()
        for i in range(2000)
    )
    (maildir / "new" / "1.deep").write_bytes(b"From: x@example.com\r\n" + nested)
    result = newsletter(cli_env, "inbound", "--maildir", str(maildir), check=False)
    assert result.returncode == 1
    assert "unreadable" in result.stdout and "Traceback" not in result.stderr
    set_aside = maildir / ".poison" / "cur"
    [moved] = list(set_aside.iterdir())
    assert f"set aside in {set_aside}" in " ".join(result.stdout.split())
    assert moved.name.startswith("1.deep")
