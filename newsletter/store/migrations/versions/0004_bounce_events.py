"""Bounces that arrive later: `bounce_events`, one row per report read at the bounce address.

Revision 0004, after 0003. Delivery status notifications, complaints and other
reports that come back to BOUNCE_ADDRESS (`newsletter bounces`) are kept per
delivery, so a hard bounce, a soft one or a complaint is matched to the message
it is about, counted once however often its report is read (the unique
`fingerprint`), and soft bounces are counted over a window.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bounce_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("delivery_id", sa.Integer(), nullable=True),
        sa.Column("subscriber_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("diagnostic", sa.Text(), nullable=False),
        sa.Column("reporter", sa.String(length=32), nullable=False),
        sa.Column("message_id", sa.String(length=300), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["delivery_id"], ["deliveries.id"]),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscribers.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("fingerprint"),
    )
    op.create_index("ix_bounce_events_delivery", "bounce_events", ["delivery_id"], unique=False)
    op.create_index(
        "ix_bounce_events_subscriber",
        "bounce_events",
        ["subscriber_id", "kind", "received_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_table("bounce_events")
