"""Database errors are translated once, in store/, into StoreError or StoreUnavailable.

As httpx tests that every httpcore exception is mapped: every DB-API exception
class of both drivers, every PostgreSQL SQLSTATE psycopg knows, and every SQLite
result code we name are checked; then the real failures are provoked on a real
SQLite file through the engine, and the CLI shows each as one line.
"""

from __future__ import annotations

import inspect
import sqlite3
import threading

import pytest
from sqlalchemy import insert, text
from sqlalchemy.exc import IntegrityError

from newsletter.errors import StoreError, StoreUnavailable
from newsletter.store.engine import connect, lock_wait, open_engine, utcnow
from newsletter.store.errors import translate
from newsletter.store.migrate import upgrade
from newsletter.store.schema import locks

SQLITE_CLASSES = [
    sqlite3.Error,
    sqlite3.InterfaceError,
    sqlite3.DatabaseError,
    sqlite3.DataError,
    sqlite3.OperationalError,
    sqlite3.InternalError,
    sqlite3.ProgrammingError,
    sqlite3.NotSupportedError,
]


@pytest.mark.parametrize("kind", SQLITE_CLASSES, ids=lambda c: c.__name__)
def test_every_sqlite_error_class_becomes_a_store_error(kind):
    error = translate(kind("something went wrong"), "sqlite:///x.db")
    assert isinstance(error, StoreError)
    assert error.where == "sqlite:///x.db" and error.hint
    assert "something went wrong" in str(error)


def test_an_integrity_error_is_left_to_the_query_that_caused_it():
    assert translate(sqlite3.IntegrityError("UNIQUE constraint failed"), "db") is None
    assert translate(ValueError("not a database error"), "db") is None


@pytest.mark.parametrize(
    ("code", "transient", "phrase"),
    [
        (sqlite3.SQLITE_BUSY, True, "locked by another process"),
        (sqlite3.SQLITE_LOCKED, True, "locked by another process"),
        (sqlite3.SQLITE_BUSY | (2 << 8), True, "locked"),  # SQLITE_BUSY_SNAPSHOT, an extended code
        (sqlite3.SQLITE_PROTOCOL, True, "locked"),
        (sqlite3.SQLITE_FULL, False, "disk full"),
        (sqlite3.SQLITE_READONLY, False, "read-only"),
        (sqlite3.SQLITE_NOTADB, False, "not a database"),
        (sqlite3.SQLITE_CORRUPT, False, "not a database"),
        (sqlite3.SQLITE_CANTOPEN, False, "cannot open the database"),
        (sqlite3.SQLITE_IOERR, False, "cannot open the database"),
        (sqlite3.SQLITE_PERM, False, "cannot open the database"),
    ],
)
def test_sqlite_result_codes_keep_their_meaning(code, transient, phrase):
    exc = sqlite3.OperationalError("driver words")
    exc.sqlite_errorcode = code
    error = translate(exc, "sqlite:///x.db")
    assert isinstance(error, StoreUnavailable) is transient
    assert phrase in error.message and "driver words" in error.message


def _psycopg_classes():
    psycopg = pytest.importorskip("psycopg")
    errors = pytest.importorskip("psycopg.errors")
    return psycopg, [
        c for c in vars(errors).values() if inspect.isclass(c) and issubclass(c, Exception)
    ]


def test_every_postgresql_error_psycopg_knows_becomes_a_store_error_or_is_left_alone():
    psycopg, classes = _psycopg_classes()
    assert len(classes) > 200  # every SQLSTATE, not a handful
    for kind in classes:
        if not issubclass(kind, psycopg.Error):
            continue
        error = translate(kind("server words"), "postgresql+psycopg://u@h/db")
        if issubclass(kind, psycopg.IntegrityError):
            assert error is None, kind
        else:
            assert isinstance(error, StoreError), kind
            assert "server words" in error.message and error.hint


@pytest.mark.parametrize(
    ("sqlstate", "transient", "phrase"),
    [
        ("57P01", True, "cannot reach"),  # admin_shutdown: pg_ctl stop
        ("57P02", True, "cannot reach"),  # crash_shutdown
        ("57P03", True, "cannot reach"),  # cannot_connect_now: starting up
        ("08006", True, "cannot reach"),  # connection_failure
        ("08001", True, "cannot reach"),  # sqlclient_unable_to_establish_sqlconnection
        ("40001", True, "locked"),  # serialization_failure
        ("40P01", True, "locked"),  # deadlock_detected
        ("55P03", True, "locked"),  # lock_not_available
        ("53300", True, "cannot reach"),  # too_many_connections
        ("53100", False, "disk full"),
        ("25006", False, "read-only"),
        ("42P01", False, "a table is missing"),
        ("3D000", False, "cannot open the database"),
        ("28P01", False, "cannot open the database"),  # invalid_password
        ("42601", False, "refused the request"),  # syntax_error
    ],
)
def test_postgresql_sqlstates_keep_their_meaning(sqlstate, transient, phrase):
    psycopg, _ = _psycopg_classes()
    error = translate(psycopg.errors.lookup(sqlstate)("server words"), "pg")
    assert isinstance(error, StoreUnavailable) is transient
    assert phrase in error.message


