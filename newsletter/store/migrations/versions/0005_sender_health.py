"""A sender's health: the hard bounce per delivery, and a send that paused itself.

Revision 0005, after 0004.

* `deliveries.hard_bounce`: the relay refused the address in the session (what counts
  toward BOUNCE_LIMIT), kept so the health figures (`store/health.py`) can tell a hard
  bounce from other failures. Rows recorded before this revision are marked from their
  reply: failed with a 5xx (a 552 "too big" among them, which the send itself would not
  count: old figures may be a little high).
* `ix_bounce_events_received`: the figures read the reports received since an edition
  was built.
* `edition_pauses`: a send paused by its hard-bounce rate (when, why), and the
  operator's decision to resume it (`resumed_at`).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "deliveries",
        sa.Column("hard_bounce", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.execute(
        "UPDATE deliveries SET hard_bounce = TRUE WHERE status = 'failed' AND last_reply LIKE '5%'"
    )
    op.create_index("ix_bounce_events_received", "bounce_events", ["received_at"], unique=False)
    op.create_table(
        "edition_pauses",
        sa.Column("edition_id", sa.Integer(), nullable=False),
        sa.Column("paused_at", sa.DateTime(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("resumed_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["edition_id"], ["editions.id"]),
        sa.PrimaryKeyConstraint("edition_id"),
    )


def downgrade() -> None:
    op.drop_table("edition_pauses")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("hard_bounce")
    op.drop_index("ix_bounce_events_received", table_name="bounce_events")
