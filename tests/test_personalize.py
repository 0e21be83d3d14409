"""Personalizing a rendered edition per recipient: every slot filled, escaped, cheaply; and
the bytes of the send's fast path decode to the plain render, wherever a slot stands."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import html
from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from mimewire import (
    assert_crlf_only,
    assert_quoted_printable_wire,
    fragment,
    lf,
    perl_decode_qp,
    piece,
    split_parts,
)

from newsletter.config import Settings
from newsletter.message import assemble_message
from newsletter.models import Article, Edition, Recipient, RenderedEdition
from newsletter.personalize import (
    Slots,
    _split,
    clean,
    neutral_slots,
    personalize,
    personalize_encoded,
)
from newsletter.render import SLOT_NAMES, render_edition, slot_marker

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
TOKEN = "fedcba9876543210"
FORGED = slot_marker("0" * 16, "name")  # a marker with another token, planted in an article


def make_settings() -> Settings:
    return Settings(
        _env_file=None,
        templates_dir=TEMPLATES,
        name="The Daily Brief",
        language="en",
        postal_address="The Daily Brief, 1 Example Street, Springfield",
        base_url="https://news.example.com/",
    )


@cache
def rendered() -> RenderedEdition:
    """Rendered once for the whole module: the expensive step personalizing must not repeat."""
    edition = Edition(
        date=dt.date(2026, 3, 6),
        subject="Subject",
        preheader="Preheader",
        articles=(
            Article(
                headline=f"Headline quoting {FORGED}",
                summary=("A summary & more.",),
                url="https://example.com/a",
                source="example.com",
            ),
        ),
    )
    return render_edition(edition, make_settings(), slot_token=TOKEN)


def slots(**changes: str) -> Slots:
    values = {
        "name": "Ann",
        "email": "ann@example.com",
        "unsubscribe_url": "https://news.example.com/unsubscribe?token=t1&list=daily",
        "view_online_url": "https://news.example.com/archive/2026-03-06",
    }
    values.update(changes)
    return Slots(**values)


def test_every_marker_is_replaced() -> None:
    page, text = personalize(rendered(), slots())
    own_prefix = "NLSLOT" + TOKEN
    assert own_prefix in rendered().html and own_prefix in rendered().text
    assert own_prefix not in page and own_prefix not in text
    assert "Hello Ann," in page and "\nHello Ann,\n" in text
    assert 'href="https://news.example.com/unsubscribe?token=t1&amp;list=daily"' in page
    assert "Unsubscribe: https://news.example.com/unsubscribe?token=t1&list=daily\n" in text
    assert page.count('href="https://news.example.com/archive/2026-03-06"') == 2
    assert "View online: https://news.example.com/archive/2026-03-06\n" in text
    assert "This email was sent to ann@example.com." in page
    assert "\nThis email was sent to ann@example.com.\n" in text


def test_a_marker_with_another_token_is_left_alone() -> None:
    page, text = personalize(rendered(), slots())
    assert FORGED in page and FORGED in text
    assert "Headline quoting Ann" not in page


def test_greeting_uses_a_trimmed_name_or_none() -> None:
    assert slots(name="  Ann   Lee ").greeting == "Hello Ann Lee,"
    assert slots(name="").greeting == "Hello,"
    assert slots(name=" \t\r\n").greeting == "Hello,"
    page, text = personalize(rendered(), slots(name=""))
    assert "Hello," in page and "\nHello,\n" in text


def test_hostile_name_is_escaped_in_html_and_plain_in_text() -> None:
    name = '<b>"Ann" & co</b>'
    page, text = personalize(rendered(), slots(name=name))
    assert "Hello &lt;b&gt;&quot;Ann&quot; &amp; co&lt;/b&gt;," in page
    assert "<b>" not in page
    assert f"\nHello {name},\n" in text


def test_hostile_url_cannot_leave_its_attribute() -> None:
    page, _ = personalize(rendered(), slots(unsubscribe_url='https://x/"><script>x</script>'))
    assert "<script>" not in page
    assert 'href="https://x/&quot;&gt;&lt;script&gt;x&lt;/script&gt;"' in page


def test_cr_lf_and_control_characters_are_removed() -> None:
    baseline_page, baseline_text = personalize(rendered(), slots())
    page, text = personalize(
        rendered(),
        slots(name="Ann\r\nBcc: evil@example.com\x00\x1b", email="ann@example.com\r\nX: y"),
    )
    assert text.count("\n") == baseline_text.count("\n")
    assert page.count("\n") == baseline_page.count("\n")
    assert "\r" not in text and "\x00" not in text and "\x1b" not in text
    assert "\nHello Ann Bcc: evil@example.com,\n" in text
    assert "sent to ann@example.com X: y." in text
    assert clean("a\u2028b\u2029c\x85d\te\u202ef") == "a b c d ef"


def test_neutral_slots_for_archive_and_previews() -> None:
    neutral = neutral_slots(make_settings(), view_online_url="https://news.example.com/a/1")
    assert neutral.unsubscribe_url == "https://news.example.com/unsubscribe"
    assert neutral.name == "" and neutral.email == ""
    assert neutral.greeting == "Hello," and neutral.sent_to == ""
    page, text = personalize(rendered(), neutral)
    assert 'href="https://news.example.com/unsubscribe"' in page
    assert "sent to" not in page and "sent to" not in text
    assert "NLSLOT" + TOKEN not in page + text


def test_the_edition_is_split_once_for_a_thousand_recipients() -> None:
    edition = rendered()
    personalize(edition, slots())  # warm: the first recipient pays for the split
    misses = _split.cache_info().misses
    outputs = {personalize(edition, slots(name=f"N{n}"))[0] for n in range(1000)}
    assert _split.cache_info().misses == misses
    assert len(outputs) == 1000  # each recipient really got their own copy


@given(st.text(max_size=40), st.text(max_size=40))
def test_any_name_and_email_stay_in_their_slot(name: str, email: str) -> None:
    page, text = personalize(rendered(), slots(name=name, email=email))
    baseline_page, baseline_text = personalize(rendered(), slots(name="", email=""))
    # the structure around the slots never changes: same number of lines and tags
    assert text.count("\n") == baseline_text.count("\n")
    assert page.count("<") == baseline_page.count("<")
    assert page.count(">") == baseline_page.count(">")
    cleaned = " ".join(clean(name).split())
    if cleaned:
        assert f"Hello {html.escape(cleaned, quote=True)}," in page
        assert f"Hello {cleaned}," in text


# Byte-correct messages: per-recipient bytes decode to the plain render, wherever a slot is

#: A slot standing at a place in a generated document (a 1-tuple, so no literal is one).
slot_at = st.sampled_from(SLOT_NAMES).map(lambda slot: (slot,))
#: A rendered document: literal runs and slots in any order, so slots land at a line's
#: start or end, next to a line break, inside or across the 76th column, side by side, at
#: the very start or end. Literal CRLFs are kept; a lone CR never: the renderer emits
#: none (Jinja normalizes line ends), and a CR, an empty slot, then an LF are two line
#: breaks of the template (each piece keeps its own), not the one a naive join would make.
document = st.lists(
    st.one_of(piece, st.sampled_from(["\r\n", "x\r\ny"]), slot_at, slot_at), max_size=12
)
#: A recipient's raw value: empty, only blanks, 200 characters, "=", "." and "From "
#: anywhere, CR/LF anywhere, non-ASCII, or anything at all.
value = st.one_of(
    st.just(""),
    st.sampled_from(["   ", " \t \r\n ", ".", "..", "=", "=20", "From ", "\r\n.\r\n", "é"]),
    st.integers(1, 200).map(lambda n: "v" * n),
    st.lists(st.one_of(fragment, st.sampled_from(["\r", "\r\n", "\r."])), max_size=6).map("".join),
    st.text(max_size=40),
)
recipient_slots = st.builds(
    Slots, name=value, email=value, unsubscribe_url=value, view_online_url=value
)

WIRE_SETTINGS = Settings(_env_file=None, from_address="news@daily.example.org")
WHEN = dt.datetime(2026, 3, 6, 7, 0, tzinfo=dt.UTC)


def join(segments: list, values: dict[str, str]) -> str:
    return "".join(values[seg[0]] if isinstance(seg, tuple) else seg for seg in segments)


def plain_render(html_doc: list, text_doc: list, slots: Slots) -> tuple[str, str]:
    """What a recipient must read: each slot's value, cleaned as personalize cleans it,
    put where its marker stands with plain string joins (HTML-escaped in the HTML)."""
    raw = {slot: clean(getattr(slots, slot)) for slot in SLOT_NAMES}
    escaped = {slot: html.escape(text, quote=True) for slot, text in raw.items()}
    return join(html_doc, escaped), join(text_doc, raw)


def encoded_message(html_doc: list, text_doc: list, slots: Slots) -> bytes:
    """The full message bytes of the send's fast path for these documents and slots."""
    markers = {slot: slot_marker(TOKEN, slot) for slot in SLOT_NAMES}
    edition = RenderedEdition(
        date=dt.date(2026, 3, 6),
        subject="Subject",
        preheader="",
        html=join(html_doc, markers),
        text=join(text_doc, markers),
        slot_token=TOKEN,
    )
    html_qp, text_qp = personalize_encoded(edition, slots)
    return assemble_message(
        settings=WIRE_SETTINGS,
        recipient=Recipient(1, "ann@example.com", "Ann"),
        subject="Subject",
        html_qp=html_qp,
        text_qp=text_qp,
        unsubscribe_url="https://news.example.com/unsubscribe/t",
        unsubscribe_mailto="unsubscribe@daily.example.org",
        message_id="<wire.1@daily.example.org>",
        date=WHEN,
        boundary="=_wire",
    )


