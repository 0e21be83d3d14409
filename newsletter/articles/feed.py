"""Articles from a feed over HTTP: RSS and Atom through feedparser, JSON Feed by hand.

`FeedSource` fetches the feed on every call (size-capped, with its own
User-Agent), reduces each entry to a `_FeedItem` whatever the format, and picks
the items dated on the requested day in the newsletter's zone. Someone else's
HTML goes through `sanitize_html` like any other (feedparser's own sanitizer is
off: it is quadratic on hostile markup). An item that cannot be used, for any
reason, is a `SkippedFile`; the other items still go out. httpx and feedparser
exceptions are translated here and nowhere else.
"""

from __future__ import annotations

import codecs
import datetime as dt
import io
import json
from dataclasses import dataclass
from html import unescape
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import feedparser
import httpx

from newsletter.articles.checks import SETTING, _article, _http_url, unexpected
from newsletter.articles.structured import _load_json
from newsletter.articles.text import _paragraphs, html_to_paragraphs, sanitize_html
from newsletter.errors import ArticleParseError, SourceError
from newsletter.hygiene import one_line
from newsletter.models import Article, DayArticles, SkippedFile

MAX_FEED_BYTES = 10 * 1024 * 1024
USER_AGENT = "newsletter/0.1 (daily newsletter publisher; feed reader)"


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
    base: str | None = None  # what relative links in the body are relative to


def _unreadable(reason: str) -> _FeedItem:
    """An entry that could not even be reduced: reported on every date, since it has none."""
    return _FeedItem(None, False, None, None, False, None, None, date_problem=reason)


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
            try:
                day = self._day(item)
                if day is None:
                    skipped.append(SkippedFile(origin=origin, reason=one_line(item.date_problem)))
                elif day == date:
                    articles.append(self._article(item, feed_title, date, origin))
            except ArticleParseError as exc:
                skipped.append(SkippedFile(origin=origin, reason=one_line(exc.message)))
            except Exception as exc:  # whatever else: one item never stops the edition
                skipped.append(SkippedFile(origin=origin, reason=unexpected(exc, origin).message))
        return DayArticles(date=date, articles=tuple(articles), skipped=tuple(skipped))

    def available_dates(self) -> list[dt.date]:
        _, items = self._load()
        dates = set()
        for item in items:
            try:
                day = self._day(item)
            except ArticleParseError:
                continue
            if day is not None:
                dates.add(day)
        return sorted(dates)

    def _day(self, item: _FeedItem) -> dt.date | None:
        """The item's date in the newsletter's zone; None when it has no usable date."""
        if item.when is None:
            return None
        try:
            return item.when.astimezone(self.zone).date()
        except (OverflowError, ValueError):  # e.g. year 1 at UTC+1 is before datetime.min
            raise ArticleParseError(
                f"has a date out of range ({item.when.isoformat()})", where=self.url
            ) from None

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
            summary_html = sanitize_html(item.body, base=item.base)
            if "<" in summary_html:
                paragraphs = html_to_paragraphs(summary_html)
            else:  # "HTML" with no tags (common in RSS): keep its blank-line paragraphs
                paragraphs, summary_html = _paragraphs(unescape(summary_html)), None
        elif item.body:
            paragraphs = _paragraphs(item.body)
        source = one_line(feed_title or "") or _host(item.link)
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
        try:
            if "json" in content_type or start == b"{":
                return _parse_json_feed(body, self.url)
            return _parse_xml_feed(body, self.url, content_type, final_url)
        except SourceError:
            raise
        except Exception as exc:  # a parser's surprise: one clear line, not a traceback
            raise SourceError(
                f"the feed could not be read ({type(exc).__name__}: {one_line(str(exc))[:200]})",
                where=self.url,
                hint=f"open the feed in a browser; if it looks right, report it ({SETTING})",
            ) from exc

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
    # Its own sanitizer and link resolver are off: both take quadratic time on hostile
    # markup (400 KB of "&lt;!--" in one item: 90 s); nh3 does both in sanitize_html.
    parsed = feedparser.parse(
        io.BytesIO(body),
        response_headers={"content-type": content_type, "content-location": final_url},
        sanitize_html=False,
        resolve_relative_uris=False,
    )
    if not parsed.get("version") and not parsed.entries:
        problem = parsed.get("bozo_exception")
        raise SourceError(
            "is not an RSS, Atom or JSON feed" + (f" ({problem})" if problem else ""),
            where=url,
            hint=f"point {SETTING} at the feed itself, not the web page",
        )
    items = []
    for number, entry in enumerate(parsed.entries, 1):
        try:
            items.append(_xml_item(entry, final_url))
        except Exception as exc:  # one entry never stops the feed
            items.append(_unreadable(unexpected(exc, f"{url}#item-{number}").message))
    title = parsed.feed.get("title")
    return (title if isinstance(title, str) else None), items


def _xml_item(entry: Any, final_url: str) -> _FeedItem:
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
    return _FeedItem(
        title=entry.get("title"),
        title_is_html="html" in (entry.get("title_detail") or {}).get("type", ""),
        link=entry.get("link"),
        body=body_text,
        body_is_html="html" in detail.get("type", "text/html"),
        when=when,
        image=_entry_image(entry),
        date_problem=problem,
        base=detail.get("base") or final_url,
    )


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
        data = _load_json(body.decode("utf-8-sig"))
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
    for number, raw in enumerate(data["items"], 1):
        try:
            items.append(_json_item(raw if isinstance(raw, dict) else {}))
        except Exception as exc:  # one item never stops the feed
            items.append(_unreadable(unexpected(exc, f"{url}#item-{number}").message))
    return _text_or_none(data.get("title")), items


def _json_item(item: dict[str, Any]) -> _FeedItem:
    when, problem = _rfc3339(item.get("date_published") or item.get("date_modified"))
    if isinstance(item.get("summary"), str) and item["summary"].strip():
        body_text, is_html = item["summary"], False
    elif isinstance(item.get("content_html"), str):
        body_text, is_html = item["content_html"], True
    else:
        body_text, is_html = _text_or_none(item.get("content_text")), False
    return _FeedItem(
        title=_text_or_none(item.get("title")),
        title_is_html=False,
        link=_text_or_none(item.get("url")) or _text_or_none(item.get("external_url")),
        body=body_text,
        body_is_html=is_html,
        when=when,
        image=_text_or_none(item.get("image")) or _text_or_none(item.get("banner_image")),
        date_problem=problem,
    )


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
