"""Sends an editor starts with "send now", run as asyncio tasks in the server process.

The send is `pipeline.send_edition`, the same loop `newsletter send` and the
scheduler run, so its guarantees hold here too: rows are claimed, each message
is recorded when the server answers 250, and a second sender (the scheduler,
another process) working the same edition sends nothing twice.

The tasks are kept here, on `app.state`, because asyncio holds only weak
references to tasks: an unreferenced send could be collected mid-way. Keeping
them also lets the pages say "sending since 07:02" and, afterwards, how it
ended; `stop_all` lets the server's shutdown end them cleanly (in-flight
messages recorded, the rest left queued for the next run).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass, field

from sqlalchemy import Engine
from starlette.requests import Request

from newsletter.config import Settings
from newsletter.delivery import SendSummary
from newsletter.errors import NewsletterError
from newsletter.logs import event
from newsletter.pipeline import send_edition
from newsletter.store.editions import StoredEdition

log = logging.getLogger("newsletter.editor")


@dataclass
class SendRun:
    """One send started from the editor: running, or how it ended."""

    date: dt.date
    started_at: dt.datetime
    stop: asyncio.Event
    task: asyncio.Task[SendSummary] | None = None
    result: str | None = None  # one line once it ended
    failed: bool = False

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()


@dataclass
class BackgroundSends:
    runs: dict[dt.date, SendRun] = field(default_factory=dict)

    def running(self, date: dt.date) -> bool:
        run = self.runs.get(date)
        return run is not None and run.running

    def start(self, engine: Engine, settings: Settings, stored: StoredEdition) -> SendRun:
        """Start delivering `stored` in the background; call from the server's event loop."""
        date = stored.rendered.date
        run = SendRun(date=date, started_at=dt.datetime.now(dt.UTC), stop=asyncio.Event())
        run.task = asyncio.get_running_loop().create_task(
            send_edition(engine, settings, stored, stop=run.stop), name=f"editor-send-{date}"
        )
        run.task.add_done_callback(lambda task: _finished(run, task))
        self.runs[date] = run
        return run

    async def stop_all(self, timeout: float = 30.0) -> None:
        """Ask every running send to stop after its in-flight messages, and wait for them."""
        tasks = [run.task for run in self.runs.values() if run.running and run.task]
        for run in self.runs.values():
            run.stop.set()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)


def sends_of(request: Request) -> BackgroundSends:
    state = request.app.state
    if getattr(state, "editor_sends", None) is None:
        state.editor_sends = BackgroundSends()
    return state.editor_sends


def _finished(run: SendRun, task: asyncio.Task[SendSummary]) -> None:
    """Record how a send ended, for the pages and the log (and so no error goes unread)."""
    date = run.date.isoformat()
    if task.cancelled():
        run.result, run.failed = "stopped before it finished; the rest stays queued", True
    elif (error := task.exception()) is not None:
        run.failed = True
        if isinstance(error, NewsletterError):
            run.result = f"stopped: {error}"
        else:
            run.result = f"stopped by an unexpected error: {type(error).__name__}: {error}"
            log.error("editor send of %s failed", date, exc_info=error)
    else:
        summary = task.result()
        run.result = describe(summary)
        run.failed = summary.failed > 0 or summary.held
    event(log, "editor_send_finished", date=date, result=run.result)


def describe(summary: SendSummary) -> str:
    if summary.held:
        return "not sent: the edition is on hold"
    text = f"sent {summary.sent}, failed {summary.failed}, skipped {summary.skipped}"
    if summary.remaining:
        text += f"; {summary.remaining} still queued (send again to finish)"
    if summary.stopped:
        text += "; stopped early"
    return text + f" in {summary.elapsed:.1f} s"
