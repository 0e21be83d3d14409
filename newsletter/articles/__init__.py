"""Where a day's articles come from: article files in dated directories, or a feed over HTTP.

    open_source(setting) ──> DirectorySource  root/YYYY-MM-DD/*.{txt,md,markdown,json}
                        └──> FeedSource       RSS / Atom (feedparser), JSON Feed 1.1 (by hand)
    each file ──> READERS[extension](text, origin) ──> _article() checks ──> Article

Every reader funnels into `_article`, so the promises the renderer relies on hold
whatever the format: a one-line headline of at most 300 characters, non-empty
plain-text paragraphs with no control characters, http(s)-only URLs, and
`summary_html` only ever as nh3 sanitized it. A file that breaks a promise raises
`ArticleParseError` naming the file (and line, where one is meaningful); a source
turns that into a `SkippedFile` so one bad file never stops an edition. So does
any other exception a reader raises on a file or a feed item (`unexpected`): the
reason names its type, the traceback goes to the log.

Hostile input is bounded, not trusted: only regular files of at most 1 MB are
read (`newsletter.input_files`: a FIFO or /dev/zero is a skipped file, never a
hang); Markdown is CommonMark (markdown-it-py, linear in the text); HTML past
MAX_HTML_TAGS tags or MAX_HTML_DEPTH levels is shown as its text (nh3's parser is
quadratic in nesting depth); JSON numbers of any length parse.

The package, bottom up (each module imports only those above it):

    text.py        text hygiene: newlines, control characters, one-line labels,
                   paragraphs; html_to_paragraphs; sanitize_html (the nh3 cleaners)
    checks.py      the checks every article passes whatever its format: URLs,
                   labels, `_article` building the Article; the shared limits;
                   `unexpected`, the error for a reader's unforeseen exception
    plaintext.py   the upstream .txt format (date lines, "Read the Full … Article at:")
    structured.py  Markdown with YAML front matter, and JSON (markdown-it, yaml, json)
    files.py       decoding bytes, the READERS registry, read_article_file, DirectorySource
    feed.py        FeedSource over HTTP (httpx, feedparser errors)
    __init__.py    the ArticleSource Protocol, open_source, and the public names

httpx, feedparser, yaml and json exceptions are translated in those modules and
nowhere else.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo

from newsletter.articles.checks import (
    MAX_FIELD_CHARS,
    MAX_HEADLINE_CHARS,
    MAX_URL_CHARS,
    SETTING,
    Where,
)
from newsletter.articles.feed import MAX_FEED_BYTES, USER_AGENT, FeedSource
from newsletter.articles.files import (
    MAX_FILE_BYTES,
    READERS,
    DirectorySource,
    Reader,
    read_article_file,
)
from newsletter.articles.plaintext import parse_text_article
from newsletter.articles.structured import parse_json_article, parse_markdown_article
from newsletter.articles.text import (
    ALLOWED_TAGS,
    MAX_HTML_DEPTH,
    MAX_HTML_TAGS,
    html_to_paragraphs,
    sanitize_html,
)
from newsletter.errors import ConfigError
from newsletter.models import DayArticles

__all__ = [
    "ALLOWED_TAGS",
    "MAX_FEED_BYTES",
    "MAX_FIELD_CHARS",
    "MAX_FILE_BYTES",
    "MAX_HEADLINE_CHARS",
    "MAX_HTML_DEPTH",
    "MAX_HTML_TAGS",
    "MAX_URL_CHARS",
    "READERS",
    "SETTING",
    "USER_AGENT",
    "ArticleSource",
    "DirectorySource",
    "FeedSource",
    "Reader",
    "Where",
    "html_to_paragraphs",
    "open_source",
    "parse_json_article",
    "parse_markdown_article",
    "parse_text_article",
    "read_article_file",
    "sanitize_html",
]


class ArticleSource(Protocol):
    """What the edition stage needs from any source."""

    def articles_for(self, date: dt.date) -> DayArticles: ...

    def available_dates(self) -> list[dt.date]: ...


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