def assert_wire(data: bytes) -> list[bytes]:
    """The message's line ends and both bodies' lines keep the wire rules; the bodies."""
    assert_crlf_only(data)
    assert data.isascii()
    bodies = [body for _headers, body in split_parts(data)]
    assert len(bodies) == 2
    for body in bodies:
        assert_quoted_printable_wire(body)
    return bodies


@hyp_settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(html_doc=document, text_doc=document, slots=recipient_slots)
def test_property_bytes_decode_to_the_plain_render(
    html_doc: list, text_doc: list, slots: Slots
) -> None:
    expected_html, expected_text = plain_render(html_doc, text_doc, slots)

    data = encoded_message(html_doc, text_doc, slots)

    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert lf(msg.get_body(("plain",)).get_content()) == lf(expected_text)
    assert lf(msg.get_body(("html",)).get_content()) == lf(expected_html)
    assert msg.defects == []
    assert_wire(data)


@hyp_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(html_doc=document, text_doc=document, slots=recipient_slots)
def test_property_perl_decodes_the_same_bytes(html_doc: list, text_doc: list, slots: Slots) -> None:
    """A sample read by Perl's MIME::QuotedPrint, which shares no code with Python's."""
    expected_html, expected_text = plain_render(html_doc, text_doc, slots)

    text_body, html_body = assert_wire(encoded_message(html_doc, text_doc, slots))

    assert perl_decode_qp(text_body).decode("utf-8") == lf(expected_text)
    assert perl_decode_qp(html_body).decode("utf-8") == lf(expected_html)


