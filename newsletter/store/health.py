"""A sender's health in figures: bounces and complaints per edition, and a paused send.

What counts, per edition (each delivery counted at most once for each figure):

* messages: deliveries that reached the relay and got a final answer: `sent`, plus
  `failed` rows the relay refused with a 5xx (in the session), plus any delivery a
  later report is about (the report proves it went out, e.g. a 250 that a later hop
  bounced: `record_bounce` marks it failed). Not counted: skipped rows, rows still
  queued or claimed, and transient failures given up on (a 4xx, a timeout, a dropped
  connection until MAX_ATTEMPTS or RETRY_WINDOW ran out): the receiver never gave a
  final answer to those, so they are neither messages nor bounces.
* hard: the relay refused the address in the session (`deliveries.hard_bounce`, the
  bounce that counts toward BOUNCE_LIMIT) or a later report is a hard bounce; a
  delivery with both is one hard bounce.
* soft: a later soft report (`bounce_events`, kind soft) about the delivery. Our own
  given-up transient failures are not soft bounces (see above).
* complaints: a later complaint (an ARF report) about the delivery.

The 30-day figures are the sums over the editions dated within the window: a report
is counted with the edition of the message it is about, whenever it arrives, as the
mailbox providers count a day's complaints against that day's mail.

One statement per figure set (`edition_figures`). Its cost: the editions' index
ranges of `ix_deliveries_claim` (the `sent` count is a covering-index count, the
failed rows are few), and the reports received since the oldest of those editions
was built, through `ix_bounce_events_received`, each joined to its delivery by key.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import Engine, Select, and_, case, func, literal, select, union_all, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from newsletter.models import BounceKind, DeliveryStatus, EditionStatus
from newsletter.store.engine import utcnow
from newsletter.store.schema import bounce_events, deliveries, edition_pauses, editions


@dataclass(frozen=True)
class Figures:
    """One edition's (or a window's) messages, and the deliveries that bounced or complained."""

    messages: int = 0
    hard: int = 0
    soft: int = 0
    complaints: int = 0

    def __add__(self, other: Figures) -> Figures:
        return Figures(
            self.messages + other.messages,
            self.hard + other.hard,
            self.soft + other.soft,
            self.complaints + other.complaints,
        )

    @property
    def hard_rate(self) -> float:
        return _rate(self.hard, self.messages)

    @property
    def soft_rate(self) -> float:
        return _rate(self.soft, self.messages)

    @property
    def complaint_rate(self) -> float:
        return _rate(self.complaints, self.messages)


def _rate(count: int, messages: int) -> float:
    return count / messages if messages else 0.0


@dataclass(frozen=True)
class EditionFigures:
    edition_id: int
    date: dt.date
    figures: Figures


def edition_figures(engine: Engine, edition_ids: Collection[int]) -> dict[int, Figures]:
    """The figures of each of these editions (zeros for one with no messages), in one query."""
    ids = sorted(set(edition_ids))
    if not ids:
        return {}
    found = dict.fromkeys(ids, Figures())
    with engine.connect() as conn:
        for eid, messages, hard, soft, complaints in conn.execute(figures_query(ids)):
            found[eid] = Figures(int(messages), int(hard), int(soft), int(complaints))
    return found


def figures_query(ids: list[int]) -> Select:
    """The one statement of `edition_figures` (kept apart to read its plan)."""
    chosen = deliveries.c.edition_id.in_(ids)
    sent = (
        select(
            deliveries.c.edition_id.label("eid"),
            func.count().label("messages"),
            literal(0).label("hard"),
            literal(0).label("soft"),
            literal(0).label("complaints"),
        )
        .where(chosen, deliveries.c.status == DeliveryStatus.SENT.value)
        .group_by(deliveries.c.edition_id)
    )
    # Per delivery, what its failure in the session and its later reports say.
    failed = select(
        deliveries.c.id.label("did"),
        deliveries.c.edition_id.label("eid"),
        case((deliveries.c.last_reply.like("5%"), 1), else_=0).label("reached"),
        case((deliveries.c.hard_bounce, 1), else_=0).label("hard"),
        literal(0).label("soft"),
        literal(0).label("complaint"),
        literal(0).label("was_sent"),
    ).where(chosen, deliveries.c.status == DeliveryStatus.FAILED.value)
    oldest = select(func.min(editions.c.created_at)).where(editions.c.id.in_(ids))
    reported = (
        select(
            deliveries.c.id.label("did"),
            deliveries.c.edition_id.label("eid"),
            literal(1).label("reached"),
            _is(bounce_events.c.kind == BounceKind.HARD.value).label("hard"),
            _is(bounce_events.c.kind == BounceKind.SOFT.value).label("soft"),
            _is(bounce_events.c.kind == BounceKind.COMPLAINT.value).label("complaint"),
            _is(deliveries.c.status == DeliveryStatus.SENT.value).label("was_sent"),
        )
        .select_from(bounce_events.join(deliveries, deliveries.c.id == bounce_events.c.delivery_id))
        .where(bounce_events.c.received_at >= oldest.scalar_subquery(), chosen)
    )
    rows = union_all(failed, reported).subquery("rows")
    per_delivery = (
        select(
            rows.c.eid,
            func.max(rows.c.reached).label("reached"),
            func.max(rows.c.hard).label("hard"),
            func.max(rows.c.soft).label("soft"),
            func.max(rows.c.complaint).label("complaint"),
            func.max(rows.c.was_sent).label("was_sent"),
        )
        .group_by(rows.c.did, rows.c.eid)
        .subquery("per_delivery")
    )
    others = select(
        per_delivery.c.eid,
        # a sent delivery is in `sent` already; a failed one counts if the relay answered
        func.sum(
            case((and_(per_delivery.c.was_sent == 0, per_delivery.c.reached == 1), 1), else_=0)
        ).label("messages"),
        func.sum(per_delivery.c.hard).label("hard"),
        func.sum(per_delivery.c.soft).label("soft"),
        func.sum(per_delivery.c.complaint).label("complaints"),
    ).group_by(per_delivery.c.eid)
    parts = union_all(sent, others).subquery("parts")
    total = select(
        parts.c.eid,
        func.sum(parts.c.messages),
        func.sum(parts.c.hard),
        func.sum(parts.c.soft),
        func.sum(parts.c.complaints),
    ).group_by(parts.c.eid)
    return total


def _is(condition):  # noqa: ANN001, ANN202 (SQL expressions)
    return case((condition, 1), else_=0)


def editions_since(engine: Engine, since: dt.date, *, recent: int) -> list[tuple[int, dt.date]]:
    """Editions whose send started, dated `since` or later, plus the `recent` newest such
    (older ones too): the ids and dates the status page and /metrics show, newest first."""
    started = editions.c.status.in_((EditionStatus.SENDING.value, EditionStatus.SENT.value))
    with engine.connect() as conn:
        window = conn.execute(
            select(editions.c.id, editions.c.date).where(started, editions.c.date >= since)
        ).all()
        newest = conn.execute(
            select(editions.c.id, editions.c.date)
            .where(started)
            .order_by(editions.c.date.desc())
            .limit(recent)
        ).all()
    return sorted({(row.id, row.date) for row in [*window, *newest]}, key=lambda r: r[1])[::-1]


@dataclass(frozen=True)
class HealthFigures:
    since: dt.date  # the window: editions dated this day or later
    window: Figures  # the sum over the editions in the window
    editions: list[EditionFigures]  # the `recent` newest editions whose send started, newest first


def health_figures(engine: Engine, since: dt.date, *, recent: int) -> HealthFigures:
    """The window's figures and each recent edition's: two queries, whatever the count."""
    chosen = editions_since(engine, since, recent=recent)
    figures = edition_figures(engine, [edition_id for edition_id, _ in chosen])
    window = sum((figures[i] for i, day in chosen if day >= since), Figures())
    shown = [EditionFigures(i, day, figures[i]) for i, day in chosen[:recent]]
    return HealthFigures(since, window, shown)


# ── a paused send ─────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class Pause:
    """An edition's pause: set while paused; `resumed_at` once the operator resumed it."""

    paused_at: dt.datetime | None
    reason: str | None
    resumed_at: dt.datetime | None

    @property
    def paused(self) -> bool:
        return self.paused_at is not None


