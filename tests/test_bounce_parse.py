"""`newsletter.bounces.parse.read_report`: what each kind of message at the bounce address says.

The corpus under tests/data/bounces/ holds one sample per style (each names, in its
X-Sample header, what it is modelled on); every field of each one's report is
asserted. Then the hard/soft table on built DSNs, the address and text hygiene,
the limits, and Hypothesis throwing random bytes, random MIME trees and cut or
mangled samples at the parser: it must always answer with a report.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter.bounces import BounceReport, parse
from newsletter.bounces.parse import read_report
from newsletter.hygiene import has_unsafe
from newsletter.models import BounceKind

CORPUS = Path(__file__).parent / "data" / "bounces"
HARD, SOFT, DELAYED = BounceKind.HARD, BounceKind.SOFT, BounceKind.DELAYED
COMPLAINT, AUTO, UNKNOWN = BounceKind.COMPLAINT, BounceKind.AUTO_REPLY, BounceKind.UNKNOWN


def _edition(n: int) -> str:
    return f"<edition-2026-12-01.{n}@news.example.org>"


def _verp(token: str) -> str:
    return f"bounces+{token}@news.example.org"


# Every field of every sample's report (detail: a phrase it must hold, or "" for none).
EXPECTED = {
    "postfix-hard.eml": dict(
        kind=HARD,
        recipients=("ann.reader@example.com",),
        sent_to=_verp("aq3zk7mw2x4yb5nc"),
        status="5.1.1",
        diagnostic="550 5.1.1 <Ann.Reader@example.com>: Recipient address rejected: "
        "User unknown in virtual mailbox table",
        message_id=_edition(17),
        reporter="postfix",
        detail="",
    ),
    # Not modelled: what this machine's Postfix mailed back (a 550 from smtp-sink), as it came.
    "postfix-real.eml": dict(
        kind=HARD,
        recipients=("gone@example.net",),
        sent_to="bounces+d42k7q2m4xwz3a5bcdefgh@news.test",
        status="5.1.1",
        diagnostic="550 5.1.1 <gone@example.net>: Recipient address rejected: User unknown",
        message_id="<20261125.42.abcdef@news.test>",
        reporter="postfix",
        detail="",
    ),
    "postfix-delayed.eml": dict(
        kind=DELAYED,
        recipients=("bo@example.net",),
        sent_to=_verp("b7c2d3e4f5g6h7j2"),
        status="4.4.1",
        diagnostic="connect to mx.example.net[198.51.100.7]:25: Connection timed out",
        message_id=_edition(18),
        reporter="postfix",
        detail="",
    ),
    "postfix-delivered.eml": dict(
        kind=UNKNOWN,
        recipients=("cy@example.org",),
        sent_to=_verp("c2d3e4f5g6h7j2k3"),
        status="2.0.0",
        diagnostic="250 2.0.0 Ok: queued as 7QxYz",
        message_id="",
        reporter="postfix",
        detail="not a bounce",
    ),
    "postfix-plain-quota.eml": dict(
        kind=SOFT,
        recipients=("kim@example.biz",),
        sent_to=_verp("m4n5p6q7r2s3t4v5"),
        status="",
        diagnostic="error writing message: Disk quota exceeded",
        message_id="",
        reporter="text",
        detail="",
    ),
    "exim-dsn.eml": dict(
        kind=HARD,
        recipients=("dee@example.net",),
        sent_to=_verp("d3e4f5g6h7j2k3m4"),
        status="5.1.1",  # Exim says 5.0.0; the server it quotes, 5.1.1
        diagnostic="550 5.1.1 <dee@example.net>: Recipient address rejected: User unknown",
        message_id=_edition(19),
        reporter="exim",
        detail="",
    ),
    "exim-plain.eml": dict(
        kind=HARD,
        recipients=("eve.smith@example.co.uk",),
        sent_to=_verp("e4f5g6h7j2k3m4n5"),
        status="",
        diagnostic="Unrouteable address",
        message_id=_edition(20),
        reporter="exim",
        detail="",
    ),
    "sendmail.eml": dict(
        kind=HARD,
        recipients=("fay@example.edu",),  # Original-Recipient: the address we sent to
        sent_to=_verp("f5g6h7j2k3m4n5p6"),
        status="5.1.1",
        diagnostic="550 5.1.1 <fay@mail.example.edu>... User unknown",
        message_id=_edition(21),
        reporter="sendmail",
        detail="",
    ),
    "exchange.eml": dict(
        kind=HARD,
        recipients=("gus@contoso.example.com",),
        sent_to=_verp("g6h7j2k3m4n5p6q7"),
        status="5.1.10",
        diagnostic="550 5.1.10 RESOLVER.ADR.RecipientNotFound; "
        "Recipient not found by SMTP address lookup",
        message_id=_edition(22),
        reporter="exchange",
        detail="",
    ),
    "gmail.eml": dict(
        kind=HARD,
        recipients=("hal.reader@gmail.com",),
        sent_to=_verp("h7j2k3m4n5p6q7r2"),
        status="5.1.1",
        diagnostic="550-5.1.1 The email account that you tried to reach does not exist. "
        "Please try 550-5.1.1 double-checking the recipient's email address for typos or "
        "550 5.1.1 unnecessary spaces. https://support.google.com/mail/?p=NoSuchUser "
        "a1si1234567wrb.42 - gsmtp",
        message_id=_edition(23),
        reporter="gmail",
        detail="",
    ),
    "gmail-mailbox-full.eml": dict(
        kind=SOFT,  # 5.2.2: mailbox full is soft whatever the class (RFC 3463 §3.3)
        recipients=("ida@gmail.com",),
        sent_to=_verp("j2k3m4n5p6q7r2s3"),
        status="5.2.2",
        diagnostic="552-5.2.2 The recipient's inbox is out of storage space. "
        "552 5.2.2 https://support.google.com/mail/?p=OverQuotaPerm - gsmtp",
        message_id="",
        reporter="gmail",
        detail="",
    ),
    "qmail.eml": dict(
        kind=HARD,
        recipients=("jo@example.info",),
        sent_to=_verp("k3m4n5p6q7r2s3t4"),
        status="5.1.1",
        diagnostic="Sorry, no mailbox here by that name. (#5.1.1)",
        message_id=_edition(24),
        reporter="qmail",
        detail="",
    ),
    "arf-yahoo.eml": dict(
        kind=COMPLAINT,
        recipients=("lee.reader@yahoo.com",),
        # Sent to the feedback-loop address: the VERP one comes from Original-Mail-From.
        sent_to=_verp("n5p6q7r2s3t4v5w6"),
        status="",
        diagnostic="feedback-type abuse from Yahoo!-Mail-Feedback/2.0",
        message_id=_edition(25),
        reporter="arf",
        detail="",
    ),
    "arf-microsoft-jmrp.eml": dict(
        kind=COMPLAINT,
        recipients=("max.reader@outlook.com",),  # X-HmXmrOriginalRecipient, not the redacted To
        sent_to=_verp("p6q7r2s3t4v5w6x7"),  # the original's Return-Path
        status="",
        diagnostic="feedback-type abuse from Microsoft Junk Mail Reporting Program",
        message_id=_edition(26),
        reporter="arf",
        detail="",
    ),
    "ooo-outlook.eml": dict(
        kind=AUTO,
        recipients=(),
        sent_to=_verp("q7r2s3t4v5w6x7y2"),
        status="",
        diagnostic="",
        message_id="",
        reporter="auto-reply",
        detail="ignored",
    ),
    "ooo-gmail.eml": dict(
        kind=AUTO,
        recipients=(),
        sent_to=_verp("r2s3t4v5w6x7y2z3"),
        status="",
        diagnostic="",
        message_id="",
        reporter="auto-reply",
        detail="ignored",
    ),
    "ooo-exchange-de.eml": dict(
        kind=AUTO,
        recipients=(),
        sent_to=_verp("s3t4v5w6x7y2z3a4"),
        status="",
        diagnostic="",
        message_id="",
        reporter="auto-reply",
        detail="ignored",
    ),
    "junk.eml": dict(
        kind=UNKNOWN,
        recipients=(),
        sent_to=_verp("t4v5w6x7y2z3a4b5"),
        status="",
        diagnostic="",
        message_id="",
        reporter="",
        detail="not a delivery report, complaint or auto-reply",
    ),
}


def test_every_sample_has_its_expected_report() -> None:
    assert sorted(p.name for p in CORPUS.glob("*.eml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_report_field_by_field(name: str) -> None:
    report = read_report((CORPUS / name).read_bytes())
    expected = EXPECTED[name]
    got = dataclasses.asdict(report)
    for field in ("kind", "recipients", "sent_to", "status", "diagnostic", "message_id"):
        assert got[field] == expected[field], f"{name}: {field}"
    assert report.reporter == expected["reporter"], name
    if expected["detail"]:
        assert expected["detail"] in report.detail, name
    else:
        assert report.detail == "", name


def test_a_delivery_report_with_auto_submitted_is_never_an_auto_reply() -> None:
    """Exchange, Exim and Postfix mark their bounces `Auto-Submitted: auto-replied`."""
    for name in ("exchange.eml", "exim-dsn.eml", "exim-plain.eml", "postfix-hard.eml"):
        data = (CORPUS / name).read_bytes()
        assert b"Auto-Submitted: auto-replied" in data
        assert read_report(data).kind is HARD, name


def test_an_out_of_office_that_talks_of_delivery_is_not_a_bounce() -> None:
    data = _message(
        "From: Ray <ray@example.com>\nSubject: Automatic reply: The Daily\n"
        "Auto-Submitted: auto-replied\nContent-Type: text/plain\n",
        "I am away. Your message could not be delivered to me in person; "
        "550 5.1.1 jokes aside, I am back on Monday.\n",
    )
    assert read_report(data).kind is AUTO


@pytest.mark.parametrize(
    ("header", "subject"),
    [
        ("X-Autoreply: yes", "Re: The Daily"),
        ("X-Autorespond: The Daily", "Re: The Daily"),
        ("Precedence: auto_reply", "Re: The Daily"),
        ("X-Auto-Response-Suppress: All", "Re: The Daily"),
        ("X-Nothing: here", "Out of Office: The Daily"),
        ("X-Nothing: here", "Réponse automatique : The Daily"),
        ("X-Nothing: here", "=?utf-8?q?Respuesta_autom=C3=A1tica=3A_The_Daily?="),
    ],
)
def test_auto_reply_signs(header: str, subject: str) -> None:
    data = _message(f"From: Sam <sam@example.com>\nSubject: {subject}\n{header}\n", "Back soon.\n")
    assert read_report(data).kind is AUTO


def test_sendmails_plain_text_bounce() -> None:
    """Old sendmail, without a DSN part: its report opens with "The original message was
    received at", which is not where the copy starts."""
    data = _message(
        "From: Mail Delivery Subsystem <MAILER-DAEMON@mail.example.edu>\n"
        "Subject: Returned mail: User unknown\n",
        "The original message was received at Tue, 1 Dec 2026 04:17:28 -0500\n"
        "from relay.news.example.org [192.0.2.10]\n\n"
        "   ----- The following addresses had permanent fatal errors -----\n"
        "<Bea@Example.EDU>\n    (reason: 550 5.1.1 User unknown)\n\n"
        "   ----- Original message follows -----\n\n"
        "From: The Daily <news@news.example.org>\nTo: Bea@Example.EDU\n"
        "Message-ID: <edition-2026-12-01.30@news.example.org>\n\nGood morning.\n",
    )
    report = read_report(data)
    assert (report.kind, report.recipients, report.status) == (HARD, ("bea@example.edu",), "5.1.1")
    assert report.diagnostic == "(reason: 550 5.1.1 User unknown)"
    assert report.message_id == _edition(30)


