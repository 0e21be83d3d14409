"""Text hygiene: what "plain text" and "safe HTML" mean everywhere in the newsletter.

Every reader and the feed source reduce what they find to the same two shapes:
one-line labels and blank-line paragraphs cleaned by `newsletter.hygiene`
(`_paragraphs`), and HTML that only ever
passed through nh3's allow-list (`sanitize_html`), with its plain-text view
(`html_to_paragraphs`). It sits at the bottom of the package and knows nothing of
articles, files or feeds, so every other module can lean on it.
"""

from __future__ import annotations

import functools
import re
from html import escape, unescape
from html.parser import HTMLParser

import nh3

from newsletter.hygiene import multiline, normalize_newlines, one_line

ALLOWED_TAGS = frozenset(
    {"p", "a", "em", "strong", "b", "i", "ul", "ol", "li", "blockquote", "br", "code"}
)
# Block tags that are not allowed but whose boundaries matter: they become <p>, so
# "<div>a</div><div>b</div>" reads "a", "b" rather than "ab".
_BLOCKISH = frozenset(
    {"div", "section", "article", "header", "footer", "main", "aside", "figure"}
    | {"figcaption", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "table", "tr", "dl"}
    | {"dt", "dd", "address", "center", "hr"}
)
_URL_SCHEMES = frozenset({"http", "https", "mailto"})
_DROP_WITH_CONTENT = frozenset({"script", "style", "noscript", "template", "title"})


_BLANK_LINES = re.compile(r"\n\s*\n")


def _paragraphs(text: str) -> list[str]:
    """Blank-line separated paragraphs; a hard-wrapped paragraph is joined into one line."""
    blocks = _BLANK_LINES.split(normalize_newlines(text))
    return [p for p in (one_line(block) for block in blocks) if p]


class _TextExtractor(HTMLParser):
    """HTML to plain-text paragraphs: block boundaries split, link text kept, tags dropped."""

    _BLOCK = ALLOWED_TAGS - {"a", "em", "strong", "b", "i", "code"} | _BLOCKISH | {"td", "th"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.paragraphs: list[str] = []
        self._buffer: list[str] = []
        self._prefix = ""
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _DROP_WITH_CONTENT:
            self._skipping += 1
        elif tag in self._BLOCK:
            self._flush()
            if tag == "li":
                self._prefix = "• "

    def handle_endtag(self, tag: str) -> None:
        if tag in _DROP_WITH_CONTENT:
            self._skipping = max(0, self._skipping - 1)
        elif tag in self._BLOCK:
            self._flush()

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self._buffer.append(data)

    def close(self) -> None:
        super().close()
        self._flush()

    def _flush(self) -> None:
        text = one_line("".join(self._buffer))
        self._buffer = []
        if text:
            self.paragraphs.append(self._prefix + text)
            self._prefix = ""


def html_to_paragraphs(html: str) -> list[str]:
    """The plain-text part's view of any HTML: a summary, or a feed's title.

    nh3 reduces the markup to well-formed tags first: Python's HTMLParser takes
    quadratic time on some malformed input ("<!--" or "<a" repeated: minutes for
    300 KB) and raises AssertionError on "<![". Markup past the tag budget is
    read by `_crude_read` instead.
    """
    extractor = _TextExtractor()
    if _over_budget(html):
        _crude_read(html, extractor)
    else:
        extractor.feed(_PRE_CLEANER.clean(html))
    extractor.close()
    return extractor.paragraphs


# nh3's parser takes time in the square of the nesting depth (10,000 nested <div> take a
# second, 100,000 many minutes); a real summary has tens of tags. HTML with more than this
# many "<" is shown as its text, read by a linear scan.
MAX_HTML_TAGS = 5_000
_ANY_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9]*)[^<>]*>")


def _over_budget(html: str) -> bool:
    return html.count("<") > MAX_HTML_TAGS


def _crude_read(html: str, extractor: _TextExtractor) -> None:
    """Feed `extractor` from a one-pass regex scan: linear whatever the markup."""
    position = 0
    for match in _ANY_TAG.finditer(html):
        extractor.handle_data(unescape(html[position : match.start()]))
        tag = match[2].lower()
        if match[1]:
            extractor.handle_endtag(tag)
        else:
            extractor.handle_starttag(tag, [])
        position = match.end()
    extractor.handle_data(unescape(html[position:]))


def _pre_cleaner_args(url_relative: object) -> dict[str, object]:
    return {
        "tags": set(ALLOWED_TAGS | _BLOCKISH),
        "clean_content_tags": set(_DROP_WITH_CONTENT),
        "attributes": {"a": {"href"}},
        "url_schemes": set(_URL_SCHEMES),
        "url_relative": url_relative,
        "link_rel": None,
    }


_PRE_CLEANER = nh3.Cleaner(**_pre_cleaner_args("deny"))


@functools.lru_cache(maxsize=16)
def _pre_cleaner(base: str | None) -> nh3.Cleaner:
    """The first pass; with a feed's address, relative links become absolute against it."""
    if base is None or not re.match(r"(?i)https?://[^/?#\s]", base):
        return _PRE_CLEANER
    return nh3.Cleaner(**_pre_cleaner_args(("rewrite_with_base", base)))


_CLEANER = nh3.Cleaner(
    tags=set(ALLOWED_TAGS),
    clean_content_tags=set(_DROP_WITH_CONTENT),
    attributes={"a": {"href"}},
    url_schemes=set(_URL_SCHEMES),
    url_relative="deny",  # an email has no base URL for a relative link to resolve against
    link_rel="noopener",
)
_BLOCKISH_TAG = re.compile(r"<(/?)(?:" + "|".join(sorted(_BLOCKISH)) + ")>")
_EMPTY_P = re.compile(r"<p>\s*</p>")
_DEAD_LINK = re.compile(r'<a rel="noopener">(.*?)</a>', re.DOTALL)  # its href was refused
_VOID_HR = re.compile(r"<hr>")


def sanitize_html(html: str, *, base: str | None = None) -> str:
    """The only way HTML from a file or feed reaches the email.

    The first pass keeps block tags we don't allow (now attribute-free and
    well-formed) so they can be turned into paragraphs; the second pass is the
    real allow-list and re-balances the tags. With `base` (a feed's address),
    relative links are made absolute against it; without, they lose their
    href (an email has nothing to resolve them against). HTML past the tag budget
    (MAX_HTML_TAGS), or nested deeper than MAX_HTML_DEPTH once clean, becomes
    its text, one <p> per paragraph: still the article, and nothing a mail
    client or premailer's parser can choke on.
    """
    if _over_budget(html):
        return _as_text(html)
    pre = _VOID_HR.sub("<p></p>", _pre_cleaner(base).clean(html))
    clean = _CLEANER.clean(_BLOCKISH_TAG.sub(r"<\1p>", pre))
    clean = _EMPTY_P.sub("", _DEAD_LINK.sub(r"\1", multiline(clean))).strip()
    return _as_text(clean) if _depth(clean) > MAX_HTML_DEPTH else clean


MAX_HTML_DEPTH = 20  # a summary nests a few levels (a quote, a list, a link in bold)
_VOID = frozenset({"br"})


def _depth(clean: str) -> int:
    """How deep well-formed (nh3's) markup nests, counted in one pass."""
    depth = deepest = 0
    for match in _ANY_TAG.finditer(clean):
        if match[2] in _VOID:
            continue
        depth += -1 if match[1] else 1
        deepest = max(deepest, depth)
    return deepest


def _as_text(html: str) -> str:
    return "".join(f"<p>{escape(p, quote=False)}</p>" for p in html_to_paragraphs(html))
