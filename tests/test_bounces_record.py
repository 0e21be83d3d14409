"""Recording what comes back to the bounce address (issue 12, point 3's counting and folders).

Reports are built as `BounceReport` values (the parser is tested on its own); the
deliveries they name are real ones, made by a real send to aiosmtpd.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import os
from dataclasses import replace

import pytest
from sqlalchemy import select, update

from newsletter import subscribers as subscriber_ops
from newsletter.app import prepare_edition, send_edition
from newsletter.bounces import BounceKind, BounceReport
from newsletter.bounces import mailbox as mailbox_module
from newsletter.bounces.mailbox import process_maildir, process_stream
from newsletter.bounces.record import BounceOutcome, apply_report, fingerprint_of
from newsletter.bounces.verp import bounce_addresses
from newsletter.store.schema import bounce_events, deliveries, subscribers
from newsletter.tokens import signer_for

DAY = dt.date(2026, 11, 25)
PEOPLE = ["ann@example.com", "zoe@example.org"]


@pytest.fixture
def sent(engine, settings, smtp_server):
    """(settings, {email: (VERP sender, Message-ID, delivery id)}) after a real send."""
    settings = settings.model_copy(
        update={
            "bounce_address": "bounces@news.example.org",
            "bounce_limit": 2,
            "soft_bounce_limit": 2,
            "soft_bounce_window_days": 30,
        }
    )
    for email in PEOPLE:
        subscriber_ops.add_subscriber(engine, email, source="test")
    prepared = prepare_edition(engine, settings, DAY)
    asyncio.run(send_edition(engine, settings, prepared.stored))
    with engine.connect() as conn:
        ids = dict(conn.execute(select(deliveries.c.email, deliveries.c.id)).all())
    out = {
        item.rcpt_tos[0]: (item.mail_from, item.message["Message-ID"], ids[item.rcpt_tos[0]])
        for item in smtp_server.received
    }
    return settings, out


def apply(engine, settings, report, fingerprint):
    verp = bounce_addresses(settings, signer_for(settings))
    return apply_report(engine, settings, verp, report, fingerprint=fingerprint, source="test")


def subscriber_row(engine, email):
    with engine.connect() as conn:
        return conn.execute(
            select(subscribers.c.status, subscribers.c.bounce_count).where(
                subscribers.c.email == email
            )
        ).one()


def delivery_status(engine, delivery_id):
    with engine.connect() as conn:
        return conn.execute(
            select(deliveries.c.status).where(deliveries.c.id == delivery_id)
        ).scalar_one()


def test_a_hard_bounce_counts_towards_bounce_limit_once_per_report(engine, sent):
    settings, out = sent
    sender, _, delivery_id = out["ann@example.com"]
    report = BounceReport(BounceKind.HARD, ("ann@example.com",), sender, "5.1.1", "no such user")
    result = apply(engine, settings, report, "a" * 64)
    assert result.outcome is BounceOutcome.RECORDED and result.delivery_id == delivery_id
    assert result.email == "ann@example.com" and result.became is None
    assert delivery_status(engine, delivery_id) == "failed"
    assert tuple(subscriber_row(engine, "ann@example.com")) == ("active", 1)
    again = apply(engine, settings, report, "a" * 64)
    assert again.outcome is BounceOutcome.DUPLICATE
    # Another report about the same delivery (a second DSN) counts nothing either.
    other = apply(engine, settings, report, "b" * 64)
    assert other.outcome is BounceOutcome.RECORDED
    assert tuple(subscriber_row(engine, "ann@example.com")) == ("active", 1)


def test_hard_bounces_of_two_editions_reach_bounce_limit(engine, sent):
    settings, out = sent
    sender, _, delivery_id = out["ann@example.com"]
    report = BounceReport(BounceKind.HARD, sent_to=sender, status="5.1.1")
    apply(engine, settings, report, "1" * 64)
    with engine.begin() as conn:  # as if a later edition's message had bounced too
        conn.execute(update(deliveries).where(deliveries.c.id == delivery_id).values(status="sent"))
    result = apply(engine, settings, report, "2" * 64)
    assert result.became == "bounced"
    assert tuple(subscriber_row(engine, "ann@example.com")) == ("bounced", 2)


def test_soft_bounces_count_apart_within_their_window(engine, sent):
    settings, out = sent
    sender, _, delivery_id = out["zoe@example.org"]
    report = BounceReport(BounceKind.SOFT, sent_to=sender, status="4.2.2", diagnostic="full")
    first = apply(engine, settings, report, "c" * 64)
    assert first.outcome is BounceOutcome.RECORDED and first.became is None
    assert tuple(subscriber_row(engine, "zoe@example.org")) == ("active", 0)  # not a hard one
    # A soft bounce of the same delivery again is not a second one.
    apply(engine, settings, report, "d" * 64)
    assert subscriber_row(engine, "zoe@example.org").status == "active"
    # One outside the window does not count; a second delivery's inside it does.
    with engine.begin() as conn:
        old = dt.datetime(2020, 1, 1)
        conn.execute(update(bounce_events).values(received_at=old))
    second_id = _another_delivery(engine, delivery_id)
    late = BounceReport(BounceKind.SOFT, sent_to=_verp(settings, second_id), status="4.2.2")
    assert apply(engine, settings, late, "e" * 64).became is None
    third_id = _another_delivery(engine, delivery_id, day=DAY + dt.timedelta(days=2))
    last = BounceReport(BounceKind.SOFT, sent_to=_verp(settings, third_id), status="4.2.2")
    assert apply(engine, settings, last, "f" * 64).became == "bounced"


def test_a_complaint_unsubscribes_at_once_and_is_recorded(engine, sent):
    settings, out = sent
    sender, _, delivery_id = out["zoe@example.org"]
    result = apply(engine, settings, BounceReport(BounceKind.COMPLAINT, sent_to=sender), "9" * 64)
    assert result.outcome is BounceOutcome.RECORDED and result.became == "unsubscribed"
    assert subscriber_row(engine, "zoe@example.org").status == "unsubscribed"
    assert delivery_status(engine, delivery_id) == "sent"  # it was delivered: then complained of
    with engine.connect() as conn:
        assert conn.execute(select(bounce_events.c.kind)).scalars().all() == ["complaint"]


def test_without_bounce_address_our_message_id_and_its_recipient_name_the_delivery(engine, sent):
    settings, out = sent
    settings = settings.model_copy(update={"bounce_address": ""})
    _, message_id, delivery_id = out["ann@example.com"]
    quoted = BounceReport(BounceKind.HARD, ("ann@example.com",), message_id=message_id)
    assert apply(engine, settings, quoted, "3" * 64).delivery_id == delivery_id
    # Another delivery's id in the same edition's Message-ID, without its recipient: nothing.
    zoe_id = out["zoe@example.org"][2]
    forged_id = message_id.replace(f".{delivery_id}.", f".{zoe_id}.")
    forged = BounceReport(BounceKind.HARD, ("ann@example.com",), message_id=forged_id)
    assert apply(engine, settings, forged, "4" * 64).outcome is BounceOutcome.UNMATCHED
    guessed = BounceReport(
        BounceKind.HARD,
        ("ann@example.com",),
        message_id=f"<20261125.{delivery_id}.00000000@daily.example.org>",
    )
    assert apply(engine, settings, guessed, "5" * 64).outcome is BounceOutcome.UNMATCHED


def test_with_bounce_address_only_the_token_names_a_delivery(engine, sent):
    settings, out = sent
    _, message_id, _ = out["ann@example.com"]
    quoted = BounceReport(
        BounceKind.HARD, ("ann@example.com",), "bounces@news.example.org", message_id=message_id
    )
    assert apply(engine, settings, quoted, "a1" * 32).outcome is BounceOutcome.UNMATCHED


def test_a_report_naming_only_a_recipient_changes_nobody(engine, sent):
    settings, _ = sent
    report = BounceReport(BounceKind.HARD, ("ann@example.com",), "bounces@news.example.org")
    assert apply(engine, settings, report, "6" * 64).outcome is BounceOutcome.UNMATCHED
    forged = BounceReport(
        BounceKind.COMPLAINT, sent_to="bounces+d1aaaaaaaaaaaaaaaaaaaa@news.example.org"
    )
    assert apply(engine, settings, forged, "7" * 64).outcome is BounceOutcome.UNMATCHED
    assert tuple(subscriber_row(engine, "ann@example.com")) == ("active", 0)


@pytest.mark.parametrize(
    ("kind", "outcome"),
    [
        (BounceKind.DELAYED, BounceOutcome.IGNORED),
        (BounceKind.AUTO_REPLY, BounceOutcome.IGNORED),
        (BounceKind.UNKNOWN, BounceOutcome.UNKNOWN),
    ],
)
def test_what_is_not_a_bounce_is_not_recorded(engine, sent, kind, outcome):
    settings, out = sent
    report = BounceReport(kind, sent_to=out["ann@example.com"][0])
    assert apply(engine, settings, report, "8" * 64).outcome is outcome
    with engine.connect() as conn:
        assert conn.execute(select(bounce_events)).all() == []


def test_each_message_of_a_maildir_goes_to_its_outcomes_folder(engine, sent, tmp_path, monkeypatch):
    settings, out = sent
    root = tmp_path / "bounces"
    for sub in ("new", "cur", "tmp"):
        (root / sub).mkdir(parents=True)
    reports = {
        b"hard": BounceReport(BounceKind.HARD, sent_to=out["ann@example.com"][0], status="5.1.1"),
        b"vacation": BounceReport(BounceKind.AUTO_REPLY),
        b"what": BounceReport(BounceKind.UNKNOWN),
    }

    def read_report(data: bytes) -> BounceReport:
        if data.endswith(b"boom"):
            raise RecursionError("maximum recursion depth exceeded")
        return reports[data.split(b"\n")[-1]]

    monkeypatch.setattr(mailbox_module, "read_report", read_report)  # the fault: a parser crash
    for name, body in [("1", b"hard"), ("2", b"vacation"), ("3", b"boom"), ("4", b"what")]:
        (root / "new" / name).write_bytes(b"Message-ID: <" + name.encode() + b"@x>\n\n" + body)
    os.mkfifo(root / "new" / "5")  # not a message: never opened, set aside
    results = process_maildir(engine, settings, root)
    got = {r.path.name.split(":")[0]: (r.outcome, r.path.parent.parent.name) for r in results}
    assert got == {
        "1": (BounceOutcome.RECORDED, ".processed"),
        "2": (BounceOutcome.IGNORED, ".ignored"),
        "3": (BounceOutcome.UNREADABLE, ".poison"),
        "4": (BounceOutcome.UNKNOWN, ".unknown"),
        "5": (BounceOutcome.UNREADABLE, ".poison"),
    }
    assert "RecursionError" in next(r.detail for r in results if r.path.name.startswith("3"))
    assert list((root / "new").iterdir()) == []
    assert (root / ".processed" / "maildirfolder").is_file()


def test_one_message_on_stdin(engine, sent):
    settings, _ = sent
    result = process_stream(engine, settings, io.BytesIO(b"Subject: hello\n\njust a note\n"))
    assert result.outcome is BounceOutcome.UNKNOWN


def test_the_fingerprint_is_the_reports_message_id_or_its_bytes():
    one = b"Message-ID: <a@b>\nSubject: x\n\nbody"
    assert fingerprint_of(one) == fingerprint_of(b"Message-ID: <a@b>\nSubject: y\n\nother")
    assert fingerprint_of(b"Subject: x\n\nbody") != fingerprint_of(b"Subject: x\n\nbody2")
    assert len(fingerprint_of(one)) == 64


def _verp(settings, delivery_id):
    return bounce_addresses(settings, signer_for(settings)).for_delivery(delivery_id)


def _another_delivery(engine, like_id, day=DAY + dt.timedelta(days=1)):
    """A sent delivery of another edition to the same subscriber, for counting across editions."""
    from sqlalchemy import insert

    from newsletter.store.schema import editions

    with engine.begin() as conn:
        like = conn.execute(select(deliveries).where(deliveries.c.id == like_id)).one()
        edition = conn.execute(select(editions).where(editions.c.id == like.edition_id)).one()
        values = {k: v for k, v in edition._mapping.items() if k != "id"}
        values["date"] = day
        edition_id = conn.execute(insert(editions).values(**values)).inserted_primary_key[0]
        row = {k: v for k, v in like._mapping.items() if k != "id"}
        row.update(edition_id=edition_id, status="sent")
        return conn.execute(insert(deliveries).values(**row)).inserted_primary_key[0]


def test_newsletter_bounces_reads_one_report_on_stdin(cli_env, smtp_server):
    import subprocess

    from test_bounces_imap import dsn

    env = dict(cli_env, NEWSLETTER_BOUNCE_ADDRESS="bounces@news.example.org")
    cli = [*cli_env.command]
    subprocess.run([*cli, "subscribers", "add", "ann@example.com"], env=env, check=True)
    subprocess.run([*cli, "send", "--date", DAY.isoformat()], env=env, check=True)
    (sent,) = smtp_server.received
    piped = subprocess.run(
        [*cli, "bounces"],
        env=env,
        input=dsn(sent.mail_from.upper(), "ann@example.com", "<dsn-2@relay.test>"),
        capture_output=True,
        timeout=120,
    )
    assert piped.returncode == 0, piped.stderr
    assert b"ann@example.com: recorded hard 5.1.1" in piped.stdout


def test_retry_leaves_a_delivery_that_bounced_after_the_relay_took_it(engine, sent):
    """`newsletter retry` is for what the relay refused; a message the relay accepted and the
    recipient's server bounced later would only bounce again (and count again)."""
    from newsletter.app import retry

    settings, out = sent
    sender, _, bounced_id = out["ann@example.com"]
    _, _, refused_id = out["zoe@example.org"]
    apply(engine, settings, BounceReport(BounceKind.HARD, ("ann@example.com",), sender, "5.1.1"),
          "c" * 64)  # fmt: skip
    with engine.begin() as conn:  # zoe's message: refused by the relay in the session
        conn.execute(update(deliveries).where(deliveries.c.id == refused_id)
                     .values(status="failed", last_reply="550 5.7.1 relay refused"))  # fmt: skip

    requeued = retry(engine, DAY)

    assert requeued.count == 1
    assert delivery_status(engine, refused_id) == "queued"
    assert delivery_status(engine, bounced_id) == "failed"