def test_a_read_receipt_is_ignored_as_an_auto_reply() -> None:
    data = _message(
        "From: Ann <ann@example.com>\nSubject: Read: The Daily\n"
        'Content-Type: multipart/report; report-type=disposition-notification; boundary="m"\n',
        "--m\nContent-Type: text/plain\n\nYour message was displayed.\n\n"
        "--m\nContent-Type: message/disposition-notification\n\n"
        "Final-Recipient: rfc822; ann@example.com\n"
        "Disposition: manual-action/MDN-sent-manually; displayed\n\n--m--\n",
    )
    report = read_report(data)
    assert report.kind is AUTO and "read receipt" in report.detail


def test_exims_plain_delay_warning_is_delayed() -> None:
    data = _message(
        "From: Mail Delivery System <Mailer-Daemon@mx.example.net>\n"
        "Subject: Warning: message 1vQ2aB-000Xy1-0c delayed 24 hours\n"
        "Auto-Submitted: auto-replied\n",
        "This message was created automatically by mail delivery software.\n\n"
        "A message that you sent has not yet been delivered to one or more of its\n"
        "recipients after more than 24 hours on the queue on mx.example.net.\n\n"
        "The address to which the message has not yet been delivered is:\n\n"
        "  amy@example.net\n    host mx2.example.net [198.51.100.21]\n"
        "    Delay reason: SMTP error from remote mail server after RCPT TO:<amy@example.net>:\n"
        "    451 4.7.1 Greylisted, try again later\n\n"
        "No action is required on your part. Delivery attempts will continue for\n"
        "some time, and this warning may be repeated at intervals if the message\n"
        "remains undelivered. Eventually the mail delivery software will give up,\n"
        "and when that happens, the message will be returned to you.\n",
    )
    report = read_report(data)
    assert (report.kind, report.recipients, report.status) == (
        DELAYED,
        ("amy@example.net",),
        "4.7.1",
    )
    assert report.reporter == "exim"


