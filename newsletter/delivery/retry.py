"""How long a send waits, and for what: backoff, the relay watch, the store watch, the rate limit.

Every one of them takes a `Clock` (a monotonic reading and an async sleep), so a
test drives time with a fake clock instead of sleeping, and every wait here is
either bounded or ends when the send's stop event is set.

    backoff(base, attempt)   exponential with jitter, for a message's next try
    RelayWatch               since when the relay has been unreachable; past RETRY_WINDOW: stop
    StoreWatch               since when the database has been unavailable; retries a
                             StoreUnavailable with backoff, past STORE_RETRY_WINDOW: stop
    RateLimiter              at most RATE_LIMIT messages a second over every connection
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from newsletter.config import Settings
from newsletter.errors import DeliveryError, StoreUnavailable
from newsletter.logs import event

log = logging.getLogger("newsletter.delivery")

T = TypeVar("T")


class Clock(Protocol):
    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock: `time.monotonic` and `asyncio.sleep`."""

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


SYSTEM_CLOCK = SystemClock()


def backoff(base: float, attempt: int, rng: random.Random | None = None) -> float:
    """Exponential with jitter, so retries of many messages don't arrive together."""
    jitter = (rng or random).uniform(0.5, 1.5)
    return base * (2 ** max(0, attempt - 1)) * jitter


async def first_of(
    main: Awaitable[T], *others: Awaitable[object], timeout: float | None = None
) -> tuple[bool, asyncio.Future[T]]:
    """Wait until `main` or any of `others` is done (or `timeout` passes); cancel the rest.

    The way every wait of a send races its stop: returns whether `main` finished,
    and its future (a finished one holds its result or exception).
    """
    first = asyncio.ensure_future(main)
    rest = [asyncio.ensure_future(other) for other in others]
    try:
        await asyncio.wait([first, *rest], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (first, *rest):
            if not task.done():
                task.cancel()
    return first.done() and not first.cancelled(), first


async def sleep_or_stop(stop: asyncio.Event, seconds: float, clock: Clock = SYSTEM_CLOCK) -> bool:
    """Sleep `seconds` on `clock`, or less if `stop` is set first; True when stopped."""
    if not stop.is_set():
        await first_of(clock.sleep(max(0.0, seconds)), stop.wait())
    return stop.is_set()


class RelayWatch:
    """Shared by every connection: since when the relay has been unreachable, if it is."""

    def __init__(
        self, settings: Settings, clock: Clock = SYSTEM_CLOCK, rng: random.Random | None = None
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.rng = rng or random.Random()
        self.down_since: float | None = None
        self.failures = 0

    def failed(self, reason: str) -> float:
        """Note a failed connection; the seconds to wait, or DeliveryError past the window.

        The wait grows with how long the relay has been down (half of it, between
        RETRY_DELAY and a minute), not with how many connections failed, so many
        workers hitting a dead relay don't push each other's waits up.
        """
        now = self.clock.monotonic()
        if self.down_since is None:
            self.down_since = now
            log.warning("relay unreachable, retrying: %s", reason)
        self.failures += 1
        down_for = now - self.down_since
        if down_for >= self.settings.retry_window:
            raise DeliveryError(
                f"the relay has been unreachable for {down_for:.0f}s ({reason}); "
                "unsent messages stay queued",
                where=f"{self.settings.smtp_host}:{self.settings.smtp_port}",
                hint="check the relay is up and NEWSLETTER_SMTP_HOST/PORT, then send again",
            )
        wait = min(max(self.settings.retry_delay, down_for / 2), 60.0)
        return wait * self.rng.uniform(0.5, 1.5)

    def ok(self) -> None:
        if self.down_since is not None:
            down_for = self.clock.monotonic() - self.down_since
            log.warning("relay reachable again after %.0fs", down_for)
        self.down_since, self.failures = None, 0


class StoreWatch:
    """Shared by every task of a send: since when the database has been unavailable, if it is.

    `call` runs one store operation. A StoreUnavailable (a lock another process
    holds, a server restarting) is tried again after an exponential backoff
    (`base` doubling up to `cap` seconds, with jitter) until the database has
    been unavailable for `window` seconds in a row, counted from the first
    failure of any task, so tasks that wait together share one window. Then it
    is raised, worded for the stop. Any other StoreError is raised at once.
    """

    def __init__(
        self,
        window: float,
        *,
        clock: Clock = SYSTEM_CLOCK,
        base: float = 0.25,
        cap: float = 8.0,
        rng: random.Random | None = None,
    ) -> None:
        self.window = window
        self.clock = clock
        self.base = base
        self.cap = cap
        self.rng = rng or random.Random()
        self.down_since: float | None = None
        self.last_error: StoreUnavailable | None = None  # the latest failure, for a final error

    async def call(
        self, operation: Callable[[], Awaitable[T]], *, stop: asyncio.Event | None = None
    ) -> T:
        """`await operation()`, retried as above. With `stop`, a stop ends the retrying: the
        last StoreUnavailable is raised (the caller, stopping anyway, may ignore it)."""
        attempt = 0
        while True:
            try:
                result = await operation()
            except StoreUnavailable as exc:
                attempt += 1
                delay = self._failed(exc, attempt)
                if stop is not None and await sleep_or_stop(stop, delay, self.clock):
                    raise
                if stop is None:
                    await self.clock.sleep(delay)
                continue
            if self.down_since is not None:
                self._recovered()
            return result

    def _failed(self, exc: StoreUnavailable, attempt: int) -> float:
        """The seconds to wait before the next try; the final error past the window."""
        now = self.clock.monotonic()
        self.last_error = exc
        if self.down_since is None:
            self.down_since = now
            event(log, "store_unavailable", level=logging.WARNING, reason=exc.message)
        down_for = now - self.down_since
        if down_for >= self.window:
            raise StoreUnavailable(
                f"the database has been unavailable for {down_for:.0f}s: {exc.message}",
                where=exc.where,
                hint="find what holds or stopped it, then run the send again; "
                "NEWSLETTER_STORE_RETRY_WINDOW says how long a send waits for it",
            ) from exc
        delay = min(self.cap, backoff(self.base, attempt, self.rng))
        return min(delay, max(0.0, self.window - down_for))

    def _recovered(self) -> None:
        assert self.down_since is not None
        down_for = self.clock.monotonic() - self.down_since
        event(log, "store_available", level=logging.WARNING, after=f"{down_for:.1f}s")
        self.down_since = None


class RateLimiter:
    """A token bucket shared by every connection: at most `rate` messages a second.

    The bucket holds one second's worth, so a send starts at full speed but
    never exceeds the rate over any second. A rate of 0 means no limit.
    """

    def __init__(self, rate: float, clock: Clock = SYSTEM_CLOCK) -> None:
        self.rate = rate
        self.clock = clock
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.updated = clock.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        if self.rate <= 0:
            return
        async with self._lock:
            while True:
                now = self.clock.monotonic()
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= 1 - 1e-9:  # a float a hair short of 1 after the exact wait
                    self.tokens = max(0.0, self.tokens - 1)
                    return
                await self.clock.sleep((1 - self.tokens) / self.rate)
