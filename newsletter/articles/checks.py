"""The checks every article passes, whatever its format.

Every reader and the feed source funnel into `_article`, which turns loose
fields into an `Article` only if it keeps the renderer's promises: a one-line
headline of at most MAX_HEADLINE_CHARS, non-empty plain-text paragraphs, http(s)
URLs only, and labels of bounded length. A field that breaks one raises
`ArticleParseError` at the place `where(field)` names. Keeping these in one
module is what makes the promises hold for a format added later.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from newsletter.errors import ArticleParseError
from newsletter.hygiene import has_unsafe, one_line
from newsletter.models import Article

log = logging.getLogger("newsletter.articles")

MAX_HEADLINE_CHARS = 300
MAX_FIELD_CHARS = 500  # source, image_alt: one-line labels
MAX_URL_CHARS = 2048
# Named in the hints of source errors, whichever kind of source raised them.
SETTING = "NEWSLETTER_ARTICLES_SOURCE"

Where = Callable[[str], str]  # field name -> "file:line" (or just the file)


def unexpected(exc: Exception, origin: str) -> ArticleParseError:
    """The error for a file or feed item that broke its reader in a way nobody foresaw.

    A reader raises ArticleParseError for every problem it knows; anything else
    (a RecursionError, a ValueError from deep inside a library) is input nobody
    planned for. It becomes an ArticleParseError like any bad file, so the file
    is skipped and the rest of the day still goes out; the message names the
    error's type, and the traceback goes to the log for whoever teaches the
    reader a clear message.
    """
    log.error("reading %s failed unexpectedly", origin, exc_info=exc)
    detail = one_line(str(exc))[:200]
    return ArticleParseError(
        f"the reader failed unexpectedly ({type(exc).__name__}{': ' if detail else ''}{detail})",
        where=origin,
        hint="the file is skipped; please report it so the reader can say what is wrong",
    )


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
    if re.search(r"\s", url) or has_unsafe(url):
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
    text = one_line(value)
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
    paragraphs = tuple(p for p in (one_line(p) for p in summary) if p)
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
