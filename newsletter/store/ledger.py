"""The delivery record of one edition as the send loop sees it: `delivery.Ledger` over SQL.

Each operation runs one query function of `deliveries.py` in a worker thread,
so the event loop never waits on the database, except the per-message active
check: one indexed read on a connection kept for it, cheap enough to run in
place. A SQLite operation waits at most LOCK_WAIT_SECONDS for another
process's lock, then raises StoreUnavailable: how long to keep trying is the
loop's decision (`delivery.retry.StoreWatch`, NEWSLETTER_STORE_RETRY_WINDOW),
made between tries, where a stop can be seen. Every error is already a
StoreError (`store/errors.py`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Collection, Sequence
from typing import TypeVar

from sqlalchemy import Engine

from newsletter.errors import StoreError
from newsletter.store import deliveries
from newsletter.store.deliveries import ActiveCheck, Claim, DeliveryRecord
from newsletter.store.engine import lock_wait

LOCK_WAIT_SECONDS = 5.0

T = TypeVar("T")


class SqlLedger:
    def __init__(
        self, engine: Engine, edition_id: int, *, claimer: str, lease: dt.timedelta
    ) -> None:
        self.engine = engine
        self.edition_id = edition_id
        self.claimer = claimer
        self.lease = lease
        self._check: ActiveCheck | None = None

    async def claim_batch(self, size: int) -> tuple[list[Claim], int]:
        return await self._in_thread(
            deliveries.claim_batch,
            self.engine,
            self.edition_id,
            claimer=self.claimer,
            size=size,
            lease=self.lease,
        )

    async def is_active(self, subscriber_id: int) -> bool:
        if self._check is None:
            self._check = await self._in_thread(ActiveCheck, self.engine)
        try:
            return self._check(subscriber_id)
        except StoreError:
            self._check, broken = None, self._check
            broken.discard()  # a fresh connection next time (the server may have restarted)
            raise

    async def record_outcomes(
        self, records: Sequence[DeliveryRecord], bounce_limit: int
    ) -> list[int]:
        return await self._in_thread(
            deliveries.record_outcomes, self.engine, records, bounce_limit=bounce_limit
        )

    async def release_claims(self, delivery_ids: Collection[int]) -> int:
        return await self._in_thread(
            deliveries.release_claims, self.engine, delivery_ids, claimer=self.claimer
        )

    async def claimers(self) -> list[str]:
        return await self._in_thread(deliveries.claimers, self.engine, self.edition_id)

    async def release_claims_of(self, claimer: str) -> int:
        return await self._in_thread(
            deliveries.release_claims_of, self.engine, self.edition_id, claimer
        )

    async def next_retry_at(self) -> dt.datetime | None:
        return await self._in_thread(deliveries.next_retry_at, self.engine, self.edition_id)

    async def close(self) -> None:
        check, self._check = self._check, None
        if check is not None:
            await asyncio.to_thread(check.close)

    async def _in_thread(self, function: Callable[..., T], *args: object, **kwargs: object) -> T:
        with lock_wait(LOCK_WAIT_SECONDS):  # copied into the thread with the context
            return await asyncio.to_thread(function, *args, **kwargs)
