"""Sends an editor starts with "send now", each run in a thread of its own in the server.

The send is the application layer's `deliver`, the same loop `newsletter send`
and the scheduler run, so its guarantees hold here too: rows are claimed, each
message is recorded when the server answers 250, and a second sender (the
scheduler, another process) working the same edition sends nothing twice.

Each send runs in its own thread with its own event loop, not in the server's:
the send loop calls the store and builds messages, and none of that may hold
up a page (the server's loop stays free for requests). The runs are kept here,
on `app.state`, so the pages can say "sending since 07:02" and, afterwards, how
it ended; `stop_all` lets the server's shutdown end them cleanly (in-flight
messages recorded, the rest left queued for the next run).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
from dataclasses import dataclass, field

from sqlalchemy import Engine
from starlette.requests import Request

from newsletter import app as core
from newsletter.config import Settings
from newsletter.errors import NewsletterError
from newsletter.logs import event

log = logging.getLogger("newsletter.editor")


@dataclass
class SendRun:
    """One send started from the editor: running, or how it ended."""

    date: dt.date
    started_at: dt.datetime
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    result: str | None = None  # one line once it ended
    failed: bool = False

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()


@dataclass
class BackgroundSends:
    runs: dict[dt.date, SendRun] = field(default_factory=dict)

    def running(self, date: dt.date) -> bool:
        run = self.runs.get(date)
        return run is not None and run.running

    def start(self, engine: Engine, settings: Settings, ready: core.Ready) -> SendRun:
        """Start delivering a ready edition in a thread of its own."""
        date = ready.stored.rendered.date
        run = SendRun(date=date, started_at=dt.datetime.now(dt.UTC))
        run.thread = threading.Thread(
            target=_send,
            args=(run, engine, settings, ready),
            name=f"editor-send-{date}",
            daemon=True,  # a stuck send cannot keep the server from exiting (stop_all waits first)
        )
        self.runs[date] = run
        run.thread.start()
        return run

    async def stop_all(self, timeout: float = 30.0) -> None:
        """Ask every running send to stop after its in-flight messages, and wait for them."""
        threads = [run.thread for run in self.runs.values() if run.running and run.thread]
        for run in self.runs.values():
            run.stop.set()
        deadline = asyncio.get_running_loop().time() + timeout
        for thread in threads:
            remaining = max(0.0, deadline - asyncio.get_running_loop().time())
            await asyncio.to_thread(thread.join, remaining)


def sends_of(request: Request) -> BackgroundSends:
    state = request.app.state
    if getattr(state, "editor_sends", None) is None:
        state.editor_sends = BackgroundSends()
    return state.editor_sends


def _send(run: SendRun, engine: Engine, settings: Settings, ready: core.Ready) -> None:
    """The thread: deliver, then record how it ended, for the pages and the log (so no
    error goes unread)."""
    date = run.date.isoformat()
    try:
        outcome = core.run_stoppable(
            lambda stop: core.deliver(engine, settings, ready, stop=stop), run.stop
        )
    except NewsletterError as error:
        run.result, run.failed = f"stopped: {error}", True
    except Exception as error:  # noqa: BLE001 (shown on the page and logged, never lost)
        run.result = f"stopped by an unexpected error: {type(error).__name__}: {error}"
        run.failed = True
        log.error("editor send of %s failed", date, exc_info=error)
    else:
        run.result = describe(outcome)
        run.failed = outcome.summary.failed > 0
    event(log, "editor_send_finished", date=date, result=run.result)


def describe(outcome: core.DeliverOutcome) -> str:
    summary = outcome.summary
    text = f"sent {summary.sent}, failed {summary.failed}, skipped {summary.skipped}"
    if isinstance(outcome, core.Paused):
        text = f"paused: {outcome.reason}; {text} (send now again resumes it)"
    if summary.remaining:
        text += f"; {summary.remaining} still queued (send again to finish)"
    if isinstance(outcome, core.Stopped):
        text += "; stopped early"
    return text + f" in {summary.elapsed:.1f} s"
