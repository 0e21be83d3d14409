"""Read-only numbers for operators: /healthz and /metrics.

Every query here is an aggregate over an index (status columns, edition id),
cheap enough to run on each scrape.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Engine, func, select, text

from newsletter.models import DeliveryStatus, SubscriberStatus
from newsletter.store.editions import EditionStatus
from newsletter.store.engine import utcnow
from newsletter.store.health import HealthFigures, health_figures
from newsletter.store.schema import deliveries, editions
from newsletter.store.subscribers import count_by_status as subscribers_by_status

__all__ = ["Snapshot", "ping", "snapshot", "subscribers_by_status"]


@dataclass(frozen=True)
class LatestEdition:
    date: dt.date
    status: EditionStatus
    deliveries: dict[DeliveryStatus, int]


@dataclass(frozen=True)
class LastSend:
    """The newest fully sent edition and how long its deliveries took.

    `started` is the first delivery's first attempt (stamped when its result is
    recorded), `finished` the last delivery row's last change among those
    attempted (sent or failed): so the span covers retries and any later rerun
    that added late subscribers.
    """

    date: dt.date
    sent_at: dt.datetime | None
    started: dt.datetime | None
    finished: dt.datetime | None

    @property
    def duration(self) -> float | None:
        if self.started is None or self.finished is None:
            return None
        return max(0.0, (self.finished - self.started).total_seconds())


@dataclass(frozen=True)
class Snapshot:
    subscribers: dict[SubscriberStatus, int]
    deliveries: dict[DeliveryStatus, int]
    editions: dict[EditionStatus, int]
    latest: LatestEdition | None  # the newest edition whose send started
    last_send: LastSend | None  # the newest edition whose send finished
    health: HealthFigures | None = None  # bounce and complaint rates (store/health.py)


def ping(engine: Engine) -> None:
    """Raise (a SQLAlchemyError) unless the database answers a trivial query."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1")).scalar()


#: The window of the health figures, and how many editions /metrics shows one by one.
HEALTH_DAYS = 30
HEALTH_EDITIONS = 1


def snapshot(engine: Engine, *, today: dt.date | None = None) -> Snapshot:
    """Every number /metrics shows, read in one short connection (the health figures in
    two more). `today`: the newsletter's date now (TIMEZONE); default the UTC date."""
    with engine.connect() as conn:
        delivery_counts = dict.fromkeys(DeliveryStatus, 0)
        for status, number in conn.execute(
            select(deliveries.c.status, func.count()).group_by(deliveries.c.status)
        ):
            delivery_counts[DeliveryStatus(status)] = number
        edition_counts = dict.fromkeys(EditionStatus, 0)
        for status, number in conn.execute(
            select(editions.c.status, func.count()).group_by(editions.c.status)
        ):
            edition_counts[EditionStatus(status)] = number
        latest = _latest(conn)
        last_send = _last_send(conn)
    return Snapshot(
        subscribers=subscribers_by_status(engine),
        deliveries=delivery_counts,
        editions=edition_counts,
        latest=latest,
        last_send=last_send,
        health=health_figures(
            engine,
            (today or utcnow().date()) - dt.timedelta(days=HEALTH_DAYS - 1),
            recent=HEALTH_EDITIONS,
        ),
    )


def _latest(conn) -> LatestEdition | None:  # noqa: ANN001 (a SQLAlchemy Connection)
    row = conn.execute(
        select(editions.c.id, editions.c.date, editions.c.status)
        .where(editions.c.status.in_((EditionStatus.SENDING.value, EditionStatus.SENT.value)))
        .order_by(editions.c.date.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    counts = dict.fromkeys(DeliveryStatus, 0)
    for status, number in conn.execute(
        select(deliveries.c.status, func.count())
        .where(deliveries.c.edition_id == row.id)
        .group_by(deliveries.c.status)
    ):
        counts[DeliveryStatus(status)] = number
    return LatestEdition(row.date, EditionStatus(row.status), counts)


def _last_send(conn) -> LastSend | None:  # noqa: ANN001 (a SQLAlchemy Connection)
    row = conn.execute(
        select(editions.c.id, editions.c.date, editions.c.sent_at)
        .where(editions.c.status == EditionStatus.SENT.value)
        .order_by(editions.c.date.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    span = conn.execute(
        select(func.min(deliveries.c.first_attempt_at), func.max(deliveries.c.updated_at)).where(
            deliveries.c.edition_id == row.id,
            deliveries.c.status.in_((DeliveryStatus.SENT.value, DeliveryStatus.FAILED.value)),
            deliveries.c.first_attempt_at.is_not(None),
        )
    ).first()
    started, finished = (span[0], span[1]) if span is not None else (None, None)
    return LastSend(row.date, row.sent_at, started, finished)
