"""The web side, hardened: single-use confirmation links, sign-up limits, server-side sessions.

* `subscribers.confirm_nonce`: the nonce of the one confirmation link that may
  still confirm a sign-up (a new email replaces it, confirming clears it).
* `signup_requests`: sign-ups let through, counted per client, domain and overall.
* `editor_sessions`: editor sessions kept in the database (the cookie holds a
  random id), so logout and "log out everywhere" really end them.

Confirmation links sent before this revision carry no nonce and stop working:
their owners sign up again and get a new one (they are valid for hours only).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("subscribers", sa.Column("confirm_nonce", sa.String(length=64), nullable=True))
    op.create_table(
        "signup_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("domain", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_signup_requests_at", "signup_requests", ["at"], unique=False)
    op.create_index("ix_signup_requests_client", "signup_requests", ["client", "at"], unique=False)
    op.create_index("ix_signup_requests_domain", "signup_requests", ["domain", "at"], unique=False)
    op.create_table(
        "editor_sessions",
        sa.Column("id_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("password_mark", sa.String(length=64), nullable=False),
        sa.Column("csrf", sa.String(length=64), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("user_agent", sa.String(length=300), nullable=False),
        sa.PrimaryKeyConstraint("id_hash"),
    )
    op.create_index(
        "ix_editor_sessions_expires_at", "editor_sessions", ["expires_at"], unique=False
    )


def downgrade() -> None:
    op.drop_table("editor_sessions")
    op.drop_table("signup_requests")
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("confirm_nonce")
