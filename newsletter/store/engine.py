"""Opening the database: one engine per process, on a database `newsletter init` made.

Only `init` creates a database (`store/migrate.py`): everywhere else a missing
SQLite file, a folder that is not there, a database without our tables or one
whose schema is behind this version is one line naming it and the fix, and
nothing is created. A mistyped path must not become a fresh empty database the
next send happily reports "0 subscribers" from. An in-memory SQLite database
(`sqlite://`, `:memory:`, `mode=memory`) is refused outright: whatever was
imported into it would be gone when the command ends.

SQLite runs in WAL mode with a busy timeout so the scheduler, the CLI and the
web app can share one file; `synchronous=NORMAL` in WAL still survives a
process crash (only an OS crash can lose the last commits).

How long a statement waits for another process's lock: SQLite's busy timeout
(PostgreSQL's `lock_timeout`, the same bound), BUSY_TIMEOUT_SECONDS (30 s) for
every statement, so a command or a web page
rides out a neighbour's commit. A send waits less per try (`lock_wait`, set by
`store/ledger.py` to 5 s) and retries with backoff for up to
NEWSLETTER_STORE_RETRY_WINDOW (120 s by default) instead, so it notices a stop
between tries. Every driver exception leaves this engine as a StoreError
(`store/errors.py`, through the `handle_error` hook below).
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from urllib.parse import unquote, urlsplit

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from newsletter.errors import StoreError
from newsletter.hygiene import one_line
from newsletter.store.errors import translate
from newsletter.store.schema import REVISION

BUSY_TIMEOUT_SECONDS = 30.0
_lock_wait: ContextVar[float] = ContextVar("lock_wait", default=BUSY_TIMEOUT_SECONDS)

VERSION_TABLE = "alembic_version"  # where Alembic keeps the revision a database is at
INIT_HINT = "run `newsletter init` to create it, or correct NEWSLETTER_DATABASE_URL"


def utcnow() -> dt.datetime:
    """Now as naive UTC, the form every timestamp column holds."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def open_engine(url: str) -> Engine:
    """Connect to the existing database at `url`, which must be at this version's schema.

    Raises StoreError naming the path or URL, and what to do, when the URL is
    unusable, the database is missing, empty, not a database, or at another
    schema revision. Nothing is created here, and nothing is upgraded: an
    upgrade changes precious data, so it happens only when the operator runs
    `newsletter init` (after a backup, and with no other process mid-send).
    """
    engine = connect(url, creating=False)
    try:
        require_current(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


def connect(url: str, *, creating: bool) -> Engine:
    """The engine for `url`, with our SQLite settings and error translation, unchecked.

    With `creating` (only `store/migrate.py`, for `newsletter init`), a SQLite
    file and its folder may be made; otherwise they must already exist.
    """
    parsed = parse_url(url)
    where = parsed.render_as_string(hide_password=True)
    is_sqlite = parsed.get_backend_name() == "sqlite"
    if is_sqlite:
        path = sqlite_path(parsed)
        if creating:
            _prepare_sqlite_file(path)
        else:  # a `mode=ro` URI asks for read-only on purpose
            _require_sqlite_file(path, writable=parsed.query.get("mode") != "ro")
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
    elif parsed.get_backend_name() == "postgresql":
        event.listen(engine, "checkout", _postgresql_lock_wait)
    return engine


def parse_url(url: str) -> URL:
    """`url` parsed, or StoreError when it is not one."""
    try:
        return make_url(url)
    except ArgumentError:
        raise StoreError(
            f"not a database URL: {url!r}",
            where="NEWSLETTER_DATABASE_URL",
            hint="use sqlite:///path/to/file.db or postgresql+psycopg://user@host/db",
        ) from None


def sqlite_path(url: URL) -> Path:
    """The file a SQLite URL names, absolute; StoreError for an in-memory database.

    `sqlite://`, `sqlite:///:memory:`, `file::memory:` and `mode=memory` (or the
    memdb VFS) keep nothing once the command ends; an empty `file:` URI is a
    temporary file SQLite deletes on close. pysqlite reads `database` as a URI
    only with `uri=true`, as here.
    """
    name = url.database or ""
    if url.query.get("uri") == "true" and name.startswith("file:"):
        name = unquote(urlsplit(name).path)
    memory = (
        name in ("", ":memory:")
        or url.query.get("mode") == "memory"
        or url.query.get("vfs") == "memdb"
    )
    if memory:
        raise StoreError(
            "an in-memory SQLite database keeps nothing once the command ends",
            where=url.render_as_string(hide_password=True),
            hint="give NEWSLETTER_DATABASE_URL a file: sqlite:///var/newsletter.db",
        )
    return Path(os.path.abspath(name))


def _require_sqlite_file(path: Path, *, writable: bool) -> None:
    if path.exists():
        if writable:
            _require_writable(path)
        return
    folder = path.parent
    missing = "" if folder.is_dir() else f" (nor does its folder {folder})"
    raise StoreError(f"the database does not exist{missing}", where=str(path), hint=INIT_HINT)


def _prepare_sqlite_file(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"cannot create the database directory: {exc.strerror}",
            where=str(path.parent),
            hint="choose a writable path in NEWSLETTER_DATABASE_URL",
        ) from None
    _require_writable(path if path.exists() else path.parent)


def _require_writable(target: Path) -> None:
    if not os.access(target, os.W_OK):
        raise StoreError(
            "the database is not writable",
            where=str(target),
            hint="fix its permissions or choose another path in NEWSLETTER_DATABASE_URL",
        )


def current_revision(connectable: Engine | Connection) -> str | None:
    """The schema revision the database is at; None when it has none (empty, or made
    before schema versions: `has_newsletter_tables` tells which)."""
    with _connection(connectable) as conn:
        if not inspect(conn).has_table(VERSION_TABLE):
            return None
        found = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    return ",".join(sorted(found)) or None


def has_newsletter_tables(connectable: Engine | Connection) -> bool:
    """Whether the database holds the newsletter's tables (with or without a revision)."""
    with _connection(connectable) as conn:
        return inspect(conn).has_table("subscribers")


def require_current(engine: Engine) -> str:
    """The database's revision, when it is the one this version needs (`schema.REVISION`);
    else StoreError saying where it is and how to get it there."""
    where = database_name(engine)
    revision = current_revision(engine)
    if revision == REVISION:
        return revision
    if revision is None and not has_newsletter_tables(engine):
        raise StoreError("the database has no tables yet", where=where, hint=INIT_HINT)
    shown = revision or "none (made before schema versions)"
    raise StoreError(
        f"database schema is at {shown}, this version needs {REVISION}",
        where=where,
        hint="back it up, then run `newsletter init` to upgrade it; if a newer newsletter "
        "made it, run that version instead",
    )


@contextmanager
def _connection(connectable: Engine | Connection) -> Iterator[Connection]:
    if isinstance(connectable, Connection):
        yield connectable
    else:
        with connectable.connect() as conn:
            yield conn


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
    context), a statement waits at most `seconds` for another process's lock."""
    token = _lock_wait.set(seconds)
    try:
        yield
    finally:
        _lock_wait.reset(token)


