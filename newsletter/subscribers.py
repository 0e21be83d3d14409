"""The subscriber list: CSV import and export, and status changes.

Reading a file is `subscriber_csv.parse_csv` and checking an address
`addresses.validate_email`, both pure; everything that touches the database
goes through `newsletter.store.subscribers`.

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

import datetime as dt
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from sqlalchemy import Engine

from newsletter.addresses import clean_name, validate_email
from newsletter.errors import InputError, StoreError
from newsletter.models import Subscriber, SubscriberStatus
from newsletter.store import subscribers as store
from newsletter.store.imports import ImportCounts, ImportRow, upsert_imported
from newsletter.subscriber_csv import parse_csv, write_csv

log = logging.getLogger(__name__)

BATCH_SIZE = 5000  # rows per import transaction: 1000 spent a fifth of the writing in commits
EXPORT_COLUMNS = ("email", "name", "status", "source", "created_at")


@dataclass
class ImportReport:
    """What an import did, for the operator: each row of the file in exactly one count."""

    rows: int = 0  # the file's data rows, as the reader counted them (header and blanks aside)
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    kept_unsubscribed: int = 0
    kept_bounced: int = 0
    suppressed: int = 0  # the file marked them unsubscribed/bounced; stored so
    repeated: int = 0  # the address again: merged into its first row
    invalid: list[tuple[int, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def counts(self) -> list[tuple[str, int]]:
        """Every count the rows fall into, as (label, number); they add up to `rows` once
        the import finished."""
        return [
            ("added", self.added),
            ("updated", self.updated),
            ("unchanged", self.unchanged),
            ("kept unsubscribed", self.kept_unsubscribed),
            ("kept bounced", self.kept_bounced),
            ("unsubscribed or bounced by the file's status", self.suppressed),
            ("repeated", self.repeated),
            ("invalid", len(self.invalid)),
        ]

    def summary(self) -> str:
        """One line for the CLI: `7 rows: 3 added, 1 updated, 2 kept unsubscribed, 1 invalid`."""
        counted = ", ".join(f"{number} {label}" for label, number in self.counts() if number)
        return f"{self.rows} rows: {counted}" if counted else f"{self.rows} rows"


class ImportInterruptedError(StoreError):
    """The database failed mid-import; `report` counts the batches that were committed."""

    def __init__(self, message: str, *, report: ImportReport, rows_saved: int, **kwargs: str):
        super().__init__(message, **kwargs)
        self.report = report
        self.rows_saved = rows_saved


# CSV import


def import_csv(
    engine: Engine, path: Path, *, source: str | None = None, batch_size: int = BATCH_SIZE
) -> ImportReport:
    """Import a CSV file: valid rows are saved even when others are invalid.

    Each batch is one transaction. If the database fails mid-way, the batches
    before are kept and ImportInterruptedError says how many rows were saved;
    running the same import again is safe and finishes the job.
    """
    parsed = parse_csv(path)
    report = ImportReport(
        rows=parsed.records,
        repeated=parsed.repeated,
        invalid=list(parsed.problems),
        warnings=list(parsed.warnings),
    )
    source = source or f"import:{path.name}"
    counts = ImportCounts()
    saved = 0
    for start in range(0, len(parsed.rows), batch_size):
        batch = [
            ImportRow(r.email, r.name, r.status) for r in parsed.rows[start : start + batch_size]
        ]
        try:
            counts += upsert_imported(engine, batch, source)
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

    Written by `subscriber_csv.write_csv`, which guards every cell against being
    run as a formula (and `parse_csv` undoes the guard, so export → import round-trips).
    Open `out` with newline="" so the CRLF line ends are written as they are.
    """
    rows = (
        (
            person.email,
            person.name,
            person.status.value,
            person.source,
            _timestamp(person.created_at),
        )
        for person in store.iter_subscribers(engine, status)
    )
    return write_csv(out, EXPORT_COLUMNS, rows)


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


def _timestamp(moment: dt.datetime | None) -> str:
    return moment.isoformat(timespec="seconds") + "Z" if moment else ""


def _fill(report: ImportReport, counts: ImportCounts) -> None:
    report.added = counts.added
    report.updated = counts.updated
    report.unchanged = counts.unchanged
    report.kept_unsubscribed = counts.kept_unsubscribed
    report.kept_bounced = counts.kept_bounced
    report.suppressed = counts.suppressed
