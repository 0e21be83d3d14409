"""Opening the database: one engine per process, schema created on first use.

SQLite runs in WAL mode with a busy timeout so the scheduler, the CLI and the
web app can share one file; `synchronous=NORMAL` in WAL still survives a
process crash (only an OS crash can lose the last commits).

How long a statement waits for another process's lock: SQLite's busy timeout,
BUSY_TIMEOUT_SECONDS (30 s) for every statement, so a command or a web page
rides out a neighbour's commit. A send waits less per try (`lock_wait`, set by
`store/ledger.py` to 5 s) and retries with backoff for up to
NEWSLETTER_STORE_RETRY_WINDOW (120 s by default) instead, so it notices a stop
between tries. Every driver exception leaves this engine as a StoreError
(`store/errors.py`, through the `handle_error` hook below).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from newsletter.errors import StoreError
from newsletter.hygiene import one_line
from newsletter.store.errors import translate
from newsletter.store.schema import metadata

BUSY_TIMEOUT_SECONDS = 30.0
_lock_wait: ContextVar[float] = ContextVar("lock_wait", default=BUSY_TIMEOUT_SECONDS)


def utcnow() -> dt.datetime:
    """Now as naive UTC, the form every timestamp column holds."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def open_engine(url: str, *, create: bool = True) -> Engine:
    """Connect to `url` and make sure the schema exists.

    Raises StoreError naming the path or URL when the database cannot be
    opened or created, so a bad DATABASE_URL is a one-line message.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(
            f"not a database URL: {url!r}",
            where="NEWSLETTER_DATABASE_URL",
            hint="use sqlite:///path/to/file.db or postgresql+psycopg://user@host/db",
        ) from None
    is_sqlite = parsed.get_backend_name() == "sqlite"
    where = parsed.render_as_string(hide_password=True)
    if is_sqlite and parsed.database and parsed.database != ":memory:":
        if parsed.query.get("uri") != "true":  # a file: URI names its own path and mode
            _prepare_sqlite_path(Path(parsed.database))
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    # psycopg prepares repeated statements, and PostgreSQL may then keep a plan made
    # while a table was small (a full scan per lookup at 100k rows): never prepare.
    # A server that does not answer at all fails a connection after 10 s, not never.
    connect_args = (
        {"prepare_threshold": None, "connect_timeout": 10}
        if parsed.get_backend_name() == "postgresql"
        else {}
    )
    try:
        engine = create_engine(
            parsed, future=True, pool_pre_ping=not is_sqlite, connect_args=connect_args
        )
    except (NoSuchModuleError, ImportError) as exc:
        raise StoreError(
            f"no driver for this kind of database ({one_line(str(exc))})",
            where=where,
            hint="use sqlite:///path/to/file.db, or postgresql+psycopg://user@host/db with "
            "psycopg installed (the project's postgres extra)",
        ) from None
    event.listen(engine, "handle_error", _translate_error, retval=True)
    if is_sqlite:
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "checkout", _sqlite_lock_wait)
    if create:
        metadata.create_all(engine)
        _add_missing_columns(engine)
    return engine


def _translate_error(context: ExceptionContext) -> BaseException | None:
    """The engine's one exit for driver errors: each becomes a StoreError (store/errors.py)."""
    if context.is_pre_ping or context.engine is None:  # pre-ping: SQLAlchemy reconnects itself
        return None
    return translate(context.original_exception, database_name(context.engine))


def database_name(engine: Engine) -> str:
    """The database as errors name it: the URL, without its password."""
    return engine.url.render_as_string(hide_password=True)


@contextmanager
def lock_wait(seconds: float) -> Iterator[None]:
    """Inside this block, and in threads started from it (`asyncio.to_thread` copies the
    context), a SQLite statement waits at most `seconds` for another process's lock."""
    token = _lock_wait.set(seconds)
    try:
        yield
    finally:
        _lock_wait.reset(token)


def _add_missing_columns(engine: Engine) -> None:
    """Additive migrations: add nullable columns the schema gained since the database was made.

    `create_all` creates missing tables but never alters existing ones, so a
    database from an earlier version would lack e.g. the sign-up consent
    columns. Only nullable columns are added (no data to invent); anything
    else needs a real migration. Two processes racing to add the same column
    is harmless: the loser's error is ignored once the column is there.
    """
    inspector = inspect(engine)
    for table in metadata.sorted_tables:
        present = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in present or not column.nullable:
                continue
            kind = column.type.compile(dialect=engine.dialect)
            try:
                with engine.begin() as conn:
                    conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}"))
            except StoreError:
                present = {c["name"] for c in inspect(engine).get_columns(table.name)}
                if column.name not in present:
                    raise


def _prepare_sqlite_path(path: Path) -> None:
    directory = path.parent if str(path.parent) else Path(".")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"cannot create the database directory: {exc.strerror}",
            where=str(directory),
            hint="choose a writable path in NEWSLETTER_DATABASE_URL",
        ) from None
    target = path if path.exists() else directory
    if not os.access(target, os.W_OK):
        raise StoreError(
            "the database is not writable",
            where=str(target),
            hint="fix its permissions or choose another path in NEWSLETTER_DATABASE_URL",
        )


def _sqlite_pragmas(dbapi_connection, record) -> None:  # noqa: ANN001 (DB-API objects)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_SECONDS * 1000)}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
    record.info["busy_timeout"] = BUSY_TIMEOUT_SECONDS


def _sqlite_lock_wait(dbapi_connection, record, _proxy) -> None:  # noqa: ANN001 (DB-API objects)
    """At checkout: the busy timeout `lock_wait` asks for (a PRAGMA only when it changes)."""
    wanted = _lock_wait.get()
    if record.info.get("busy_timeout") != wanted:
        dbapi_connection.execute(f"PRAGMA busy_timeout={int(wanted * 1000)}")
        record.info["busy_timeout"] = wanted
