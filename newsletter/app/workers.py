"""`newsletter send --workers N`: N-1 more sender processes on one edition, run from this one.

Each helper is `python -m newsletter send --date D --worker`: the same
`prepare_send` and `deliver` in a process of its own, with CONCURRENCY
connections of its own. They share the work through the claims in the database
(SKIP LOCKED on PostgreSQL), so none sends what another sent. This process
shows what all of them did, read from the record, passes a stop on to them
(SIGTERM) and waits for them, within a bound once stopped.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine

from newsletter.models import DeliveryStatus
from newsletter.store import deliveries as delivery_store
from newsletter.store.editions import HANDLED

#: How long a stopped helper gets to record its in-flight messages before it is killed.
HELPER_EXIT_SECONDS = 60.0
POLL_SECONDS = 0.5


def handled(counts: dict[DeliveryStatus, int]) -> int:
    """Deliveries in a final status (sent, failed, skipped): the one count of "done"."""
    return sum(counts[status] for status in HANDLED)


@dataclass
class Helpers:
    """The helper processes of one send."""

    processes: list[subprocess.Popen[bytes]]
    signalled: bool = False

    @classmethod
    def start(cls, date: dt.date, count: int) -> Helpers:
        day = date.isoformat()
        command = [sys.executable, "-m", "newsletter", "send", "--date", day, "--worker"]
        return cls([subprocess.Popen(command, stdout=subprocess.DEVNULL) for _ in range(count)])

    async def follow(
        self,
        engine: Engine,
        edition_id: int,
        before: dict[DeliveryStatus, int],
        *,
        stop: asyncio.Event,
        on_progress: Callable[[int], None] | None,
    ) -> None:
        """Until cancelled: report what all processes handled; pass a stop on at once."""
        done_before = handled(before)
        while True:
            if stop.is_set():
                self.terminate()
            if on_progress is not None:
                counts = await asyncio.to_thread(delivery_store.count_by_status, engine, edition_id)
                on_progress(handled(counts) - done_before)
            await asyncio.sleep(POLL_SECONDS)

    def terminate(self) -> None:
        """SIGTERM every running helper, once: each records its in-flight messages and exits."""
        if self.signalled:
            return
        self.signalled = True
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)

    async def wait(self, stop: asyncio.Event) -> None:
        """Until every helper has exited: when the edition has nothing left, or after a stop
        (then within HELPER_EXIT_SECONDS; `end` kills what is left)."""
        deadline: float | None = None
        while any(process.poll() is None for process in self.processes):
            if stop.is_set():
                self.terminate()
                deadline = deadline or time.monotonic() + HELPER_EXIT_SECONDS
                if time.monotonic() > deadline:
                    return
            await asyncio.sleep(0.1)

    def end(self) -> None:
        """Leave no helper behind: stop those still running (this process failed, or they
        outlived the bound), and kill one that does not exit in time."""
        self.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=HELPER_EXIT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    @property
    def failed(self) -> bool:
        return any(process.returncode for process in self.processes)
