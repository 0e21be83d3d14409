"""What the send loop depends on: a ledger and a mailer factory, as small protocols.

The loop (`loop.py`) never sees SQL or aiosmtplib. `send.run_send` hands it
`store.ledger.SqlLedger` and `session.SmtpMailers`; a fault test hands it a
ledger that fails its Nth call, the way httpx's MockTransport stands in for a
transport. listmonk's manager receives its store and messengers the same way.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from typing import Protocol

from newsletter.delivery.pipelining import Wanted
from newsletter.delivery.session import SendResult
from newsletter.store.deliveries import Claim, DeliveryRecord


class Ledger(Protocol):
    """The delivery record of one edition, as the loop needs it (SQL: `store.ledger`).

    Errors are StoreErrors; StoreUnavailable means "try again soon".
    """

    claimer: str  # who this send's claims are stamped with

    async def claim_batch(self, size: int) -> tuple[list[Claim], int]:
        """Up to `size` rows for this claimer, and how many were skipped (subscriber left)."""
        ...

    async def is_active(self, subscriber_id: int) -> bool: ...

    async def record_outcomes(
        self, records: Sequence[DeliveryRecord], bounce_limit: int
    ) -> list[int]:
        """Write the results in one commit, each hard bounce counted toward `bounce_limit`
        exactly once (never again when a record is written twice); the delivery ids whose
        subscriber this made `bounced`."""
        ...

    async def release_claims(self, delivery_ids: Collection[int]) -> int:
        """Give back those of these rows this claimer still holds; how many went back."""
        ...

    async def claimers(self) -> list[str]: ...

    async def release_claims_of(self, claimer: str) -> int: ...

    async def next_retry_at(self) -> dt.datetime | None: ...


class HealthGuard(Protocol):
    """Asked every `every` results (or `seconds`) whether the send must pause
    (`app.health.PauseGuard`: the edition's hard-bounce rate); the reason if so.

    Errors are StoreErrors; the loop logs one and goes on sending (the next check may work).
    """

    every: int
    seconds: float

    async def check(self) -> str | None: ...


class Mailer(Protocol):
    """One connection to the relay (SMTP: `session.SmtpConnection`)."""

    async def send(
        self, sender: str, recipient: str, data: bytes, wanted: Wanted | None = None
    ) -> SendResult | None:
        """The relay's answer; None when `wanted`, asked just before the message would be
        written, said it is no longer wanted."""
        ...

    async def close(self) -> None: ...


class MailerFactory(Protocol):
    """Makes a mailer per worker, and checks the relay before anything is claimed."""

    def __call__(self) -> Mailer: ...

    async def check(self) -> object: ...
