"""Alembic's environment: run the migrations on the connection `store/migrate.py` hands over.

`newsletter init` (through `migrate.upgrade`) passes an open connection in a
transaction it began, so the upgrade commits whole or not at all. Comparing
types and rendering SQLite changes as batch operations keep `alembic revision
--autogenerate` (see `store/migrate.py`) honest on both databases.
"""

from __future__ import annotations

from alembic import context

from newsletter.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    compare_type=True,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
