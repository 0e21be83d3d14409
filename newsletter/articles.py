"""Where a day's articles come from: article files in dated directories, or a feed over HTTP.

    open_source(setting) ──> DirectorySource  root/YYYY-MM-DD/*.{txt,md,markdown,json}
                        └──> FeedSource       RSS / Atom (feedparser), JSON Feed 1.1 (by hand)
    each file ──> READERS[extension](text, origin) ──> _article() checks ──> Article

Every reader funnels into `_article`, so the promises the renderer relies on hold
whatever the format: a one-line headline of at most 300 characters, non-empty
plain-text paragraphs with no control characters, http(s)-only URLs, and
`summary_html` only ever as nh3 sanitized it. A file that breaks a promise raises
`ArticleParseError` naming the file (and line, where one is meaningful); a source
turns that into a `SkippedFile` so one bad file never stops an edition.

httpx, feedparser, yaml and json exceptions are translated here and nowhere else.
"""

from __future__ import annotations

import codecs
import datetime as dt
import io
import json
import re
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import feedparser
import httpx
import markdown
import nh3
import yaml

from newsletter.errors import ArticleParseError, ConfigError, SourceError
from newsletter.models import Article, DayArticles, SkippedFile

MAX_FILE_BYTES = 1024 * 1024  # an article is a few KB; anything near this is the wrong file
MAX_FEED_BYTES = 10 * 1024 * 1024
MAX_HEADLINE_CHARS = 300
MAX_FIELD_CHARS = 500  # source, image_alt: one-line labels
MAX_URL_CHARS = 2048
USER_AGENT = "newsletter/0.1 (daily newsletter publisher; feed reader)"
SETTING = "NEWSLETTER_ARTICLES_SOURCE"

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


class ArticleSource(Protocol):
    """What the edition stage needs from any source."""

    def articles_for(self, date: dt.date) -> DayArticles: ...

    def available_dates(self) -> list[dt.date]: ...


# ---------------------------------------------------------------------------
# Text hygiene: what "plain text" means everywhere in the newsletter
# ---------------------------------------------------------------------------

# Everything str.splitlines() treats as a line break, so no odd break survives as text.
_LINE_BREAKS = re.compile(r"\r\n|[\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")  # lone surrogates (from JSON "\ud800") can't be sent
_BLANK_LINES = re.compile(r"\n\s*\n")


def _normalize_newlines(text: str) -> str:
    return _LINE_BREAKS.sub("\n", text)


def _one_line(text: str) -> str:
    """Control characters and line breaks become spaces; runs of whitespace become one."""
    text = _SURROGATE.sub("\ufffd", text).replace("\ufeff", "")
    return " ".join(_CONTROL.sub(" ", text).split())


def _paragraphs(text: str) -> list[str]:
    """Blank-line separated paragraphs; a hard-wrapped paragraph is joined into one line."""
    blocks = _BLANK_LINES.split(_normalize_newlines(text))
    return [p for p in (_one_line(block) for block in blocks) if p]


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
        text = _one_line("".join(self._buffer))
        self._buffer = []
        if text:
            self.paragraphs.append(self._prefix + text)
            self._prefix = ""


def html_to_paragraphs(html: str) -> list[str]:
    """The plain-text part's view of an HTML summary (also used for feed titles)."""
    extractor = _TextExtractor()
    extractor.feed(html)
    extractor.close()
    return extractor.paragraphs


_PRE_CLEANER = nh3.Cleaner(
    tags=set(ALLOWED_TAGS | _BLOCKISH),
    clean_content_tags=set(_DROP_WITH_CONTENT),
    attributes={"a": {"href"}},
    url_schemes=set(_URL_SCHEMES),
    url_relative="deny",
    link_rel=None,
)
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


def sanitize_html(html: str) -> str:
    """The only way HTML from a file or feed reaches the email.

    The first pass keeps block tags we don't allow (now attribute-free and
    well-formed) so they can be turned into paragraphs; the second pass is the
    real allow-list and re-balances the tags.
    """
    pre = _VOID_HR.sub("<p></p>", _PRE_CLEANER.clean(html))
    clean = _CLEANER.clean(_BLOCKISH_TAG.sub(r"<\1p>", pre))
    clean = _DEAD_LINK.sub(r"\1", _CONTROL.sub(" ", _SURROGATE.sub("\ufffd", clean)))
    return _EMPTY_P.sub("", clean).strip()


# ---------------------------------------------------------------------------
# The checks every article passes, whatever its format
# ---------------------------------------------------------------------------

