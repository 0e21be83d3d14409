"""Rendering an edition once: the templates, premailer, the errors and the warnings."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
from pathlib import Path

import premailer
import pytest
from lxml import html as lxml_html

from newsletter.config import Settings
from newsletter.errors import RenderError
from newsletter.models import Article, Edition
from newsletter.personalize import Slots, personalize
from newsletter.render import (
    GMAIL_CLIP_BYTES,
    check_templates,
    render_edition,
    slot_marker,
    slot_markers,
    wrap_text,
)

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"
GOLDEN = Path(__file__).resolve().parent / "golden" / "edition"
TOKEN = "0123456789abcdef"


def make_settings(templates_dir: Path = TEMPLATES, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "templates_dir": templates_dir,
        "name": "The Daily Brief",
        "language": "en",
        "postal_address": "The Daily Brief, 1 Example Street, Springfield",
        "base_url": "https://news.example.com",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


def golden_edition() -> Edition:
    """A fixed edition touching every branch: non-ASCII, hostile markup, `&`, HTML summary."""
    day = dt.date(2026, 3, 6)
    return Edition(
        date=day,
        subject="The Daily Brief — Friday 6 March 2026: Zürich’s café reopens",
        preheader="Zürich’s café reopens, a hostile headline, and fish & chips.",
        articles=(
            Article(
                headline="Zürich’s oldest café reopens after a year — «naïve» no more",
                summary=(
                    "The café on the Limmat, closed since last spring for repairs, opened "
                    "its doors again on Thursday with the same menu and the same waiters.",
                    "Regulars queued from seven; the owner, Zoë Müller, served the first "
                    "coffee herself.",
                ),
                url="https://news.example.org/zurich/cafe?id=42&lang=de",
                source="example.org",
                published=dt.date(2026, 3, 5),
                origin="articles/2026-03-06/cafe.txt",
                image_url="https://news.example.org/img/cafe.jpg",
                image_alt="The café’s terrace by the river",
            ),
            Article(
                headline="<script>alert(1)</script> found in a headline",
                summary=('Fish & chips, <b>bold</b> claims and "quotes" stay text.',),
                url="https://example.com/a?x=1&y=2",
                source="example.com",
                published=day,
                origin="articles/2026-03-06/hostile.txt",
            ),
            Article(
                headline="Markdown summaries keep their markup",
                summary=("Emphasis & a link.",),
                url="https://example.net/markdown",
                source="example.net",
                origin="articles/2026-03-06/markdown.md",
                summary_html=(
                    '<p><em>Emphasis</em> &amp; a <a href="https://example.net/x">link</a>.</p>'
                ),
            ),
        ),
    )


def sample_slots() -> Slots:
    return Slots(
        name="Ann",
        email="ann@example.com",
        unsubscribe_url="https://news.example.com/unsubscribe?token=abc&list=daily",
        view_online_url="https://news.example.com/archive/2026-03-06",
    )


def copy_templates(tmp_path: Path) -> Path:
    target = tmp_path / "templates"
    shutil.copytree(TEMPLATES, target)
    return target


def insert_line(path: Path, after_marker: str, line: str) -> int:
    """Insert `line` after the first line containing `after_marker`; return its 1-based number."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    index = next(i for i, text in enumerate(lines) if after_marker in text)
    lines.insert(index + 1, line + "\n")
    path.write_text("".join(lines), encoding="utf-8")
    return index + 2


# --- golden files ----------------------------------------------------------------


@pytest.mark.parametrize("part", ["html", "text"])
def test_golden_edition(part: str) -> None:
    rendered = render_edition(golden_edition(), make_settings(), slot_token=TOKEN)
    actual = rendered.html if part == "html" else rendered.text
    path = GOLDEN / ("edition.html" if part == "html" else "edition.txt")
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
    assert path.exists(), f"{path} is missing; run with UPDATE_GOLDEN=1 to write it"
    assert actual == path.read_text(encoding="utf-8"), (
        f"rendered {part} differs from {path}; if the change is intended, "
        "rerun with UPDATE_GOLDEN=1 and review the diff"
    )


