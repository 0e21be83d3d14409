"""Creating and upgrading the database through Alembic: what `newsletter init` runs.

Only here is a database made or changed in shape. `upgrade(url)` creates a new
database by running every migration (never `create_all`, so a new database and
an upgraded one are the same thing), and upgrades an existing one to the head.
A database made before migrations (our tables, no `alembic_version`) is
recognised and stamped at the baseline, 0001, first; revision 0002 then adds
what the oldest of those lack. The whole upgrade is one transaction: on SQLite
DDL is transactional once we issue BEGIN ourselves (pysqlite would not), and
BEGIN IMMEDIATE also makes a second `init` wait its turn; on PostgreSQL an
advisory lock does the same.

Every other command only checks the revision (`engine.require_current`) and
stops with "run `newsletter init`" when it is behind: an upgrade is a moment an
operator chooses (after a backup, with no send running), not a side effect of
the next cron job, and two processes starting at once must not race to do it.

The scripts live in the package (`store/migrations/`), configured here without
an alembic.ini. A developer who changes `store/schema.py` writes the next
revision with Alembic's own command line through this module:

    python -m newsletter.store.migrate sqlite:///var/dev.db revision --autogenerate \\
        --rev-id 0003 -m "what changed"

then reads it, trims it, and sets `schema.REVISION`; `tests/test_migrations.py`
fails until the migrated database matches the model again.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from functools import cache

from alembic import command
from alembic.config import CommandLine, Config
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, event, inspect

from newsletter.errors import StoreError
from newsletter.hygiene import one_line
from newsletter.store.engine import (
    VERSION_TABLE,
    connect,
    current_revision,
    database_name,
    has_newsletter_tables,
)

SCRIPTS = "newsletter.store:migrations"  # Alembic's "package:folder" script location
BASELINE = "0001"  # the schema as it stood when migrations began
_PG_LOCK_KEY = 0x6E65777331  # pg_advisory_xact_lock key shared by every `newsletter init`
# Alembic keeps the running migration's context in module globals (`alembic.context`,
# `alembic.op`): one upgrade at a time in a process, whatever the database.
_ALEMBIC = threading.Lock()


@dataclass(frozen=True)
class Upgrade:
    """What `upgrade` did to `database` (its URL without a password): from `before`
    (None: a new database) to `after`."""

    database: str
    before: str | None
    after: str
    unversioned: bool = False  # made before migrations; stamped BASELINE, so before == BASELINE

    def describe(self) -> str:
        """The words `newsletter init` prints after the URL."""
        if self.before is None:
            return f"created at schema {self.after}"
        if self.unversioned:
            return f"made before schema versions, recognised as {self.before}; now {self.after}"
        if self.before == self.after:
            return f"schema {self.after}, up to date"
        return f"upgraded from {self.before} to {self.after}"


def head_revision() -> str:
    """The newest revision the migration scripts know: what `upgrade` brings a database to."""
    head = _scripts().get_current_head()
    assert head is not None, "the migration scripts have no revision"
    return head


def upgrade(url: str, *, to: str = "head") -> Upgrade:
    """Create the database at `url`, or upgrade it, to the head revision, in one transaction.

    (`to` names an earlier revision, for the tests of what comes after it.)

    Raises StoreError (one line) for a URL that cannot hold data, a database this
    version does not know (made by a newer one), or one holding other tables.
    """
    engine = connect(url, creating=True)
    if engine.dialect.name == "sqlite":
        _transactional_ddl(engine)
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})")
            before = current_revision(conn)
            unversioned = before is None and has_newsletter_tables(conn)
            if before is None and not unversioned:
                _require_empty(conn, database_name(engine))
            elif before is not None:
                _require_known(before, database_name(engine))
            config = _config(conn)
            try:
                with _ALEMBIC:
                    if unversioned:
                        command.stamp(config, BASELINE)
                        before = BASELINE
                    command.upgrade(config, to)
            except CommandError as exc:
                raise StoreError(
                    f"cannot upgrade the database: {one_line(str(exc))}",
                    where=database_name(engine),
                    hint="nothing was changed; report this with the message",
                ) from None
            after = current_revision(conn)
    finally:
        engine.dispose()
    assert after is not None
    return Upgrade(database_name(engine), before, after, unversioned)


def schema_differences(engine: Engine) -> list[tuple]:
    """What Alembic's autogenerate finds between the database and `schema.metadata`
    (empty when they agree): for tests and `doctor`, and the check a new revision passes."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from newsletter.store.schema import metadata

    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(context, metadata)


@cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config(None))


def _config(connection: Connection | None) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPTS)
    config.attributes["connection"] = connection
    return config


def _require_known(revision: str, where: str) -> None:
    scripts = _scripts()
    for each in revision.split(","):
        try:
            scripts.get_revision(each)
        except CommandError:
            raise StoreError(
                f"database schema is at {revision}, which this version does not know "
                f"(its newest is {head_revision()})",
                where=where,
                hint="a newer newsletter made or upgraded it: run that version",
            ) from None


def _require_empty(conn: Connection, where: str) -> None:
    """A database without our tables must be empty: never mix ours into someone else's."""
    others = sorted(set(inspect(conn).get_table_names()) - {VERSION_TABLE})
    if others:
        shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
        raise StoreError(
            f"the database holds other tables ({shown}) and none of the newsletter's",
            where=where,
            hint="give the newsletter a database of its own in NEWSLETTER_DATABASE_URL",
        )


def _transactional_ddl(engine: Engine) -> None:
    """SQLite DDL inside the transaction, and the write lock taken at BEGIN (SQLAlchemy's
    documented recipe: pysqlite would commit around DDL on its own)."""

    @event.listens_for(engine, "connect")
    def _no_driver_transactions(dbapi_connection, _record) -> None:  # noqa: ANN001 (DB-API)
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def main(argv: list[str]) -> None:
    """`python -m newsletter.store.migrate URL ALEMBIC-ARGS...`: Alembic's command line on
    our scripts and the database at URL (for writing a new revision; not for operators)."""
    url, *alembic_args = argv
    options = CommandLine(prog="python -m newsletter.store.migrate").parser.parse_args(alembic_args)
    engine = connect(url, creating=True)
    try:
        with engine.begin() as conn:
            config = _config(conn)
            config.cmd_opts = options
            CommandLine().run_cmd(config, options)
    finally:
        engine.dispose()


if __name__ == "__main__":
    main(sys.argv[1:])
