"""The one text-hygiene module, and that every stage uses it: a bidi override in an
article's source line, a subscriber's name or a header never reaches a subscriber."""

from __future__ import annotations

import pytest

from newsletter.hygiene import has_unsafe, multiline, normalize_newlines, one_line


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("plain words", "plain words"),
        ("  spaced\t out  ", "spaced out"),
        ("two\nlines", "two lines"),
        ("cr\r\nlf\u2028ls\u2029ps\x85nel", "cr lf ls ps nel"),
        ("nul\x00bell\x07 del\x7f c1\x9b", "nulbell del c1"),
        ("moc.knab\u202e", "moc.knab"),
        ("\u2066iso\u2069late \u200fmark\u061c", "isolate mark"),
        ("bom\ufeffinside", "bominside"),
        ("lone \ud800 surrogate", "lone \ufffd surrogate"),
        ("Zoë 東京 🙂", "Zoë 東京 🙂"),
    ],
)
def test_one_line(raw: str, clean: str) -> None:
    assert one_line(raw) == clean
    assert not has_unsafe(one_line(raw))


def test_multiline_keeps_line_breaks_only() -> None:
    assert multiline("a\r\nb\rc\u2028d\x00e\u202ef\tg") == "a\nb\nc\ndef g"
    assert normalize_newlines("a\r\nb\x0bc") == "a\nb\nc"


def test_has_unsafe() -> None:
    assert has_unsafe("a\u202eb") and has_unsafe("a\nb") and has_unsafe("\ud800")
    assert not has_unsafe("Zoë, 東京 🙂 — fine")


def test_a_bidi_override_in_an_article_never_reaches_the_message(tmp_path) -> None:  # noqa: ANN001
    from newsletter.articles import read_article_file

    path = tmp_path / "a.json"
    path.write_text(
        '{"headline": "Rates \\u202eheld", "summary": "Quiet\\u202e day.", '
        '"url": "https://example.com/a", "source": "moc.\\u202eknab"}',
        encoding="utf-8",
    )
    article = read_article_file(path)
    fields = [article.headline, article.source or "", *article.summary]
    assert not any("\u202e" in field for field in fields), fields
