"""Databases as earlier versions of the newsletter made them, for the migration tests.

The tables come from frozen SQL in tests/data/schema/ (what `metadata.create_all`
emitted at that commit, per dialect), never from the current code: a test that
built its "old" database from today's model would prove nothing once the model
changes. Rows go in through tables reflected from that database, so each value
is stored the way that database's column types store it.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import Engine, MetaData, create_engine, inspect, select

SCHEMAS = Path(__file__).parent / "data" / "schema"
MAIN = "main"  # the schema on main when migrations began (revision 0001)
OLDEST = "oldest"  # the first schema: no locks, no first_attempt_at, no consent, old index

T0 = dt.datetime(2026, 11, 24, 6, 30, 0, 123456)
T1 = dt.datetime(2026, 11, 25, 6, 30, 1)

# Rows for every table, in the columns every old schema has; ids follow insertion order.
ROWS: dict[str, list[dict]] = {
    "subscribers": [
        {
            "email": "Ann@Example.com",
            "email_key": "ann@example.com",
            "name": "Ann Ö'Brien",
            "status": "active",
            "source": "import:list.csv",
            "bounce_count": 0,
            "created_at": T0,
            "updated_at": T1,
            "confirmed_at": T0,
            "unsubscribed_at": None,
        },
        {
            "email": "bob@example.org",
            "email_key": "bob@example.org",
            "name": "",
            "status": "unsubscribed",
            "source": "web",
            "bounce_count": 2,
            "created_at": T0,
            "updated_at": T1,
            "confirmed_at": None,
            "unsubscribed_at": T1,
        },
    ],
    "editions": [
        {
            "date": dt.date(2026, 11, 25),
            "subject": "The Daily Brief — 25 November",
            "preheader": "Three stories",
            "html": "<html><body><p>Hello {{slot:name}} ☕</p></body></html>" * 50,
            "text": "Hello {{slot:name}}\n\nRead more",
            "slot_token": "a" * 64,
            "article_count": 3,
            "status": "sent",
            "created_at": T0,
            "sent_at": T1,
        }
    ],
    "deliveries": [
        {
            "edition_id": 1,
            "subscriber_id": 1,
            "email": "Ann@Example.com",
            "status": "sent",
            "attempts": 1,
            "last_reply": "250 2.0.0 Ok: queued as 4XyZ",
            "claimed_by": None,
            "lease_until": None,
            "next_attempt_at": None,
            "updated_at": T1,
        },
        {
            "edition_id": 1,
            "subscriber_id": 2,
            "email": "bob@example.org",
            "status": "queued",
            "attempts": 0,
            "last_reply": "",
            "claimed_by": "host:123:abc",
            "lease_until": T1,
            "next_attempt_at": T0,
            "updated_at": T0,
        },
    ],
    "test_sends": [
        {
            "edition_id": 1,
            "email": "editor@example.org",
            "status": "sent",
            "last_reply": "250 ok",
            "created_at": T0,
        }
    ],
}
LOCK_ROW = {"name": "scheduler", "holder": "host:99:nonce", "acquired_at": T0, "heartbeat_at": T1}


def plain_engine(url: str) -> Engine:
    """An engine without the newsletter's checks (which would refuse these databases)."""
    return create_engine(url.replace("postgresql://", "postgresql+psycopg://"))


def make_old_database(url: str, schema: str) -> None:
    """Run tests/data/schema/{schema}-{dialect}.sql on the (empty) database at `url`."""
    engine = plain_engine(url)
    try:
        ddl = (SCHEMAS / f"{schema}-{engine.dialect.name}.sql").read_text(encoding="utf-8")
        statements = [s.strip() for s in ddl.split(";") if s.strip()]
        with engine.begin() as conn:
            for statement in statements:
                body = "\n".join(
                    line for line in statement.splitlines() if not line.startswith("--")
                )
                if body.strip():
                    conn.exec_driver_sql(body)
    finally:
        engine.dispose()


def fill(url: str) -> dict[str, list[dict]]:
    """Put ROWS (and a lock, where the table exists) into every table; what went in."""
    engine = plain_engine(url)
    try:
        tables = _reflect(engine)
        written = {name: rows for name, rows in ROWS.items()}
        if "locks" in tables:
            written["locks"] = [LOCK_ROW]
        with engine.begin() as conn:
            for name, rows in written.items():
                conn.execute(tables[name].insert(), rows)
        return written
    finally:
        engine.dispose()


def read(url: str, columns: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """Every row of the tables in `columns`, in id order, limited to the columns given there."""
    engine = plain_engine(url)
    try:
        tables = _reflect(engine)
        found = {}
        with engine.connect() as conn:
            for name, rows in columns.items():
                table = tables[name]
                order = table.c.id if "id" in table.c else table.c.name
                wanted = [table.c[key] for key in rows[0]]
                found[name] = [
                    dict(row._mapping) for row in conn.execute(select(*wanted).order_by(order))
                ]
        return found
    finally:
        engine.dispose()


def shape(url: str) -> dict[str, tuple]:
    """The database's tables as reflection sees them (columns in order with type and
    nullability, keys, unique constraints, indexes), without Alembic's version table."""
    engine = plain_engine(url)
    try:
        inspector = inspect(engine)
        result = {}
        for table in sorted(inspector.get_table_names()):
            if table == "alembic_version":
                continue
            result[table] = (
                [(c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)],
                inspector.get_pk_constraint(table)["constrained_columns"],
                sorted(
                    (
                        tuple(fk["constrained_columns"]),
                        fk["referred_table"],
                        tuple(fk["referred_columns"]),
                    )
                    for fk in inspector.get_foreign_keys(table)
                ),
                sorted(
                    (u["name"] or "", tuple(u["column_names"]))
                    for u in inspector.get_unique_constraints(table)
                ),
                sorted(
                    (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                    for i in inspector.get_indexes(table)
                ),
            )
        return result
    finally:
        engine.dispose()


def _reflect(engine: Engine) -> dict:
    metadata = MetaData()
    metadata.reflect(engine)
    return metadata.tables
