"""A sender's health: the hard bounce per delivery, and a send that paused itself.

Revision 0005, after 0004.

* `deliveries.hard_bounce`: the relay refused the address in the session (what counts
  toward BOUNCE_LIMIT), kept so the health figures (`store/health.py`) can tell a hard
  bounce from other failures. Rows recorded before this revision are marked from their
  reply: failed with a 5xx (a 552 "too big" among them, which the send itself would not
  count: old figures may be a little high).
* `ix_bounce_events_received`: the figures read the reports received since an edition
  was built.
* `editions.paused_at`, `paused_reason`, `resumed_at`: a send paused by its hard-bounce
  rate, and the operator's decision to resume it.
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
    op.add_column("editions", sa.Column("paused_at", sa.DateTime(), nullable=True))
    op.add_column("editions", sa.Column("paused_reason", sa.Text(), nullable=True))
    op.add_column("editions", sa.Column("resumed_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("editions") as batch:
        batch.drop_column("resumed_at")
        batch.drop_column("paused_reason")
        batch.drop_column("paused_at")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("hard_bounce")
    op.drop_index("ix_bounce_events_received", table_name="bounce_events")
