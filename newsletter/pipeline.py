"""The one place that wires the stages together for a date.

    source ─> edition ─> render (once, stored) ─> queue one row per subscriber
          ─> claim a batch ─> personalize + build bytes ─> SMTP ─> record each result

Everything before the send is synchronous and pure apart from the store; the
send itself is `delivery.run_send`, an asyncio loop with one producer and
`CONCURRENCY` workers, each owning one reused SMTP connection.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from dataclasses import dataclass

from sqlalchemy import Engine

from newsletter.articles import open_source
from newsletter.compose import compose_message
from newsletter.config import Settings
from newsletter.delivery import ProgressCallback, SendResult, SendSummary, run_send, send_one
from newsletter.edition import build_edition
from newsletter.models import DeliveryStatus, Recipient, RenderedEdition, SkippedFile
from newsletter.render import check_templates, render_edition
from newsletter.store import deliveries as delivery_store
from newsletter.store import editions as edition_store
from newsletter.store.editions import EditionStatus, StoredEdition

log = logging.getLogger("newsletter.pipeline")


# ── building ──────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class Prepared:
    """The stored edition of a date, and what the source had to skip to build it."""

    stored: StoredEdition
    skipped: tuple[SkippedFile, ...] = ()
    built_now: bool = False


def prepare_edition(engine: Engine, settings: Settings, date: dt.date) -> Prepared | None:
    """The date's edition: the stored one if it exists, else built, rendered and stored.

    None when the source has no articles for the date. Templates are checked
    first, so a broken template stops here, before anything is queued or sent.
    """
    stored = edition_store.get_edition(engine, date)
    if stored is not None:
        return Prepared(stored)
    check_templates(settings)
    day = open_source(settings.articles_source, settings.zone).articles_for(date)
    edition = build_edition(day, settings)
    if edition is None:
        return None if not day.skipped else _nothing_usable(day.skipped)
    rendered = render_edition(edition, settings)
    stored = edition_store.insert_edition(engine, rendered, len(edition.articles))
    return Prepared(stored, day.skipped, built_now=True)


def _nothing_usable(skipped: tuple[SkippedFile, ...]) -> None:
    for item in skipped:
        log.warning("skipped %s: %s", item.origin, item.reason)
    return None


@dataclass(frozen=True)
class Preview:
    rendered: RenderedEdition
    article_count: int
    skipped: tuple[SkippedFile, ...]


def build_preview(settings: Settings, date: dt.date) -> Preview | None:
    """Render a date's edition without storing it (the editor's preview, a rebuild)."""
    check_templates(settings)
    day = open_source(settings.articles_source, settings.zone).articles_for(date)
    edition = build_edition(day, settings)
    if edition is None:
        return None
    return Preview(render_edition(edition, settings), len(edition.articles), day.skipped)


# ── sending ───────────────────────────────────────────────────────────────────


async def send_edition(
    engine: Engine,
    settings: Settings,
    stored: StoredEdition,
    *,
    on_result: ProgressCallback | None = None,
    stop: asyncio.Event | None = None,
) -> SendSummary:
    """Deliver an edition to every active subscriber who has not had it yet.

    Safe to run any number of times, and by several processes at once: rows
    already sent are never claimed again, and new subscribers are queued on
    each run. An edition an editor put on hold is not sent (`summary.held`).
    """
    started = time.monotonic()
    stop = stop or asyncio.Event()
    summary = SendSummary()
    # built → sending only if still built: an editor's hold at the same moment wins
    edition_store.change_edition_status(
        engine, stored.id, expected=EditionStatus.BUILT, new=EditionStatus.SENDING
    )
    current = edition_store.get_edition(engine, stored.rendered.date)
    if current is not None and current.status == EditionStatus.HELD:
        summary.held = True  # an editor chose to skip this day
        return summary
    summary.queued_now = delivery_store.queue_deliveries(engine, stored.id)
    await run_send(engine, settings, stored, summary, on_result=on_result, stop=stop)
    summary.stopped = stop.is_set()
    counts = delivery_store.count_by_status(engine, stored.id)
    summary.remaining = counts[DeliveryStatus.QUEUED] + counts[DeliveryStatus.SENDING]
    if summary.remaining == 0:
        edition_store.set_edition_status(engine, stored.id, EditionStatus.SENT)
    summary.elapsed = time.monotonic() - started
    return summary


# ── test sends ────────────────────────────────────────────────────────────────


async def send_test(
    engine: Engine, settings: Settings, stored: StoredEdition, email: str, name: str = ""
) -> SendResult:
    """Send the real edition to any address, recorded apart from subscriber deliveries."""
    data = compose_message(stored.rendered, settings, Recipient(None, email, name))
    result = await send_one(settings, email, data)
    delivery_store.record_test_send(engine, stored.id, email, result.outcome.value, result.reply)
    return result
