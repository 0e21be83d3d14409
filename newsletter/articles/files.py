"""Article files on disk: from a dated directory to one Article per file.

`DirectorySource` lists `root/YYYY-MM-DD/`; `read_article_file` refuses what is
not a small regular text file (opened through `newsletter.input_files`, so a
FIFO or a link to /dev/zero cannot block or flood it), decodes the bytes (UTF-8,
or UTF-16 with a BOM, never a guess) and hands the text to the reader its
extension picks in READERS. A file that fails, for any reason, becomes a
`SkippedFile`, so one bad file never stops an edition.
"""

from __future__ import annotations

import codecs
import datetime as dt
import re
from collections.abc import Callable
from pathlib import Path

from newsletter.articles.checks import SETTING, unexpected
from newsletter.articles.plaintext import parse_text_article
from newsletter.articles.structured import parse_json_article, parse_markdown_article
from newsletter.errors import ArticleParseError, SourceError
from newsletter.hygiene import one_line
from newsletter.input_files import RefusedFileError, open_regular
from newsletter.models import Article, DayArticles, SkippedFile

MAX_FILE_BYTES = 1024 * 1024  # an article is a few KB; anything near this is the wrong file

Reader = Callable[[str, str], Article]  # (decoded text, origin) -> Article

# Like Pelican's readers: the extension picks the parser. Keys are lower-case.
READERS: dict[str, Reader] = {
    ".txt": parse_text_article,
    ".md": parse_markdown_article,
    ".markdown": parse_markdown_article,
    ".json": parse_json_article,
}


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
    """Read one article file: an Article, or an ArticleParseError naming the file, whatever
    the file holds (a reader's unforeseen exception becomes one too)."""
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
        with open_regular(
            path,
            limit=MAX_FILE_BYTES,
            what="an article file",
            fix="an article is a plain file: replace it with one, or move it out of the folder",
        ) as handle:
            data = handle.read()
    except RefusedFileError as exc:
        raise ArticleParseError(exc.message, where=origin, hint=exc.hint) from None
    except OSError as exc:
        raise ArticleParseError(
            f"cannot be read: {exc.strerror or exc}",
            where=origin,
            hint="check that the file exists and is readable",
        ) from None
    if not data:
        raise ArticleParseError("is empty", where=origin, hint="write the article or delete it")
    text = _decode(data, origin)
    if not text.strip():
        raise ArticleParseError(
            "contains only whitespace", where=origin, hint="write the article or delete it"
        )
    try:
        return reader(text, origin)
    except ArticleParseError:
        raise
    except Exception as exc:  # an Article or an ArticleParseError, whatever the bytes
        raise unexpected(exc, origin) from exc


def _skipped(exc: ArticleParseError, origin: str) -> SkippedFile:
    reason = exc.message + (f" ({exc.hint})" if exc.hint else "")
    return SkippedFile(origin=exc.where or origin, reason=one_line(reason))


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
                skipped.append(_skipped(exc, str(path)))
            except Exception as exc:  # whatever else: one file never stops the edition
                skipped.append(_skipped(unexpected(exc, str(path)), str(path)))
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
