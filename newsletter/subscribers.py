"""The subscriber list: validating addresses, CSV import/export, and status changes.

Parsing (`parse_csv`, `validate_email`, `clean_name`) is pure over its input;
everything that touches the database goes through `newsletter.store.subscribers`.

Rules the operator can rely on:

* An import adds new addresses as active, updates names, turns pending into
  active (importing asserts consent) and NEVER re-activates an address that
  unsubscribed or bounced. A `status` column can only suppress an address.
* Only `add_subscriber`, an explicit per-address command, re-activates an
  unsubscribed or bounced address, and it logs a WARNING saying so.
* `remove_subscriber` marks an address unsubscribed and keeps the row, so no
  later import can add it back; `delete=True` erases it and its delivery rows
  (erasure on request), after which an import could add it again.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple, TextIO

from email_validator import EmailNotValidError
from email_validator import validate_email as _validate
from sqlalchemy import Engine

from newsletter.errors import InputError, StoreError
from newsletter.hygiene import has_unsafe, one_line
from newsletter.input_files import open_regular
from newsletter.models import Subscriber, SubscriberStatus
from newsletter.store import subscribers as store
from newsletter.store.subscribers import ImportCounts, ImportRow

log = logging.getLogger(__name__)

MAX_CSV_BYTES = 256 * 1024 * 1024  # ~5 million addresses; a bigger file is split first
BATCH_SIZE = 1000  # rows per import transaction: big enough for speed, small enough to lose little
EXPORT_COLUMNS = ("email", "name", "status", "source", "created_at")

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

# Leading characters a spreadsheet would run as a formula (OWASP CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_DELIMITERS = (",", ";", "\t")


class CsvRow(NamedTuple):
    """One valid address from a CSV file, with the line it starts on."""

    email: str
    name: str
    status: SubscriberStatus | None
    line: int


@dataclass(frozen=True)
class CsvParseResult:
    """Everything read from a CSV file: the unique valid rows, the invalid ones and why."""

    rows: tuple[CsvRow, ...]
    problems: tuple[tuple[int, str], ...]  # (line as an editor shows it, reason)
    warnings: tuple[str, ...]
    encoding: str
    delimiter: str


@dataclass
class ImportReport:
    """What an import did, for the operator; the counts are exclusive."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    kept_unsubscribed: int = 0
    kept_bounced: int = 0
    suppressed: int = 0  # the file marked them unsubscribed/bounced; stored so
    invalid: list[tuple[int, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the CLI, e.g. `added 3, updated 1, kept unsubscribed 2, invalid 1`."""
        parts = [
            ("added", self.added),
            ("updated", self.updated),
            ("unchanged", self.unchanged),
            ("kept unsubscribed", self.kept_unsubscribed),
            ("kept bounced", self.kept_bounced),
            ("suppressed by the file's status", self.suppressed),
            ("invalid", len(self.invalid)),
        ]
        return ", ".join(f"{label} {number}" for label, number in parts if number) or "nothing"


class ImportInterruptedError(StoreError):
    """The database failed mid-import; `report` counts the batches that were committed."""

    def __init__(self, message: str, *, report: ImportReport, rows_saved: int, **kwargs: str):
        super().__init__(message, **kwargs)
        self.report = report
        self.rows_saved = rows_saved


# Validation and cleaning (pure)


def validate_email(address: str) -> str:
    """The normalized form of an address (domain lower-cased), or InputError saying why not.

    Syntax only: no DNS lookups, so imports are fast and work offline; bad
    mailboxes are caught later as bounces. A non-ASCII domain is kept in its
    ASCII (IDNA) form, which every relay accepts; a non-ASCII mailbox name
    needs SMTPUTF8 end to end, which few relays offer, so it is refused here
    rather than failing at send time.
    """
    try:
        result = _validate(address.strip(), check_deliverability=False, allow_smtputf8=False)
        return result.ascii_email or result.normalized
    except EmailNotValidError as exc:
        raise InputError(
            f"{address.strip()!r} is not a valid email address: {exc}",
            hint="check for typos, spaces or a missing part after the @",
        ) from None


def clean_name(raw: str) -> str:
    """A name safe for greetings and headers: control characters gone, spaces collapsed."""
    return one_line(raw)[:200]


# CSV import


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
                problems.append((line, f"not a readable CSV row: {problem}"))
                continue
            if not _filled(cells):
                continue  # blank lines, e.g. at the end of the file
            try:
                row, raw_name = columns.read(cells, line)
            except Exception as exc:  # whatever a row holds, it is one problem, not the file's
                log.error("reading %s:%d failed unexpectedly", path, line, exc_info=exc)
                row, raw_name = f"could not be read ({type(exc).__name__}: {exc})", ""
            if isinstance(row, str):
                problems.append((line, one_line(row)[:300]))
                continue
            if _has_control(raw_name):
                cleaned_names += 1
            key = store.email_key(row.email)
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
    return CsvParseResult(tuple(rows), tuple(problems), tuple(warnings), encoding, delimiter)


def import_csv(
    engine: Engine, path: Path, *, source: str | None = None, batch_size: int = BATCH_SIZE
) -> ImportReport:
    """Import a CSV file: valid rows are saved even when others are invalid.

    Each batch is one transaction. If the database fails mid-way, the batches
    before are kept and ImportInterruptedError says how many rows were saved;
    running the same import again is safe and finishes the job.
    """
    parsed = parse_csv(path)
    report = ImportReport(invalid=list(parsed.problems), warnings=list(parsed.warnings))
    source = source or f"import:{path.name}"
    counts = ImportCounts()
    saved = 0
    for start in range(0, len(parsed.rows), batch_size):
        batch = [
            ImportRow(r.email, r.name, r.status) for r in parsed.rows[start : start + batch_size]
        ]
        try:
            counts += store.upsert_imported(engine, batch, source)
        except StoreError as exc:
            _fill(report, counts)
            first_line = parsed.rows[start].line
            raise ImportInterruptedError(
                f"import stopped at the batch starting on line {first_line}: {exc.message}. "
                f"{saved} of {len(parsed.rows)} addresses were saved ({report.summary()})",
                report=report,
                rows_saved=saved,
                where=str(path),
                hint="fix the database problem and run the same import again; it is safe to repeat",
            ) from exc
        saved += len(batch)
    _fill(report, counts)
    log.info("imported %s: %s", path, report.summary())
    return report


# CSV export


def export_csv(engine: Engine, out: TextIO, *, status: SubscriberStatus | None = None) -> int:
    """Write the list (or one status of it) as RFC 4180 CSV; the number of rows written.

    Values a spreadsheet would run as a formula are prefixed with `'`
    (and `parse_csv` strips that prefix again, so export → import round-trips).
    Open `out` with newline="" so the CRLF line ends are written as they are.
    """
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(EXPORT_COLUMNS)
    written = 0
    for person in store.iter_subscribers(engine, status):
        writer.writerow(
            (
                _guard(person.email),
                _guard(person.name),
                person.status.value,
                _guard(person.source),
                _timestamp(person.created_at),
            )
        )
        written += 1
    return written


# Status changes


def add_subscriber(engine: Engine, email: str, name: str = "", source: str = "cli") -> Subscriber:
    """Add one address as active: the operator's explicit, per-address consent.

    A new address is inserted; an existing one gets the name (when given) and
    becomes active. This is the ONLY path that re-activates an unsubscribed or
    bounced address, and it logs a WARNING naming the address and what it was.
    """
    address = validate_email(email)
    name = clean_name(name)
    existing = store.get_subscriber(engine, address)
    if existing is None:
        created = store.insert_subscriber(engine, address, name, source=source)
        if created is not None:
            log.info("added %s", address)
            return created
        existing = store.get_subscriber(engine, address)  # added meanwhile by someone else
        if existing is None:
            raise StoreError(f"could not add {address}", hint="try again")
    if name:
        store.set_name(engine, address, name)
    if existing.status is not SubscriberStatus.ACTIVE:
        store.set_status(engine, address, SubscriberStatus.ACTIVE)
        if existing.status in store.SUPPRESSED:
            log.warning(
                "re-activated %s, which was %s (last changed %s), because it was added explicitly",
                existing.email,
                existing.status.value,
                _timestamp(existing.updated_at),
            )
        else:
            log.info("confirmed %s (was %s)", existing.email, existing.status.value)
    return store.get_subscriber(engine, address) or existing


def unsubscribe(engine: Engine, email: str) -> bool:
    """Mark an address unsubscribed; True if this call changed it (safe to repeat)."""
    changed = store.set_status(engine, email, SubscriberStatus.UNSUBSCRIBED)
    if changed:
        log.info("unsubscribed %s", email.strip())
    return changed


def remove_subscriber(engine: Engine, email: str, *, delete: bool = False) -> bool:
    """Take an address off the list; True if something changed, InputError if it is unknown.

    By default it is marked unsubscribed and the row kept, so no import can add
    it back. `delete=True` erases the row and its delivery rows (the ledger
    points at subscribers by foreign key) for erasure requests; the address is
    then forgotten entirely and a later import could add it again.
    """
    if store.get_subscriber(engine, email) is None:
        raise InputError(
            f"{email.strip()} is not on the list",
            hint="check the spelling; `newsletter subscribers list` shows who is on it",
        )
    if delete:
        erased = store.delete_subscriber(engine, email)
        if erased:
            log.warning("erased %s and its delivery records", email.strip())
        return erased
    return unsubscribe(engine, email)


# Helpers


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
        self.current = first

    def __iter__(self) -> Iterator[tuple[list[str], int, str]]:
        return self

    def __next__(self) -> tuple[list[str], int, str]:
        self.current = self._offset + self._ended + 1
        try:
            cells, problem = next(self._reader), ""
        except csv.Error as exc:
            cells, problem = [], str(exc)
        self._ended = self._reader.line_num
        return cells, self.current, problem


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


def _has_control(raw: str) -> bool:
    return has_unsafe(raw)


def _unguard(value: str) -> str:
    """Undo the export's formula guard: `'=x` read back is `=x`."""
    if len(value) > 1 and value[0] == "'" and value[1].startswith(_FORMULA_START):
        return value[1:]
    return value


def _guard(value: str) -> str:
    """Keep a spreadsheet from running a value as a formula (CSV injection)."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def _timestamp(moment: dt.datetime | None) -> str:
    return moment.isoformat(timespec="seconds") + "Z" if moment else ""


def _fill(report: ImportReport, counts: ImportCounts) -> None:
    report.added = counts.added
    report.updated = counts.updated
    report.unchanged = counts.unchanged
    report.kept_unsubscribed = counts.kept_unsubscribed
    report.kept_bounced = counts.kept_bounced
    report.suppressed = counts.suppressed
