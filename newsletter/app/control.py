"""What an editor or operator changes about a date's edition: hold, un-hold, retry.

Status changes are the store's compare-and-set, so a click that races the
scheduler (or a second click) is refused instead of, say, holding an edition
that is already going out.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine

from newsletter.app.build import prepare_edition
from newsletter.app.outcomes import (
    Changed,
    HoldOutcome,
    NoArticles,
    Refusal,
    Refused,
    Requeued,
    Unchanged,
)
from newsletter.config import Settings
from newsletter.models import EditionStatus
from newsletter.store import deliveries as delivery_store
from newsletter.store import editions as edition_store


def hold(engine: Engine, settings: Settings, date: dt.date) -> HoldOutcome:
    """Skip a day: the edition (built first if needed) is held, and no send delivers it."""
    prepared = prepare_edition(engine, settings, date)
    if isinstance(prepared, NoArticles):
        return prepared
    stored = prepared.stored
    if stored.status is EditionStatus.HELD:
        return Unchanged(stored)
    moved = stored.status is EditionStatus.BUILT and edition_store.change_edition_status(
        engine, stored.id, expected=EditionStatus.BUILT, new=EditionStatus.HELD
    )
    current = edition_store.get_edition(engine, date)
    assert current is not None
    return Changed(current) if moved else Refused(date, Refusal.STARTED, current.status)


def unhold(engine: Engine, date: dt.date) -> Changed | Refused:
    """Release a held edition: the next scheduled (or manual) send delivers it."""
    stored = edition_store.get_edition(engine, date)
    if stored is None or not edition_store.change_edition_status(
        engine, stored.id, expected=EditionStatus.HELD, new=EditionStatus.BUILT
    ):
        return Refused(date, Refusal.NOT_HELD, stored.status if stored else None)
    current = edition_store.get_edition(engine, date)
    assert current is not None
    return Changed(current)


def retry(engine: Engine, date: dt.date) -> Requeued | Refused:
    """Queue the failed deliveries of a date again; the next send delivers them."""
    stored = edition_store.get_edition(engine, date)
    if stored is None:
        return Refused(date, Refusal.NO_EDITION)
    return Requeued(stored, delivery_store.requeue_failed(engine, stored.id))
