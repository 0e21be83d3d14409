"""Personalizing a rendered edition per recipient: every slot filled, escaped, cheaply."""

from __future__ import annotations

import datetime as dt
import html
from functools import cache
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from newsletter.config import Settings
from newsletter.models import Article, Edition, RenderedEdition
from newsletter.personalize import Slots, _split, clean, neutral_slots, personalize
from newsletter.render import render_edition, slot_marker

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