def test_render_is_deterministic_for_a_given_token() -> None:
    first = render_edition(golden_edition(), make_settings(), slot_token=TOKEN)
    second = render_edition(golden_edition(), make_settings(), slot_token=TOKEN)
    assert first == second


def test_random_token_when_none_given() -> None:
    first = render_edition(golden_edition(), make_settings())
    second = render_edition(golden_edition(), make_settings())
    assert re.fullmatch(r"[0-9a-f]{16}", first.slot_token)
    assert first.slot_token != second.slot_token
    assert slot_marker(first.slot_token, "greeting") in first.html


# --- the HTML part --------------------------------------------------------------


def test_css_is_inlined_and_media_rules_stay_in_style() -> None:
    rendered = render_edition(golden_edition(), make_settings(), slot_token=TOKEN)
    doc = lxml_html.fromstring(rendered.html)
    article_cells = doc.xpath('//td[@class="article"]')
    assert len(article_cells) == 3
    assert all("padding:20px 32px" in td.get("style", "") for td in article_cells)
    container = doc.xpath('//table[contains(@class, "container")]')[0]
    assert "max-width:600px" in container.get("style")
    assert container.get("width") == "600"  # Outlook reads the attribute, not the CSS
    style = "\n".join(element.text or "" for element in doc.xpath("//style"))
    assert "@media (max-width: 620px)" in style
    assert "@media (prefers-color-scheme: dark)" in style
    assert "!important" in style  # media rules must beat the inline styles
    # plain rules were moved into attributes, not left behind
    assert ".headline {" not in style.split("@media")[0]


def test_head_has_lang_color_scheme_viewport_and_doctype() -> None:
    rendered = render_edition(golden_edition(), make_settings(language="fr"), slot_token=TOKEN)
    assert rendered.html.startswith("<!DOCTYPE html>")
    doc = lxml_html.fromstring(rendered.html)
    assert doc.get("lang") == "fr"
    metas = {m.get("name"): m.get("content") for m in doc.xpath("//meta[@name]")}
    assert metas["color-scheme"] == "light dark"
    assert metas["supported-color-schemes"] == "light dark"
    assert metas["viewport"].startswith("width=device-width")
    assert doc.xpath("//meta[@charset]")[0].get("charset") == "utf-8"


def test_preheader_is_first_and_hidden() -> None:
    edition = golden_edition()
    rendered = render_edition(edition, make_settings(), slot_token=TOKEN)
    doc = lxml_html.fromstring(rendered.html)
    first = doc.xpath("//body/*[1]")[0]
    assert first.get("class") == "preheader"
    assert first.text_content().startswith(edition.preheader)
    style = first.get("style")
    assert "display:none" in style and "max-height:0" in style and "overflow:hidden" in style
    assert rendered.preheader == edition.preheader
    assert rendered.subject == edition.subject


def test_no_external_resources_but_the_article_image() -> None:
    html = render_edition(golden_edition(), make_settings(), slot_token=TOKEN).html
    doc = lxml_html.fromstring(html)
    assert not doc.xpath("//link") and not doc.xpath("//script")
    assert "@import" not in html and "url(" not in html
    assert [img.get("src") for img in doc.xpath("//img")] == [
        "https://news.example.org/img/cafe.jpg"
    ]
    assert doc.xpath("//img")[0].get("alt") == "The café’s terrace by the river"


def test_every_article_link_is_in_both_parts() -> None:
    edition = golden_edition()
    rendered = render_edition(edition, make_settings(), slot_token=TOKEN)
    hrefs = lxml_html.fromstring(rendered.html).xpath("//a/@href")
    for article in edition.articles:
        assert hrefs.count(article.url) == 2  # headline and "Read the full article"
        assert f": {article.url}\n" in rendered.text