@pytest.mark.parametrize(
    "text_doc",
    [
        ["View online: ", ("view_online_url",), "\nUnsubscribe: ", ("unsubscribe_url",), "\n"],
        [("greeting",), "\n", ("sent_to",)],  # a slot at the very start and the very end
        [("name",), ("email",), ("name",)],  # side by side
        ["b" * 70, ("email",), "\n" + "c" * 75, ("name",), ".\n"],  # across column 76
        ["\n", ("name",), "\n.\n", ("email",), "\nFrom here\n"],
    ],
    ids=["footer", "start-end", "adjacent", "column-76", "dot-from"],
)
@pytest.mark.parametrize(
    "name",
    ["", "   ", "Ann", "Zoë Müller 🎉", "x" * 200, ".dot", "From me", "a=b\r\nc", "= ="],
)
def test_slot_positions_and_values_decode_to_the_plain_render(text_doc: list, name: str) -> None:
    slots = Slots(
        name=name,
        email="ann@example.com",
        unsubscribe_url="https://news.example.com/unsubscribe/t?a=1&b=2",
        view_online_url="https://news.example.com/archive/2026-03-06",
    )
    expected_html, expected_text = plain_render(text_doc, text_doc, slots)

    data = encoded_message(text_doc, text_doc, slots)

    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert lf(msg.get_body(("plain",)).get_content()) == lf(expected_text)
    assert lf(msg.get_body(("html",)).get_content()) == lf(expected_html)
    text_body, _html_body = assert_wire(data)
    assert perl_decode_qp(text_body).decode("utf-8") == lf(expected_text)
