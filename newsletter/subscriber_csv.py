"""Reading a subscriber CSV file: encoding, delimiter, header, rows; pure over the file.

`parse_csv` opens the file once and streams it in a few passes (the encoding, the
delimiter, the rows), so a list of millions is never held as text. Spreadsheets'
habits are met as they are: UTF-8 with or without BOM, UTF-16, Windows-1252;
`,` `;` or tab and Excel's `sep=` line; "Email Address", "First Name" + "Last Name";
Mailchimp's status words. A row that cannot be read is a problem on its line and the
other rows still count. Writing (`write_csv`) guards every cell against formulas,
whatever separator the spreadsheet that opens the file assumes; reading undoes the guard.
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple, TextIO

from newsletter.addresses import clean_name, validate_email
from newsletter.errors import InputError
from newsletter.hygiene import has_unsafe, one_line
from newsletter.input_files import open_regular
from newsletter.models import SubscriberStatus
from newsletter.store.subscribers import email_key

log = logging.getLogger(__name__)

MAX_CSV_BYTES = 256 * 1024 * 1024  # ~5 million addresses; a bigger file is split first

EMAIL_HEADERS = ("email", "e-mail", "email address", "e-mail address", "mail")
NAME_HEADERS = ("name", "full name")
FIRST_NAME_HEADERS = ("first name", "firstname", "given name")
LAST_NAME_HEADERS = ("last name", "lastname", "surname", "family name")
STATUS_HEADERS = ("status",)

# What a `status` cell may say. Only suppression is honoured; the rest import as active.
# An unknown value makes the row invalid rather than guessing it means "subscribed".
_STATUS_VALUES: dict[str, SubscriberStatus | None] = {
    "": None,
    "active": None,
    "subscribed": None,
    "confirmed": None,
    "pending": None,
    "unsubscribed": SubscriberStatus.UNSUBSCRIBED,
    "unsubscribe": SubscriberStatus.UNSUBSCRIBED,
    "opted out": SubscriberStatus.UNSUBSCRIBED,
    "opted-out": SubscriberStatus.UNSUBSCRIBED,
    "bounced": SubscriberStatus.BOUNCED,
    "bounce": SubscriberStatus.BOUNCED,
    "cleaned": SubscriberStatus.BOUNCED,  # Mailchimp's word for hard-bounced
}

_DELIMITERS = (",", ";", "\t")

# The formula guard (OWASP CSV injection). A spreadsheet runs a field that starts with
# = + - @ tab or CR as a formula, and a field may start anywhere in a cell: a reader set
# to `;` or `|`, or one that ignores quotes, splits `x;=cmd|' /C calc'!A0` where a `,`
# reader sees one name. So a field start is the cell's start or a place after any
# separator, past quotes and spaces a reader may strip; there a formula character gets
# a `'` before it (and so does a run of `'` before one, so reading takes exactly one
# away again). After a separator, the end of the cell counts too: a reader split there
# takes the cell's closing quote for an opening one, and the line's end (CR) for the
# start of a field.
_FORMULA = r"[=+\-@\t\r]"
_CELL_START = r"^([\" ]*)"
_SEPARATED = r"(?<=[,;\t|\r\n])([\" ]*)"
_UNGUARDED = re.compile(rf"{_CELL_START}(?='*{_FORMULA})|{_SEPARATED}(?='*(?:{_FORMULA}|$))")
_GUARDED = re.compile(rf"{_CELL_START}'(?='*{_FORMULA})|{_SEPARATED}'(?='*(?:{_FORMULA}|$))")
_LINE_BREAK = re.compile(r"\r\n?|\n")


class CsvRow(NamedTuple):
    """One valid address from a CSV file, with the line it starts on."""

    email: str
    name: str
    status: SubscriberStatus | None
    line: int


@dataclass(frozen=True)
class CsvParseResult:
    """Everything read from a CSV file: the unique valid rows, the invalid ones and why.

    Every record after the header that is not blank is one of `rows`, `problems` or
    `repeated`, and `records` counts them all, so an import can account for each one.
    """

    rows: tuple[CsvRow, ...]
    problems: tuple[tuple[int, str], ...]  # (line as an editor shows it, reason)
    warnings: tuple[str, ...]
    encoding: str
    delimiter: str
    repeated: int  # valid rows merged into an earlier row with the same address
    records: int  # the data rows read: the header and blank lines are not counted


def parse_csv(path: Path) -> CsvParseResult:
    """Read a subscriber CSV: unique valid rows, problems by line, and warnings.

    Only a regular file of at most MAX_CSV_BYTES is read (a FIFO or /dev/zero
    would block or never end). It is opened once and read as a stream in a few
    passes (the encoding, the delimiter, the rows); only the unique addresses
    are held, which merging duplicates needs. A row that cannot be read, for
    whatever reason, is a problem on its line; the other rows still count.
    Raises InputError (naming the file) when it cannot be read, is empty, or
    has no email column in its header.
    """
    try:
        handle = open_regular(
            path,
            limit=MAX_CSV_BYTES,
            what="a subscriber list",
            fix="export the list to a CSV file and import that file",
        )
    except OSError as exc:
        raise InputError(f"cannot read the file: {exc.strerror or exc}", where=str(path)) from None
    with handle:
        return _parse(handle, path)


def _parse(handle: BinaryIO, path: Path) -> CsvParseResult:
    encoding, warnings = _detect_encoding(handle, path)
    problems: list[tuple[int, str]] = []
    rows: list[CsvRow] = []
    index: dict[str, int] = {}
    duplicate_lines: list[int] = []
    cleaned_names = 0
    records = 0
    delimiter, skipped = _sniff_delimiter(handle, encoding)
    handle.seek(0)
    text = io.TextIOWrapper(handle, encoding=encoding, newline="")
    try:
        for _ in range(skipped):
            text.readline()
        lines = _Lines(csv.reader(text, delimiter=delimiter), first=skipped + 1)
        header: list[str] = []
        for cells, line, problem in lines:
            if problem:
                raise InputError(
                    f"not a readable CSV file: {problem}",
                    where=f"{path}:{line}",
                    hint="save it from your spreadsheet as CSV (UTF-8)",
                )
            if _filled(cells):
                header = cells
                break
        columns = _Columns.find(header, path)
        for cells, line, problem in lines:
            if problem:
                records += 1
                problems.append((line, f"not a readable CSV row: {problem}"))
                continue
            if not _filled(cells):
                continue  # blank lines, e.g. at the end of the file
            records += 1
            try:
                row, raw_name = columns.read(cells, line)
            except Exception as exc:  # whatever a row holds, it is one problem, not the file's
                log.error("reading %s:%d failed unexpectedly", path, line, exc_info=exc)
                row, raw_name = f"could not be read ({type(exc).__name__}: {exc})", ""
            if isinstance(row, str):
                problems.append((line, one_line(row)[:300]))
                continue
            if has_unsafe(raw_name):
                cleaned_names += 1
            key = email_key(row.email)
            if key not in index:
                index[key] = len(rows)
                rows.append(row)
                continue
            duplicate_lines.append(line)  # first wins; it takes a missing name or a suppression
            first = rows[index[key]]
            rows[index[key]] = first._replace(
                name=first.name or row.name, status=first.status or row.status
            )
    finally:
        text.detach()  # the caller closes the file
    if duplicate_lines:
        shown = ", ".join(map(str, duplicate_lines[:5])) + ("…" if len(duplicate_lines) > 5 else "")
        warnings.append(
            f"{len(duplicate_lines)} repeated address(es) merged into their first occurrence "
            f"(lines {shown})"
        )
    if cleaned_names:
        warnings.append(f"{cleaned_names} name(s) had line breaks or control characters removed")
    return CsvParseResult(
        tuple(rows),
        tuple(problems),
        tuple(warnings),
        encoding,
        delimiter,
        repeated=len(duplicate_lines),
        records=records,
    )


class _Lines:
    """CSV records with the editor line each starts on (quoted fields may span lines).

    `csv.reader.line_num` counts physical lines read so far, so a record starts
    one line after where the previous one ended. A record the csv module
    refuses (a field over its 128 KB limit) comes back as a problem, and
    reading goes on at the next line.
    """

    def __init__(self, reader: Any, *, first: int):
        self._reader = reader
        self._offset = first - 1  # lines consumed before the reader started (a `sep=` line)
        self._ended = 0

    def __iter__(self) -> Iterator[tuple[list[str], int, str]]:
        return self

    def __next__(self) -> tuple[list[str], int, str]:
        line = self._offset + self._ended + 1
        try:
            cells, problem = next(self._reader), ""
        except csv.Error as exc:
            cells, problem = [], str(exc)
        self._ended = self._reader.line_num
        return cells, line, problem


@dataclass(frozen=True)
class _Columns:
    """Where each field is in a file's rows, found from its header."""

    email: int
    name: int | None
    first: int | None
    last: int | None
    status: int | None

    @classmethod
    def find(cls, header: list[str], path: Path) -> _Columns:
        names = [
            " ".join(cell.replace("_", " ").strip().strip("\ufeff").lower().split())
            for cell in header
        ]

        def position(aliases: tuple[str, ...]) -> int | None:
            return next((names.index(alias) for alias in aliases if alias in names), None)

        if not header:
            raise InputError(
                "the file has no header row",
                where=str(path),
                hint="the first line must be a header row such as `email,name`",
            )
        email = position(EMAIL_HEADERS)
        if email is None:
            looks_like_data = any("@" in cell for cell in header)
            raise InputError(
                f"no email column: the header is {header!r}; expected a column named one of "
                f"{', '.join(EMAIL_HEADERS)} (and optionally {', '.join(NAME_HEADERS)}, "
                "first name + last name, status)",
                where=str(path),
                hint=(
                    "the first line must be a header row such as `email,name`"
                    if looks_like_data
                    else "rename the address column to `email`"
                ),
            )
        return cls(
            email=email,
            name=position(NAME_HEADERS),
            first=position(FIRST_NAME_HEADERS),
            last=position(LAST_NAME_HEADERS),
            status=position(STATUS_HEADERS),
        )

    def read(self, cells: list[str], line: int) -> tuple[CsvRow | str, str]:
        """A row, or the reason it is invalid; plus the raw name (to notice cleaning)."""

        def cell(index: int | None) -> str:
            return _unguard(cells[index]) if index is not None and index < len(cells) else ""

        raw_email = cell(self.email).strip()
        raw_name = cell(self.name)
        if not raw_name.strip():
            raw_name = " ".join(
                part for part in (cell(self.first), cell(self.last)) if part.strip()
            )
        if not raw_email:
            return "no email address", raw_name
        try:
            email = validate_email(raw_email)
        except InputError as exc:
            return exc.message, raw_name
        status_text = " ".join(cell(self.status).lower().split())
        if status_text not in _STATUS_VALUES:
            return (
                f"unknown status {status_text!r} for {email}: expected active, pending, "
                "unsubscribed or bounced (or empty)",
                raw_name,
            )
        return CsvRow(email, clean_name(raw_name), _STATUS_VALUES[status_text], line), raw_name