def test_a_proven_sender_naming_only_the_recipient_matches_their_latest_delivery(engine, sent):
    """A provider's signed webhook often quotes neither our VERP address nor our Message-ID
    (it relays under its own); it is believed about whom it mailed. Anyone else is not."""
    settings, out = sent
    settings = settings.model_copy(update={"bounce_address": ""})  # providers: no VERP back
    _, _, delivery_id = out["ann@example.com"]
    report = BounceReport(BounceKind.HARD, ("Ann@Example.com",), "", "5.1.1", "no such user",
                          message_id="<0100018c-provider-own-id@email.amazonses.com>")  # fmt: skip

    stranger = apply_report(engine, settings, None, report, fingerprint="e" * 64, source="test")
    proven = apply_report(
        engine, settings, None, report, fingerprint="f" * 64, source="ses", proven_sender=True
    )

    assert stranger.outcome is BounceOutcome.UNMATCHED
    assert (proven.outcome, proven.delivery_id) == (BounceOutcome.RECORDED, delivery_id)
    assert subscriber_row(engine, "ann@example.com").bounce_count == 1
    # Nobody on the list: nothing to match, even for a proven sender.
    nobody = replace(report, recipients=("nobody@example.net",))
    result = apply_report(
        engine, settings, None, nobody, fingerprint="0" * 64, source="ses", proven_sender=True
    )
    assert result.outcome is BounceOutcome.UNMATCHED