Where = Callable[[str], str]  # field name -> "file:line" (or just the file)


def _http_url(value: str, field: str, where: Where) -> str:
    url = value.strip()
    shown = url if len(url) <= 80 else url[:77] + "..."
    hint = f"give {field} as a full http:// or https:// address"
    if len(url) > MAX_URL_CHARS:
        raise ArticleParseError(
            f"{field} is {len(url)} characters long; the limit is {MAX_URL_CHARS}",
            where=where(field),
            hint=hint,
        )
    if re.search(r"\s", url) or _CONTROL.search(url) or _SURROGATE.search(url):
        raise ArticleParseError(
            f"{field} {shown!r} contains spaces or control characters",
            where=where(field),
            hint="percent-encode them (a space is %20)",
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise ArticleParseError(
            f"{field} {shown!r} is not a valid URL ({exc})", where=where(field), hint=hint
        ) from None
    if parts.scheme.lower() not in ("http", "https"):
        scheme = f"the {parts.scheme!r} scheme" if parts.scheme else "no scheme"
        raise ArticleParseError(
            f"{field} {shown!r} uses {scheme}; only http and https are allowed",
            where=where(field),
            hint=hint,
        )
    if not parts.hostname:
        raise ArticleParseError(
            f"{field} {shown!r} has no host name", where=where(field), hint=hint
        )
    return url


def _label(value: str | None, field: str, where: Where, limit: int) -> str | None:
    if value is None:
        return None
    text = _one_line(value)
    if len(text) > limit:
        raise ArticleParseError(
            f"{field} is {len(text)} characters long; the limit is {limit}",
            where=where(field),
            hint=f"shorten the {field}",
        )
    return text or None


def _article(
    *,
    origin: str,
    where: Where,
    headline: str | None,
    summary: Iterable[str],
    url: str | None = None,
    source: str | None = None,
    published: dt.date | None = None,
    summary_html: str | None = None,
    image_url: str | None = None,
    image_alt: str | None = None,
    summary_hint: str = "add the summary as paragraphs after the headline",
) -> Article:
    """Apply the promises every Article keeps (see the module docstring)."""
    title = _label(headline, "headline", where, MAX_HEADLINE_CHARS)
    if not title:
        raise ArticleParseError(
            "has no headline", where=where("headline"), hint="give the article a headline"
        )
    paragraphs = tuple(p for p in (_one_line(p) for p in summary) if p)
    if not paragraphs:
        raise ArticleParseError("has no summary", where=where("summary"), hint=summary_hint)
    return Article(
        headline=title,
        summary=paragraphs,
        url=_http_url(url, "url", where) if url and url.strip() else None,
        source=_label(source, "source", where, MAX_FIELD_CHARS),
        published=published,
        origin=origin,
        summary_html=summary_html,
        image_url=_http_url(image_url, "image", where) if image_url and image_url.strip() else None,
        image_alt=_label(image_alt, "image_alt", where, MAX_FIELD_CHARS),
    )


# ---------------------------------------------------------------------------
# The upstream plain-text format (.txt)
# ---------------------------------------------------------------------------

_MONTH_NAMES = (
    "january february march april may june july august september october november december"
)
_DAY_NAMES = "monday tuesday wednesday thursday friday saturday sunday"


def _name_index(word: str, names: str) -> int | None:
    """1-based position of a full or abbreviated (3+ letters) English name, e.g. 'Sept', 'Tues'."""
    word = word.lower()
    for position, name in enumerate(names.split(), 1):
        if len(word) >= 3 and name.startswith(word):
            return position
    return None


_WEEKDAY = r"(?:(?P<weekday>[A-Za-z]+)\.?,?\s+)?"
_ORDINAL = r"(?:st|nd|rd|th)?"
_DATE_FORMS = (
    # Mon, January 26, 2026 / Jan 26 2026 / January 26th, 2026
    re.compile(
        rf"^{_WEEKDAY}(?P<month>[A-Za-z]+)\.?\s+(?P<day>\d{{1,2}}){_ORDINAL},?\s+(?P<year>\d{{4}})$"
    ),
    # Monday 26 January 2026
    re.compile(
        rf"^{_WEEKDAY}(?P<day>\d{{1,2}}){_ORDINAL}\s+(?P<month>[A-Za-z]+)\.?,?\s+(?P<year>\d{{4}})$"
    ),
    re.compile(r"^(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})$"),
)
_READ_FULL = re.compile(
    r"^read\s+the\s+full\s+(?:(?P<source>.+?)\s+)?article\s+at\s*:?\s*(?P<rest>.*)$",
    re.IGNORECASE,
)
_BRACKETED = re.compile(r"^\[\s*(?P<url>.*?)\s*\]$")
_URL_LIKE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S*")


def _date_line(line: str, where: str) -> dt.date | None:
    """The date on a line like 'Mon, January 26, 2026', or None if it is not a date line."""
    for form in _DATE_FORMS:
        match = form.match(line)
        if not match:
            continue
        fields = match.groupdict()
        weekday = fields.get("weekday")
        if weekday and _name_index(weekday, _DAY_NAMES) is None:
            return None
        month_text = fields["month"]
        month = int(month_text) if month_text.isdigit() else _name_index(month_text, _MONTH_NAMES)
        if month is None:
            return None
        try:
            return dt.date(int(fields["year"]), month, int(fields["day"]))
        except ValueError:
            raise ArticleParseError(
                f"date line {line!r} is not a real date",
                where=where,
                hint="write dates like 'Mon, January 26, 2026'",
            ) from None
    return None


@dataclass
class _Line:
    number: int  # 1-based, as an editor shows it
    text: str  # stripped of surrounding whitespace


def _blocks(lines: list[_Line]) -> list[list[_Line]]:
    blocks: list[list[_Line]] = [[]]
    for line in lines:
        if line.text:
            blocks[-1].append(line)
        elif blocks[-1]:
            blocks.append([])
    return [block for block in blocks if block]


def _unbracket(text: str) -> str:
    match = _BRACKETED.match(text)
    return match["url"] if match else text.strip()


def _closing_pair(body: list[_Line]) -> tuple[_Line | None, _Line | None]:
    """The "Read the Full … Article at:" line and the link line at the end, if present."""
    filled = [line for line in body if line.text]
    if not filled:
        return None, None
    last = filled[-1]
    before = filled[-2] if len(filled) > 1 else None
    if before and (read := _READ_FULL.match(before.text)) and not read["rest"]:
        if not _READ_FULL.match(last.text):
            return before, last  # after "… Article at:" the next line is the link, whatever it is
    bracketed = _BRACKETED.match(last.text)
    if bracketed and _URL_LIKE.fullmatch(bracketed["url"]):
        return None, last  # "[ https://… ]" alone: the source line is missing
    if _READ_FULL.match(last.text):
        return last, None  # "Read the Full … Article at:" with no link (or the link inline)
    return None, None


def parse_text_article(text: str, origin: str) -> Article:
    """Parse the upstream summarizer's format.

    dates* / headline / paragraphs / "Read the Full <source> Article at:" / "[ <url> ]".
    Date lines and the closing pair are each optional, but a file with neither is
    not taken for an article: a shopping list also has a first line and paragraphs.
    """
    numbered = enumerate(_normalize_newlines(text).split("\n"), 1)
    lines = [_Line(number, raw.strip()) for number, raw in numbered]
    at: dict[str, int] = {}

    def where(field: str) -> str:
        return f"{origin}:{at[field]}" if field in at else origin

    # Date lines (blank lines between them are tolerated); the first is the article's date.
    dates: list[dt.date] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.text:
            found = _date_line(line.text, f"{origin}:{line.number}")
            if found is None:
                break
            dates.append(found)
            at.setdefault("date", line.number)
        index += 1
    body = lines[index:]

    read_line, url_line = _closing_pair(body)
    url: str | None = None
    source: str | None = None
    if url_line is not None:
        url = _unbracket(url_line.text)
        at["url"] = url_line.number
    if read_line is not None:
        read = _READ_FULL.match(read_line.text)
        assert read is not None
        source = read["source"]
        at["source"] = read_line.number
        if url_line is None and read["rest"]:
            url = _unbracket(read["rest"])
            at["url"] = read_line.number
    end = read_line or url_line
    if end is not None:
        body = body[: body.index(end)]

    blocks = _blocks(body)
    if not blocks:
        raise ArticleParseError(
            "has no headline" + (" after the date lines" if dates else ""),
            where=origin,
            hint="put the headline on its own line after the date lines and a blank line",
        )
    if not dates and end is None:
        raise ArticleParseError(
            "does not look like an article: it has no date line and no link",
            where=origin,
            hint="an article starts with a date line like 'Mon, January 26, 2026' or ends "
            "with 'Read the Full <source> Article at:' and '[ <url> ]'",
        )

    # The headline is the first block; if that block also holds the first paragraph
    # (no blank line after the headline), its first line alone is the headline.
    head, *rest = blocks
    at["headline"] = at["summary"] = head[0].number
    headline = " ".join(line.text for line in head)
    paragraphs = [" ".join(line.text for line in block) for block in rest]
    if len(head) > 1 and len(_one_line(headline)) > MAX_HEADLINE_CHARS:
        headline = head[0].text
        paragraphs.insert(0, " ".join(line.text for line in head[1:]))

    return _article(
        origin=origin,
        where=where,
        headline=headline,
        summary=paragraphs,
        url=url,
        source=source,
        published=dates[0] if dates else None,
    )


# ---------------------------------------------------------------------------
# Markdown with YAML front matter (.md, .markdown) and JSON (.json)
# ---------------------------------------------------------------------------

_FRONT_MATTER_FENCE = re.compile(r"^---[ \t]*$")
_FRONT_MATTER_END = re.compile(r"^(?:---|\.\.\.)[ \t]*$")


_KEY_ALIASES = {"headline": ("headline", "title"), "url": ("url", "link")}


def _where_keys(origin: str, text: str, *, first_line: int = 1, quoted: bool = False) -> Where:
    """Point an error about a key at the line it is written on, when it is written at all."""

    def where(field: str) -> str:
        for key in _KEY_ALIASES.get(field, (field,)):
            if quoted:  # JSON: "key": anywhere on a line
                pattern = rf'"{re.escape(key)}"\s*:'
            else:  # YAML: key: at the start of a line
                pattern = rf"^[ \t]*[\"']?{re.escape(key)}[\"']?[ \t]*:"
            match = re.search(pattern, text, re.MULTILINE | re.IGNORECASE)
            if match:
                return f"{origin}:{first_line + text.count(chr(10), 0, match.start())}"
        return origin

    return where


def _pick(data: dict[str, Any], names: tuple[str, ...], where: Where) -> str | None:
    """The first of `names` present; a value that is not text is an error naming the key."""
    for name in names:
        value = data.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise ArticleParseError(
                f"{name} must be text, not {_kind(value)}",
                where=where(name),
                hint=f"quote the {name}",
            )
        return value
    return None


def _kind(value: object) -> str:
    """How a person would name a JSON or YAML value's type."""
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return "a number"
    return {list: "a list", dict: "an object", str: "text"}.get(type(value), "null")


def _iso_date(value: str | None, where: Where) -> dt.date | None:
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        pass
    try:
        return dt.datetime.fromisoformat(text).date()
    except ValueError:
        raise ArticleParseError(
            f"date {text!r} is not a date", where=where("date"), hint="write it as YYYY-MM-DD"
        ) from None


def _structured_article(
    data: dict[str, Any],
    *,
    origin: str,
    where: Where,
    summary: Iterable[str],
    summary_hint: str,
    summary_html: str | None = None,
) -> Article:
    """The fields .md and .json share, under their accepted names."""
    headline = _pick(data, ("headline", "title"), where)
    if headline is None or not headline.strip():
        raise ArticleParseError(
            "has no headline (no 'headline' or 'title' key)",
            where=where("headline"),
            hint="add e.g. 'headline: Rivers rise in Kraków'",
        )
    return _article(
        origin=origin,
        where=where,
        headline=headline,
        summary=summary,
        url=_pick(data, ("url", "link"), where),
        source=_pick(data, ("source",), where),
        published=_iso_date(_pick(data, ("date",), where), where),
        summary_html=summary_html,
        image_url=_pick(data, ("image",), where),
        image_alt=_pick(data, ("image_alt",), where),
        summary_hint=summary_hint,
    )


def parse_markdown_article(text: str, origin: str) -> Article:
    """Front matter holds the fields; the body is the summary, kept as sanitized HTML too."""
    lines = _normalize_newlines(text).split("\n")
    start = next((i for i, line in enumerate(lines) if line.strip()), None)
    if start is None or not _FRONT_MATTER_FENCE.match(lines[start]):
        raise ArticleParseError(
            "has no front matter",
            where=f"{origin}:{(start or 0) + 1}",
            hint="start the file with a '---' line, then 'headline: …', 'url: …', "
            "'date: YYYY-MM-DD', then '---' and the summary",
        )
    end = next((i for i in range(start + 1, len(lines)) if _FRONT_MATTER_END.match(lines[i])), None)
    if end is None:
        raise ArticleParseError(
            f"the front matter opened on line {start + 1} is never closed",
            where=f"{origin}:{start + 1}",
            hint="end the front matter with a '---' line",
        )
    front = "\n".join(lines[start + 1 : end])
    try:
        # BaseLoader: every scalar stays text, so "headline: No" is not False.
        data = yaml.load(front, Loader=yaml.BaseLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = start + 2 + mark.line if mark is not None else start + 1
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ArticleParseError(
            f"the front matter is not valid YAML: {problem}",
            where=f"{origin}:{line}",
            hint="write one 'key: value' per line; quote values that contain ': ' or '#'",
        ) from None
    except RecursionError:
        raise ArticleParseError("the front matter is nested too deeply", where=origin) from None
    if data is None or data == "":
        data = {}
    if not isinstance(data, dict):
        raise ArticleParseError(
            "the front matter must be 'key: value' lines",
            where=f"{origin}:{start + 2}",
            hint="write e.g. 'headline: Rivers rise in Kraków'",
        )
    body = "\n".join(lines[end + 1 :])
    try:
        body_html = sanitize_html(markdown.markdown(body))
    except RecursionError:
        raise ArticleParseError("the Markdown body is nested too deeply", where=origin) from None
    front_where = _where_keys(origin, front, first_line=start + 2)

    def where_body(field: str) -> str:
        return f"{origin}:{end + 2}" if field == "summary" else front_where(field)

    return _structured_article(
        {str(k).lower(): v for k, v in data.items()},
        origin=origin,
        where=where_body,
        summary=html_to_paragraphs(body_html),
        summary_html=body_html or None,
        summary_hint="write the summary below the front matter's closing '---'",
    )


def parse_json_article(text: str, origin: str) -> Article:
    """One JSON object; `summary` is a string of blank-line paragraphs or a list of them."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ArticleParseError(
            f"is not valid JSON: {exc.msg}",
            where=f"{origin}:{exc.lineno}:{exc.colno}",
            hint="check for a missing comma or quote just before this point",
        ) from None
    except RecursionError:
        raise ArticleParseError("the JSON is nested too deeply", where=origin) from None
    if not isinstance(data, dict):
        raise ArticleParseError(
            f"must hold one JSON object, not {_kind(data)}",
            where=origin,
            hint='write {"headline": "…", "summary": "…", "url": "https://…"}',
        )
    data = {str(k).lower(): v for k, v in data.items()}
    where = _where_keys(origin, text, quoted=True)
    raw = data.get("summary")
    paragraphs: list[str] = []
    if isinstance(raw, str):
        paragraphs = _paragraphs(raw)
    elif isinstance(raw, list):
        for position, item in enumerate(raw):
            if not isinstance(item, str):
                raise ArticleParseError(
                    f"summary[{position}] must be text, not {_kind(item)}",
                    where=where("summary"),
                    hint="make summary a list of strings, one per paragraph",
                )
            paragraphs.extend(_paragraphs(item))
    elif raw is not None:
        raise ArticleParseError(
            f"summary must be text or a list of paragraphs, not {_kind(raw)}",
            where=where("summary"),
            hint="write the summary as a string, with a blank line between paragraphs",
        )
    return _structured_article(
        data,
        origin=origin,
        where=where,
        summary=paragraphs,
        summary_hint="add a 'summary': a string, or a list of paragraphs",
    )


Reader = Callable[[str, str], Article]  # (decoded text, origin) -> Article

# Like Pelican's readers: the extension picks the parser. Keys are lower-case.
READERS: dict[str, Reader] = {
    ".txt": parse_text_article,
    ".md": parse_markdown_article,
    ".markdown": parse_markdown_article,
    ".json": parse_json_article,
}


# ---------------------------------------------------------------------------
# Files on disk
# ---------------------------------------------------------------------------


def _decode(data: bytes, origin: str) -> str:
    """Bytes to text, refusing what is not a text file rather than guessing."""
    for bom, codec in ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        if data.startswith(bom):
            try:
                return data[len(bom) :].decode(codec)
            except UnicodeDecodeError:
                raise ArticleParseError(
                    "starts like UTF-16 but is not valid UTF-16",
                    where=origin,
                    hint="save the file as UTF-8",
                ) from None
    if b"\x00" in data:
        raise ArticleParseError(
            "is a binary file (it contains NUL bytes), not a text article",
            where=origin,
            hint="article files are UTF-8 text; is this the right file?",
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        guess = data[exc.start : exc.start + 1].decode("cp1252", errors="replace")
        raise ArticleParseError(
            f"is not valid UTF-8: byte 0x{data[exc.start]:02x} at column {column} "
            f"(perhaps {guess!r} in Latin-1 or Windows-1252)",
            where=f"{origin}:{line}",
            hint="save the file as UTF-8",
        ) from None


def read_article_file(path: Path) -> Article:
    """Read one article file; any problem is an ArticleParseError naming the file."""
    origin = str(path)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        known = ", ".join(sorted(READERS))
        raise ArticleParseError(
            f"has no reader for its extension ({path.suffix or 'none'})",
            where=origin,
            hint=f"article files end in {known}",
        )
    try:
        status = path.stat()
        size = status.st_size
        if not stat.S_ISREG(status.st_mode):
            # A FIFO or device would block or never end; only regular files are articles.
            raise ArticleParseError(
                "is not a regular file", where=origin, hint="article files are plain files"
            )
        if size > MAX_FILE_BYTES:
            data = b""
        else:
            with path.open("rb") as handle:
                data = handle.read(MAX_FILE_BYTES + 1)  # the file may grow after stat()
            size = max(size, len(data))
    except OSError as exc:
        raise ArticleParseError(
            f"cannot be read: {exc.strerror or exc}",
            where=origin,
            hint="check that the file exists and is readable",
        ) from None
    if size > MAX_FILE_BYTES:
        raise ArticleParseError(
            f"is too large ({size:,} bytes; an article file is at most 1 MB)",
            where=origin,
            hint="is this the right file? a summary is a few kilobytes",
        )
    if not data:
        raise ArticleParseError("is empty", where=origin, hint="write the article or delete it")
    text = _decode(data, origin)
    if not text.strip():
        raise ArticleParseError(
            "contains only whitespace", where=origin, hint="write the article or delete it"
        )
    return reader(text, origin)


_DATE_DIR = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class DirectorySource:
    """Article files under `root/YYYY-MM-DD/`, one file per article, read in name order."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _check_root(self) -> None:
        # Checked on every call, not at construction: a scheduler outlives a missing mount.
        if not self.root.is_dir():
            problem = "is not a directory" if self.root.exists() else "does not exist"
            raise SourceError(
                f"the articles directory {problem}",
                where=str(self.root),
                hint=f"create it, or point {SETTING} at the directory that holds "
                "the YYYY-MM-DD folders (or at a feed URL)",
            )

    def articles_for(self, date: dt.date) -> DayArticles:
        """Every article of the date; files that can't be used are listed, not fatal."""
        self._check_root()
        day = self.root / date.isoformat()
        if not day.is_dir():
            return DayArticles(date=date, articles=())
        articles: list[Article] = []
        skipped: list[SkippedFile] = []
        try:
            entries = sorted(day.iterdir(), key=lambda p: p.name)
        except OSError as exc:
            raise SourceError(
                f"cannot list the directory: {exc.strerror or exc}", where=str(day)
            ) from None
        for path in entries:
            if path.name.startswith(".") or path.is_dir():
                continue
            try:
                articles.append(read_article_file(path))
            except ArticleParseError as exc:
                reason = exc.message + (f" ({exc.hint})" if exc.hint else "")
                skipped.append(SkippedFile(origin=exc.where or str(path), reason=reason))
        return DayArticles(date=date, articles=tuple(articles), skipped=tuple(skipped))

    def available_dates(self) -> list[dt.date]:
        """Dates that have a directory (possibly empty); other directories are ignored."""
        self._check_root()
        dates = []
        for entry in self.root.iterdir():
            if entry.is_dir() and _DATE_DIR.match(entry.name):
                try:
                    dates.append(dt.date.fromisoformat(entry.name))
                except ValueError:
                    continue
        return sorted(dates)


# ---------------------------------------------------------------------------
# Feeds over HTTP
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _FeedItem:
    """One entry, reduced to what an Article needs, whichever feed format it came in."""

    title: str | None
    title_is_html: bool
    link: str | None
    body: str | None
    body_is_html: bool
    when: dt.datetime | None  # aware
    image: str | None
    date_problem: str = "has no published or updated date"


class FeedSource:
    """Articles from an RSS, Atom or JSON Feed URL, picked by their date in `zone`.

    The feed is fetched on every call. `available_dates()` fetches it too and
    returns the dates its items fall on: a feed only knows its recent items.
    """

    def __init__(
        self, url: str, zone: ZoneInfo, *, timeout: float = 20.0, user_agent: str = USER_AGENT
    ) -> None:
        self.url = url
        self.zone = zone
        self.timeout = timeout
        self.user_agent = user_agent

    def articles_for(self, date: dt.date) -> DayArticles:
        """Items dated `date` in the newsletter's zone; unusable items become SkippedFile."""
        feed_title, items = self._load()
        articles: list[Article] = []
        skipped: list[SkippedFile] = []
        for number, item in enumerate(items, 1):
            origin = f"{self.url}#item-{number}"
            if item.when is None:
                skipped.append(SkippedFile(origin=origin, reason=item.date_problem))
                continue
            if item.when.astimezone(self.zone).date() != date:
                continue
            try:
                articles.append(self._article(item, feed_title, date, origin))
            except ArticleParseError as exc:
                skipped.append(SkippedFile(origin=origin, reason=exc.message))
        return DayArticles(date=date, articles=tuple(articles), skipped=tuple(skipped))

    def available_dates(self) -> list[dt.date]:
        _, items = self._load()
        return sorted({item.when.astimezone(self.zone).date() for item in items if item.when})

    def _article(
        self, item: _FeedItem, feed_title: str | None, date: dt.date, origin: str
    ) -> Article:
        def where(field: str) -> str:
            return origin

        title = item.title
        if title and item.title_is_html:
            title = " ".join(html_to_paragraphs(title))
        if not title or not title.strip():
            raise ArticleParseError("has no title", where=origin)
        if not item.link:
            raise ArticleParseError("has no link", where=origin)
        summary_html = None
        paragraphs: list[str] = []
        if item.body and item.body_is_html:
            summary_html = sanitize_html(item.body)
            if "<" in summary_html:
                paragraphs = html_to_paragraphs(summary_html)
            else:  # "HTML" with no tags (common in RSS): keep its blank-line paragraphs
                paragraphs, summary_html = _paragraphs(unescape(summary_html)), None
        elif item.body:
            paragraphs = _paragraphs(item.body)
        source = _one_line(feed_title or "") or _host(item.link)
        image = item.image
        if image:
            try:
                image = _http_url(image, "image", where)
            except ArticleParseError:
                image = None  # decoration from someone else's feed: drop it, keep the article
        return _article(
            origin=origin,
            where=where,
            headline=title,
            summary=paragraphs,
            url=item.link,
            source=source,
            published=date,
            summary_html=summary_html,
            image_url=image,
        )

    def _load(self) -> tuple[str | None, list[_FeedItem]]:
        body, content_type, final_url = self._fetch()
        start = body.lstrip(codecs.BOM_UTF8).lstrip()[:1]
        if "json" in content_type or start == b"{":
            return _parse_json_feed(body, self.url)
        return _parse_xml_feed(body, self.url, content_type, final_url)

    def _fetch(self) -> tuple[bytes, str, str]:
        """GET the feed; every httpx failure becomes one SourceError naming the URL."""
        hint = f"check the feed URL in {SETTING}, or open it in a browser"
        try:
            with httpx.Client(
                follow_redirects=True,
                timeout=self.timeout,
                headers={"User-Agent": self.user_agent},
            ) as client:
                with client.stream("GET", self.url) as response:
                    if response.status_code >= 400:
                        raise SourceError(
                            f"the feed server answered HTTP {response.status_code} "
                            f"{response.reason_phrase}".rstrip(),
                            where=self.url,
                            hint=hint,
                        )
                    chunks: list[bytes] = []
                    total = 0
                    for chunk in response.iter_bytes():
                        total += len(chunk)
                        if total > MAX_FEED_BYTES:
                            raise SourceError(
                                f"the feed is larger than {MAX_FEED_BYTES // (1024 * 1024)} MB",
                                where=self.url,
                                hint=hint,
                            )
                        chunks.append(chunk)
                    content_type = response.headers.get("content-type", "").lower()
                    return b"".join(chunks), content_type, str(response.url)
        except httpx.TimeoutException:
            raise SourceError(
                f"the feed did not answer within {self.timeout:g} seconds",
                where=self.url,
                hint=hint,
            ) from None
        except httpx.ConnectError as exc:
            raise SourceError(f"cannot connect: {exc}", where=self.url, hint=hint) from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise SourceError(
                f"cannot fetch the feed: {type(exc).__name__}: {exc}", where=self.url, hint=hint
            ) from None


def _host(url: str) -> str | None:
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    return host.removeprefix("www.") if host else None


def _parse_xml_feed(
    body: bytes, url: str, content_type: str, final_url: str
) -> tuple[str | None, list[_FeedItem]]:
    # BytesIO, never bytes: feedparser treats a plain string as a URL or a path to open.
    parsed = feedparser.parse(
        io.BytesIO(body),
        response_headers={"content-type": content_type, "content-location": final_url},
    )
    if not parsed.get("version") and not parsed.entries:
        problem = parsed.get("bozo_exception")
        raise SourceError(
            "is not an RSS, Atom or JSON feed" + (f" ({problem})" if problem else ""),
            where=url,
            hint=f"point {SETTING} at the feed itself, not the web page",
        )
    items = []
    for entry in parsed.entries:
        stamp = entry.get("published_parsed") or entry.get("updated_parsed")
        when = dt.datetime(*stamp[:5], min(stamp[5], 59), tzinfo=dt.UTC) if stamp else None
        raw_date = entry.get("published") or entry.get("updated")
        problem = (
            f"has a date feedparser cannot read ({raw_date!r})"
            if raw_date
            else "has no published or updated date"
        )
        detail = entry.get("summary_detail") or {}
        body_text = entry.get("summary")
        if not body_text and entry.get("content"):
            detail = entry.content[0]
            body_text = detail.get("value")
        items.append(
            _FeedItem(
                title=entry.get("title"),
                title_is_html="html" in (entry.get("title_detail") or {}).get("type", ""),
                link=entry.get("link"),
                body=body_text,
                body_is_html="html" in detail.get("type", "text/html"),
                when=when,
                image=_entry_image(entry),
                date_problem=problem,
            )
        )
    return parsed.feed.get("title"), items


def _entry_image(entry: Any) -> str | None:
    for media in entry.get("media_thumbnail") or []:
        if media.get("url"):
            return str(media["url"])
    for media in entry.get("media_content") or []:
        if media.get("url") and media.get("medium", "image") == "image":
            return str(media["url"])
    for link in entry.get("links") or []:
        if link.get("rel") == "enclosure" and str(link.get("type", "")).startswith("image/"):
            return str(link.get("href"))
    return None


def _parse_json_feed(body: bytes, url: str) -> tuple[str | None, list[_FeedItem]]:
    """JSON Feed 1.0/1.1 (https://jsonfeed.org/version/1.1), which feedparser 6.0 lacks."""
    try:
        data = json.loads(body.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise SourceError("the JSON Feed is not UTF-8", where=url) from None
    except json.JSONDecodeError as exc:
        raise SourceError(
            f"the JSON Feed is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
            where=url,
        ) from None
    except RecursionError:
        raise SourceError("the JSON Feed is nested too deeply", where=url) from None
    if not isinstance(data, dict) or not isinstance(data.get("items"), list):
        raise SourceError(
            "is not a JSON Feed: expected an object with an 'items' list",
            where=url,
            hint=f"point {SETTING} at an RSS, Atom or JSON Feed URL",
        )
    items = []
    for raw in data["items"]:
        item = raw if isinstance(raw, dict) else {}
        when, problem = _rfc3339(item.get("date_published") or item.get("date_modified"))
        if isinstance(item.get("summary"), str) and item["summary"].strip():
            body_text, is_html = item["summary"], False
        elif isinstance(item.get("content_html"), str):
            body_text, is_html = item["content_html"], True
        else:
            body_text, is_html = _text_or_none(item.get("content_text")), False
        items.append(
            _FeedItem(
                title=_text_or_none(item.get("title")),
                title_is_html=False,
                link=_text_or_none(item.get("url")) or _text_or_none(item.get("external_url")),
                body=body_text,
                body_is_html=is_html,
                when=when,
                image=_text_or_none(item.get("image")) or _text_or_none(item.get("banner_image")),
                date_problem=problem,
            )
        )
    return _text_or_none(data.get("title")), items


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _rfc3339(value: object) -> tuple[dt.datetime | None, str]:
    if not isinstance(value, str) or not value.strip():
        return None, "has no date_published or date_modified"
    try:
        when = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        return None, f"has a date that is not RFC 3339 ({value!r})"
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)), ""


def open_source(articles_source: str, zone: ZoneInfo) -> DirectorySource | FeedSource:
    """Turn the NEWSLETTER_ARTICLES_SOURCE setting into a source: a URL or a directory."""
    value = articles_source.strip()
    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", value)
    if scheme and scheme.group(1).lower() in ("http", "https"):
        return FeedSource(value, zone)
    if scheme:
        raise ConfigError(
            f"cannot read articles over {scheme.group(1)}:// (got {value!r})",
            where=SETTING,
            hint="use a directory path or an http(s):// feed URL",
        )
    return DirectorySource(Path(value).expanduser())