def test_hostile_headline_and_ampersand_are_escaped_in_html_only() -> None:
    rendered = render_edition(golden_edition(), make_settings(), slot_token=TOKEN)
    assert "<script>" not in rendered.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; found in a headline" in rendered.html
    assert "Fish &amp; chips, &lt;b&gt;bold&lt;/b&gt; claims" in rendered.html
    assert "https://example.com/a?x=1&amp;y=2" in rendered.html
    assert "<script>alert(1)</script> found in a headline" in rendered.text
    assert "Fish & chips, <b>bold</b> claims" in rendered.text


def test_summary_html_is_used_as_markup_and_text_uses_paragraphs() -> None:
    rendered = render_edition(golden_edition(), make_settings(), slot_token=TOKEN)
    assert "<em" in rendered.html and "&lt;em&gt;" not in rendered.html
    assert '<em>Emphasis</em> &amp; a <a href="https://example.net/x"' in rendered.html
    assert "   Emphasis & a link.\n" in rendered.text


def test_non_http_links_are_left_out_and_warned_about() -> None:
    edition = Edition(
        date=dt.date(2026, 3, 6),
        subject="s",
        preheader="p",
        articles=(
            Article(
                headline="Click",
                summary=("x",),
                url="javascript:alert(1)",
                image_url="data:image/png;base64,AAAA",
                image_alt="pixel",
            ),
        ),
    )
    rendered = render_edition(edition, make_settings(), slot_token=TOKEN)
    assert "javascript:" not in rendered.html and "javascript:" not in rendered.text
    assert "data:image" not in rendered.html
    assert rendered.warnings == (
        "article 1 'Click' has a link that is not http(s) and is left out: javascript:alert(1)",
        "article 1 'Click' has an image that is not http(s) and is left out",
    )


def test_slot_token_must_be_alphanumeric() -> None:
    with pytest.raises(RenderError, match="letters and digits"):
        render_edition(golden_edition(), make_settings(), slot_token="ab-cd")


def test_markers_in_href_survive_premailer_untouched() -> None:
    rendered = render_edition(golden_edition(), make_settings(), slot_token=TOKEN)
    markers = slot_markers(TOKEN)
    assert all(re.fullmatch(r"[A-Za-z0-9]+", marker) for marker in markers.values())
    hrefs = lxml_html.fromstring(rendered.html).xpath("//a/@href")
    assert markers["unsubscribe_url"] in hrefs
    assert hrefs.count(markers["view_online_url"]) == 2  # masthead and footer
    # lxml does quote hrefs (non-ASCII, spaces) on this path, which is why markers are alphanumeric
    quoted = render_edition(
        Edition(
            date=dt.date(2026, 3, 6),
            subject="s",
            preheader="p",
            articles=(Article(headline="h", summary=("s",), url="https://example.com/ü x"),),
        ),
        make_settings(),
        slot_token=TOKEN,
    )
    assert 'href="https://example.com/%C3%BC%20x"' in quoted.html
    assert f'href="{markers["unsubscribe_url"]}"' in quoted.html


# --- the text part ---------------------------------------------------------------


def long_edition(count: int, paragraph_words: int = 60, paragraphs: int = 3) -> Edition:
    words = " ".join(f"word{i % 17}" for i in range(paragraph_words))
    return Edition(
        date=dt.date(2026, 3, 6),
        subject="Long",
        preheader="A long edition",
        articles=tuple(
            Article(
                headline=f"Headline number {n} that goes on and on to test the wrapping of "
                "long headlines in the text part of the email",
                summary=tuple(f"Paragraph {p}: {words}" for p in range(paragraphs)),
                url=f"https://example.com/{'very-long-path-segment/' * 5}{n}?a=1&b=2",
                source="a-rather-long-publication-name.example.com",
                published=dt.date(2026, 3, 5),
            )
            for n in range(count)
        ),
    )


def test_text_lines_fit_78_columns_except_urls() -> None:
    rendered = render_edition(long_edition(5), make_settings(), slot_token=TOKEN)
    _, text = personalize(rendered, sample_slots())
    long_lines = [line for line in text.splitlines() if len(line) > 78]
    assert long_lines, "the edition should contain long URL lines to make this test meaningful"
    assert all("https://" in line for line in long_lines)
    assert max(len(line) for line in text.splitlines() if "https://" not in line) <= 72


