"""Choosing the day's articles and naming the edition. Pure: no I/O.

Order is the order the source gives (files sorted by name), so an editor can
put the lead story first by naming it `01-…`. Duplicates are common when the
summarizer picks up the same story from two feeds: the same URL (ignoring
tracking parameters, fragments and a trailing slash) or the same headline
(ignoring case, punctuation and spacing) keeps only the first.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from newsletter.config import Settings
from newsletter.models import Article, DayArticles, Edition

SUBJECT_MAX = 150
PREHEADER_MAX = 140
_TRACKING_PREFIXES = ("utm_", "mc_", "fbclid", "gclid")


def build_edition(day: DayArticles, settings: Settings) -> Edition | None:
    """The edition of `day`, or None when there is nothing to send."""
    articles = dedupe(day.articles)[: settings.max_articles]
    if not articles:
        return None
    return Edition(
        date=day.date,
        articles=articles,
        subject=make_subject(articles, day.date, settings),
        preheader=make_preheader(articles),
    )


def dedupe(articles: tuple[Article, ...]) -> tuple[Article, ...]:
    seen: set[str] = set()
    kept: list[Article] = []
    for article in articles:
        keys = {"h:" + headline_key(article.headline)}
        if article.url:
            keys.add("u:" + url_key(article.url))
        if keys & seen:
            continue
        seen |= keys
        kept.append(article)
    return tuple(kept)


def url_key(url: str) -> str:
    parts = urlsplit(url.strip())
    query = [
        (k, v) for k, v in parse_qsl(parts.query) if not k.lower().startswith(_TRACKING_PREFIXES)
    ]
    host = parts.netloc.lower().removeprefix("www.")
    path = parts.path.rstrip("/")
    return urlunsplit(("", host, path, urlencode(sorted(query)), ""))


def headline_key(headline: str) -> str:
    folded = unicodedata.normalize("NFKC", headline).casefold()
    return re.sub(r"[\W_]+", " ", folded).strip()


def make_subject(articles: tuple[Article, ...], date: dt.date, settings: Settings) -> str:
    subject = settings.subject_template.format(
        name=settings.name, date=date, lead=articles[0].headline, count=len(articles)
    )
    return _one_line(subject, SUBJECT_MAX)


def make_preheader(articles: tuple[Article, ...]) -> str:
    """The inbox preview line: the other headlines, which say more than the lead's text."""
    others = [a.headline for a in articles[1:4]]
    if others:
        text = "Also today: " + " · ".join(others)
    else:
        text = " ".join(articles[0].summary[:1])
    return _one_line(text, PREHEADER_MAX)


def _one_line(text: str, limit: int) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0]
    return cut + "…"
