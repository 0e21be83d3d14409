"""Read-only views of the editions: the dry run, the dashboard, one edition's state, status.

Nothing here reads an article for a stored edition: counts come from the store.
The dashboard lists dates cheaply (a directory source's folder names; for a
feed, no fetch at all), so a page view costs a few queries, whatever the source.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Engine

from newsletter.app.build import render_fresh
from newsletter.app.outcomes import NoArticles, Planned
from newsletter.articles import DirectorySource, open_source
from newsletter.config import Settings
from newsletter.errors import NewsletterError
from newsletter.models import DeliveryStatus, SubscriberStatus
from newsletter.store import deliveries as delivery_store
from newsletter.store import editions as edition_store
from newsletter.store import editor as editor_store
from newsletter.store import health as health_store
from newsletter.store import subscribers as subscriber_store
from newsletter.store.deliveries import FailedDelivery
from newsletter.store.editions import StoredEdition
from newsletter.store.editor import EditionSummary, EditorTestSend
from newsletter.store.health import Figures, Pause

DASHBOARD_DAYS = 30


def plan(engine: Engine, settings: Settings, date: dt.date) -> Planned | NoArticles:
    """The dry run: the subject and who a send now would reach; nothing stored or sent."""
    stored = edition_store.get_edition(engine, date)
    if stored is None:
        fresh = render_fresh(settings, date)
        if isinstance(fresh, NoArticles):
            return fresh
        subject = fresh.rendered.subject
    else:
        subject = stored.rendered.subject
    audience = edition_store.audience(engine, stored.id if stored else None)
    return Planned(date, subject, stored=stored is not None, audience=audience)


def active_subscribers(engine: Engine) -> int:
    return subscriber_store.count_by_status(engine)[SubscriberStatus.ACTIVE]


# ── the dashboard ─────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class DayRow:
    """One date on the dashboard, with what was stored and sent for it (None: not built)."""

    date: dt.date
    edition: EditionSummary | None

    @property
    def status(self) -> str:
        return self.edition.status.value if self.edition else "none"

    @property
    def articles(self) -> int | None:
        return self.edition.article_count if self.edition else None

    @property
    def skipped(self) -> int | None:
        return self.edition.skipped if self.edition else None

    @property
    def delivered(self) -> int:
        return self.edition.deliveries[DeliveryStatus.SENT] if self.edition else 0

    @property
    def pending(self) -> int:
        if self.edition is None:
            return 0
        counts = self.edition.deliveries
        return counts[DeliveryStatus.QUEUED] + counts[DeliveryStatus.SENDING]

    @property
    def failed(self) -> int:
        return self.edition.deliveries[DeliveryStatus.FAILED] if self.edition else 0


@dataclass(frozen=True)
class Dashboard:
    rows: list[DayRow]  # newest first
    problem: str | None  # why the source's dates could not be listed
    active: int


def dashboard(engine: Engine, settings: Settings, limit: int = DASHBOARD_DAYS) -> Dashboard:
    """The newest dates the source has or an edition was stored for, newest first.

    A directory source lists its day folders (no file is read); a feed would
    cost a fetch, so with one the dates are the stored editions and today. A
    source that cannot be listed is the `problem`; the stored editions are
    listed all the same.
    """
    stored = {summary.date: summary for summary in editor_store.edition_summaries(engine, limit)}
    dates = set(stored)
    problem: str | None = None
    try:
        source = open_source(settings.articles_source, settings.zone)
        if isinstance(source, DirectorySource):
            dates |= set(source.available_dates())
        else:
            dates.add(settings.today())
    except NewsletterError as exc:
        problem = str(exc)
    rows = [DayRow(date, stored.get(date)) for date in sorted(dates, reverse=True)[:limit]]
    return Dashboard(rows, problem, active_subscribers(engine))


# ── one edition ───────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class EditionState:
    """A date's edition page besides the preview: status, deliveries, tests, audience."""

    stored: StoredEdition | None
    counts: dict[DeliveryStatus, int] | None
    tests: list[EditorTestSend]
    active: int


def edition_state(engine: Engine, date: dt.date) -> EditionState:
    stored = edition_store.get_edition(engine, date)
    if stored is None:
        return EditionState(None, None, [], active_subscribers(engine))
    return EditionState(
        stored,
        delivery_store.count_by_status(engine, stored.id),
        editor_store.recent_test_sends(engine, stored.id),
        active_subscribers(engine),
    )


@dataclass(frozen=True)
class EditionReport:
    """`newsletter status`: an edition, its deliveries by status and its failed recipients,
    its bounce and complaint figures, and its pause if its send paused itself."""

    stored: StoredEdition
    counts: dict[DeliveryStatus, int]
    failed: list[FailedDelivery]
    figures: Figures = Figures()
    pause: Pause | None = None


def recent_editions(engine: Engine, limit: int = 10) -> list[EditionReport]:
    stored = [edition for edition, _ in edition_store.list_editions(engine, limit=limit)]
    ids = [edition.id for edition in stored]
    figures = health_store.edition_figures(engine, ids)
    paused = health_store.pauses(engine, ids)
    return [
        EditionReport(
            edition,
            delivery_store.count_by_status(engine, edition.id),
            [],
            figures[edition.id],
            paused.get(edition.id),
        )
        for edition in stored
    ]


def edition_report(engine: Engine, date: dt.date) -> EditionReport | None:
    stored = edition_store.get_edition(engine, date)
    if stored is None:
        return None
    pause = health_store.pause_of(engine, stored.id)
    return EditionReport(
        stored,
        delivery_store.count_by_status(engine, stored.id),
        delivery_store.failed_deliveries(engine, stored.id),
        health_store.edition_figures(engine, [stored.id])[stored.id],
        pause if pause.paused else None,
    )