def _detect_encoding(handle: BinaryIO, path: Path) -> tuple[str, list[str]]:
    """UTF-8 (with or without BOM) or UTF-16 with BOM; else Windows-1252, else Latin-1, warned."""
    handle.seek(0)
    start = handle.read(4)
    if not start:
        raise InputError(
            "the file is empty", where=str(path), hint="expected a header row like `email,name`"
        )
    if start.startswith(codecs.BOM_UTF8):
        return "utf-8-sig", []
    if start.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16", []
    for encoding in ("utf-8", "cp1252"):
        if _decodes(handle, encoding):
            break
    else:
        encoding = "latin-1"
    if encoding == "utf-8":
        return encoding, []
    label = {"cp1252": "Windows-1252", "latin-1": "Latin-1"}[encoding]
    return encoding, [
        f"{path.name} is not UTF-8; read it as {label}. Check that accented names look right, "
        "or save the file as CSV UTF-8"
    ]


def _decodes(handle: BinaryIO, encoding: str) -> bool:
    """Whether the whole file decodes, read in chunks so a big file is never held at once."""
    decoder = codecs.getincrementaldecoder(encoding)()
    handle.seek(0)
    try:
        while chunk := handle.read(1 << 16):
            decoder.decode(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _sniff_delimiter(handle: BinaryIO, encoding: str) -> tuple[str, int]:
    """The delimiter (`,` `;` or tab) most used in the first line; lines to skip before the header.

    Honours Excel's `sep=;` first line. Counting in the header is steadier than
    csv.Sniffer, which guesses wrong on short files.
    """
    handle.seek(0)
    text = io.TextIOWrapper(handle, encoding=encoding, newline="")
    try:
        first = text.readline(1 << 20)  # a header line; a file with no line break stops here
    finally:
        text.detach()
    if first.strip().lower().startswith("sep=") and len(first.strip()) == 5:
        return first.strip()[4], 1
    outside_quotes = first.split('"')[::2]
    counts = {d: sum(part.count(d) for part in outside_quotes) for d in _DELIMITERS}
    best = max(_DELIMITERS, key=lambda d: counts[d])  # ties go to the earlier, i.e. ","
    return (best if counts[best] else ","), 0


def _filled(cells: list[str]) -> bool:
    return any(cell.strip() for cell in cells)


def _unguard(value: str) -> str:
    """Undo the export's formula guard: `'=x` read back is `=x`, `a;'=x` is `a;=x`."""
    if "'" not in value:  # every guard is a `'`: most cells need no regex at all
        return value
    return _GUARDED.sub(lambda found: found.group(1) or found.group(2) or "", value)


def guard(value: str) -> str:
    """Keep a spreadsheet from running any part of a value as a formula (CSV injection).

    A cell is written on one line: a line break is where readers disagree about
    where a row ends (one that ignores quotes starts a new row inside the cell,
    and then takes the cell's closing quote for an opening one), and no stored
    value holds one (names pass `clean_name`), so any that did is a space. Then
    every field start (see the comment on `_FORMULA`) before a formula character gets
    a `'`: the one prefix spreadsheets show as text. Normal names and addresses
    are left as they are, and `_unguard(guard(v)) == v` for every one-line string.
    """
    one_line = _LINE_BREAK.sub(" ", value)
    return _UNGUARDED.sub(lambda found: (found.group(1) or found.group(2) or "") + "'", one_line)


def write_csv(out: TextIO, header: Sequence[str], rows: Iterable[Sequence[str]]) -> int:
    """Write RFC 4180 CSV (`,`, quotes where needed, CRLF) with every cell guarded.

    The one writer of CSV for people's spreadsheets (the CLI's and the editor's
    export): no cell is written without the guard. Returns the rows written, not
    counting the header. Open `out` with newline="" so CRLF is written as it is.
    """
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([guard(cell) for cell in header])
    written = 0
    for row in rows:
        writer.writerow([guard(cell) for cell in row])
        written += 1
    return written