def test_a_message_without_auto_reply_signs_is_unknown() -> None:
    data = _message("From: Sam <sam@example.com>\nSubject: Re: The Daily\n", "Back soon.\n")
    assert read_report(data).kind is UNKNOWN
    auto_no = _message(
        "From: Sam <sam@example.com>\nSubject: Re: The Daily\nAuto-Submitted: no\n", "Hi.\n"
    )
    assert read_report(auto_no).kind is UNKNOWN


# Hard or soft, on built DSNs


def _dsn(*recipient_blocks: str, top: str = "", to: str = _verp("u5v6w7x2y3z4a5b6")) -> bytes:
    """A minimal RFC 3464 report with these per-recipient blocks."""
    blocks = "\n\n".join(recipient_blocks)
    return _message(
        "From: MAILER-DAEMON@mx.example.com\nSubject: Delivery report\n"
        f"To: {to}\n{top}"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\n',
        "--b\nContent-Type: text/plain\n\nA report.\n\n"
        "--b\nContent-Type: message/delivery-status\n\n"
        f"Reporting-MTA: dns; mx.example.com\n\n{blocks}\n\n--b--\n",
    )


def _block(action: str, status: str, diagnostic: str, rcpt: str = "tom@example.com") -> str:
    lines = [f"Final-Recipient: rfc822; {rcpt}", f"Action: {action}"]
    if status:
        lines.append(f"Status: {status}")
    if diagnostic:
        lines.append(f"Diagnostic-Code: smtp; {diagnostic}")
    return "\n".join(lines)


