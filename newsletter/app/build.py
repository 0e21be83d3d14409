"""Building a date's edition: read the source once, render once, store it with what was found.

    source (read once) ─> edition ─> render (templates checked first) ─> store
                                                  with its warnings, skipped files and stamp

A stored edition keeps its render-time warnings, the files the source skipped
and a stamp of the day's files, so a preview or the dashboard never reads the
source again for it (a feed is fetched once per build, an hostile Markdown
file parsed once per build, not on every page view).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from dataclasses import dataclass

from sqlalchemy import Engine

from newsletter.app.outcomes import (
    Built,
    NoArticles,
    Prepared,
    RebuildOutcome,
    Rebuilt,
    Refusal,
    Refused,
)
from newsletter.articles import DirectorySource, FeedSource, open_source
from newsletter.config import Settings
from newsletter.edition import build_edition
from newsletter.models import DayArticles, EditionStatus, RenderedEdition, SkippedFile
from newsletter.render import check_templates, render_edition
from newsletter.store import editions as edition_store

log = logging.getLogger("newsletter.app")

#: Statuses whose content may still change: nobody has been sent anything yet.
UNSENT = (EditionStatus.BUILT, EditionStatus.HELD)


@dataclass(frozen=True)
class Fresh:
    """A render of the articles as they are now, not stored (a preview or a rebuild)."""

    rendered: RenderedEdition
    article_count: int
    skipped: tuple[SkippedFile, ...]
    source_stamp: str | None


def day_articles(settings: Settings, date: dt.date) -> DayArticles:
    """What the source has for a date (`newsletter articles`)."""
    return open_source(settings.articles_source, settings.zone).articles_for(date)


def render_fresh(settings: Settings, date: dt.date) -> Fresh | NoArticles:
    """Read the source once and render its edition; nothing is stored.

    Templates are checked first, so a broken template raises RenderError (file
    and line) before anything else happens.
    """
    check_templates(settings)
    source = open_source(settings.articles_source, settings.zone)
    stamp = source_stamp(source, date)  # before the read: a change during it shows next time
    day = source.articles_for(date)
    edition = build_edition(day, settings)
    if edition is None:
        return NoArticles(date, day.skipped)
    return Fresh(render_edition(edition, settings), len(edition.articles), day.skipped, stamp)


def prepare_edition(engine: Engine, settings: Settings, date: dt.date) -> Prepared | NoArticles:
    """The date's edition: the stored one if it exists, else built, rendered and stored.

    Two builders at once (the scheduler and an editor, two sender processes)
    both get the one edition that was stored first.
    """
    stored = edition_store.get_edition(engine, date)
    if stored is not None:
        return Prepared(stored)
    fresh = render_fresh(settings, date)
    if isinstance(fresh, NoArticles):
        for item in fresh.skipped:
            log.warning("skipped %s: %s", item.origin, item.reason)
        return fresh
    stored, inserted = edition_store.insert_edition(
        engine,
        fresh.rendered,
        fresh.article_count,
        skipped=fresh.skipped,
        source_stamp=fresh.source_stamp,
    )
    return Prepared(stored, built_now=inserted)


def rebuild(engine: Engine, settings: Settings, date: dt.date) -> RebuildOutcome:
    """Render a stored, unsent edition afresh (or build it when nothing is stored yet).

    Refused once its send has started, so every subscriber gets the same email:
    checked before the render, and settled by the store's compare-and-set after
    it (a send that starts during the render wins). When the source has no
    articles any more, the stored edition is kept and the rebuild refused.
    """
    stored = edition_store.get_edition(engine, date)
    if stored is None:
        prepared = prepare_edition(engine, settings, date)
        return prepared if isinstance(prepared, NoArticles) else Built(prepared.stored)
    if stored.status not in UNSENT:
        return Refused(date, Refusal.STARTED, stored.status)
    fresh = render_fresh(settings, date)
    if isinstance(fresh, NoArticles):
        return Refused(date, Refusal.NO_ARTICLES_NOW, stored.status)
    replaced = edition_store.replace_edition(
        engine,
        stored.id,
        fresh.rendered,
        fresh.article_count,
        skipped=fresh.skipped,
        source_stamp=fresh.source_stamp,
    )
    current = edition_store.get_edition(engine, date)
    assert current is not None
    if not replaced:
        return Refused(date, Refusal.STARTED, current.status)
    return Rebuilt(current)


def source_stamp(source: DirectorySource | FeedSource, date: dt.date) -> str | None:
    """A fingerprint of a directory source's files for a date: names, sizes, modification times.

    Cheap (no file is opened), so a stored edition's preview can tell the
    editor the files changed since the build without reading them. None for a
    feed, where knowing would cost a fetch.
    """
    if not isinstance(source, DirectorySource):
        return None
    digest = hashlib.sha256()
    try:
        entries = sorted((source.root / date.isoformat()).iterdir())
    except OSError:
        return digest.hexdigest()  # no folder: the stamp of an empty day
    for path in entries:
        if path.name.startswith("."):
            continue
        try:
            info = path.stat()
        except OSError:
            continue
        digest.update(f"{path.name}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def source_dates(settings: Settings) -> list[dt.date]:
    """The dates the source has articles for, oldest first (a feed is fetched for it)."""
    return open_source(settings.articles_source, settings.zone).available_dates()
