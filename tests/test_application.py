"""The application layer's use cases and their typed outcomes, on a real store and SMTP server.

Races are forced, not hoped for: a SQLAlchemy hook holds each builder at its
INSERT until both are there (a barrier with a deadline), or starts a send at
the moment a rebuild writes, so the interleaving that broke is the one tested.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from pgserver import create_database, postgres_cluster
from sqlalchemy import Engine, event, func, select, text

from newsletter import app as core
from newsletter import subscribers as subscriber_ops
from newsletter.app.preview import CHANGED_NOTE
from newsletter.models import EditionStatus
from newsletter.store import editions as edition_store
from newsletter.store.engine import connect, open_engine
from newsletter.store.migrate import upgrade
from newsletter.store.schema import editions

DAY = dt.date(2026, 11, 25)
_names = itertools.count()


@contextmanager
def before_statement(
    engine: Engine, starts_with: str, action: Callable[[], None]
) -> Iterator[None]:
    """Run `action` just before `engine` executes a statement starting with `starts_with`."""

    def hook(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001, ARG001
        if " ".join(statement.split()).startswith(starts_with):
            action()

    event.listen(engine, "before_cursor_execute", hook)
    try:
        yield
    finally:
        event.remove(engine, "before_cursor_execute", hook)


def edition_rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(editions)).scalar_one()


def add_people(engine: Engine, *emails: str) -> None:
    for email in emails:
        subscriber_ops.add_subscriber(engine, email, source="test")


# ── two builders at once ──────────────────────────────────────────────────────


@pytest.fixture(scope="module")
def cluster():
    with postgres_cluster() as admin_url:
        yield admin_url


@pytest.fixture(params=["sqlite", "postgresql"])
def any_engine(request, settings):
    if request.param == "sqlite":
        return settings, open_engine(settings.database_url)
    url = create_database(request.getfixturevalue("cluster"), f"app_test_{next(_names)}")
    upgrade(url)
    return settings.model_copy(update={"database_url": url}), open_engine(url)


def test_two_builders_of_one_date_at_once_get_one_edition_and_no_error(any_engine):
    """Both pass "nothing stored yet" and render; the barrier lets neither insert before the
    other is at its INSERT too. A select-then-insert raised IntegrityError here."""
    settings, engine = any_engine
    both_inserting = threading.Barrier(2, timeout=30)
    results: list[core.Prepared | core.NoArticles] = []
    errors: list[BaseException] = []

    def build() -> None:
        try:
            results.append(core.prepare_edition(engine, settings, DAY))
        except BaseException as exc:  # noqa: BLE001 (the assertion below shows it)
            errors.append(exc)

    with before_statement(engine, "INSERT INTO editions", both_inserting.wait):
        builders = [threading.Thread(target=build) for _ in range(2)]
        for builder in builders:
            builder.start()
        for builder in builders:
            builder.join(timeout=60)
    assert not errors, errors
    assert len(results) == 2 and all(isinstance(r, core.Prepared) for r in results)
    first, second = results
    assert first.stored == second.stored  # the same row, the same content
    assert sorted([first.built_now, second.built_now]) == [False, True]
    assert edition_rows(engine) == 1


# ── rebuild ───────────────────────────────────────────────────────────────────


def test_a_rebuild_that_loses_to_a_send_starting_meanwhile_is_refused(
    settings, engine, articles_dir
):
    """The status check passes, then a send starts while the rebuild renders: the store's
    compare-and-set must win, and the outcome must say so (the CLI used to ignore it)."""
    stored = core.prepare_edition(engine, settings, DAY).stored
    lead = sorted((articles_dir / DAY.isoformat()).iterdir())[0]
    lead.write_text(lead.read_text().replace("Porto", "Lisbon"))

    def a_send_starts() -> None:
        edition_store.change_edition_status(
            engine, stored.id, expected=EditionStatus.BUILT, new=EditionStatus.SENDING
        )

    with before_statement(engine, "UPDATE editions SET subject", a_send_starts):
        outcome = core.rebuild(engine, settings, DAY)

    assert outcome == core.Refused(DAY, core.Refusal.STARTED, EditionStatus.SENDING)
    kept = edition_store.get_edition(engine, DAY)
    assert kept.rendered == stored.rendered and "Lisbon" not in kept.rendered.subject


def test_rebuild_outcomes(settings, engine, articles_dir):
    assert core.rebuild(engine, settings, dt.date(2020, 1, 1)) == core.NoArticles(
        dt.date(2020, 1, 1)
    )
    built = core.rebuild(engine, settings, DAY)
    assert isinstance(built, core.Built) and built.stored.status is EditionStatus.BUILT
    lead = sorted((articles_dir / DAY.isoformat()).iterdir())[0]
    lead.write_text(lead.read_text().replace("Porto", "Lisbon"))
    rebuilt = core.rebuild(engine, settings, DAY)
    assert isinstance(rebuilt, core.Rebuilt) and "Lisbon" in rebuilt.stored.rendered.subject
    for path in (articles_dir / DAY.isoformat()).iterdir():
        path.unlink()
    assert core.rebuild(engine, settings, DAY) == core.Refused(
        DAY, core.Refusal.NO_ARTICLES_NOW, EditionStatus.BUILT
    )


# ── publish ───────────────────────────────────────────────────────────────────


def test_publish_outcomes_from_build_to_already_sent(settings, engine, smtp_server):
    assert asyncio.run(core.publish(engine, settings, dt.date(2020, 1, 1))) == core.NoArticles(
        dt.date(2020, 1, 1)
    )
    add_people(engine, "ann@example.com", "bob@example.com")

    first = asyncio.run(core.publish(engine, settings, DAY))
    assert isinstance(first, core.Sent)
    assert (first.summary.sent, first.summary.remaining) == (2, 0)
    assert first.stored.status is EditionStatus.SENT

    again = asyncio.run(core.publish(engine, settings, DAY))
    assert isinstance(again, core.AlreadySent) and again.summary.sent == 0

    add_people(engine, "late@example.com")
    late = asyncio.run(core.publish(engine, settings, DAY))
    assert isinstance(late, core.Sent) and late.summary.sent == 1 and late.summary.queued_now == 1
    assert sorted(smtp_server.recipients()) == [
        "ann@example.com",
        "bob@example.com",
        "late@example.com",
    ]


def test_a_stop_before_the_send_is_a_stopped_outcome_with_the_rest_queued(
    settings, engine, smtp_server
):
    add_people(engine, "ann@example.com", "bob@example.com")
    stop = asyncio.Event()
    stop.set()  # SIGTERM came before the first message
    outcome = asyncio.run(core.publish(engine, settings, DAY, stop=stop))
    assert isinstance(outcome, core.Stopped) and outcome.summary.remaining == 2
    assert outcome.stored.status is EditionStatus.SENDING and smtp_server.received == []
    finished = asyncio.run(core.publish(engine, settings, DAY))
    assert isinstance(finished, core.Sent) and finished.summary.sent == 2


def test_hold_and_unhold_outcomes(settings, engine, smtp_server):
    add_people(engine, "ann@example.com")
    held = core.hold(engine, settings, DAY)
    assert isinstance(held, core.Changed) and held.stored.status is EditionStatus.HELD
    assert isinstance(core.hold(engine, settings, DAY), core.Unchanged)
    assert isinstance(asyncio.run(core.publish(engine, settings, DAY)), core.Held)
    assert isinstance(core.unhold(engine, DAY), core.Changed)
    assert core.unhold(engine, DAY) == core.Refused(DAY, core.Refusal.NOT_HELD, EditionStatus.BUILT)
    assert isinstance(asyncio.run(core.publish(engine, settings, DAY)), core.Sent)
    assert core.hold(engine, settings, DAY) == core.Refused(
        DAY, core.Refusal.STARTED, EditionStatus.SENT
    )
    assert smtp_server.recipients() == ["ann@example.com"]


# ── the dry run ───────────────────────────────────────────────────────────────


def test_the_dry_run_counts_sent_failed_and_skipped_as_handled(settings, engine, smtp_server):
    add_people(engine, "ann@example.com", "bob@example.com", "cleo@example.com")
    assert core.plan(engine, settings, DAY).audience == edition_store.Audience(3, 0, 3)
    ready = core.prepare_send(engine, settings, DAY)
    assert isinstance(ready, core.Ready) and ready.to_send == 3
    subscriber_ops.unsubscribe(engine, "cleo@example.com")  # after queueing: skipped at claim
    sent = asyncio.run(core.deliver(engine, settings, ready, stop=asyncio.Event()))
    assert (sent.summary.sent, sent.summary.skipped) == (2, 1)
    add_people(engine, "dan@example.com")

    planned = core.plan(engine, settings, DAY)

    assert planned.stored and planned.subject == ready.stored.rendered.subject
    assert planned.audience == edition_store.Audience(active=3, handled=3, to_send=1)
    assert len(smtp_server.received) == 2  # the dry run sent nothing


# ── what is stored with an edition ────────────────────────────────────────────


def test_warnings_and_skipped_files_are_stored_with_the_edition(settings, engine, articles_dir):
    folder = articles_dir / DAY.isoformat()
    (folder / "99-broken.json").write_text("{not json")
    (folder / "06-picture.md").write_text(
        "---\ntitle: A picture story\nlink: https://example.com/p\n"
        "image: https://example.com/p.png\n---\n\nA photo story.\n"
    )
    stored = core.prepare_edition(engine, settings, DAY).stored
    for path in folder.iterdir():  # the source is gone; what the build found is not
        path.unlink()
    folder.rmdir()

    again = edition_store.get_edition(engine, DAY)
    shown = core.preview(engine, settings, DAY)

    assert again == stored
    assert [item.origin.rsplit("/", 1)[1].split(":")[0] for item in again.skipped] == [
        "99-broken.json"
    ]
    assert any("image without alt text" in w for w in again.rendered.warnings)
    assert shown.skipped == again.skipped and shown.warnings == again.rendered.warnings
    assert shown.notes == (CHANGED_NOTE,)  # the files changed since the build


def test_an_edition_stored_before_the_new_columns_still_previews(settings, new_database_url):
    url = new_database_url("old", empty=True)
    upgrade(url, to="0002")  # the newest schema from before the edition columns mattered
    engine = connect(url, creating=False)
    old = settings.model_copy(update={"database_url": url})
    core.prepare_edition(engine, old, DAY)
    with engine.begin() as conn:  # as a database made by the previous version, before migrations
        for column in ("warnings", "skipped", "source_stamp"):
            conn.execute(text(f"ALTER TABLE editions DROP COLUMN {column}"))
        conn.execute(text("DROP TABLE alembic_version"))
    engine.dispose()

    upgrade(url)  # `newsletter init`: a migration adds the missing nullable columns
    engine = open_engine(url)
    stored = edition_store.get_edition(engine, DAY)
    shown = core.preview(engine, old, DAY)

    assert stored.skipped is None and stored.source_stamp is None
    assert isinstance(shown, core.Preview) and shown.skipped == () and shown.notes == ()
    assert "Hello Sample Reader," in shown.html


def test_edition_status_lives_in_models_and_is_still_importable_from_the_store():
    from newsletter import models
    from newsletter.store.editions import EditionStatus as FromStore

    assert FromStore is models.EditionStatus