@pytest.mark.parametrize(
    ("action", "status", "diagnostic", "kind", "status_out"),
    [
        ("failed", "5.1.1", "550 5.1.1 user unknown", HARD, "5.1.1"),
        ("failed", "5.7.1", "550 5.7.1 rejected by policy", SOFT, "5.7.1"),  # blocks the sender
        ("failed", "5.7.26", "550 5.7.26 unauthenticated mail", SOFT, "5.7.26"),
        ("failed", "4.4.7", "451 4.4.7 message expired", SOFT, "4.4.7"),
        ("failed", "5.2.2", "552 5.2.2 over quota", SOFT, "5.2.2"),  # mailbox full: soft
        ("failed", "4.2.2", "452 4.2.2 mailbox full", SOFT, "4.2.2"),
        ("failed", "5.2.1", "550 5.2.1 mailbox disabled", HARD, "5.2.1"),
        # A generic X.0.0: the server's own code, or the words for a full mailbox.
        ("failed", "5.0.0", "550 5.1.1 user unknown", HARD, "5.1.1"),
        ("failed", "5.0.0", "552 5.2.2 mailbox full", SOFT, "5.2.2"),
        ("failed", "5.0.0", "552 Mailbox full", SOFT, "5.0.0"),
        ("failed", "5.0.0", "552 sorry, the inbox is out of storage space", SOFT, "5.0.0"),
        ("failed", "5.0.0", "550 no", HARD, "5.0.0"),
        ("failed", "4.0.0", "550 5.1.1 user unknown", SOFT, "4.0.0"),  # not of its class
        # No Status field: a code in the diagnostic, then the phrase table, then the reply code.
        ("failed", "", "550 5.1.1 <tom@example.com> no thanks", HARD, "5.1.1"),
        ("failed", "", "552 5.2.2 storage full", SOFT, "5.2.2"),
        ("failed", "", "550 Requested action not taken: mailbox unavailable", HARD, ""),
        ("failed", "", "552 Mailbox full", SOFT, ""),
        ("failed", "", "554 sorry, recipient over quota", SOFT, ""),
        ("failed", "", "550 No such user here", HARD, ""),
        ("failed", "", "550 go away", HARD, ""),
        ("failed", "", "421 try again later", SOFT, ""),
        ("failed", "", "", HARD, ""),  # failed, nothing more: RFC 3464 says permanent
        ("failed", "2.0.0", "user unknown", HARD, ""),  # a success code on a failure: the words
        ("delayed", "4.4.1", "connection timed out", DELAYED, "4.4.1"),
        ("delivered", "2.0.0", "250 ok", UNKNOWN, "2.0.0"),
        ("relayed", "2.0.0", "", UNKNOWN, "2.0.0"),
        ("expanded", "2.0.0", "", UNKNOWN, "2.0.0"),
    ],
)
def test_kind_by_action_status_and_words(
    action: str, status: str, diagnostic: str, kind: BounceKind, status_out: str
) -> None:
    report = read_report(_dsn(_block(action, status, diagnostic)))
    assert (report.kind, report.status) == (kind, status_out)
    assert report.recipients == ("tom@example.com",)
    assert report.diagnostic == diagnostic


