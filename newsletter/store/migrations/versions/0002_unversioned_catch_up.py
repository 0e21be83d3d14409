"""Databases made before migrations get all of revision 0001.

Before Alembic, `create_all` made missing tables and `_add_missing_columns`
added missing nullable columns on every open, but neither added an index to a
table that existed. So such databases differ by age: the oldest lack the locks
table and deliveries.first_attempt_at, those from before web sign-up lack the
consent columns, those from before the application layer lack the editions'
warnings, and every one made before the claim index still has the index it
replaced. `migrate.upgrade` stamps them all 0001; this revision adds what each
one lacks, and does nothing on a database that revision 0001 made.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _added_columns() -> dict[str, list[sa.Column]]:
    """The nullable columns tables gained before migrations, oldest first."""
    return {
        "deliveries": [sa.Column("first_attempt_at", sa.DateTime(), nullable=True)],
        "subscribers": [
            sa.Column("confirmation_sent_at", sa.DateTime(), nullable=True),
            sa.Column("consent_at", sa.DateTime(), nullable=True),
            sa.Column("consent_ip", sa.String(length=64), nullable=True),
            sa.Column("consent_user_agent", sa.String(length=500), nullable=True),
        ],
        "editions": [
            sa.Column("warnings", sa.Text(), nullable=True),
            sa.Column("skipped", sa.Text(), nullable=True),
            sa.Column("source_stamp", sa.String(length=64), nullable=True),
        ],
    }


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    if not inspector.has_table("locks"):
        op.create_table(
            "locks",
            sa.Column("name", sa.String(length=100), nullable=False),
            sa.Column("holder", sa.String(length=200), nullable=False),
            sa.Column("acquired_at", sa.DateTime(), nullable=False),
            sa.Column("heartbeat_at", sa.DateTime(), nullable=False),
            sa.PrimaryKeyConstraint("name"),
        )
    for table, columns in _added_columns().items():
        present = {column["name"] for column in inspector.get_columns(table)}
        for column in columns:
            if column.name not in present:
                op.add_column(table, column)
    indexes = {index["name"] for index in inspector.get_indexes("deliveries")}
    if "ix_deliveries_edition_status" in indexes:  # replaced by the claim index
        op.drop_index("ix_deliveries_edition_status", table_name="deliveries")
    if "ix_deliveries_claim" not in indexes:
        op.create_index(
            "ix_deliveries_claim", "deliveries", ["edition_id", "status", "id"], unique=False
        )


def downgrade() -> None:
    """Nothing: what was missing before is not known, and 0001 has all of it."""
