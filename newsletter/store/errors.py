"""Database driver exceptions, translated once into the error tree.

Every engine made by `engine.open_engine` sends each driver exception through
`translate` (a SQLAlchemy `handle_error` hook); the one raw DB-API connection
the store keeps (the per-message active check) uses `translated`. So nothing
outside `store/` ever sees a SQLAlchemy or DB-API exception, and the CLI
prints one line instead of a traceback:

    SQLite result code       PostgreSQL SQLSTATE            becomes
    BUSY, LOCKED, PROTOCOL   08xxx, 57P01-57P03, 40001,      StoreUnavailable  (a send retries it)
                             40P01, 53300, 55P03, none
    FULL                     53100                          StoreError "disk full"
    READONLY                 25006                          StoreError "read-only"
    NOTADB, CORRUPT                                         StoreError "not a database"
    CANTOPEN, PERM, IOERR    3D000, 28xxx                   StoreError
    "no such table"          42P01                          StoreError "a table is missing"
    anything else                                           StoreError, with the driver's words

An IntegrityError is left alone: a broken unique key is an answer the query
that caused it handles (two processes inserting the same row), not a failure.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from newsletter.errors import StoreError, StoreUnavailable
from newsletter.hygiene import one_line

RETRIED = "a send retries it for up to NEWSLETTER_STORE_RETRY_WINDOW seconds"


@dataclass(frozen=True)
class _Meaning:
    transient: bool
    message: str
    hint: str


_BUSY = _Meaning(
    True,
    "the database is locked by another process",
    f"{RETRIED}; if it lasts, find what holds it (a long transaction, a backup, a second program)",
)
_UNREACHABLE = _Meaning(
    True,
    "cannot reach the database server",
    f"check the server is running and NEWSLETTER_DATABASE_URL; {RETRIED}",
)
_FULL = _Meaning(
    False,
    "disk full: the database cannot grow",
    "free space on the disk that holds it, then run the command again",
)
_READ_ONLY = _Meaning(
    False,
    "the database is read-only",
    "make the file and its directory writable (SQLite writes -wal and -shm files beside it), "
    "or point NEWSLETTER_DATABASE_URL at a writable database",
)
_NOT_A_DATABASE = _Meaning(
    False,
    "not a database: the file is not SQLite, or it is damaged",
    "point NEWSLETTER_DATABASE_URL at the newsletter's database, or restore it from a backup",
)
_CANNOT_OPEN = _Meaning(
    False,
    "cannot open the database",
    "check the path or server is reachable and writable",
)
_MISSING_TABLE = _Meaning(
    False,
    "a table is missing: this database was not made by this program",
    "point NEWSLETTER_DATABASE_URL at the newsletter's database (`newsletter init` makes one)",
)
_REFUSED = _Meaning(
    False,
    "the database refused the request",
    "check NEWSLETTER_DATABASE_URL and the database user's rights; if they are right, this is "
    "a bug worth reporting with the log",
)

# SQLite's primary result codes (https://sqlite.org/rescode.html).
_SQLITE = {
    sqlite3.SQLITE_BUSY: _BUSY,
    sqlite3.SQLITE_LOCKED: _BUSY,
    sqlite3.SQLITE_PROTOCOL: _BUSY,  # a WAL lock race; the next try succeeds
    sqlite3.SQLITE_FULL: _FULL,
    sqlite3.SQLITE_READONLY: _READ_ONLY,
    sqlite3.SQLITE_NOTADB: _NOT_A_DATABASE,
    sqlite3.SQLITE_CORRUPT: _NOT_A_DATABASE,
    sqlite3.SQLITE_CANTOPEN: _CANNOT_OPEN,
    sqlite3.SQLITE_PERM: _CANNOT_OPEN,
    sqlite3.SQLITE_IOERR: _CANNOT_OPEN,
}

# PostgreSQL SQLSTATEs (https://www.postgresql.org/docs/current/errcodes-appendix.html).
_POSTGRES = {
    "57P01": _UNREACHABLE,  # admin_shutdown: the server is stopping (pg_ctl stop)
    "57P02": _UNREACHABLE,  # crash_shutdown
    "57P03": _UNREACHABLE,  # cannot_connect_now: starting up or shutting down
    "40001": _BUSY,  # serialization_failure
    "40P01": _BUSY,  # deadlock_detected
    "55P03": _BUSY,  # lock_not_available
    "53300": _UNREACHABLE,  # too_many_connections
    "53100": _FULL,  # disk_full
    "25006": _READ_ONLY,  # read_only_sql_transaction (a standby, or default_transaction_read_only)
    "42P01": _MISSING_TABLE,  # undefined_table
    "3D000": _CANNOT_OPEN,  # invalid_catalog_name: the database does not exist
}
_POSTGRES_CLASSES = {
    "08": _UNREACHABLE,  # connection_exception
    "28": _CANNOT_OPEN,  # invalid_authorization_specification: login refused
}


def translate(exc: BaseException, where: str) -> StoreError | None:
    """The StoreError (or StoreUnavailable) for a driver exception; None when `exc` is not a
    DB-API error or is an IntegrityError, which the caller handles itself."""
    meaning = _sqlite_meaning(exc) if isinstance(exc, sqlite3.Error) else _postgres_meaning(exc)
    if meaning is None:
        return None
    detail = one_line(str(exc)) or type(exc).__name__
    kind = StoreUnavailable if meaning.transient else StoreError
    return kind(f"{meaning.message} ({detail})", where=where, hint=meaning.hint)


@contextmanager
def translated(where: str) -> Iterator[None]:
    """Translate what a raw DB-API connection raises inside the block (see the module doc)."""
    try:
        yield
    except Exception as exc:
        error = translate(exc, where)
        if error is None:
            raise
        raise error from exc


def _sqlite_meaning(exc: sqlite3.Error) -> _Meaning | None:
    if isinstance(exc, sqlite3.IntegrityError):
        return None
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and (code & 0xFF) in _SQLITE:
        return _SQLITE[code & 0xFF]
    text = str(exc)
    if "database is locked" in text:
        return _BUSY
    if text.startswith("no such table"):
        return _MISSING_TABLE
    return _REFUSED


def _postgres_meaning(exc: BaseException) -> _Meaning | None:
    psycopg = sys.modules.get("psycopg")
    if psycopg is None or not isinstance(exc, psycopg.Error):
        return None
    if isinstance(exc, psycopg.IntegrityError):
        return None
    state = getattr(exc, "sqlstate", None)
    if state is None:
        # No SQLSTATE: the client library speaking (refused, closed, timed out), not the server.
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
            return _UNREACHABLE
        return _REFUSED
    return _POSTGRES.get(state) or _POSTGRES_CLASSES.get(state[:2]) or _REFUSED