def pause_of(engine: Engine, edition_id: int) -> Pause:
    with engine.connect() as conn:
        row = conn.execute(
            select(
                edition_pauses.c.paused_at, edition_pauses.c.reason, edition_pauses.c.resumed_at
            ).where(edition_pauses.c.edition_id == edition_id)
        ).first()
    return Pause(*row) if row is not None else Pause(None, None, None)


def pauses(engine: Engine, edition_ids: Collection[int]) -> dict[int, Pause]:
    """The pauses of these editions (for `status`): only the paused ones are keys."""
    if not edition_ids:
        return {}
    with engine.connect() as conn:
        rows = conn.execute(
            select(edition_pauses).where(
                edition_pauses.c.edition_id.in_(list(edition_ids)),
                edition_pauses.c.paused_at.is_not(None),
            )
        ).all()
    return {row.edition_id: Pause(row.paused_at, row.reason, row.resumed_at) for row in rows}


def pause_edition(engine: Engine, edition_id: int, reason: str) -> bool:
    """Mark the edition paused, unless it is already or the operator resumed it (its row
    exists either way); True if this call paused it."""
    dialect_insert = postgresql_insert if engine.dialect.name == "postgresql" else sqlite_insert
    statement = (
        dialect_insert(edition_pauses)
        .values(edition_id=edition_id, paused_at=utcnow(), reason=reason[:1000])
        .on_conflict_do_nothing(index_elements=["edition_id"])
        .returning(edition_pauses.c.edition_id)
    )
    with engine.begin() as conn:
        return conn.execute(statement).first() is not None


def resume_edition(engine: Engine, edition_id: int) -> str | None:
    """Clear a pause for good (the operator's decision, kept in `resumed_at`); the reason
    it had, or None when the edition was not paused."""
    with engine.begin() as conn:
        return conn.execute(
            update(edition_pauses)
            .where(
                edition_pauses.c.edition_id == edition_id, edition_pauses.c.paused_at.is_not(None)
            )
            .values(paused_at=None, resumed_at=utcnow())
            .returning(edition_pauses.c.reason)
        ).scalar()
