"""The editor's "send now" (web/editor_sends.py): a send in a thread of the server's process.

A send that fails leaves claims behind only when the database refuses even to
take them back. In a process that lives on (the server, the scheduler), the next
send must take them back at once: the process is alive, so before the run had a
holder of its own the rows waited out LEASE_SECONDS. The fault is a real one:
another connection holds SQLite's write lock from the moment the relay has the
first messages until the failed send has ended.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from aiosmtpd.controller import Controller
from conftest import RecordingHandler
from sqlalchemy import text

from newsletter import subscribers as subscriber_ops
from newsletter.app import Ready, prepare_send
from newsletter.capture import free_port
from newsletter.delivery import loop
from newsletter.models import DeliveryStatus
from newsletter.store import deliveries as delivery_store
from newsletter.store import ledger
from newsletter.store.engine import open_engine
from newsletter.web.editor_sends import BackgroundSends

pytestmark = pytest.mark.timeout(120)

DAY = dt.date(2026, 11, 25)
CONCURRENCY = 3
WINDOW = 2  # PIPELINE_WINDOW
READERS = [f"reader{n}@example.com" for n in range(8)]
DEADLINE = 60.0  # seconds any one wait of these tests may take (they take about one)


class GatedHandler(RecordingHandler):
    """Records every message, but answers the end of DATA only once `gate` is open."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = threading.Event()  # a message is waiting at the gate
        self.gate = threading.Event()

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201, N802
        self.arrived.set()
        if not await asyncio.to_thread(self.gate.wait, DEADLINE):
            return "451 4.3.0 the test never opened the gate"
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def relay():
    handler = GatedHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), ready_timeout=10)
    controller.start()
    try:
        yield handler, controller.port
    finally:
        handler.gate.set()
        controller.stop()


def finish(run) -> None:  # noqa: ANN001 (a SendRun)
    run.thread.join(DEADLINE)
    assert not run.running, "the send did not end"


@contextmanager
def write_lock(url: str, db_kind: str) -> Iterator[None]:
    """Another session holding a lock that stops every write to the deliveries."""
    if db_kind == "sqlite":
        lock = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=DEADLINE)
        lock.isolation_level = None
        lock.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        return
    holder = open_engine(url)
    try:
        with holder.begin() as conn:  # EXCLUSIVE: reads go on, every write waits
            conn.execute(text("LOCK TABLE deliveries IN EXCLUSIVE MODE"))
            yield
    finally:
        holder.dispose()


def test_a_failed_send_now_gives_its_claims_to_the_next_send_at_once(
    engine, settings, relay, monkeypatch, db_kind
):
    handler, port = relay
    for email in READERS:
        subscriber_ops.add_subscriber(engine, email)
    fast = settings.model_copy(
        update={
            "smtp_port": port,
            "concurrency": CONCURRENCY,
            "pipeline_window": WINDOW,
            "store_retry_window": 0.5,
            "lease_seconds": 3600,  # without the fix the rows wait this long: the test fails
        }
    )
    monkeypatch.setattr(ledger, "LOCK_WAIT_SECONDS", 0.2)  # each locked try gives up soon
    monkeypatch.setattr(loop, "CLEANUP_SECONDS", 1.0)  # and so does the cleanup
    ready = prepare_send(engine, fast, DAY)
    assert isinstance(ready, Ready) and ready.to_send == len(READERS)
    sends = BackgroundSends()

    first = sends.start(engine, fast, ready)
    assert handler.arrived.wait(DEADLINE), "the first send never reached the relay"
    with write_lock(fast.database_url, db_kind):  # every write of the send fails, the cleanup's too
        handler.gate.set()
        finish(first)
    assert first.failed and "the next send takes them back" in first.result, first.result
    counts = delivery_store.count_by_status(engine, ready.stored.id)
    assert counts[DeliveryStatus.SENDING] > 0, "no claim was left behind; the test proves nothing"

    again = prepare_send(engine, fast, DAY)
    assert isinstance(again, Ready)
    second = sends.start(engine, fast, again)
    finish(second)

    assert not second.failed and "still queued" not in second.result, second.result
    counts = delivery_store.count_by_status(engine, ready.stored.id)
    assert counts[DeliveryStatus.SENT] == len(READERS), counts
    received = Counter(rcpt for item in handler.received for rcpt in item.rcpt_tos)
    assert set(received) == set(READERS)
    assert sum(n - 1 for n in received.values()) <= CONCURRENCY * WINDOW  # accepted, unrecorded
