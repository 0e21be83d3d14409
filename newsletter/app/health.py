"""A sender's health: the figures operators see, and the two decisions made from them.

    sender_health     the 30-day figures, each recent edition's, any paused send and the
                      complaint block: what `newsletter status` and /metrics show
    complaint_block   the 30-day complaint rate above MAX_COMPLAINT_RATE: the scheduler
                      starts no new edition (`prepare_send`); a manual send warns
    PauseGuard        asked by the send loop every few results: once PAUSE_AFTER messages
                      of the edition have a final answer, a hard-bounce rate above
                      PAUSE_HARD_BOUNCE_RATE pauses the send (recorded on the edition)

The figures themselves, and what counts as a message, a bounce or a complaint, are
`store/health.py`'s. A rate of 1 turns its decision off (no rate is above it).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Engine

from newsletter.app.outcomes import ComplaintRate
from newsletter.config import Settings
from newsletter.store import health as health_store
from newsletter.store.engine import lock_wait
from newsletter.store.health import Figures, HealthFigures, Pause
from newsletter.store.ledger import LOCK_WAIT_SECONDS

WINDOW_DAYS = 30
RECENT_EDITIONS = 5  # editions shown one by one (and in /metrics: bounded labels)
CHECK_SECONDS = 5.0  # the guard is asked at least this often while results come in


@dataclass(frozen=True)
class SenderHealth:
    figures: HealthFigures  # the WINDOW_DAYS window and the RECENT_EDITIONS newest editions
    paused: dict[int, Pause]  # those editions (by id) whose send is paused now
    complaints: ComplaintRate | None  # set while the scheduler refuses to start an edition


def window_start(settings: Settings) -> dt.date:
    return settings.today() - dt.timedelta(days=WINDOW_DAYS - 1)


def sender_health(
    engine: Engine, settings: Settings, recent: int = RECENT_EDITIONS
) -> SenderHealth:
    """Everything `status` shows about bounces and complaints: three queries."""
    figures = health_store.health_figures(engine, window_start(settings), recent=recent)
    return SenderHealth(
        figures=figures,
        paused=health_store.pauses(engine, [item.edition_id for item in figures.editions]),
        complaints=_over_limit(figures.window, settings),
    )


def complaint_block(engine: Engine, settings: Settings) -> ComplaintRate | None:
    """The 30-day complaint rate, when it is above MAX_COMPLAINT_RATE; else None."""
    if settings.max_complaint_rate >= 1:
        return None
    window = health_store.health_figures(engine, window_start(settings), recent=0).window
    return _over_limit(window, settings)


def _over_limit(window: Figures, settings: Settings) -> ComplaintRate | None:
    if settings.max_complaint_rate >= 1 or window.complaint_rate <= settings.max_complaint_rate:
        return None
    return ComplaintRate(
        rate=window.complaint_rate,
        limit=settings.max_complaint_rate,
        complaints=window.complaints,
        messages=window.messages,
        days=WINDOW_DAYS,
    )


class PauseGuard:
    """The send loop's health check for one edition (`delivery.HealthGuard`).

    `check` costs one indexed query over the edition's rows (the figures), so the loop
    asks it only after every `every` results (a tenth of PAUSE_AFTER, at most 100, or a
    tenth of the messages so far when that is more) or CHECK_SECONDS,
    in its group commit, before the workers take their next message. It returns the
    pause's reason when the send must pause: the rate is over, or another process of
    the same send (`--workers N`) paused it already. Once the operator resumed the
    edition (`resumed_at`), it never pauses it again.
    """

    def __init__(self, engine: Engine, settings: Settings, edition_id: int) -> None:
        self.engine = engine
        self.edition_id = edition_id
        self.limit = settings.pause_hard_bounce_rate
        self.after = settings.pause_after
        self.base = max(1, min(100, settings.pause_after // 10))
        self.every = self.base
        self.seconds = CHECK_SECONDS
        self.off = self.limit >= 1

    async def check(self) -> str | None:
        """In a worker thread, waiting at most LOCK_WAIT_SECONDS for a SQLite lock."""
        if self.off:
            return None
        with lock_wait(LOCK_WAIT_SECONDS):  # copied into the thread with the context
            return await asyncio.to_thread(self._check)

    def _check(self) -> str | None:
        if self.off:
            return None
        pause = health_store.pause_of(self.engine, self.edition_id)
        if pause.paused:
            return pause.reason or "paused"
        if pause.resumed_at is not None:
            self.off = True  # the operator decided: this edition goes out
            return None
        figures = health_store.edition_figures(self.engine, [self.edition_id])[self.edition_id]
        # The query reads the edition's rows: asked every tenth of the messages so far, its
        # cost per message stays the same however large the edition grows.
        self.every = max(self.base, figures.messages // 10)
        if figures.messages < self.after or figures.hard_rate <= self.limit:
            return None
        reason = (
            f"{figures.hard} of the first {figures.messages} messages hard-bounced "
            f"({figures.hard_rate:.1%}), above NEWSLETTER_PAUSE_HARD_BOUNCE_RATE "
            f"({self.limit:.1%})"
        )
        if health_store.pause_edition(self.engine, self.edition_id, reason):
            return reason
        again = health_store.pause_of(self.engine, self.edition_id)  # another process won
        return again.reason if again.paused else None