def test_a_global_delivery_status_is_read_as_a_dsn() -> None:
    """RFC 6533's UTF-8 form: Python parses it as one message, its recipient blocks as body."""
    data = _dsn("Final-Recipient: utf-8; Tom@Example.com\nAction: failed\nStatus: 5.1.1").replace(
        b"message/delivery-status", b"message/global-delivery-status"
    )
    report = read_report(data)
    assert (report.kind, report.recipients, report.status) == (HARD, ("tom@example.com",), "5.1.1")


def test_several_recipients_the_gravest_outcome_names_its_addresses() -> None:
    report = read_report(
        _dsn(
            _block("delayed", "4.4.1", "timed out", "uma@example.com"),
            _block("failed", "5.1.1", "550 5.1.1 unknown", "Vic@Example.com"),
            _block("failed", "5.1.1", "550 5.1.1 unknown", "wen@example.com"),
            _block("failed", "4.4.7", "expired", "xia@example.com"),
        )
    )
    assert report.kind is HARD
    assert report.recipients == ("vic@example.com", "wen@example.com")


def test_original_recipient_is_preferred_and_addresses_are_bare_and_checked() -> None:
    block = (
        'Original-Recipient: rfc822; "Yan Reader" <Yan.Reader@Example.COM>\n'
        "Final-Recipient: rfc822; yan@mailhost.example.com\nAction: failed\nStatus: 5.1.1"
    )
    assert read_report(_dsn(block)).recipients == ("yan.reader@example.com",)
    for bad in ("not-an-address", "a@b", "<>", "x@@example.com", "zed@exam ple.com", "ünï@x.com"):
        block = f"Final-Recipient: rfc822; {bad}\nAction: failed\nStatus: 5.1.1"
        report = read_report(_dsn(block))
        assert report.kind is HARD and report.recipients == (), bad
    # A mark hygiene removes is gone before the address is read.
    block = "Final-Recipient: rfc822; zed@example.com\u202e\nAction: failed\nStatus: 5.1.1"
    assert read_report(_dsn(block)).recipients == ("zed@example.com",)


