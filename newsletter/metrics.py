"""The Prometheus text exposition (format 0.0.4) of the operators' numbers, written by hand.

A few gauges over one `Snapshot` do not justify a dependency (prometheus-client
and its global registry): the format is simple, and tests parse what this writes.
Every family has `# HELP` and `# TYPE` lines; label values are escaped as the
format asks (backslash, double quote, newline).

    newsletter_database_up                        1 if the database answered, else 0
    newsletter_scheduler_running                  1 if a scheduler holds its lock, fresh
    newsletter_subscribers{status}                subscribers by status
    newsletter_editions{status}                   stored editions by status
    newsletter_deliveries{status}                 delivery rows of all editions by status
    newsletter_latest_edition_deliveries{status}  … of the newest edition whose send started
    newsletter_latest_edition_timestamp_seconds   that edition's date (midnight, TIMEZONE)
    newsletter_last_send_completed_timestamp_seconds  when the newest sent edition finished
    newsletter_last_send_duration_seconds         its first attempt to its last recorded result
    newsletter_sender_messages{window}            messages with a final answer (store/health.py)
    newsletter_sender_rate{kind,window}           hard/soft bounce and complaint rates, 0..1,
                                                  window="30d" or "latest_edition"

Counts are gauges, not counters: a delivery row moves between statuses, so
each status's count goes up and down.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from zoneinfo import ZoneInfo

from newsletter.store.stats import Snapshot

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Sample = tuple[Mapping[str, str], float]


def render_metrics(
    snapshot: Snapshot | None, *, scheduler_running: bool | None, zone: ZoneInfo
) -> str:
    """The exposition text. `snapshot` None: the database did not answer (only `up` is shown)."""
    out: list[str] = []
    _family(
        out,
        "database_up",
        "Whether the database answered this scrape.",
        [({}, 1 if snapshot else 0)],
    )
    if scheduler_running is not None:
        _family(
            out,
            "scheduler_running",
            "Whether a scheduler holds the scheduler lock with a fresh heartbeat.",
            [({}, 1 if scheduler_running else 0)],
        )
    if snapshot is None:
        return "\n".join(out) + "\n"
    _by_status(out, "subscribers", "Subscribers by status.", snapshot.subscribers)
    _by_status(out, "editions", "Stored editions by status.", snapshot.editions)
    _by_status(out, "deliveries", "Delivery rows of all editions by status.", snapshot.deliveries)
    if snapshot.latest is not None:
        _by_status(
            out,
            "latest_edition_deliveries",
            "Delivery rows of the newest edition whose send started, by status.",
            snapshot.latest.deliveries,
        )
        midnight = dt.datetime.combine(snapshot.latest.date, dt.time(), zone)
        _family(
            out,
            "latest_edition_timestamp_seconds",
            "Date of the newest edition whose send started (its midnight in NEWSLETTER_TIMEZONE).",
            [({}, midnight.timestamp())],
        )
    last = snapshot.last_send
    if last is not None and last.sent_at is not None:
        _family(
            out,
            "last_send_completed_timestamp_seconds",
            "When the newest fully sent edition finished sending.",
            [({}, last.sent_at.replace(tzinfo=dt.UTC).timestamp())],
        )
    if last is not None and last.duration is not None:
        _family(
            out,
            "last_send_duration_seconds",
            "Newest fully sent edition: first delivery attempt to last recorded result.",
            [({}, last.duration)],
        )
    if snapshot.health is not None:
        _health(out, snapshot)
    return "\n".join(out) + "\n"


def _health(out: list[str], snapshot: Snapshot) -> None:
    """Two windows only (30 days and the newest edition): no label per date."""
    health = snapshot.health
    assert health is not None
    windows = [("30d", health.window)]
    if health.editions:
        windows.append(("latest_edition", health.editions[0].figures))
    _family(
        out,
        "sender_messages",
        "Messages with a final answer from the relay (the rates' denominator), by window.",
        [({"window": name}, figures.messages) for name, figures in windows],
    )
    _family(
        out,
        "sender_rate",
        "Share of those messages that hard-bounced, soft-bounced or drew a complaint.",
        [
            ({"kind": kind, "window": name}, rate)
            for name, figures in windows
            for kind, rate in (
                ("hard", figures.hard_rate),
                ("soft", figures.soft_rate),
                ("complaint", figures.complaint_rate),
            )
        ],
    )


def _by_status(out: list[str], name: str, help_: str, counts: Mapping[object, int]) -> None:
    _family(out, name, help_, [({"status": str(status)}, n) for status, n in counts.items()])


def _family(out: list[str], name: str, help_: str, samples: Iterable[Sample]) -> None:
    full = f"newsletter_{name}"
    out.append(f"# HELP {full} {_escape_help(help_)}")
    out.append(f"# TYPE {full} gauge")
    for labels, value in samples:
        inner = ",".join(f'{key}="{_escape_label(val)}"' for key, val in labels.items())
        out.append(f"{full}{{{inner}}} {_number(value)}" if inner else f"{full} {_number(value)}")


def _number(value: float) -> str:
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")