def _sqlite_pragmas(dbapi_connection, record) -> None:  # noqa: ANN001 (DB-API objects)
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_SECONDS * 1000)}")
    _switch_to_wal(cursor, deadline=time.monotonic() + BUSY_TIMEOUT_SECONDS)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
    record.info["busy_timeout"] = BUSY_TIMEOUT_SECONDS


def _switch_to_wal(cursor, *, deadline: float) -> None:  # noqa: ANN001 (a DB-API cursor)
    """`PRAGMA journal_mode=WAL`, waiting (up to `deadline`) for a lock another process holds.

    SQLite answers "database is locked" at once, without its busy handler, when a
    new database's first writer (a racing `init`) holds the lock the switch needs.
    """
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.02)


def _sqlite_lock_wait(dbapi_connection, record, _proxy) -> None:  # noqa: ANN001 (DB-API objects)
    """At checkout: the busy timeout `lock_wait` asks for (a PRAGMA only when it changes)."""
    wanted = _lock_wait.get()
    if record.info.get("busy_timeout") != wanted:
        dbapi_connection.execute(f"PRAGMA busy_timeout={int(wanted * 1000)}")
        record.info["busy_timeout"] = wanted


def _postgresql_lock_wait(dbapi_connection, record, _proxy) -> None:  # noqa: ANN001 (DB-API objects)
    """At checkout: `lock_timeout` as `lock_wait` asks for, so no statement waits for ever.

    PostgreSQL's default is to wait on a lock without limit: a send blocked by
    another session's table lock would hold its thread past every stop (and the
    process at exit). Past the bound the statement fails with 55P03, which
    `store/errors.py` counts as busy, so the send's retries take over. Set with
    `set_config(…, false)` and committed at once, so it outlives the transaction
    (a rolled-back SET would be undone) and the cache in `record.info` stays true.
    """
    wanted = _lock_wait.get()
    if record.info.get("lock_timeout") != wanted:
        with dbapi_connection.cursor() as cursor:
            cursor.execute(
                "SELECT set_config('lock_timeout', %s, false)", (f"{int(wanted * 1000)}ms",)
            )
        dbapi_connection.commit()
        record.info["lock_timeout"] = wanted