def test_a_dsn_without_recipient_falls_back_to_x_failed_recipients() -> None:
    report = read_report(
        _dsn("Action: failed\nStatus: 5.1.1", top="X-Failed-Recipients: Zoe@Example.com\n")
    )
    assert report.recipients == ("zoe@example.com",)


def test_text_is_one_clean_bounded_line() -> None:
    hostile = "550 5.1.1 user\x1b[31m unknown \u202etxt.exe\u0007 " + "x" * 5000
    report = read_report(_dsn(_block("failed", "5.1.1", hostile)))
    assert not has_unsafe(report.diagnostic)
    assert report.diagnostic.startswith("550 5.1.1 user[31m unknown txt.exe")
    assert len(report.diagnostic) == parse.MAX_DIAGNOSTIC


# sent_to: the envelope headers first, the VERP form when there is one


@pytest.mark.parametrize(
    ("headers", "sent_to"),
    [
        (
            "Delivered-To: bounces@news.example.org\n"
            "X-Original-To: Bounces+ABC234@News.example.org\nTo: someone@example.org\n",
            "bounces+abc234@news.example.org",
        ),
        (
            "Envelope-To: bounces+def567@news.example.org\nTo: bounces+zzz@news.example.org\n",
            "bounces+def567@news.example.org",
        ),
        ("To: The Daily <bounces+ghi234@news.example.org>\n", "bounces+ghi234@news.example.org"),
        ("Delivered-To: bounces@news.example.org\nTo: x@example.org\n", "bounces@news.example.org"),
        ("To: undisclosed-recipients:;\n", ""),
    ],
)
def test_sent_to(headers: str, sent_to: str) -> None:
    data = _message(f"From: MAILER-DAEMON@mx.example.com\n{headers}", "hi\n")
    assert read_report(data).sent_to == sent_to


def test_sent_to_finds_the_verp_address_in_the_report_when_the_headers_lack_it() -> None:
    report = read_report(
        _dsn(_block("failed", "5.1.1", ""), to="bounces@news.example.org").replace(
            b"Reporting-MTA: dns; mx.example.com\n",
            b"Reporting-MTA: dns; mx.example.com\n"
            b"X-Postfix-Sender: rfc822; bounces+jkl234@news.test\n",  # a local test domain
        )
    )
    assert report.sent_to == "bounces+jkl234@news.test"


# Limits: refused quickly, as UNKNOWN with the reason


def test_empty_and_too_big() -> None:
    assert read_report(b"").detail == "empty"
    assert read_report(b" \r\n").kind is UNKNOWN
    big = (CORPUS / "postfix-hard.eml").read_bytes() + b"x" * parse.MAX_MESSAGE_BYTES
    report = read_report(big)
    assert report.kind is UNKNOWN and "too big" in report.detail
    lines = b"From: a@example.com\n\n" + b"x\r" * (parse.MAX_LINES + 1)  # CR alone ends a line
    report = read_report(lines)
    assert report.kind is UNKNOWN and "too many lines" in report.detail


def test_nested_too_deep() -> None:
    depth = 500
    head = "".join(
        f'Content-Type: multipart/mixed; boundary="b{i}"\n\n--b{i}\n' for i in range(depth)
    )
    report = read_report(("From: a@example.com\n" + head + "\nhi\n").encode())
    assert report.kind is UNKNOWN and "too deep" in report.detail
    nested = "Content-Type: message/rfc822\n\n" * 2000
    report = read_report(("From: a@example.com\n" + nested + "Subject: x\n\nhi\n").encode())
    assert report.kind is UNKNOWN and "too deep" in report.detail


def test_too_many_parts() -> None:
    body = "".join(f"--b\nContent-Type: text/plain\n\npart {i}\n" for i in range(100)) + "--b--\n"
    data = _message('Content-Type: multipart/mixed; boundary="b"\n', body)
    report = read_report(data)
    assert report.kind is UNKNOWN and "too many MIME parts" in report.detail