def test_a_client_side_postgresql_failure_is_worth_retrying():
    psycopg, _ = _psycopg_classes()
    refused = psycopg.OperationalError("connection failed: Connection refused\n\tIs it running?")
    error = translate(refused, "pg")
    assert isinstance(error, StoreUnavailable) and "\n" not in str(error)
    assert isinstance(
        translate(psycopg.InterfaceError("the connection is closed"), "pg"), StoreUnavailable
    )


# ── the real failures, through the engine ─────────────────────────────────────


def made(path) -> str:  # noqa: ANN001
    """The URL of a SQLite database at `path`, made as `newsletter init` makes one."""
    url = f"sqlite:///{path}"
    upgrade(url)
    return url


def test_a_database_locked_by_another_process_is_unavailable_for_a_while(tmp_path):
    path = tmp_path / "locked.db"
    engine = open_engine(made(path))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with lock_wait(0.2), pytest.raises(StoreUnavailable) as caught:
            with engine.begin() as conn:
                conn.execute(text("DELETE FROM locks"))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert "locked by another process" in str(caught.value)
    assert caught.value.where == f"sqlite:///{path}"
    with engine.begin() as conn:  # and once the lock is gone, it works again
        conn.execute(text("DELETE FROM locks"))


def test_a_postgresql_table_locked_by_another_session_is_unavailable_not_waited_on_for_ever(
    new_database_url, db_kind
):
    if db_kind != "postgresql":
        pytest.skip("PostgreSQL's lock_timeout (run with --db=postgresql)")
    url = new_database_url("locked")
    engine, holder = open_engine(url), open_engine(url)
    outcome: list[BaseException | None] = []

    def write() -> None:
        try:
            with lock_wait(0.2), engine.begin() as conn:
                conn.execute(text("DELETE FROM locks"))
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 (handed to the test's thread)
            outcome.append(exc)

    with holder.begin() as held:
        held.execute(text("LOCK TABLE locks IN ACCESS EXCLUSIVE MODE"))
        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        writer.join(10)  # without a lock_timeout PostgreSQL waits for ever
        assert outcome, "the write was still waiting on the lock after 10 s"
    assert isinstance(outcome[0], StoreUnavailable), outcome
    assert "locked by another process" in str(outcome[0])
    with engine.begin() as conn:  # once the lock is gone, the same pooled connection works
        conn.execute(text("DELETE FROM locks"))
    engine.dispose()
    holder.dispose()


def test_a_full_database_is_a_clear_disk_full(tmp_path):
    engine = open_engine(made(tmp_path / "full.db"))
    with pytest.raises(StoreError) as caught:
        with engine.begin() as conn:
            pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
            conn.exec_driver_sql(f"PRAGMA max_page_count={pages + 1}")  # as if the disk were full
            for n in range(2000):
                conn.execute(
                    insert(locks).values(
                        name=f"lock-{n}",
                        holder="x" * 200,
                        acquired_at=utcnow(),
                        heartbeat_at=utcnow(),
                    )
                )
    assert not isinstance(caught.value, StoreUnavailable)
    assert "disk full" in str(caught.value) and "free space" in str(caught.value)


def test_a_read_only_database_says_so(tmp_path):
    path = tmp_path / "ro.db"
    made(path)
    engine = open_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
    with pytest.raises(StoreError, match="read-only"):
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM locks"))


def test_a_file_that_is_not_a_database_says_so(tmp_path):
    path = tmp_path / "garbage.db"
    path.write_bytes(b"not SQLite at all, just some bytes\x00\x01" * 200)
    with pytest.raises(StoreError) as caught:
        open_engine(f"sqlite:///{path}")
    assert "not a database" in str(caught.value) and str(path) in str(caught.value)


def test_a_database_without_our_tables_says_a_table_is_missing(tmp_path):
    engine = connect(f"sqlite:///{tmp_path / 'empty.db'}", creating=True)  # unchecked
    with pytest.raises(StoreError, match="a table is missing") as caught:
        with engine.connect() as conn:
            conn.execute(text("SELECT count(*) FROM subscribers"))
    assert "no such table: subscribers" in str(caught.value)


def test_a_missing_driver_is_one_line(tmp_path):
    with pytest.raises(StoreError) as caught:
        open_engine("mysql://user@localhost/newsletter")
    assert "no driver" in str(caught.value) and "MySQLdb" in str(caught.value)


def test_an_integrity_error_still_reaches_the_query_that_handles_it(tmp_path):
    engine = open_engine(made(tmp_path / "dup.db"))
    row = {"name": "scheduler", "holder": "a", "acquired_at": utcnow(), "heartbeat_at": utcnow()}
    with engine.begin() as conn:
        conn.execute(insert(locks).values(**row))
    with pytest.raises(IntegrityError):
        with engine.begin() as conn:
            conn.execute(insert(locks).values(**row))
