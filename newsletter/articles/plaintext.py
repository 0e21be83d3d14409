"""The upstream summarizer's plain-text format (.txt).

The format has no markup, only conventions: optional date lines, a headline,
paragraphs, and a closing "Read the Full <source> Article at:" / "[ <url> ]"
pair. Recognising those conventions (English month and day names, ordinals,
brackets) is a parser of its own, with its own line-numbered errors, and is
kept apart from the formats that carry their fields as keys.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from newsletter.articles.checks import MAX_HEADLINE_CHARS, _article
from newsletter.errors import ArticleParseError
from newsletter.hygiene import normalize_newlines, one_line
from newsletter.models import Article

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
    numbered = enumerate(normalize_newlines(text).split("\n"), 1)
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
    if len(head) > 1 and len(one_line(headline)) > MAX_HEADLINE_CHARS:
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
