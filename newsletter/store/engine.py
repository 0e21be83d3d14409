"""Opening the database: one engine per process, schema created on first use.

SQLite runs in WAL mode with a busy timeout so the scheduler, the CLI and the
web app can share one file; `synchronous=NORMAL` in WAL still survives a
process crash (only an OS crash can lose the last commits).
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError

from newsletter.errors import StoreError
from newsletter.store.schema import metadata


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
    if is_sqlite and parsed.database and parsed.database != ":memory:":
        _prepare_sqlite_path(Path(parsed.database))
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    # psycopg prepares repeated statements, and PostgreSQL may then keep a plan made
    # while a table was small (a full scan per lookup at 100k rows): never prepare.
    connect_args = {"prepare_threshold": None} if parsed.get_backend_name() == "postgresql" else {}
    engine = create_engine(
        parsed, future=True, pool_pre_ping=not is_sqlite, connect_args=connect_args
    )
    if is_sqlite:
        event.listen(engine, "connect", _sqlite_pragmas)
    if create:
        try:
            metadata.create_all(engine)
            _add_missing_columns(engine)
        except OperationalError as exc:
            raise StoreError(
                f"cannot open the database: {exc.orig}",
                where=str(parsed.render_as_string(hide_password=True)),
                hint="check the path or server is reachable and writable",
            ) from None
    return engine


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
            except DBAPIError:
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


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # noqa: ANN001 (DB-API object)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