def test_an_exception_inside_becomes_unknown_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(message: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(parse, "_walk", broken)
    report = read_report((CORPUS / "postfix-hard.eml").read_bytes())
    assert report.kind is UNKNOWN
    assert report.detail == "the message could not be read (RuntimeError: boom)"


# Anything at all: always a report


def _message(headers: str, body: str) -> bytes:
    return (headers + "MIME-Version: 1.0\n\n" + body).encode("utf-8")


def _assert_sane(report: BounceReport) -> None:
    assert isinstance(report, BounceReport)
    assert isinstance(report.kind, BounceKind)
    for address in (*report.recipients, *([report.sent_to] if report.sent_to else [])):
        assert address == address.lower() and re.fullmatch(r"[^\s<>@]+@[^\s<>@]+", address)
    assert len(report.recipients) <= parse.MAX_RECIPIENTS
    for text in (report.status, report.diagnostic, report.message_id, report.detail):
        assert not has_unsafe(text) and len(text) <= parse.MAX_DIAGNOSTIC


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_CONTENT_TYPES = [
    "text/plain",
    "text/html",
    "text/rfc822-headers",
    "message/rfc822",
    "message/delivery-status",
    "message/feedback-report",
    "image/png",
    "application/octet-stream",
]
_FIELDS = st.sampled_from(
    [
        "Final-Recipient: rfc822; a@example.com",
        "Original-Recipient: rfc822;<B@Example.com>",
        "Action: failed",
        "Action: delayed",
        "Status: 5.2.2",
        "Status: 4.0.0",
        "Diagnostic-Code: smtp; 550 user unknown",
        "Feedback-Type: abuse",
        "Original-Rcpt-To: c@example.com",
        "Message-ID: <x@example.com>",
        "Auto-Submitted: auto-replied",
        "X-Failed-Recipients: d@example.com",
        "Subject: Undeliverable: out of office",
        "From: MAILER-DAEMON@example.com",
        "Content-Transfer-Encoding: base64",
        "Content-Transfer-Encoding: quoted-printable",
        "This is the qmail-send program",
        "<e@example.com>:",
        "",
    ]
)
_LINES = st.lists(st.one_of(_FIELDS, st.text(max_size=40)), max_size=8).map("\n".join)


@st.composite
def _mime_tree(draw: st.DrawFn, depth: int = 0) -> str:
    headers = draw(st.lists(_FIELDS, max_size=3))
    if depth < 4 and draw(st.booleans()):
        boundary = f"b{depth}x{draw(st.integers(0, 9))}"
        subtype = draw(st.sampled_from(["mixed", "report", "alternative", "related"]))
        report_type = draw(st.sampled_from(["delivery-status", "feedback-report", ""]))
        children = draw(st.lists(_mime_tree(depth + 1), min_size=0, max_size=3))
        body = "".join(f"--{boundary}\n{child}\n" for child in children)
        closing = draw(st.sampled_from([f"--{boundary}--\n", ""]))  # sometimes never closed
        content_type = (
            f'Content-Type: multipart/{subtype}; report-type={report_type}; boundary="{boundary}"'
        )
        return "\n".join([*headers, content_type]) + "\n\n" + body + closing
    content_type = f"Content-Type: {draw(st.sampled_from(_CONTENT_TYPES))}"
    return "\n".join([*headers, content_type]) + "\n\n" + draw(_LINES) + "\n"


@pytest.mark.timeout(120)
@FUZZ
@given(st.binary(max_size=4000))
def test_random_bytes_give_a_report(data: bytes) -> None:
    _assert_sane(read_report(data))


@pytest.mark.timeout(120)
@FUZZ
@given(_mime_tree())
def test_random_mime_trees_give_a_report(tree: str) -> None:
    _assert_sane(read_report(tree.encode("utf-8", "surrogatepass")))


_SAMPLES = [p.read_bytes() for p in sorted(CORPUS.glob("*.eml"))]


@pytest.mark.timeout(120)
@FUZZ
@given(st.sampled_from(_SAMPLES), st.floats(0, 1), st.binary(max_size=20), st.booleans())
def test_cut_and_mangled_samples_give_a_report(
    sample: bytes, where: float, junk: bytes, cut: bool
) -> None:
    at = int(len(sample) * where)
    data = sample[:at] if cut else sample[:at] + junk + sample[at + len(junk) :]
    _assert_sane(read_report(data))
