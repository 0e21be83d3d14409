"""message.py: the bytes of one recipient's message, read back by the stdlib parser.

Every test parses what `build_message` produced with `email.policy.default` (the same
parser a mail client library would use), so a header that is malformed, folded wrongly
or injected shows up as a wrong value or an extra key. The SpamAssassin test runs the real
filter on a newsletter-shaped message.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import re
from datetime import UTC, datetime, timedelta, timezone
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.utils import parsedate_to_datetime

import pytest
from conftest import spam_score
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from mimewire import assert_quoted_printable_wire, piece, split_parts

from newsletter.config import Settings
from newsletter.errors import InputError
from newsletter.headers import clean_header_text
from newsletter.message import build_message, make_message_id
from newsletter.models import Recipient
from newsletter.quoted_printable import encode_text, fill_encoded

UNSUB_URL = "https://news.example.org/unsubscribe/tok123"
UNSUB_MAILTO = "mailto:unsubscribe@daily.example.org?subject=unsubscribe%20tok123"
WHEN = datetime(2026, 3, 14, 7, 0, 5, tzinfo=timezone(timedelta(hours=1)))

EXPECTED_KEYS = [
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Feedback-ID",
    "Precedence",
    "MIME-Version",
    "Content-Type",
]


def make_settings(**overrides: str) -> Settings:
    values = {
        "from_address": "news@daily.example.org",
        "from_name": "The Daily Brief",
        "name": "The Daily Brief",
        "base_url": "https://news.example.org",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


SETTINGS = make_settings()
ANN = Recipient(subscriber_id=7, email="ann@example.com", name="Ann Smith")


def build(**overrides: object) -> bytes:
    args: dict[str, object] = {
        "settings": SETTINGS,
        "recipient": ANN,
        "subject": "Today's brief",
        "html": "<p>Hello</p>",
        "text": "Hello",
        "unsubscribe_url": UNSUB_URL,
        "unsubscribe_mailto": UNSUB_MAILTO,
        "date": WHEN,
    }
    args.update(overrides)
    return build_message(**args)  # type: ignore[arg-type]


def parse(data: bytes) -> EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)  # type: ignore[return-value]


def header_block(data: bytes) -> bytes:
    return data.split(b"\r\n\r\n", 1)[0]


def crlf(text: str) -> str:
    """What a reader decodes for `text`: every line break is CRLF on the wire."""
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")


# Headers and structure


def test_every_header_is_present_in_order_with_its_value() -> None:
    data = build(message_id="<fixed.1@daily.example.org>")
    msg = parse(data)

    assert msg.keys() == EXPECTED_KEYS
    assert _raw_header(data, "From") == [b'From: "The Daily Brief" <news@daily.example.org>']
    assert _raw_header(data, "To") == [b'To: "Ann Smith" <ann@example.com>']
    assert msg["From"].addresses[0].display_name == "The Daily Brief"
    assert msg["From"].addresses[0].addr_spec == "news@daily.example.org"
    assert msg["To"].addresses[0].display_name == "Ann Smith"
    assert msg["To"].addresses[0].addr_spec == "ann@example.com"
    assert msg["Subject"] == "Today's brief"
    assert parsedate_to_datetime(msg["Date"]) == WHEN
    assert msg["Date"] == "Sat, 14 Mar 2026 07:00:05 +0100"
    assert msg["Message-ID"] == "<fixed.1@daily.example.org>"
    assert msg["List-Id"] == '"The Daily Brief" <the-daily-brief.daily.example.org>'
    assert msg["List-Unsubscribe"] == f"<{UNSUB_URL}>, <{UNSUB_MAILTO}>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert (
        msg["Feedback-ID"] == "2026-03-14:the-daily-brief.daily.example.org:edition:dailyexampleorg"
    )
    assert msg["Precedence"] == "bulk"
    assert msg["MIME-Version"] == "1.0"
    assert "Auto-Submitted" not in msg
    assert msg.defects == []


def test_parts_are_text_then_html_utf8_quoted_printable() -> None:
    msg = parse(build())

    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [part.get_content_type() for part in parts] == ["text/plain", "text/html"]
    for part in parts:
        assert part.get_content_charset() == "utf-8"
        assert part["Content-Transfer-Encoding"] == "quoted-printable"
        assert part.defects == []
    assert msg.get_body(("html", "plain")) is parts[1]  # a reader that can show HTML does


def test_no_recipient_name_gives_a_bare_angle_address() -> None:
    data = build(recipient=Recipient(None, "bob@example.net"))
    msg = parse(data)

    assert _raw_header(data, "To") == [b"To: <bob@example.net>"]  # brackets: no TO_NO_BRKTS
    assert msg["To"].addresses[0].addr_spec == "bob@example.net"
    assert msg["To"].addresses[0].display_name == ""


def test_default_date_is_now_and_naive_dates_are_utc() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    now_msg = parse(build(date=None))
    after = datetime.now(UTC)
    naive_msg = parse(build(date=datetime(2026, 1, 2, 3, 4, 5)))

    assert before <= parsedate_to_datetime(now_msg["Date"]) <= after
    assert parsedate_to_datetime(naive_msg["Date"]) == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_mailto_may_be_given_as_a_bare_address() -> None:
    msg = parse(build(unsubscribe_mailto="unsubscribe@daily.example.org"))

    assert msg["List-Unsubscribe"] == f"<{UNSUB_URL}>, <mailto:unsubscribe@daily.example.org>"


# Bodies

TRICKY_BODY = "\n".join(
    [
        "First line with trailing spaces   ",
        "Tabs\tinside\tand trailing tab\t",
        ".a line starting with a dot",
        ".",
        "From the desk of the editor",
        "equals = signs ==3D and =?utf-8?q?not-a-word?=",
        "Unicode: café, naïve, Ελληνικά, 日本語のテキスト, emoji 🎉👩‍👩‍👧",
        "long " + "x" * 300 + " end",
        "long-ünïcödé-" + "é" * 200,
        "dots at wrap " + "y" * 62 + ".dot after the soft break " + "z" * 80,
        "From " + "w" * 71 + "From after wrap",
        "ends with equals =",
        "",
        "",
    ]
)


@pytest.mark.parametrize(
    "body",
    [
        TRICKY_BODY,
        TRICKY_BODY.replace("\n", "\r\n"),
        "no newline at the end, trailing space ",
        "",
        "\n\n\n",
        "." + "a" * 76,
        "From " + "b" * 200,
    ],
    ids=["tricky", "tricky-crlf", "no-final-newline", "empty", "only-newlines", "dot", "from"],
)
def test_text_and_html_decode_to_exactly_the_input(body: str) -> None:
    html = f"<html><body><pre>{body}</pre></body></html>"
    msg = parse(build(text=body, html=html))

    assert msg.get_body(("plain",)).get_content() == crlf(body)
    assert msg.get_body(("html",)).get_content() == crlf(html)


def test_encoded_body_lines_are_short_and_never_start_with_dot_or_from() -> None:
    data = build(text=TRICKY_BODY, html=TRICKY_BODY)
    body = data.split(b"\r\n\r\n", 1)[1]

    for part in body.split(b"\r\n--")[1:-1]:
        assert_quoted_printable_wire(part.split(b"\r\n\r\n", 1)[1])


def test_boundary_is_random_and_delimits_exactly_two_parts() -> None:
    first, second = build(), build()
    boundaries = [parse(data).get_boundary() for data in (first, second)]

    assert boundaries[0] != boundaries[1]
    for data, boundary in zip((first, second), boundaries, strict=True):
        assert boundary is not None and len(boundary) >= 32
        assert data.count(b"--" + boundary.encode()) == 3  # two parts and the close


def test_an_injected_boundary_is_used_as_given() -> None:
    data = build(boundary="=_golden.0001")
    msg = parse(data)

    assert msg.get_boundary() == "=_golden.0001"
    assert [part.get_content_type() for part in msg.iter_parts()] == ["text/plain", "text/html"]
    assert data.count(b"--=_golden.0001") == 3


@pytest.mark.parametrize(
    "boundary",
    ["", "plain-boundary", "=_" + "x" * 69, "=_with space", '=_quote"', "=_new\r\nline"],
)
def test_a_boundary_quoted_printable_could_contain_is_refused(boundary: str) -> None:
    """It must start with "=_" (never in quoted-printable text) and be RFC 2046 bchars."""
    with pytest.raises(InputError, match="boundary"):
        build(boundary=boundary)


def test_a_body_quoting_a_boundary_cannot_end_its_part() -> None:
    """Boundaries start with "=_", which quoted-printable text can never contain."""
    forged = "--=_0123abcd\nContent-Type: text/html\n\n<script>x</script>\n--=_0123abcd--\n"
    data = build(text=forged, html=forged + "<p>=_ =_=_</p>")
    msg = parse(data)
    boundary = msg.get_boundary()
    assert boundary is not None and boundary.startswith("=_")

    assert len(list(msg.iter_parts())) == 2
    assert msg.get_body(("plain",)).get_content() == crlf(forged)
    for part in data.split(f"--{boundary}".encode())[1:-1]:
        assert b"=_" not in part


# Subject


SUBJECTS = [
    "Morning brief: markets, weather and more",
    "A long ASCII subject " + " ".join(f"word{i}" for i in range(40)),
    "Café, crème brûlée & the naïve résumé",
    "日本語の件名はこのように長くなることもあります。ニュースレター第十二号",
    "🎉 Party time 🎊 — fireworks 🎆 and emoji with joiners 👩‍👩‍👧‍👦",
    "Ω" * 300 + " very long " + "é" * 300 + " 🎉" * 50,
    "x" * 500,  # one word too long to fold: encoded instead
    "Looks like an encoded word =?utf-8?q?hello?= but is not",
    'Quotes " and \\ backslash, (comments) <angles> ; colons:',
]


@pytest.mark.parametrize("subject", SUBJECTS)
def test_subject_round_trips(subject: str) -> None:
    data = build(subject=subject)
    msg = parse(data)

    assert msg["Subject"] == subject
    subject_lines = _raw_header(data, "Subject")
    for line in subject_lines:
        assert len(line) <= 78, line
    for word in re.findall(rb"=\?utf-8\?([qb])\?([^?]*)\?=", b"\r\n".join(subject_lines)):
        assert len(word[1]) + len(b"=?utf-8?q??=") <= 75
        raw = _decode_encoded_word(*word)
        raw.decode("utf-8")  # strict: no word ends inside a multibyte character


def test_non_ascii_subject_is_utf8_encoded_words() -> None:
    raw = b"".join(_raw_header(build(subject="Zoë’s café"), "Subject"))
    assert raw.startswith(b"Subject: =?utf-8?")
    assert raw.isascii()


def test_ascii_subject_is_left_readable_and_folded_at_spaces() -> None:
    subject = SUBJECTS[1]
    lines = _raw_header(build(subject=subject), "Subject")

    assert len(lines) > 1
    assert b"=?" not in b"".join(lines)
    assert b" ".join(line.strip() for line in lines) == b"Subject: " + subject.encode()


# Display names


NAMES = [
    "Ann Smith",
    "Smith, John",
    'The "Daily" Brief',
    "O'Brien (editor) <not an address>; more: text",
    "back\\slash",
    "Zoë Ångström",
    'Zoë, Ångström & "Ünïcode" Co.',
    "日本 太郎",
    "Ivan Иванов von Müller",
    "=?utf-8?q?Eve?=",
]


@pytest.mark.parametrize("name", NAMES)
def test_display_names_round_trip_in_from_and_to(name: str) -> None:
    settings = make_settings(from_name=name)
    msg = parse(build(settings=settings, recipient=Recipient(1, "ann@example.com", name)))

    assert msg["From"].addresses[0].display_name == name
    assert msg["From"].addresses[0].addr_spec == "news@daily.example.org"
    assert msg["To"].addresses[0].display_name == name
    assert msg["To"].addresses[0].addr_spec == "ann@example.com"
    assert len(msg["To"].addresses) == 1
    assert msg.keys() == EXPECTED_KEYS


@pytest.mark.parametrize(
    "name",
    [
        "Jörg Müller-Lüdenscheidt von Weizsäcker und Schönbrunn-Ästhetik Ölmühle GmbH",
        "日本語の名前はとても長いです日本語の名前はとても長いです日本語の名前です",
        "A" * 100 + " plain ascii but far too long for one line " + "B" * 90,
    ],
)
def test_long_display_names_fold_and_decode_per_rfc_2047(name: str) -> None:
    """Long names need several encoded-words; RFC 2047 readers drop the space between them.

    Python's address parser keeps that space (a known stdlib quirk), so the name is read
    back here with `email.header`, which follows the RFC, from the raw phrase.
    """
    data = build(recipient=Recipient(1, "ann@example.com", name))
    lines = _raw_header(data, "To")
    for line in lines:
        assert len(line) <= 78, line
    raw = b"".join(lines).decode("ascii").removeprefix("To:")
    phrase, address = raw.rsplit("<", 1)

    assert address == "ann@example.com>"
    assert str(make_header(decode_header(phrase.strip()))) == name
    assert parse(data)["To"].addresses[0].addr_spec == "ann@example.com"


# Message-ID


def test_message_ids_are_unique_and_on_the_sender_domain() -> None:
    ids = {make_message_id("daily.example.org") for _ in range(1000)}
    built = {parse(build(date=None))["Message-ID"] for _ in range(1000)}

    assert len(ids) == 1000
    assert len(built) == 1000
    for message_id in ids | built:
        assert re.fullmatch(r"<[0-9a-f]+\.[0-9a-f]+@daily\.example\.org>", message_id)


def test_message_id_follows_the_from_domain() -> None:
    settings = make_settings(from_address="letters@mail.other.example")
    assert parse(build(settings=settings))["Message-ID"].endswith("@mail.other.example>")


# List-Unsubscribe


def test_list_unsubscribe_has_both_uris_in_brackets_and_folds_when_long() -> None:
    long_url = "https://news.example.org/unsubscribe/" + "t" * 400
    data = build(unsubscribe_url=long_url)
    value = parse(data)["List-Unsubscribe"]

    assert re.findall(r"<([^>]*)>", value) == [long_url, UNSUB_MAILTO]
    assert value == f"<{long_url}>, <{UNSUB_MAILTO}>"
    lines = _raw_header(data, "List-Unsubscribe")
    assert len(lines) == 2
    assert all(len(line) <= 998 for line in lines)


# Header injection


INJECTIONS = [
    "Ann\r\nBcc: evil@x",
    "Ann\nBcc: evil@x",
    "Ann\rBcc: evil@x",
    "Ann\u2028Bcc: evil@x",
    "Ann\u2029Bcc: evil@x",
    "Ann\u0085Bcc: evil@x",
    "Ann\x00\r\n\r\n<html>body</html>",
    "Ann\x0bBcc:\x0cevil@x",
    "Ann\u202egnp.exe",
    "Zoë\r\nBcc: evil@x",
    "日本\u2028Bcc: evil@x",
]


@pytest.mark.parametrize("evil", INJECTIONS)
def test_injection_in_names_and_subject_adds_no_header(evil: str) -> None:
    settings = make_settings(from_name=evil, name=evil)
    data = build(settings=settings, recipient=Recipient(1, "ann@example.com", evil), subject=evil)
    msg = parse(data)

    assert msg.keys() == EXPECTED_KEYS
    assert msg.defects == []
    for line in header_block(data).split(b"\r\n"):
        assert not line.lower().startswith((b"bcc", b"<html")), line
    cleaned = clean_header_text(evil)
    assert msg["Subject"] == cleaned
    assert msg["To"].addresses[0].display_name == cleaned
    assert msg["To"].addresses[0].addr_spec == "ann@example.com"
    assert "\u202e" not in str(msg["To"]) and "\u2028" not in msg["Subject"]
    assert len(list(msg.iter_parts())) == 2


@pytest.mark.parametrize(
    ("field", "overrides"),
    [
        ("email address", {"recipient": Recipient(3, "ann@example.com\r\nBcc: evil@x")}),
        ("email address", {"recipient": Recipient(3, "ann@example.com\nX: y")}),
        ("email address", {"recipient": Recipient(3, "ann@exa mple.com")}),
        ("email address", {"recipient": Recipient(3, "<ann@example.com>")}),
        ("email address", {"recipient": Recipient(3, "ann@example.com>, <evil@x")}),
        ("email address", {"recipient": Recipient(3, "ann\u2028@example.com")}),
        ("email address", {"recipient": Recipient(3, "ann\x00@example.com")}),
        ("email address", {"recipient": Recipient(3, "ann@exämple.com")}),
        ("email address", {"recipient": Recipient(3, "not-an-address")}),
        ("email address", {"recipient": Recipient(3, "")}),
        ("unsubscribe URL", {"unsubscribe_url": "https://x.example/u\r\nBcc: evil@x"}),
        ("unsubscribe URL", {"unsubscribe_url": "https://x.example/u>, <https://evil"}),
        ("unsubscribe URL", {"unsubscribe_url": "https://x.example/a b"}),
        ("unsubscribe URL", {"unsubscribe_url": "javascript:alert(1)"}),
        ("unsubscribe URL", {"unsubscribe_url": "https://x.example/" + "a" * 1000}),
        ("unsubscribe mailto", {"unsubscribe_mailto": "mailto:u@x.example\r\nBcc: e@x"}),
        ("unsubscribe mailto", {"unsubscribe_mailto": "mailto:u@x.example>"}),
        ("Message-ID", {"message_id": "<a@b>\r\nBcc: evil@x"}),
        ("Message-ID", {"message_id": "no-brackets"}),
    ],
)
def test_unsafe_address_url_or_message_id_is_refused_naming_recipient_and_field(
    field: str, overrides: dict[str, object]
) -> None:
    recipient = overrides.setdefault("recipient", Recipient(3, "carol@example.com"))
    assert isinstance(recipient, Recipient)

    with pytest.raises(InputError) as caught:
        build(**overrides)

    assert caught.value.where is not None
    assert "#3" in caught.value.where and repr(recipient.email) in caught.value.where
    assert field in caught.value.message
    assert "\n" not in str(caught.value) and "\r" not in str(caught.value)


def test_surrounding_whitespace_on_an_address_is_tolerated() -> None:
    msg = parse(build(recipient=Recipient(1, "  ann@example.com\r\n")))
    assert msg["To"].addresses[0].addr_spec == "ann@example.com"


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("plain", "plain"),
        ("  padded  \t ", "padded"),
        ("a\r\nb", "a b"),
        ("a\u2028b\u2029c\u0085d", "a b c d"),
        ("nul\x00here", "nulhere"),
        ("bell\x07 esc\x1b del\x7f c1\x9b", "bell esc del c1"),
        ("rtl\u202eoverride\u2066isolate\u2069\u200f", "rtloverrideisolate"),
        ("many   \n\n   spaces", "many spaces"),
        ("emoji 👩‍👩‍👧 keeps its joiners", "emoji 👩‍👩‍👧 keeps its joiners"),
        ("lone \ud800 surrogate", "lone \ufffd surrogate"),
        ("", ""),
    ],
)
def test_clean_header_text(raw: str, clean: str) -> None:
    assert clean_header_text(raw) == clean


# The wire format


def test_every_line_is_crlf_terminated_and_at_most_998_octets() -> None:
    data = build(
        subject=SUBJECTS[5],
        recipient=Recipient(1, "ann@example.com", NAMES[6] * 10),
        text=TRICKY_BODY,
        html=TRICKY_BODY * 3,
        unsubscribe_url="https://news.example.org/u/" + "q" * 850,
    )

    assert data.endswith(b"\r\n")
    assert b"\r\n".join(data.split(b"\r\n")) == data
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert b"\r" not in data.replace(b"\r\n", b"")
    assert data.isascii()
    for line in data.split(b"\r\n"):
        assert len(line) <= 998
    for line in header_block(data).split(b"\r\n"):
        # a URL, and Feedback-ID (a fold would put a space inside a field), cannot fold
        if not line.startswith((b"List-Unsubscribe:", b" <https://", b"Feedback-ID:")):
            assert len(line) <= 78, line


# Properties

emails = st.emails().filter(lambda address: len(address) <= 254)
url_tokens = st.text(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~%", min_size=1
)


@hyp_settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.text(), subject=st.text(), address=emails, token=url_tokens)
def test_property_headers_read_back_what_went_in(
    name: str, subject: str, address: str, token: str
) -> None:
    url = f"https://news.example.org/unsubscribe/{token}"
    article = f"https://articles.example.com/{token}/story"
    html = f'<p>Hi {name}</p><a href="{article}">Read</a> <a href="{url}">Unsubscribe</a>'
    text = f"Hi {name}\n\nRead: {article}\nUnsubscribe: {url}\n"
    data = build(
        settings=make_settings(from_name=name),
        recipient=Recipient(1, address, name),
        subject=subject,
        html=html,
        text=text,
        unsubscribe_url=url,
    )
    msg = parse(data)

    assert msg.keys() == EXPECTED_KEYS
    assert msg["Subject"] == clean_header_text(subject)
    assert [a.addr_spec for a in msg["To"].addresses] == [address]
    assert [a.addr_spec for a in msg["From"].addresses] == ["news@daily.example.org"]
    assert re.findall(r"<([^>]*)>", msg["List-Unsubscribe"]) == [url, UNSUB_MAILTO]
    html_out = msg.get_body(("html",)).get_content()
    text_out = msg.get_body(("plain",)).get_content()
    assert html_out == crlf(html) and text_out == crlf(text)
    for link in (article, url):
        assert link in html_out and link in text_out
    for line in data.split(b"\r\n"):
        assert len(line) <= 998
    for line in header_block(data).split(b"\r\n"):
        assert len(line) <= 78 or len(line.split()) <= 2, line  # over 78 only if unfoldable


@hyp_settings(max_examples=200, deadline=None)
@given(body=st.text(st.characters(codec="utf-8")))
def test_property_any_body_decodes_to_itself(body: str) -> None:
    data = build(text=body, html=body)
    msg = parse(data)

    assert msg.get_body(("plain",)).get_content() == crlf(body)
    assert msg.get_body(("html",)).get_content() == crlf(body)
    assert_quoted_printable_wire(encode_text(body))


# SpamAssassin


def test_a_realistic_newsletter_scores_low_with_spamassassin(tmp_path) -> None:
    html, text = _realistic_edition()
    assert 9_000 < len(html.encode()) < 14_000
    data = build(
        recipient=Recipient(42, "reader@example.net", "Jordan Reader"),
        subject="The Daily Brief — Saturday 14 March 2026: Harbour bridge reopens",
        html=html,
        text=text,
        date=None,
    )

    score, hits = spam_score(data, tmp_path)
    print(f"\nSpamAssassin score {score}; rules hit: {hits}")
    assert score < 2.0, f"SpamAssassin score {score}: {hits}"


# Helpers


def _raw_header(data: bytes, name: str) -> list[bytes]:
    """The raw lines (first and continuations) of one header, without CRLF."""
    lines = header_block(data).split(b"\r\n")
    start = next(i for i, line in enumerate(lines) if line.startswith(name.encode() + b":"))
    end = start + 1
    while end < len(lines) and lines[end][:1] in (b" ", b"\t"):
        end += 1
    return lines[start:end]


def _decode_encoded_word(encoding: bytes, payload: bytes) -> bytes:
    if encoding == b"b":
        return base64.b64decode(payload)
    return binascii.a2b_qp(payload, header=True)


def _realistic_edition() -> tuple[str, str]:
    """A newsletter-shaped HTML part (table layout, inline CSS) and its text part."""
    stories = [
        (
            "Harbour bridge reopens after two years of repairs",
            "https://www.example.org/news/harbour-bridge-reopens",
            "example.org",
            [
                "The city's harbour bridge carried its first traffic in two years on Friday "
                "morning, after engineers finished replacing the cables and the deck.",
                "Commuters who had been taking the ferry said the journey to the centre "
                "was now twenty minutes shorter. The council expects about forty thousand "
                "crossings a day once the spring timetable starts.",
            ],
        ),
        (
            "Library extends weekend opening hours",
            "https://www.example.com/local/library-weekend-hours",
            "example.com",
            [
                "The central library will stay open until eight in the evening on Saturdays "
                "and Sundays from next month, following a survey of readers.",
                "The reading rooms on the second floor will also host a homework club for "
                "school pupils on Sunday afternoons, run by volunteers.",
            ],
        ),
        (
            "Orchestra announces its summer season",
            "https://www.example.net/arts/orchestra-summer-season",
            "example.net",
            [
                "The city orchestra will play twelve concerts in the park this summer, "
                "including a full performance of a Beethoven symphony cycle.",
                "The first concert is on the second Saturday of June. Seats on the lawn are "
                "free; chairs can be reserved at the box office.",
            ],
        ),
        (
            "New cycle lanes planned for the river road",
            "https://news.example.org/transport/river-road-cycle-lanes",
            "news.example.org",
            [
                "Planners presented a design for separated cycle lanes along the river road "
                "at a public meeting on Thursday evening.",
                "Residents asked for more crossings near the school, and the planners said "
                "they would publish a revised drawing before the consultation closes.",
            ],
        ),
        (
            "Market hall gets a new roof and a longer Saturday market",
            "https://www.example.com/local/market-hall-roof",
            "example.com",
            [
                "Work on the market hall roof finished a week early, and traders will move "
                "back inside on Monday. The glass panels let in far more daylight than the "
                "old slate roof, and the stalls along the north wall have new awnings.",
                "The Saturday market will now run until four in the afternoon. Traders said "
                "the extra hours would help families who shop after football practice.",
                "A small exhibition about the history of the building, which opened in "
                "1887, is on show by the east entrance until the end of April.",
            ],
        ),
        (
            "School choir wins the regional competition",
            "https://www.example.org/education/school-choir-regional-win",
            "example.org",
            [
                "Forty pupils from the secondary school on Hill Street won the regional "
                "choir competition on Thursday with a programme of folk songs and a piece "
                "written by their music teacher.",
                "The choir will sing at the national final in May. Parents are raising "
                "money for the coach fare with a cake sale at the school gate next week.",
            ],
        ),
        (
            "Volunteers plant two hundred trees along the canal",
            "https://green.example.net/canal-tree-planting",
            "green.example.net",
            [
                "More than sixty volunteers spent Sunday morning planting oak, alder and "
                "willow saplings along the towpath between the lock and the old mill.",
                "The canal trust said the trees would shade the water in summer and give "
                "kingfishers and other birds places to nest. Another planting day is "
                "planned for the autumn, and anyone who would like to help can sign up on "
                "the trust's website.",
            ],
        ),
        (
            "Museum opens its archive reading room to the public",
            "https://www.example.org/culture/museum-archive-reading-room",
            "example.org",
            [
                "The town museum has opened its archive reading room on Tuesday and Friday "
                "mornings. Visitors can ask to see maps, parish records and photographs of "
                "the harbour from the last century.",
                "Staff recommend booking a seat a few days ahead, since the room holds only "
                "twelve people and the most popular boxes are often in use.",
            ],
        ),
        (
            "Weather: a mild and mostly dry week ahead",
            "https://weather.example.org/forecast/week-11",
            "weather.example.org",
            [
                "Forecasters expect temperatures a little above the seasonal average, with "
                "light showers possible on Wednesday and clear skies at the weekend.",
            ],
        ),
    ]
    td = "padding:0 24px 16px 24px;font-family:Georgia,serif;font-size:16px;line-height:24px;"
    rows = []
    text_blocks = []
    for headline, url, source, paragraphs in stories:
        body = "".join(f'<p style="margin:0 0 12px 0;color:#222222;">{p}</p>' for p in paragraphs)
        rows.append(
            f'<tr><td style="{td}">'
            f'<h2 style="margin:16px 0 8px 0;font-size:20px;line-height:26px;color:#111111;">'
            f'<a href="{url}" style="color:#111111;text-decoration:none;">{headline}</a></h2>'
            f"{body}"
            f'<p style="margin:0 0 8px 0;font-size:14px;"><a href="{url}" '
            f'style="color:#1a5fb4;">Read the full article at {source}</a></p>'
            "</td></tr>"
        )
        text_blocks.append(
            f"{headline}\n{'-' * len(headline)}\n\n"
            + "\n\n".join(paragraphs)
            + f"\n\nRead the full article at {source}:\n{url}\n"
        )
    html = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>The Daily Brief</title></head>"
        '<body style="margin:0;padding:0;background-color:#f4f4f4;">'
        '<div style="display:none;max-height:0;overflow:hidden;">'
        "Harbour bridge reopens, longer library hours and the summer concerts.</div>"
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" '
        'style="background-color:#f4f4f4;"><tr><td align="center">'
        '<table role="presentation" width="600" cellpadding="0" cellspacing="0" border="0" '
        'style="max-width:600px;background-color:#ffffff;">'
        '<tr><td style="padding:24px;font-family:Georgia,serif;">'
        '<h1 style="margin:0;font-size:28px;color:#111111;">The Daily Brief</h1>'
        '<p style="margin:4px 0 0 0;color:#555555;font-size:14px;">Saturday 14 March 2026</p>'
        "</td></tr>"
        + "".join(rows)
        + '<tr><td style="padding:24px;font-family:Arial,sans-serif;font-size:12px;'
        'line-height:18px;color:#666666;border-top:1px solid #dddddd;">'
        "<p>You receive this email because you subscribed to The Daily Brief "
        "as reader@example.net.</p>"
        f'<p><a href="{UNSUB_URL}" style="color:#666666;">Unsubscribe</a> · '
        '<a href="https://news.example.org/archive/2026-03-14" style="color:#666666;">'
        "Read this edition online</a></p>"
        "<p>The Daily Brief, 1 Example Street, Springfield</p>"
        "</td></tr></table></td></tr></table></body></html>"
    )
    text = (
        "THE DAILY BRIEF\nSaturday 14 March 2026\n\n"
        + "\n\n".join(text_blocks)
        + "\n--\nYou receive this email because you subscribed to The Daily Brief "
        "as reader@example.net.\n"
        f"Unsubscribe: {UNSUB_URL}\n"
        "Read this edition online: https://news.example.org/archive/2026-03-14\n"
        "The Daily Brief, 1 Example Street, Springfield\n"
    )
    return html, text


@hyp_settings(max_examples=300, deadline=None)
@given(name=st.text(min_size=1))
def test_property_display_names_round_trip(name: str) -> None:
    """Any name reads back cleaned: by Python's parser, and by an RFC 2047 decoder.

    Python's address parser keeps the whitespace between two adjacent encoded-words (which
    RFC 2047 says to drop), so it is only asked when the name needed no such pair.
    """
    cleaned = clean_header_text(name)
    data = build(settings=make_settings(from_name=name), recipient=Recipient(1, ANN.email, name))
    msg = parse(data)

    assert msg.keys() == EXPECTED_KEYS
    for field, address in (("To", ANN.email), ("From", "news@daily.example.org")):
        assert [a.addr_spec for a in msg[field].addresses] == [address]
        raw = b"".join(_raw_header(data, field)).decode("ascii").removeprefix(f"{field}:")
        phrase = raw.rsplit("<", 1)[0].strip()
        if not cleaned:
            assert phrase == ""
        elif phrase.startswith('"'):
            assert msg[field].addresses[0].display_name == cleaned
        else:
            assert str(make_header(decode_header(phrase))) == cleaned
            if not re.search(r"\?=\s+=\?", phrase):
                assert msg[field].addresses[0].display_name == cleaned


# Pre-encoded pieces (the send's fast path)


def fill(literals: list[str], values: list[str]) -> tuple[bytes, str]:
    """`fill_encoded` of literals with a slot between each two, and the text it stands for."""
    parts: list[str] = []
    given_values: dict[str, str] = {}
    for index, literal in enumerate(literals):
        if index:
            slot = f"slot{index}"
            parts.append(slot)
            given_values[slot] = values[index - 1] if index - 1 < len(values) else ""
        parts.append(literal)
    whole = "".join(given_values.get(p, p) if i % 2 else p for i, p in enumerate(parts))
    return fill_encoded(tuple(parts), given_values), whole


@hyp_settings(max_examples=400, deadline=None)
@given(literals=st.lists(piece, min_size=1, max_size=7), values=st.lists(piece, max_size=6))
def test_filled_pieces_decode_to_exactly_the_whole_text(
    literals: list[str], values: list[str]
) -> None:
    encoded, whole = fill(literals, values)

    assert binascii.a2b_qp(encoded).replace(b"\r\n", b"\n") == whole.encode("utf-8")
    assert binascii.a2b_qp(encoded) == binascii.a2b_qp(encode_text(whole))
    assert_quoted_printable_wire(encoded)


def test_a_line_break_right_after_a_slot_stays_a_line_break() -> None:
    """The text footer: a slot, then the line break that ends its line (was a soft break)."""
    encoded, whole = fill(
        ["View online: ", "\nUnsubscribe: ", "\n"],
        ["https://news.example.org/archive/2026-11-25", "https://news.example.org/u/t"],
    )

    decoded = binascii.a2b_qp(encoded).decode("utf-8").splitlines()
    assert decoded == [
        "View online: https://news.example.org/archive/2026-11-25",
        "Unsubscribe: https://news.example.org/u/t",
    ]
    assert_quoted_printable_wire(encoded)


@pytest.mark.parametrize(
    ("literals", "values"),
    [
        (["", ""], ["a" * 75 + "."]),  # a 76-column value cut before its final "."
        (["", ""], ["a" * 75 + "From x"]),
        (["x" * 75 + ".", ""], []),  # a literal cut before the piece's soft break
        (["x" * 74 + " y", "z"], ["v"]),  # b2a_qp's own soft break after a space
        (["Hello ", ""], ["Ann"]),  # a literal ending in a space before a slot
        (["a" * 74 + "\t", ""], ["b"]),
        (["é" * 30, "é"], ["=" * 30]),  # escapes at every cut
        (["a" * 74 + " \nb", ""], ["c"]),  # b2a_qp escapes the blank into a 77-column line
        (["a" * 75 + "\t\n", ""], ["c"]),
    ],
    ids=[
        "dot-after-cut",
        "from-after-cut",
        "literal-dot",
        "space-soft-break",
        "space-slot",
        "tab-slot",
        "escapes",
        "b2a_qp-77",
        "b2a_qp-78",
    ],
)
def test_pieces_cut_where_the_wire_rules_bite(literals: list[str], values: list[str]) -> None:
    encoded, whole = fill(literals, values)

    assert binascii.a2b_qp(encoded).decode("utf-8").replace("\r\n", "\n") == whole
    assert_quoted_printable_wire(encoded)


@pytest.mark.parametrize("blank", [" ", "\t"])
@pytest.mark.parametrize("column", [74, 75])
def test_a_blank_ending_a_line_near_column_76_keeps_the_line_within_76(
    blank: str, column: int
) -> None:
    """binascii.b2a_qp writes 77 or 78 characters when it escapes such a blank."""
    body = "a" * column + blank + "\nnext line\n"
    data = build(text=body, html=body)
    msg = parse(data)

    assert msg.get_body(("plain",)).get_content() == crlf(body)
    for _headers, encoded in split_parts(data):
        assert_quoted_printable_wire(encoded)


def test_a_filled_body_does_not_end_with_a_soft_break() -> None:
    """A body ending in a slot ends like one encoded whole: no dangling "=" before the
    boundary, which the boundary's own CRLF would otherwise have to end."""
    encoded, whole = fill(["Hi ", ""], ["Ann"])

    assert encoded == b"Hi=20=\r\nAnn"
    assert binascii.a2b_qp(encoded).decode() == whole


def test_a_lone_surrogate_becomes_the_replacement_character() -> None:
    """Like hygiene.one_line: U+FFFD, not the "?" Python's "replace" would write."""
    msg = parse(build(text="a\ud800b", html="<p>\udfff</p>"))

    assert msg.get_body(("plain",)).get_content() == "a\ufffdb"
    assert msg.get_body(("html",)).get_content() == "<p>\ufffd</p>"
