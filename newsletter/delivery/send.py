"""`run_send`: the send loop over the SQL ledger and SMTP connections.

The one place the loop's two seams are filled with the real backends; the
policy around a send (hold, queueing, the edition's status) stays in
`app.publish`, which calls this.
"""

from __future__ import annotations

import asyncio
import datetime as dt

from sqlalchemy import Engine

from newsletter.config import Settings
from newsletter.delivery.loop import ProgressCallback, SendLoop, SendSummary
from newsletter.delivery.protocols import HealthGuard
from newsletter.delivery.session import SmtpMailers
from newsletter.liveness import run_holder
from newsletter.store.editions import StoredEdition
from newsletter.store.ledger import SqlLedger


async def run_send(
    engine: Engine,
    settings: Settings,
    stored: StoredEdition,
    summary: SendSummary,
    *,
    on_result: ProgressCallback | None = None,
    stop: asyncio.Event,
    guard: HealthGuard | None = None,
) -> None:
    """Deliver the queued rows of `stored`, counting into `summary`, until done or stopped.

    Returns when the edition has nothing left for this process or `stop` was set
    (what was sent is recorded, unsent claims are back in the queue); raises a
    NewsletterError (a DeliveryError, a StoreError) when something stopped it. With a
    `guard`, the send pauses when it says so (`summary.paused`), the way a stop ends it.

    The claims are this run's own (`liveness.run_holder`): what a failed run could
    not give back, the next send takes back at once, even in the same process.
    """
    lease = dt.timedelta(seconds=settings.lease_seconds)
    with run_holder() as claimer:
        ledger = SqlLedger(engine, stored.id, claimer=claimer, lease=lease)
        loop = SendLoop(
            ledger,
            SmtpMailers(settings),
            settings,
            stored,
            summary,
            stop=stop,
            on_result=on_result,
            guard=guard,
        )
        try:
            await loop.run()
        finally:
            await ledger.close()
