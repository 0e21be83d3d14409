"""Group commit: the results of every connection written in shared transactions."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from newsletter.store.deliveries import DeliveryRecord


class GroupCommit:
    """Write results in shared transactions without weakening the crash bound.

    Every worker hands its result here and waits until it is committed before it
    takes its next message. Results that arrive while a commit runs go into the
    next one, so one commit serves all the connections that finished meanwhile,
    and at any moment each connection has at most one message that the server
    may have accepted but the database does not yet say is sent.
    """

    def __init__(self, write: Callable[[list[DeliveryRecord]], Awaitable[None]]) -> None:
        self.write_batch = write
        self.pending: list[tuple[DeliveryRecord, asyncio.Future[None]]] = []
        self.flushing: asyncio.Task[None] | None = None

    async def write(self, record: DeliveryRecord) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending.append((record, done))
        if self.flushing is None or self.flushing.done():
            self.flushing = asyncio.create_task(self._flush())
        await done

    def abandon(self) -> None:
        """At the end of a send: stop a commit still waiting for the database."""
        if self.flushing is not None and not self.flushing.done():
            self.flushing.cancel()

    async def _flush(self) -> None:
        while self.pending:
            batch, self.pending = self.pending, []
            try:
                await self.write_batch([record for record, _ in batch])
            except BaseException as exc:  # the waiting workers see the error, nothing is lost
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            for _, done in batch:
                if not done.done():
                    done.set_result(None)