def test_text_part_reads_on_its_own() -> None:
    edition = golden_edition()
    rendered = render_edition(edition, make_settings(), slot_token=TOKEN)
    _, text = personalize(rendered, sample_slots())
    assert text.startswith("The Daily Brief\nFriday 6 March 2026\n")
    assert "\nHello Ann,\n" in text
    assert "\n1. Zürich’s oldest café reopens" in text
    assert "\n2. <script>" in text and "\n3. Markdown" in text
    assert "View online: https://news.example.com/archive/2026-03-06\n" in text
    assert "Unsubscribe: https://news.example.com/unsubscribe?token=abc&list=daily\n" in text
    assert text.rstrip().endswith("The Daily Brief, 1 Example Street, Springfield")


def test_wrap_never_breaks_urls_or_markers() -> None:
    url = "https://example.com/" + "x" * 100 + "?a=1&b=2"
    marker = slot_marker(TOKEN, "view_online_url")
    wrapped = wrap_text(f"see {url} and {marker} for-hyphenated-words here", width=20)
    lines = wrapped.splitlines()
    assert url in lines and marker in lines
    assert "for-hyphenated-words" in wrapped
    assert wrap_text("one\n\ntwo", width=20, indent="  ") == "  one\n\n  two"


# --- warnings ---------------------------------------------------------------------


def test_size_warning_over_gmail_clip_limit() -> None:
    rendered = render_edition(long_edition(60, paragraph_words=120), make_settings())
    size = len(rendered.html.encode("utf-8"))
    assert size > GMAIL_CLIP_BYTES
    size_warnings = [w for w in rendered.warnings if "Gmail clips" in w]
    assert len(size_warnings) == 1
    assert f"{size:,} bytes" in size_warnings[0]


def test_no_warnings_for_a_complete_small_edition() -> None:
    rendered = render_edition(golden_edition(), make_settings(), slot_token=TOKEN)
    assert rendered.warnings == ()


def test_warnings_for_missing_summary_link_and_alt_text() -> None:
    edition = Edition(
        date=dt.date(2026, 3, 6),
        subject="s",
        preheader="p",
        articles=(
            Article(headline="No summary", summary=(), url="https://e.com/1", origin="a.txt"),
            Article(headline="No link", summary=("x",), origin="b.txt"),
            Article(
                headline="No alt",
                summary=("x",),
                url="https://e.com/3",
                image_url="https://e.com/3.png",
            ),
        ),
    )
    warnings = render_edition(edition, make_settings(), slot_token=TOKEN).warnings
    assert warnings == (
        "article 1 'No summary' (a.txt) has no summary",
        "article 2 'No link' (b.txt) has no link to the full article",
        "article 3 'No alt' has an image without alt text (readers who block images or use "
        "a screen reader get nothing; set image_alt)",
    )


# --- errors ------------------------------------------------------------------------


def test_undefined_variable_names_template_and_line(tmp_path: Path) -> None:
    templates = copy_templates(tmp_path)
    line = insert_line(templates / "edition.html.j2", '<td class="greeting">', "{{ edition.lede }}")
    with pytest.raises(RenderError) as caught:
        render_edition(golden_edition(), make_settings(templates), slot_token=TOKEN)
    assert caught.value.where == f"edition.html.j2:{line}"
    assert "lede" in caught.value.message
    assert caught.value.hint and "spelling" in caught.value.hint


def test_undefined_variable_in_text_template_and_in_included_css(tmp_path: Path) -> None:
    templates = copy_templates(tmp_path)
    line = insert_line(templates / "edition.txt.j2", "{{ slots.greeting }}", "{{ reader }}")
    with pytest.raises(RenderError) as caught:
        render_edition(golden_edition(), make_settings(templates), slot_token=TOKEN)
    assert caught.value.where == f"edition.txt.j2:{line}"
    assert "'reader' is undefined" in caught.value.message

    templates = copy_templates(tmp_path / "css")
    line = insert_line(templates / "edition.css", ":root", "{{ settings.accent }}")
    with pytest.raises(RenderError) as caught:
        render_edition(golden_edition(), make_settings(templates), slot_token=TOKEN)
    assert caught.value.where == f"edition.css:{line}"


