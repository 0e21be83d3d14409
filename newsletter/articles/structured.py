"""The keyed formats: Markdown with YAML front matter (.md, .markdown) and JSON (.json).

Both hold the article's fields under named keys (headline or title, url or link,
source, date, image, image_alt), so they share the key lookup, the type errors
that name the key and its line, and `_structured_article`; they differ only in
where the summary comes from. yaml and json exceptions are translated here.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable
from typing import Any

import yaml
from markdown_it import MarkdownIt

from newsletter.articles.checks import Where, _article
from newsletter.articles.text import (
    _paragraphs,
    html_to_paragraphs,
    sanitize_html,
)
from newsletter.errors import ArticleParseError
from newsletter.hygiene import normalize_newlines
from newsletter.models import Article

_FRONT_MATTER_FENCE = re.compile(r"^---[ \t]*$")
_FRONT_MATTER_END = re.compile(r"^(?:---|\.\.\.)[ \t]*$")


# CommonMark, parsed in time linear in the text (python-markdown took 8 s for 16 KB of
# nested brackets and never finished 400 KB). Raw HTML is let through to nh3, which
# cleans it like every other HTML; nesting deeper than 20 levels stays text.
_MARKDOWN = MarkdownIt("commonmark")
# Longer integers are read as floats: Python refuses to turn more than 4,300 digits into
# an int (a ValueError that is not a JSONDecodeError) and is slow near that limit; no field
# we read is a number, so a huge one only has to be "a number", not exact.
_MAX_INT_DIGITS = 100


def _load_json(text: str) -> Any:
    """json.loads for text from outside: any number parses, however many digits it has."""
    return json.loads(text, parse_int=_json_int)


def _json_int(digits: str) -> int | float:
    return int(digits) if len(digits) <= _MAX_INT_DIGITS else float(digits)


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
    lines = normalize_newlines(text).split("\n")
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
        raise ArticleParseError(
            "the front matter is nested too deeply",
            where=origin,
            hint="write one 'key: value' per line, with plain text values",
        ) from None
    if data is None or data == "":
        data = {}
    if not isinstance(data, dict):
        raise ArticleParseError(
            "the front matter must be 'key: value' lines",
            where=f"{origin}:{start + 2}",
            hint="write e.g. 'headline: Rivers rise in Kraków'",
        )
    body = "\n".join(lines[end + 1 :])
    body_html = sanitize_html(_MARKDOWN.render(body))
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
        data = _load_json(text)
    except json.JSONDecodeError as exc:
        raise ArticleParseError(
            f"is not valid JSON: {exc.msg}",
            where=f"{origin}:{exc.lineno}:{exc.colno}",
            hint="check for a missing comma or quote just before this point",
        ) from None
    except RecursionError:
        raise ArticleParseError(
            "the JSON is nested too deeply",
            where=origin,
            hint='write {"headline": "…", "summary": "…", "url": "https://…"}',
        ) from None
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
