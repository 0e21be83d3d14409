"""`newsletter doctor`'s questions to the database: are the tables there, may we write?

Nothing here changes what is stored: the write is rolled back. Driver errors
leave as StoreError through the engine's own translation (engine.py).
"""

from __future__ import annotations

from sqlalchemy import Engine, insert, inspect

from newsletter.store.engine import utcnow
from newsletter.store.schema import locks, metadata

#: The row the write check inserts and rolls back; no lock of the program has this name.
PROBE_LOCK = "newsletter-doctor-write-check"


def missing_tables(engine: Engine) -> list[str]:
    """The tables of the schema the database does not have (all of them when it is empty)."""
    present = set(inspect(engine).get_table_names())
    return [table.name for table in metadata.sorted_tables if table.name not in present]


def check_writable(engine: Engine) -> None:
    """Insert a row and roll it back: StoreError when the database refuses writes.

    A read-only file or mount, a role with only SELECT, a full disk on SQLite's
    journal: each fails here as it would on the first delivery recorded.
    """
    now = utcnow()
    with engine.connect() as conn:
        transaction = conn.begin()
        try:
            conn.execute(
                insert(locks).values(
                    name=PROBE_LOCK, holder="doctor", acquired_at=now, heartbeat_at=now
                )
            )
        finally:
            transaction.rollback()
