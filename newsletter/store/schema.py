"""Tables. SQLite by default; the same schema runs on PostgreSQL.

Emails are kept as typed and also lower-cased in `email_key`, which is what is
unique: the same person typing Ann@Example.com and ann@example.com is one
subscriber. One `deliveries` row per (edition, subscriber) is the record of
truth for a send; the unique constraint is what makes re-running a send safe.

These tables are the model; a database gets them only through the migrations in
`store/migrations/versions/` (`newsletter init` runs them). A change here needs a
new migration and REVISION set to it: `tests/test_migrations.py` fails until the
migrated database and this model agree.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

# The schema revision these tables are: the migrations' head. Opening a database checks it
# against this constant rather than loading the migration scripts (Alembic costs every
# command a few hundred milliseconds to import); a test keeps the two equal.
REVISION = "0005"

metadata = MetaData()

subscribers = Table(
    "subscribers",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(320), nullable=False),
    Column("email_key", String(320), nullable=False, unique=True),
    Column("name", String(200), nullable=False, default=""),
    Column("status", String(16), nullable=False, index=True),
    Column("source", String(100), nullable=False, default=""),
    Column("bounce_count", Integer, nullable=False, default=0),
    Column("created_at", DateTime(), nullable=False),
    Column("updated_at", DateTime(), nullable=False),
    Column("confirmed_at", DateTime()),
    Column("unsubscribed_at", DateTime()),
    # Double opt-in (web sign-up): when the last confirmation email went out (at most one
    # an hour), and the proof of consent recorded when the link's Confirm button was pressed.
    Column("confirmation_sent_at", DateTime()),
    Column("consent_at", DateTime()),
    Column("consent_ip", String(64)),
    Column("consent_user_agent", String(500)),
    # The nonce of the one confirmation link that may still confirm this sign-up: each
    # confirmation email gets a new one (older links stop working) and confirming clears it,
    # so a link works once. NULL when no confirmation is outstanding.
    Column("confirm_nonce", String(64)),
)

editions = Table(
    "editions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("date", Date, nullable=False, unique=True),
    Column("subject", Text, nullable=False),
    Column("preheader", Text, nullable=False),
    Column("html", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("slot_token", String(64), nullable=False),
    Column("article_count", Integer, nullable=False),
    Column("status", String(16), nullable=False),  # built | sending | sent | held
    Column("created_at", DateTime(), nullable=False),
    Column("sent_at", DateTime()),
    # What the build found besides the articles, kept so a preview or the dashboard never
    # reads the source again for a stored edition: the render-time warnings and the files
    # the source skipped (JSON lists), and a fingerprint of the day's files (names, sizes,
    # modification times) to tell the editor when they changed since. NULL in editions
    # stored before these columns existed.
    Column("warnings", Text),
    Column("skipped", Text),
    Column("source_stamp", String(64)),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("edition_id", Integer, ForeignKey("editions.id"), nullable=False),
    Column("subscriber_id", Integer, ForeignKey("subscribers.id"), nullable=False),
    Column("email", String(320), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_reply", Text, nullable=False, default=""),
    Column("claimed_by", String(100)),
    Column("lease_until", DateTime()),
    Column("next_attempt_at", DateTime()),
    Column("first_attempt_at", DateTime()),
    Column("updated_at", DateTime(), nullable=False),
    # The relay refused the address in the session (a 5xx for the recipient): the hard
    # bounce that counted toward BOUNCE_LIMIT, kept for the sender's health figures.
    Column("hard_bounce", Boolean(), nullable=False, default=False, server_default=false()),
    UniqueConstraint("edition_id", "subscriber_id", name="uq_delivery_edition_subscriber"),
    Index("ix_deliveries_claim", "edition_id", "status", "id"),  # claims and counts
)

# A send that paused itself (app/health.py: the hard-bounce rate of its first messages
# passed PAUSE_HARD_BOUNCE_RATE): when, and the one line saying why. The scheduler does not
# resume it; `newsletter send` (or the editor's send-now) does, clearing `paused_at` and
# stamping `resumed_at`: the operator decided, and the row staying is what keeps the
# edition from pausing again. A table of its own, so `editions` keeps its shape.
edition_pauses = Table(
    "edition_pauses",
    metadata,
    Column("edition_id", Integer, ForeignKey("editions.id"), primary_key=True),
    Column("paused_at", DateTime()),
    Column("reason", Text, nullable=False),
    Column("resumed_at", DateTime()),
)

test_sends = Table(
    "test_sends",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("edition_id", Integer, ForeignKey("editions.id"), nullable=False),
    Column("email", String(320), nullable=False),
    Column("status", String(16), nullable=False),
    Column("last_reply", Text, nullable=False, default=""),
    Column("created_at", DateTime(), nullable=False),
)

locks = Table(
    "locks",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("acquired_at", DateTime(), nullable=False),
    Column("heartbeat_at", DateTime(), nullable=False),
)

# Sign-up requests that were let through, for the limits per client address, per recipient
# domain and overall (`store.signup_limits.take_signup_slot`); rows older than a day are pruned.
signup_requests = Table(
    "signup_requests",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", DateTime(), nullable=False, index=True),
    Column("client", String(64), nullable=False),
    Column("domain", String(255), nullable=False),
    Index("ix_signup_requests_client", "client", "at"),
    Index("ix_signup_requests_domain", "domain", "at"),
)

# Editor sessions, server-side: the cookie holds a random id and only its SHA-256 is
# stored, so a copy of this table opens nothing. A session ends when its row goes
# (logout, "log out everywhere"), at `expires_at` (absolute, never extended), or when the
# editor password no longer matches `password_mark` (a keyed hash of the password it
# was opened with).
editor_sessions = Table(
    "editor_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("created_at", DateTime(), nullable=False),
    Column("expires_at", DateTime(), nullable=False, index=True),
    Column("password_mark", String(64), nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("data", Text, nullable=False, default="{}"),  # JSON: the flash messages
    Column("client", String(64), nullable=False, default=""),
    Column("user_agent", String(300), nullable=False, default=""),
)

# What arrived at the bounce address (`newsletter bounces`; store/bounces.py): one row per
# report, matched to its delivery by the VERP token of the address it came to (or by the
# Message-ID it quotes), NULL when it named none of ours. `fingerprint` (SHA-256 of the
# report's own Message-ID, or of its bytes when it has none) is unique: a report read
# twice (a copy, a Maildir replayed, an IMAP message not yet moved) is recorded and
# counted once. `kind` is a models.BounceKind; soft bounces are counted from these rows.
bounce_events = Table(
    "bounce_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("fingerprint", String(64), nullable=False, unique=True),
    Column("delivery_id", Integer, ForeignKey("deliveries.id")),
    Column("subscriber_id", Integer, ForeignKey("subscribers.id")),
    Column("kind", String(16), nullable=False),
    Column("recipient", String(320), nullable=False, default=""),
    Column("status", String(16), nullable=False, default=""),  # the enhanced code, e.g. 5.1.1
    Column("diagnostic", Text, nullable=False, default=""),
    Column("reporter", String(32), nullable=False, default=""),
    Column("message_id", String(300), nullable=False, default=""),  # of the message it is about
    Column("source", String(16), nullable=False),  # maildir | stdin | imap
    Column("received_at", DateTime(), nullable=False),
    Index("ix_bounce_events_subscriber", "subscriber_id", "kind", "received_at"),
    Index("ix_bounce_events_delivery", "delivery_id"),
    # The health figures (store/health.py) read the reports received since an edition was built.
    Index("ix_bounce_events_received", "received_at"),
)