def test_syntax_error_names_template_and_line(tmp_path: Path) -> None:
    templates = copy_templates(tmp_path)
    line = insert_line(templates / "edition.html.j2", "<title>", "{% if edition.subject %}")
    with pytest.raises(RenderError) as caught:
        render_edition(golden_edition(), make_settings(templates), slot_token=TOKEN)
    assert caught.value.where is not None
    name, _, number = caught.value.where.partition(":")
    assert name == "edition.html.j2"
    assert int(number) >= line  # Jinja reports where the unclosed block is noticed
    assert "syntax" in caught.value.message

    templates = copy_templates(tmp_path / "second")
    line = insert_line(templates / "edition.html.j2", "<title>", "{{ edition.subject | }}")
    with pytest.raises(RenderError) as caught:
        render_edition(golden_edition(), make_settings(templates), slot_token=TOKEN)
    assert caught.value.where == f"edition.html.j2:{line}"


def test_runtime_error_in_template_names_line(tmp_path: Path) -> None:
    templates = copy_templates(tmp_path)
    line = insert_line(templates / "edition.html.j2", "<title>", "{{ 1 // 0 }}")
    with pytest.raises(RenderError) as caught:
        render_edition(golden_edition(), make_settings(templates), slot_token=TOKEN)
    assert caught.value.where == f"edition.html.j2:{line}"
    assert "ZeroDivisionError" in caught.value.message


def test_a_template_found_nowhere_names_file_folders_and_setting(tmp_path: Path) -> None:
    # a file the operator's folder lacks comes from the built-in templates
    # (tests/test_templates.py); only one that neither has is an error
    templates = copy_templates(tmp_path)
    insert_line(templates / "edition.txt.j2", "{{ slots.greeting }}", '{% include "footer.j2" %}')
    with pytest.raises(RenderError) as caught:
        render_edition(golden_edition(), make_settings(templates), slot_token=TOKEN)
    error = caught.value
    assert "'footer.j2' not found" in error.message and str(templates) in error.message
    assert error.where == str(templates / "footer.j2")
    assert error.hint and "NEWSLETTER_TEMPLATES_DIR" in error.hint


def test_check_templates_passes_on_the_project_templates() -> None:
    check_templates(make_settings())


def test_check_templates_catches_an_error_in_an_optional_branch(tmp_path: Path) -> None:
    templates = copy_templates(tmp_path)
    # only reached for articles that have an image: the built-in edition has one
    line = insert_line(templates / "edition.html.j2", "{% if image %}", "{{ article.image_title }}")
    with pytest.raises(RenderError) as caught:
        check_templates(make_settings(templates))
    assert caught.value.where == f"edition.html.j2:{line}"


# --- premailer runs once ---------------------------------------------------------------


def test_premailer_runs_once_per_edition_never_per_recipient(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []
    real_transform = premailer.Premailer.transform

    def counting_transform(self: premailer.Premailer, *args: object, **kwargs: object) -> str:
        calls.append(1)
        return real_transform(self, *args, **kwargs)

    monkeypatch.setattr(premailer.Premailer, "transform", counting_transform)
    rendered = render_edition(golden_edition(), make_settings(), slot_token=TOKEN)
    assert len(calls) == 1
    for n in range(1000):
        html, _ = personalize(
            rendered,
            Slots(
                name=f"Reader {n}",
                email=f"r{n}@example.com",
                unsubscribe_url=f"https://news.example.com/u/{n}",
                view_online_url="https://news.example.com/archive/2026-03-06",
            ),
        )
        assert f"Hello Reader {n}," in html
    assert len(calls) == 1
